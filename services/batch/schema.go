package batch

import (
	"fmt"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/strom-io/strom/catalog"
)

// Arrow types of the parameterless SQL types.
var (
	timeType = &arrow.Time64Type{Unit: arrow.Microsecond}
)

// timestampUnit returns the Arrow unit that holds TIMESTAMP(p) exactly with
// the fewest bits: 0 → s, 1-3 → ms, 4-6 → µs, 7-9 → ns.
func timestampUnit(p int32) arrow.TimeUnit {
	switch {
	case p <= 0:
		return arrow.Second
	case p <= 3:
		return arrow.Millisecond
	case p <= 6:
		return arrow.Microsecond
	}
	return arrow.Nanosecond
}

// arrowType maps a SQL type to its Arrow type; see ArrowSchema.
func arrowType(t catalog.Type) (arrow.DataType, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	switch t.Kind {
	case catalog.KindBoolean:
		return arrow.FixedWidthTypes.Boolean, nil
	case catalog.KindTinyInt:
		return arrow.PrimitiveTypes.Int8, nil
	case catalog.KindSmallInt:
		return arrow.PrimitiveTypes.Int16, nil
	case catalog.KindInt:
		return arrow.PrimitiveTypes.Int32, nil
	case catalog.KindBigInt:
		return arrow.PrimitiveTypes.Int64, nil
	case catalog.KindFloat:
		return arrow.PrimitiveTypes.Float32, nil
	case catalog.KindDouble:
		return arrow.PrimitiveTypes.Float64, nil
	case catalog.KindDecimal:
		return &arrow.Decimal128Type{Precision: t.Precision, Scale: t.Scale}, nil
	case catalog.KindString:
		return arrow.BinaryTypes.String, nil
	case catalog.KindBytes:
		return arrow.BinaryTypes.Binary, nil
	case catalog.KindDate:
		return arrow.FixedWidthTypes.Date32, nil
	case catalog.KindTime:
		return timeType, nil
	case catalog.KindTimestamp:
		return &arrow.TimestampType{Unit: timestampUnit(t.Precision)}, nil
	case catalog.KindTimestampLTZ:
		return &arrow.TimestampType{Unit: timestampUnit(t.Precision), TimeZone: "UTC"}, nil
	}
	return nil, fmt.Errorf("unsupported type %s", t)
}

// arrowSchema is ArrowSchema with an error for an invalid schema.
func arrowSchema(s catalog.Schema) (*arrow.Schema, error) {
	if len(s.Columns) == 0 {
		return nil, fmt.Errorf("batch: schema has no columns")
	}
	fields := make([]arrow.Field, len(s.Columns))
	seen := make(map[string]bool, len(s.Columns))
	for i, c := range s.Columns {
		dt, err := arrowType(c.Type)
		if err != nil {
			return nil, fmt.Errorf("batch: column %q: %w", c.Name, err)
		}
		if seen[c.Name] {
			return nil, fmt.Errorf("batch: column %q appears twice", c.Name)
		}
		seen[c.Name] = true
		fields[i] = arrow.Field{Name: c.Name, Type: dt, Nullable: c.Nullable}
	}
	return arrow.NewSchema(fields, nil), nil
}

// ArrowSchema returns the Arrow schema of a table schema: one field per
// column, in order, with the column's name and nullability and this type:
//
//	BOOLEAN           bool
//	TINYINT           int8
//	SMALLINT          int16
//	INT               int32
//	BIGINT            int64
//	FLOAT             float32
//	DOUBLE            float64
//	DECIMAL(p,s)      decimal128(p, s)
//	STRING            utf8
//	BYTES             binary
//	DATE              date32 (days since 1970-01-01)
//	TIME              time64[us] (microseconds since midnight)
//	TIMESTAMP(p)      timestamp[unit] without time zone
//	TIMESTAMP_LTZ(p)  timestamp[unit, tz=UTC]
//
// where unit is s for p = 0, ms for 1-3, us for 4-6 and ns for 7-9. TIME has
// no precision in the catalog; microseconds match TIMESTAMP's default
// precision 6, Iceberg's and Parquet's TIME, and Spark.
//
// s must be valid (catalog.Schema.Validate); ArrowSchema panics on a type it
// cannot map, which only an unvalidated schema can hold.
func ArrowSchema(s catalog.Schema) *arrow.Schema {
	as, err := arrowSchema(s)
	if err != nil {
		panic(err)
	}
	return as
}

// CheckSchema reports whether an Arrow schema sent by a client can be
// accepted for a table of schema want. It returns nil or a *SchemaError
// naming the first offending column. The rules:
//
//   - got has the table's columns, by exact name, in the table's order, and
//     no others (a missing or extra column is an error);
//   - each field has exactly the type ArrowSchema gives the column
//     (no widening: int32 is not accepted for BIGINT, large_utf8 not for
//     STRING, dictionary encoding not at all), except that a TIMESTAMP_LTZ
//     column accepts a timestamp of its unit in any time zone: Arrow stores
//     such values as UTC instants whatever the zone;
//   - a nullable column accepts a nullable or non-nullable field; a
//     non-nullable column accepts a non-nullable field and also a nullable
//     one, because most Arrow writers (pyarrow, Arrow JS) mark every field
//     nullable by default — DecodeIPC then rejects any batch that actually
//     holds a null in that column, naming the row.
//
// Field and schema metadata are ignored.
func CheckSchema(want catalog.Schema, got *arrow.Schema) error {
	if got == nil {
		return &SchemaError{Column: "", Reason: "no Arrow schema"}
	}
	n := got.NumFields()
	for i, c := range want.Columns {
		if i >= n {
			return &SchemaError{Column: c.Name, Reason: fmt.Sprintf(
				"missing: the Arrow schema has %d fields, the table %d columns", n, len(want.Columns))}
		}
		f := got.Field(i)
		if f.Name != c.Name {
			reason := fmt.Sprintf("want column %d to be %q, got field %q", i, c.Name, f.Name)
			if j := got.FieldIndices(c.Name); len(j) > 0 {
				reason += fmt.Sprintf(" (%q is field %d; fields must be in table order)", c.Name, j[0])
			} else if strings.EqualFold(f.Name, c.Name) {
				reason += " (names are case-sensitive)"
			}
			return &SchemaError{Column: c.Name, Reason: reason}
		}
		dt, err := arrowType(c.Type)
		if err != nil {
			return &SchemaError{Column: c.Name, Reason: err.Error()}
		}
		if !typeAccepts(dt, f.Type) {
			return &SchemaError{Column: c.Name, Reason: fmt.Sprintf("want %s as %s, got %s", c.Type, dt, f.Type)}
		}
	}
	if n > len(want.Columns) {
		f := got.Field(len(want.Columns))
		return &SchemaError{Column: f.Name, Reason: fmt.Sprintf(
			"not in the table: the Arrow schema has %d fields, the table %d columns", n, len(want.Columns))}
	}
	return nil
}

// typeAccepts reports whether a column of Arrow type want accepts data of
// Arrow type got (see CheckSchema).
func typeAccepts(want, got arrow.DataType) bool {
	if got == nil {
		return false
	}
	if wt, ok := want.(*arrow.TimestampType); ok && wt.TimeZone != "" {
		gt, ok := got.(*arrow.TimestampType)
		return ok && gt.Unit == wt.Unit && gt.TimeZone != ""
	}
	return arrow.TypeEqual(want, got)
}
