package segment_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/strom-io/strom/services/segment"
)

// memReader is an in-memory segment.RangeReader over one object, with the
// same range contract as objstore.BucketReader.GetRange.
type memReader struct {
	data []byte
	mu   sync.Mutex
	gets int
}

func (m *memReader) GetRange(_ context.Context, key string, off, length int64) (io.ReadCloser, error) {
	m.mu.Lock()
	m.gets++
	m.mu.Unlock()
	if off < 0 || length < 0 || off+length > int64(len(m.data)) {
		return nil, fmt.Errorf("memReader: range [%d, +%d) out of %d bytes", off, length, len(m.data))
	}
	return io.NopCloser(bytes.NewReader(m.data[off : off+length])), nil
}

var _ segment.RangeReader = (*memReader)(nil)

// allTypes is a schema with one column of every table type.
var allTypes = arrow.NewSchema([]arrow.Field{
	{Name: "id", Type: arrow.PrimitiveTypes.Int64},
	{Name: "b", Type: arrow.FixedWidthTypes.Boolean, Nullable: true},
	{Name: "i8", Type: arrow.PrimitiveTypes.Int8, Nullable: true},
	{Name: "i16", Type: arrow.PrimitiveTypes.Int16, Nullable: true},
	{Name: "i32", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
	{Name: "i64", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
	{Name: "f32", Type: arrow.PrimitiveTypes.Float32, Nullable: true},
	{Name: "f64", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
	{Name: "dec", Type: &arrow.Decimal128Type{Precision: 12, Scale: 2}, Nullable: true},
	{Name: "s", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "bin", Type: arrow.BinaryTypes.Binary, Nullable: true},
	{Name: "d", Type: arrow.FixedWidthTypes.Date32, Nullable: true},
	{Name: "t", Type: arrow.FixedWidthTypes.Time64us, Nullable: true},
	{Name: "ts", Type: &arrow.TimestampType{Unit: arrow.Microsecond}, Nullable: true},
	{Name: "tsz", Type: &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}, Nullable: true},
}, nil)

// makeRecord builds rows rows of schema s: value k (from seed) in row i,
// null in every 5th row of nullable columns.
func makeRecord(t testing.TB, mem memory.Allocator, s *arrow.Schema, rows int, seed int) arrow.RecordBatch {
	t.Helper()
	b := array.NewRecordBuilder(mem, s)
	defer b.Release()
	for i := 0; i < rows; i++ {
		k := seed*100000 + i
		for j, f := range s.Fields() {
			fb := b.Field(j)
			if f.Nullable && i%5 == 4 {
				fb.AppendNull()
				continue
			}
			switch fb := fb.(type) {
			case *array.BooleanBuilder:
				fb.Append(k%3 == 0)
			case *array.Int8Builder:
				fb.Append(int8(k))
			case *array.Int16Builder:
				fb.Append(int16(k))
			case *array.Int32Builder:
				fb.Append(int32(k) - 7)
			case *array.Int64Builder:
				fb.Append(int64(k)*1000 - 3)
			case *array.Float32Builder:
				fb.Append(float32(k) / 3)
			case *array.Float64Builder:
				fb.Append(float64(k) * math.Pi)
			case *array.Decimal128Builder:
				fb.Append(decimal128.FromI64(int64(k)*101 - 5000))
			case *array.StringBuilder:
				fb.Append(fmt.Sprintf("value-%d-%s", k, f.Name))
			case *array.BinaryBuilder:
				fb.Append([]byte{byte(k), byte(k >> 8), 0xFF})
			case *array.Date32Builder:
				fb.Append(arrow.Date32(19000 + k%1000))
			case *array.Time64Builder:
				fb.Append(arrow.Time64(int64(k) * 1_000_000))
			case *array.TimestampBuilder:
				fb.Append(arrow.Timestamp(1_700_000_000_000_000 + int64(k)))
			default:
				t.Fatalf("no generator for %s", f.Type)
			}
		}
	}
	return b.NewRecordBatch()
}

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// makeSection builds a section of n batches of rows rows each.
func makeSection(t testing.TB, mem memory.Allocator, s *arrow.Schema, table int64, part string, bucket int32, codec segment.Codec, base int64, n, rows int) segment.Section {
	t.Helper()
	sec := segment.Section{TableID: table, Partition: part, Bucket: bucket, Codec: codec}
	off := base
	for i := 0; i < n; i++ {
		rec := makeRecord(t, mem, s, rows+i, int(table)*10+i)
		sec.Batches = append(sec.Batches, segment.Batch{
			BaseOffset:    off,
			Timestamp:     t0.Add(time.Duration(i) * time.Millisecond),
			SchemaVersion: 1,
			Record:        rec,
		})
		off += rec.NumRows()
	}
	return sec
}

func releaseSections(secs []segment.Section) {
	for _, s := range secs {
		for _, b := range s.Batches {
			b.Record.Release()
		}
	}
}

func releaseBatches(bs []segment.ReadBatch) {
	for _, b := range bs {
		b.Record.Release()
	}
}

func encode(t testing.TB, secs []segment.Section) ([]byte, []segment.SectionInfo) {
	t.Helper()
	obj, infos, err := segment.Encode(secs)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return obj, infos
}

// projectRecord returns the columns names of rec as a new record.
func projectRecord(rec arrow.RecordBatch, names ...string) arrow.RecordBatch {
	var fields []arrow.Field
	var cols []arrow.Array
	for _, n := range names {
		i := rec.Schema().FieldIndices(n)[0]
		fields = append(fields, rec.Schema().Field(i))
		cols = append(cols, rec.Column(i))
	}
	return array.NewRecordBatch(arrow.NewSchema(fields, nil), cols, rec.NumRows())
}
