package kv

import (
	"errors"
	"math"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/decimal128"

	"github.com/strom-io/strom/catalog"
)

// allTypes is a schema with one nullable column of every type.
var allTypes = catalog.Schema{Columns: []catalog.Column{
	{Name: "b", Type: catalog.Boolean, Nullable: true},
	{Name: "i8", Type: catalog.TinyInt, Nullable: true},
	{Name: "i16", Type: catalog.SmallInt, Nullable: true},
	{Name: "i32", Type: catalog.Int, Nullable: true},
	{Name: "i64", Type: catalog.BigInt, Nullable: true},
	{Name: "f32", Type: catalog.Float, Nullable: true},
	{Name: "f64", Type: catalog.Double, Nullable: true},
	{Name: "dec", Type: catalog.Decimal(10, 2), Nullable: true},
	{Name: "s", Type: catalog.String, Nullable: true},
	{Name: "bin", Type: catalog.Bytes, Nullable: true},
	{Name: "d", Type: catalog.Date, Nullable: true},
	{Name: "t", Type: catalog.Time, Nullable: true},
	{Name: "ts", Type: catalog.Timestamp(3), Nullable: true},
	{Name: "tsl", Type: catalog.TimestampLTZ(9), Nullable: true},
}}

var allTypesRow = Row{true, int64(-128), int64(32767), int64(math.MinInt32), int64(math.MaxInt64),
	float64(float32(1.25)), -0.5, decimal128.FromI64(-99999), "héllo\x00", []byte{0, 1, 0xFF},
	int64(-719162), int64(86_399_999_999), int64(1_700_000_000_000), int64(-1)}

func TestRowRoundTrip(t *testing.T) {
	nulls := make(Row, len(allTypes.Columns))
	mixed := append(Row{}, allTypesRow...)
	mixed[0], mixed[8], mixed[13] = nil, nil, nil
	for _, row := range []Row{allTypesRow, nulls, mixed} {
		for i, v := range row {
			if v != nil {
				if why := checkValue(allTypes.Columns[i].Type, v); why != "" {
					t.Fatalf("column %d: %s", i, why)
				}
			}
		}
		enc := EncodeRow(nil, allTypes, row)
		got, err := DecodeRow(allTypes, enc)
		if err != nil {
			t.Fatalf("DecodeRow: %v", err)
		}
		if !rowsEqual(got, row) {
			t.Fatalf("round trip: got %v, want %v", got, row)
		}
	}
	// A row of an older, narrower schema decodes with trailing NULLs.
	short := EncodeRow(nil, allTypes, allTypesRow[:3])
	got, err := DecodeRow(allTypes, short)
	if err != nil || len(got) != len(allTypes.Columns) || got[3] != nil || got[2] != int64(32767) {
		t.Fatalf("short row: %v, %v", got, err)
	}
}

func TestDecodeRowCorrupt(t *testing.T) {
	valid := EncodeRow(nil, allTypes, allTypesRow)
	for name, data := range map[string][]byte{
		"empty":          {},
		"version":        {2, 0},
		"truncated":      valid[:len(valid)-1],
		"trailing":       append(append([]byte{}, valid...), 0),
		"too many cols":  {1, 15, 0xFF, 0xFF},
		"bad bool":       {1, 1, 0, 2},
		"tinyint range":  {1, 2, 0, 1, 0x80, 0x02},
		"bitmap padding": {1, 1, 0xFE, 1},
	} {
		if _, err := DecodeRow(allTypes, data); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err = %v, want ErrCorrupt", name, err)
		}
	}
}

// FuzzDecodeRow feeds arbitrary bytes (as read from disk) to DecodeRow: it
// must not panic, and what it accepts must be valid values that round-trip.
//
//	go test ./kv -run '^$' -fuzz FuzzDecodeRow -fuzztime 30s
func FuzzDecodeRow(f *testing.F) {
	valid := EncodeRow(nil, allTypes, allTypesRow)
	f.Add([]byte{})
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	f.Add(EncodeRow(nil, allTypes, make(Row, len(allTypes.Columns))))
	corrupt := append([]byte{}, valid...)
	corrupt[5] ^= 0xFF
	f.Add(corrupt)
	f.Fuzz(func(t *testing.T, data []byte) {
		row, err := DecodeRow(allTypes, data)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		for i, v := range row {
			if v != nil {
				if why := checkValue(allTypes.Columns[i].Type, v); why != "" {
					t.Fatalf("decoded column %d: %s", i, why)
				}
			}
		}
		again, err := DecodeRow(allTypes, EncodeRow(nil, allTypes, row))
		if err != nil || !rowsEqual(again, row) {
			t.Fatalf("re-encoding %v: %v, %v", row, again, err)
		}
	})
}
