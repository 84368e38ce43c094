package batch_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/services/batch"
)

func TestArrowSchema(t *testing.T) {
	cases := []struct {
		typ  string
		want arrow.DataType
	}{
		{"BOOLEAN", arrow.FixedWidthTypes.Boolean},
		{"TINYINT", arrow.PrimitiveTypes.Int8},
		{"SMALLINT", arrow.PrimitiveTypes.Int16},
		{"INT", arrow.PrimitiveTypes.Int32},
		{"BIGINT", arrow.PrimitiveTypes.Int64},
		{"FLOAT", arrow.PrimitiveTypes.Float32},
		{"DOUBLE", arrow.PrimitiveTypes.Float64},
		{"DECIMAL(38,10)", &arrow.Decimal128Type{Precision: 38, Scale: 10}},
		{"STRING", arrow.BinaryTypes.String},
		{"BYTES", arrow.BinaryTypes.Binary},
		{"DATE", arrow.FixedWidthTypes.Date32},
		{"TIME", &arrow.Time64Type{Unit: arrow.Microsecond}},
		{"TIMESTAMP(0)", &arrow.TimestampType{Unit: arrow.Second}},
		{"TIMESTAMP(1)", &arrow.TimestampType{Unit: arrow.Millisecond}},
		{"TIMESTAMP(3)", &arrow.TimestampType{Unit: arrow.Millisecond}},
		{"TIMESTAMP(4)", &arrow.TimestampType{Unit: arrow.Microsecond}},
		{"TIMESTAMP(6)", &arrow.TimestampType{Unit: arrow.Microsecond}},
		{"TIMESTAMP(7)", &arrow.TimestampType{Unit: arrow.Nanosecond}},
		{"TIMESTAMP(9)", &arrow.TimestampType{Unit: arrow.Nanosecond}},
		{"TIMESTAMP_LTZ(0)", &arrow.TimestampType{Unit: arrow.Second, TimeZone: "UTC"}},
		{"TIMESTAMP_LTZ(9)", &arrow.TimestampType{Unit: arrow.Nanosecond, TimeZone: "UTC"}},
	}
	for _, c := range cases {
		for _, nullable := range []bool{false, true} {
			s := catalog.Schema{Columns: []catalog.Column{{Name: "c", Type: catalog.MustParseType(c.typ), Nullable: nullable}}}
			got := batch.ArrowSchema(s).Field(0)
			if !arrow.TypeEqual(got.Type, c.want) || got.Name != "c" || got.Nullable != nullable {
				t.Errorf("%s nullable=%v: got %v, want %v", c.typ, nullable, got, c.want)
			}
			if err := batch.CheckSchema(s, batch.ArrowSchema(s)); err != nil {
				t.Errorf("%s: CheckSchema of its own Arrow schema: %v", c.typ, err)
			}
		}
	}
}

func TestArrowSchemaPanicsOnInvalidType(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	batch.ArrowSchema(catalog.Schema{Columns: []catalog.Column{{Name: "c"}}})
}

func TestCheckSchema(t *testing.T) {
	want := catalog.Schema{Columns: []catalog.Column{
		{Name: "id", Type: catalog.BigInt},
		{Name: "price", Type: catalog.Decimal(10, 2), Nullable: true},
		{Name: "at", Type: catalog.TimestampLTZ(6), Nullable: true},
	}}
	f := func(name string, dt arrow.DataType, nullable bool) arrow.Field {
		return arrow.Field{Name: name, Type: dt, Nullable: nullable}
	}
	id := f("id", arrow.PrimitiveTypes.Int64, false)
	price := f("price", &arrow.Decimal128Type{Precision: 10, Scale: 2}, true)
	at := f("at", &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}, true)
	cases := []struct {
		name    string
		fields  []arrow.Field
		column  string
		message string // substring of the error; "" for success
	}{
		{"exact", []arrow.Field{id, price, at}, "", ""},
		{"nullable field for NOT NULL column", []arrow.Field{f("id", arrow.PrimitiveTypes.Int64, true), price, at}, "", ""},
		{"non-nullable field for nullable column", []arrow.Field{id, f("price", price.Type, false), at}, "", ""},
		{"LTZ in another zone", []arrow.Field{id, price, f("at", &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "Europe/Berlin"}, true)}, "", ""},
		{"LTZ without zone", []arrow.Field{id, price, f("at", &arrow.TimestampType{Unit: arrow.Microsecond}, true)}, "at",
			`column "at": want TIMESTAMP_LTZ(6) as timestamp[us, tz=UTC], got timestamp[us]`},
		{"LTZ wrong unit", []arrow.Field{id, price, f("at", &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}, true)}, "at", "got timestamp[ms, tz=UTC]"},
		{"wrong type", []arrow.Field{id, f("price", arrow.PrimitiveTypes.Float64, true), at}, "price",
			`column "price": want DECIMAL(10,2) as decimal(10, 2), got float64`},
		{"wrong scale", []arrow.Field{id, f("price", &arrow.Decimal128Type{Precision: 10, Scale: 3}, true), at}, "price", "got decimal(10, 3)"},
		{"no widening", []arrow.Field{f("id", arrow.PrimitiveTypes.Int32, false), price, at}, "id", "want BIGINT as int64, got int32"},
		{"missing", []arrow.Field{id, price}, "at", "missing"},
		{"extra", []arrow.Field{id, price, at, f("x", arrow.PrimitiveTypes.Int8, true)}, "x", "not in the table"},
		{"order", []arrow.Field{price, id, at}, "id", `want column 0 to be "id", got field "price" ("id" is field 1`},
		{"case", []arrow.Field{f("ID", arrow.PrimitiveTypes.Int64, false), price, at}, "id", "case-sensitive"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := batch.CheckSchema(want, arrow.NewSchema(c.fields, nil))
			if c.message == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			var se *batch.SchemaError
			if !errors.As(err, &se) {
				t.Fatalf("got %v, want a *SchemaError", err)
			}
			if se.Column != c.column || !strings.Contains(err.Error(), c.message) {
				t.Fatalf("got %q (column %q), want column %q and %q", err, se.Column, c.column, c.message)
			}
		})
	}
}
