package batch_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/services/batch"
)

const allTypesRows = `[
	{"id": 1, "b": true, "i8": -128, "i16": 32767, "i32": 3, "i64": "9223372036854775807", "f32": "NaN", "f64": -0.0,
	 "dec": "-12.34", "s": "日本", "bin": "eA==", "d": "9999-12-31", "t": "23:59:59.999999",
	 "ts": "2024-05-01T13:45:00.123456", "ltz": "2024-05-01T13:45:00.123+05:30"},
	{"id": 2},
	{"id": 3, "s": ""}
]`

func validStream(t testing.TB, mem memory.Allocator, opts ...ipc.Option) []byte {
	t.Helper()
	rec, err := batch.FromJSON(mem, allTypes, decodeRows(t, allTypesRows))
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Release()
	data, err := batch.EncodeIPC(rec.Schema(), []arrow.RecordBatch{rec, rec}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestIPCRoundTrip(t *testing.T) {
	for name, opts := range map[string][]ipc.Option{"plain": nil, "lz4": {ipc.WithLZ4()}, "zstd": {ipc.WithZstd()}} {
		t.Run(name, func(t *testing.T) {
			mem := checkedMem(t)
			rec, err := batch.FromJSON(mem, allTypes, decodeRows(t, allTypesRows))
			if err != nil {
				t.Fatal(err)
			}
			defer rec.Release()
			data, err := batch.EncodeIPC(rec.Schema(), []arrow.RecordBatch{rec, rec}, opts...)
			if err != nil {
				t.Fatal(err)
			}
			limit := int64(len(data))
			if opts != nil {
				limit = 1 << 20 // decompressed size exceeds the input
			}
			recs, err := batch.DecodeIPC(mem, allTypes, data, limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != 2 {
				t.Fatalf("%d batches", len(recs))
			}
			for _, r := range recs {
				if !identical(rec, r) {
					t.Errorf("not identical:\n%v\n%v", rec, r)
				}
				r.Release()
			}
		})
	}
}

func TestEncodeIPCEmptyAndMismatch(t *testing.T) {
	mem := checkedMem(t)
	as := batch.ArrowSchema(allTypes)
	data, err := batch.EncodeIPC(as, nil)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := batch.DecodeIPC(mem, allTypes, data, 1<<20)
	if err != nil || len(recs) != 0 {
		t.Fatalf("got %v, %v", recs, err)
	}
	other := catalog.Schema{Columns: []catalog.Column{{Name: "x", Type: catalog.Int}}}
	rec, _ := batch.FromJSON(mem, other, decodeRows(t, `[{"x": 1}]`))
	defer rec.Release()
	if _, err := batch.EncodeIPC(as, []arrow.RecordBatch{rec}); err == nil {
		t.Fatal("EncodeIPC accepted a batch of another schema")
	}
	if _, err := batch.EncodeIPC(nil, nil); err == nil {
		t.Fatal("EncodeIPC accepted a nil schema")
	}
}

// streamOf encodes one batch built column by column with the given fields.
func streamOf(t testing.TB, fields []arrow.Field, build func(b *array.RecordBuilder)) []byte {
	t.Helper()
	mem := memory.NewGoAllocator()
	schema := arrow.NewSchema(fields, nil)
	b := array.NewRecordBuilder(mem, schema)
	defer b.Release()
	build(b)
	rec := b.NewRecordBatch()
	defer rec.Release()
	data, err := batch.EncodeIPC(schema, []arrow.RecordBatch{rec})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestDecodeIPCErrors(t *testing.T) {
	s := catalog.Schema{Columns: []catalog.Column{
		{Name: "id", Type: catalog.BigInt},
		{Name: "price", Type: catalog.Decimal(5, 2), Nullable: true},
		{Name: "at", Type: catalog.TimestampLTZ(3), Nullable: true},
	}}
	id := arrow.Field{Name: "id", Type: arrow.PrimitiveTypes.Int64, Nullable: true}
	price := arrow.Field{Name: "price", Type: &arrow.Decimal128Type{Precision: 5, Scale: 2}, Nullable: true}
	at := arrow.Field{Name: "at", Type: &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}, Nullable: true}
	good := func(b *array.RecordBuilder) {
		b.Field(0).(*array.Int64Builder).AppendValues([]int64{1, 2}, nil)
		b.Field(1).(*array.Decimal128Builder).AppendValues([]decimal128.Num{decimal128.FromI64(12345), decimal128.FromI64(-99999)}, nil)
		b.Field(2).(*array.TimestampBuilder).AppendValues([]arrow.Timestamp{0, 1}, nil)
	}
	valid := streamOf(t, []arrow.Field{id, price, at}, good)

	t.Run("valid with nullable id", func(t *testing.T) {
		mem := checkedMem(t)
		recs, err := batch.DecodeIPC(mem, s, valid, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if !r.Schema().Equal(batch.ArrowSchema(s)) {
				t.Errorf("schema %v", r.Schema())
			}
			r.Release()
		}
	})
	t.Run("LTZ in another zone is retagged UTC", func(t *testing.T) {
		mem := checkedMem(t)
		berlin := at
		berlin.Type = &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "Europe/Berlin"}
		recs, err := batch.DecodeIPC(mem, s, streamOf(t, []arrow.Field{id, price, berlin}, good), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := batch.ToJSON(recs[0])
		if err != nil || rows[1]["at"] != "1970-01-01T00:00:00.001Z" || !recs[0].Schema().Equal(batch.ArrowSchema(s)) {
			t.Fatalf("got %v %v %v", rows, err, recs[0].Schema())
		}
		recs[0].Release()
	})

	cases := []struct {
		name  string
		data  func() []byte
		max   int64
		check func(err error) bool
		msg   string
	}{
		{"too large", func() []byte { return valid }, int64(len(valid) - 1),
			func(err error) bool { return errors.Is(err, batch.ErrTooLarge) }, "too large"},
		{"empty", func() []byte { return nil }, 1 << 20,
			func(err error) bool { return errors.Is(err, batch.ErrMalformed) }, "malformed"},
		{"garbage", func() []byte { return []byte("not an arrow stream at all") }, 1 << 20,
			func(err error) bool { return errors.Is(err, batch.ErrMalformed) }, "malformed"},
		{"truncated", func() []byte { return valid[:len(valid)-20] }, 1 << 20,
			func(err error) bool { return errors.Is(err, batch.ErrMalformed) }, "malformed"},
		{"trailing bytes", func() []byte { return append(append([]byte{}, valid...), 1, 2, 3) }, 1 << 20,
			func(err error) bool { return errors.Is(err, batch.ErrMalformed) }, "3 bytes after the end-of-stream marker"},
		{"wrong type", func() []byte {
			return streamOf(t, []arrow.Field{{Name: "id", Type: arrow.PrimitiveTypes.Int32}, price, at}, func(b *array.RecordBuilder) {})
		}, 1 << 20, func(err error) bool { var se *batch.SchemaError; return errors.As(err, &se) && se.Column == "id" },
			`column "id": want BIGINT as int64, got int32`},
		{"missing column", func() []byte {
			return streamOf(t, []arrow.Field{id, price}, func(b *array.RecordBuilder) {})
		}, 1 << 20, func(err error) bool { var se *batch.SchemaError; return errors.As(err, &se) && se.Column == "at" },
			`column "at": missing`},
		{"null in NOT NULL column", func() []byte {
			return streamOf(t, []arrow.Field{id, price, at}, func(b *array.RecordBuilder) {
				b.Field(0).(*array.Int64Builder).AppendValues([]int64{1, 0}, []bool{true, false})
				b.Field(1).AppendNulls(2)
				b.Field(2).AppendNulls(2)
			})
		}, 1 << 20, func(err error) bool {
			var re *batch.RowError
			return errors.As(err, &re) && re.Row == 1 && re.Column == "id"
		},
			`row 1, column "id": null value; the column is NOT NULL`},
		{"decimal beyond precision", func() []byte {
			return streamOf(t, []arrow.Field{id, price, at}, func(b *array.RecordBuilder) {
				b.Field(0).(*array.Int64Builder).AppendValues([]int64{1}, nil)
				b.Field(1).(*array.Decimal128Builder).Append(decimal128.FromI64(-100000))
				b.Field(2).AppendNull()
			})
		}, 1 << 20, func(err error) bool {
			var re *batch.RowError
			return errors.As(err, &re) && re.Row == 0 && re.Column == "price"
		},
			`row 0, column "price": want DECIMAL(5,2), got -1000.00: more than 5 digits`},
		{"timestamp beyond 9999", func() []byte {
			return streamOf(t, []arrow.Field{id, price, at}, func(b *array.RecordBuilder) {
				b.Field(0).(*array.Int64Builder).AppendValues([]int64{1}, nil)
				b.Field(1).AppendNull()
				b.Field(2).(*array.TimestampBuilder).Append(arrow.Timestamp(1 << 62))
			})
		}, 1 << 20, func(err error) bool { var re *batch.RowError; return errors.As(err, &re) && re.Column == "at" },
			`row 0, column "at": want TIMESTAMP_LTZ(3)`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mem := checkedMem(t)
			recs, err := batch.DecodeIPC(mem, s, c.data(), c.max)
			if recs != nil || err == nil || !c.check(err) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("got %v, %v; want %q", recs, err, c.msg)
			}
		})
	}
}

func TestDecodeIPCRowsCountAcrossBatches(t *testing.T) {
	mem := checkedMem(t)
	s := catalog.Schema{Columns: []catalog.Column{{Name: "d", Type: catalog.Date}}}
	f := []arrow.Field{{Name: "d", Type: arrow.FixedWidthTypes.Date32}}
	schema := arrow.NewSchema(f, nil)
	b := array.NewRecordBuilder(memory.NewGoAllocator(), schema)
	defer b.Release()
	b.Field(0).(*array.Date32Builder).AppendValues([]arrow.Date32{1, 2, 3}, nil)
	r1 := b.NewRecordBatch()
	defer r1.Release()
	b.Field(0).(*array.Date32Builder).AppendValues([]arrow.Date32{4, 1 << 30}, nil)
	r2 := b.NewRecordBatch()
	defer r2.Release()
	data, err := batch.EncodeIPC(schema, []arrow.RecordBatch{r1, r2})
	if err != nil {
		t.Fatal(err)
	}
	_, err = batch.DecodeIPC(mem, s, data, 1<<20)
	var re *batch.RowError
	if !errors.As(err, &re) || re.Row != 4 || re.Column != "d" {
		t.Fatalf("got %v", err)
	}
}

// A zstd body that inflates far beyond the limit fails with ErrTooLarge
// without allocating it.
func TestDecodeIPCDecompressionBomb(t *testing.T) {
	mem := checkedMem(t)
	s := catalog.Schema{Columns: []catalog.Column{{Name: "v", Type: catalog.BigInt}}}
	schema := batch.ArrowSchema(s)
	b := array.NewRecordBuilder(memory.NewGoAllocator(), schema)
	defer b.Release()
	b.Field(0).(*array.Int64Builder).AppendValues(make([]int64, 1<<20), nil) // 8 MiB of zeros
	rec := b.NewRecordBatch()
	defer rec.Release()
	data, err := batch.EncodeIPC(schema, []arrow.RecordBatch{rec}, ipc.WithZstd())
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > 1<<16 {
		t.Fatalf("compressed to %d bytes", len(data))
	}
	_, err = batch.DecodeIPC(mem, s, data, 1<<20)
	if !errors.Is(err, batch.ErrTooLarge) {
		t.Fatalf("got %v", err)
	}
	recs, err := batch.DecodeIPC(mem, s, data, 16<<20)
	if err != nil || len(recs) != 1 || recs[0].NumRows() != 1<<20 {
		t.Fatalf("got %v, %v", recs, err)
	}
	recs[0].Release()
}

// TestDecodeIPCVerbatim: only a stream of exactly one batch under the
// table's own Arrow schema is the canonical encoding of its batch; other
// valid streams decode the same but are not.
func TestDecodeIPCVerbatim(t *testing.T) {
	mem := checkedMem(t)
	rec, err := batch.FromJSON(mem, allTypes, decodeRows(t, allTypesRows))
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Release()
	encode := func(s *arrow.Schema, recs ...arrow.RecordBatch) []byte {
		t.Helper()
		data, err := batch.EncodeIPC(s, recs)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	// The same columns under a schema that differs only in nullability.
	loose := make([]arrow.Field, rec.Schema().NumFields())
	for i, f := range rec.Schema().Fields() {
		f.Nullable = true
		loose[i] = f
	}
	looseRec := array.NewRecordBatch(arrow.NewSchema(loose, nil), rec.Columns(), rec.NumRows())
	defer looseRec.Release()
	for name, tc := range map[string]struct {
		data []byte
		want bool
	}{
		"one batch, table schema":   {encode(rec.Schema(), rec), true},
		"two batches":               {encode(rec.Schema(), rec, rec), false},
		"schema nullable elsewhere": {encode(looseRec.Schema(), looseRec), false},
	} {
		t.Run(name, func(t *testing.T) {
			recs, verbatim, err := batch.DecodeIPCVerbatim(mem, allTypes, tc.data, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				if !identical(rec, r) {
					t.Errorf("decoded batch differs")
				}
				r.Release()
			}
			if verbatim != tc.want {
				t.Errorf("verbatim = %v, want %v", verbatim, tc.want)
			}
		})
	}
}
