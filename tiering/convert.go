package tiering

import (
	"fmt"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/strom-io/strom/tiering/lake"
)

// converter turns the Source's record batches, in whatever schema version
// they were written with, into batches of the lake table's Arrow schema:
// columns matched by name, missing (newer) columns null, narrow integers
// widened and times converted to microseconds, plus the system columns.
type converter struct {
	target *arrow.Schema
	mem    memory.Allocator
}

func newConverter(target *arrow.Schema) *converter {
	return &converter{target: target, mem: memory.DefaultAllocator}
}

// convert returns rows [lo, hi) of rec, whose first row has offset base
// in the bucket, committed at ts, as a batch of the target schema.
func (c *converter) convert(rec arrow.RecordBatch, lo, hi int64, bucket int32, base int64, ts time.Time) (arrow.RecordBatch, error) {
	n := int(hi - lo)
	cols := make([]arrow.Array, 0, c.target.NumFields())
	release := func() {
		for _, a := range cols {
			a.Release()
		}
	}
	for _, f := range c.target.Fields() {
		var (
			col arrow.Array
			err error
		)
		switch f.Name {
		case lake.ColumnBucket:
			b := array.NewInt32Builder(c.mem)
			b.Reserve(n)
			for range n {
				b.UnsafeAppend(bucket)
			}
			col = b.NewArray()
			b.Release()
		case lake.ColumnOffset:
			b := array.NewInt64Builder(c.mem)
			b.Reserve(n)
			for i := range int64(n) {
				b.UnsafeAppend(base + lo + i)
			}
			col = b.NewArray()
			b.Release()
		case lake.ColumnTimestamp:
			b := array.NewTimestampBuilder(c.mem, f.Type.(*arrow.TimestampType))
			b.Reserve(n)
			v := arrow.Timestamp(ts.UnixMicro())
			for range n {
				b.UnsafeAppend(v)
			}
			col = b.NewArray()
			b.Release()
		default:
			idx := rec.Schema().FieldIndices(f.Name)
			if len(idx) == 0 {
				// A column added after these records were written.
				col = array.MakeArrayOfNull(c.mem, f.Type, n)
				break
			}
			src := array.NewSlice(rec.Column(idx[0]), lo, hi)
			col, err = c.cast(src, f.Type)
			src.Release()
			if err != nil {
				err = fmt.Errorf("column %q: %w", f.Name, err)
			}
		}
		if err != nil {
			release()
			return nil, err
		}
		cols = append(cols, col)
	}
	out := array.NewRecordBatch(c.target, cols, int64(n))
	release()
	return out, nil
}

// cast returns src as an array of type dst; the result must be released.
func (c *converter) cast(src arrow.Array, dst arrow.DataType) (arrow.Array, error) {
	if arrow.TypeEqual(src.DataType(), dst) {
		src.Retain()
		return src, nil
	}
	n := src.Len()
	switch dst := dst.(type) {
	case *arrow.Int32Type:
		b := array.NewInt32Builder(c.mem)
		defer b.Release()
		b.Reserve(n)
		switch s := src.(type) {
		case *array.Int8:
			for i := range n {
				if s.IsNull(i) {
					b.UnsafeAppendBoolToBitmap(false)
				} else {
					b.UnsafeAppend(int32(s.Value(i)))
				}
			}
		case *array.Int16:
			for i := range n {
				if s.IsNull(i) {
					b.UnsafeAppendBoolToBitmap(false)
				} else {
					b.UnsafeAppend(int32(s.Value(i)))
				}
			}
		default:
			return nil, fmt.Errorf("cannot convert %s to %s", src.DataType(), dst)
		}
		return b.NewArray(), nil
	case *arrow.TimestampType:
		s, ok := src.(*array.Timestamp)
		if !ok {
			return nil, fmt.Errorf("cannot convert %s to %s", src.DataType(), dst)
		}
		from := s.DataType().(*arrow.TimestampType).Unit
		b := array.NewTimestampBuilder(c.mem, dst)
		defer b.Release()
		b.Reserve(n)
		for i := range n {
			if s.IsNull(i) {
				b.UnsafeAppendBoolToBitmap(false)
			} else {
				b.UnsafeAppend(arrow.Timestamp(ConvertTimeUnit(int64(s.Value(i)), from, dst.Unit)))
			}
		}
		return b.NewArray(), nil
	case *arrow.Time64Type:
		b := array.NewTime64Builder(c.mem, dst)
		defer b.Release()
		b.Reserve(n)
		switch s := src.(type) {
		case *array.Time64:
			from := s.DataType().(*arrow.Time64Type).Unit
			for i := range n {
				if s.IsNull(i) {
					b.UnsafeAppendBoolToBitmap(false)
				} else {
					b.UnsafeAppend(arrow.Time64(ConvertTimeUnit(int64(s.Value(i)), from, dst.Unit)))
				}
			}
		case *array.Time32:
			from := s.DataType().(*arrow.Time32Type).Unit
			for i := range n {
				if s.IsNull(i) {
					b.UnsafeAppendBoolToBitmap(false)
				} else {
					b.UnsafeAppend(arrow.Time64(ConvertTimeUnit(int64(s.Value(i)), from, dst.Unit)))
				}
			}
		default:
			return nil, fmt.Errorf("cannot convert %s to %s", src.DataType(), dst)
		}
		return b.NewArray(), nil
	}
	return nil, fmt.Errorf("cannot convert %s to %s", src.DataType(), dst)
}

// unitsPerSecond of each Arrow time unit.
var unitsPerSecond = [...]int64{arrow.Second: 1, arrow.Millisecond: 1e3, arrow.Microsecond: 1e6, arrow.Nanosecond: 1e9}

// ConvertTimeUnit converts v from one time unit to another, rounding
// towards negative infinity when the target is coarser.
func ConvertTimeUnit(v int64, from, to arrow.TimeUnit) int64 {
	f, t := unitsPerSecond[from], unitsPerSecond[to]
	switch {
	case f == t:
		return v
	case f < t:
		return v * (t / f)
	}
	d := f / t
	q := v / d
	if v%d < 0 {
		q--
	}
	return q
}
