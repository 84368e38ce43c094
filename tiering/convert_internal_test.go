package tiering

import (
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

func TestConvertUnit(t *testing.T) {
	for _, tc := range []struct {
		v        int64
		from, to arrow.TimeUnit
		want     int64
	}{
		{5, arrow.Second, arrow.Microsecond, 5_000_000},
		{-5, arrow.Millisecond, arrow.Microsecond, -5000},
		{7, arrow.Microsecond, arrow.Microsecond, 7},
		{1_999, arrow.Nanosecond, arrow.Microsecond, 1},
		{-1, arrow.Nanosecond, arrow.Microsecond, -1}, // floor, not truncation
		{-1_000, arrow.Nanosecond, arrow.Microsecond, -1},
		{-1_001, arrow.Nanosecond, arrow.Microsecond, -2},
	} {
		if got := ConvertTimeUnit(tc.v, tc.from, tc.to); got != tc.want {
			t.Errorf("ConvertTimeUnit(%d, %s, %s) = %d, want %d", tc.v, tc.from, tc.to, got, tc.want)
		}
	}
}

// TestConvert slices a batch, fills a missing column with nulls and adds
// the system columns.
func TestConvert(t *testing.T) {
	target := arrow.NewSchema([]arrow.Field{
		{Name: "a", Type: arrow.PrimitiveTypes.Int32},
		{Name: "t", Type: &arrow.Time64Type{Unit: arrow.Microsecond}, Nullable: true},
		{Name: "added", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "__bucket", Type: arrow.PrimitiveTypes.Int32},
		{Name: "__offset", Type: arrow.PrimitiveTypes.Int64},
		{Name: "__timestamp", Type: arrow.FixedWidthTypes.Timestamp_us},
	}, nil)
	src := arrow.NewSchema([]arrow.Field{
		{Name: "t", Type: &arrow.Time32Type{Unit: arrow.Millisecond}, Nullable: true},
		{Name: "a", Type: arrow.PrimitiveTypes.Int16},
	}, nil)
	rb := array.NewRecordBuilder(memory.DefaultAllocator, src)
	defer rb.Release()
	for i := range 5 {
		if i == 2 {
			rb.Field(0).AppendNull()
		} else {
			rb.Field(0).(*array.Time32Builder).Append(arrow.Time32(i * 10))
		}
		rb.Field(1).(*array.Int16Builder).Append(int16(-i))
	}
	rec := rb.NewRecordBatch()
	defer rec.Release()
	ts := time.Date(2024, 5, 1, 0, 0, 0, 123456789, time.UTC)
	out, err := newConverter(target).convert(rec, 1, 4, 3, 100, ts)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Release()
	if !out.Schema().Equal(target) || out.NumRows() != 3 {
		t.Fatalf("convert: schema %s, %d rows", out.Schema(), out.NumRows())
	}
	a := out.Column(0).(*array.Int32)
	tm := out.Column(1).(*array.Time64)
	off := out.Column(4).(*array.Int64)
	for i := range 3 {
		if a.Value(i) != int32(-(i+1)) || off.Value(i) != int64(101+i) || out.Column(3).(*array.Int32).Value(i) != 3 ||
			out.Column(5).(*array.Timestamp).Value(i) != arrow.Timestamp(ts.UnixMicro()) || !out.Column(2).IsNull(i) {
			t.Errorf("row %d wrong: %v", i, out)
		}
	}
	if tm.Value(0) != 10_000 || !tm.IsNull(1) || tm.Value(2) != 30_000 {
		t.Errorf("time column %v, want [10000 null 30000]", tm)
	}
	// Types that do not convert are errors naming the column.
	bad := arrow.NewSchema([]arrow.Field{{Name: "a", Type: arrow.BinaryTypes.String}}, nil)
	if _, err := newConverter(bad).convert(rec, 0, 1, 0, 0, ts); err == nil {
		t.Error("convert of int16 to string succeeded")
	}
}
