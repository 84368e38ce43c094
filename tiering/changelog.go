package tiering

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/compute"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/strom-io/strom/catalog/changelog"
	"github.com/strom-io/strom/tiering/lake"
)

// changeKinds returns the change types of rows [lo, hi) of a changelog
// batch.
func changeKinds(rec arrow.RecordBatch, lo, hi int64) ([]changelog.Kind, error) {
	idx := rec.Schema().FieldIndices(changelog.Column)
	if len(idx) == 0 {
		return nil, fmt.Errorf("changelog batch has no %s column", changelog.Column)
	}
	col, ok := rec.Column(idx[0]).(*array.String)
	if !ok {
		return nil, fmt.Errorf("changelog column %s is %s, want utf8", changelog.Column, rec.Column(idx[0]).DataType())
	}
	out := make([]changelog.Kind, 0, hi-lo)
	for i := lo; i < hi; i++ {
		if col.IsNull(int(i)) {
			return nil, fmt.Errorf("row %d: %s is null", i, changelog.Column)
		}
		k, err := changelog.Parse(col.Value(int(i)))
		if err != nil {
			return nil, fmt.Errorf("row %d: %w", i, err)
		}
		out = append(out, k)
	}
	return out, nil
}

// changeChunk is a converted changelog batch (the lake table's Arrow
// schema, system columns filled) of one bucket, with the change type of
// each row.
type changeChunk struct {
	bucket int // distinguishes the round's buckets
	rec    arrow.RecordBatch
	kinds  []changelog.Kind
}

// collapseStats counts what collapse produced.
type collapseStats struct {
	rows, deletes int64
}

// collapse turns a round's changelog into the lake delta: per key (per
// bucket), the last change wins. A key whose last change is +I or +U gets
// that row; a key that may have a row in the lake already — its first
// change in the round is not +I, which the KV emits only for a key it does
// not hold — gets a delete, so that its earlier row goes. -U rows change
// nothing (the +U that follows does). keyCols are the indices of the
// primary-key columns in the chunks' schema; deletes have delSchema, whose
// columns are picked from the chunks by name. The caller releases the
// delta's batches.
func collapse(ctx context.Context, chunks []changeChunk, keyCols []int, delSchema *arrow.Schema) (lake.Delta, collapseStats, error) {
	type keyState struct {
		chunk, row  int
		first, last changelog.Kind
	}
	states := map[string]*keyState{}
	var buf []byte
	for ci, ch := range chunks {
		for i, k := range ch.kinds {
			if k == changelog.UpdateBefore {
				continue
			}
			buf = binary.AppendUvarint(buf[:0], uint64(ch.bucket))
			for _, c := range keyCols {
				var err error
				if buf, err = AppendKey(buf, ch.rec.Column(c), i); err != nil {
					return lake.Delta{}, collapseStats{}, fmt.Errorf("key column %q: %w", ch.rec.Schema().Field(c).Name, err)
				}
			}
			st, ok := states[string(buf)]
			if !ok {
				st = &keyState{first: k}
				states[string(buf)] = st
			}
			st.chunk, st.row, st.last = ci, i, k
		}
	}
	keep := make([][]bool, len(chunks))
	drop := make([][]bool, len(chunks))
	for _, st := range states {
		if st.last == changelog.Insert || st.last == changelog.UpdateAfter {
			if keep[st.chunk] == nil {
				keep[st.chunk] = make([]bool, len(chunks[st.chunk].kinds))
			}
			keep[st.chunk][st.row] = true
		}
		if st.first != changelog.Insert {
			if drop[st.chunk] == nil {
				drop[st.chunk] = make([]bool, len(chunks[st.chunk].kinds))
			}
			drop[st.chunk][st.row] = true
		}
	}

	var (
		d     lake.Delta
		stats collapseStats
	)
	fail := func(err error) (lake.Delta, collapseStats, error) {
		release(d.Rows)
		release(d.Deletes)
		return lake.Delta{}, collapseStats{}, err
	}
	for ci, ch := range chunks {
		if keep[ci] != nil {
			rows, err := filter(ctx, ch.rec, keep[ci])
			if err != nil {
				return fail(err)
			}
			d.Rows = append(d.Rows, rows)
			stats.rows += rows.NumRows()
		}
		if drop[ci] != nil {
			rows, err := filter(ctx, ch.rec, drop[ci])
			if err != nil {
				return fail(err)
			}
			del, err := project(rows, delSchema)
			rows.Release()
			if err != nil {
				return fail(err)
			}
			d.Deletes = append(d.Deletes, del)
			stats.deletes += del.NumRows()
		}
	}
	return d, stats, nil
}

func release(recs []arrow.RecordBatch) {
	for _, r := range recs {
		r.Release()
	}
}

// filter returns the rows of rec where mask is true.
func filter(ctx context.Context, rec arrow.RecordBatch, mask []bool) (arrow.RecordBatch, error) {
	b := array.NewBooleanBuilder(memory.DefaultAllocator)
	defer b.Release()
	b.AppendValues(mask, nil)
	m := b.NewArray()
	defer m.Release()
	return compute.FilterRecordBatch(ctx, rec, m, compute.DefaultFilterOptions())
}

// project returns the columns of sc, picked from rec by name.
func project(rec arrow.RecordBatch, sc *arrow.Schema) (arrow.RecordBatch, error) {
	cols := make([]arrow.Array, 0, sc.NumFields())
	for _, f := range sc.Fields() {
		idx := rec.Schema().FieldIndices(f.Name)
		if len(idx) == 0 {
			return nil, fmt.Errorf("delete column %q is not in the table's records", f.Name)
		}
		col := rec.Column(idx[0])
		if !arrow.TypeEqual(col.DataType(), f.Type) {
			return nil, fmt.Errorf("delete column %q is %s, records have %s", f.Name, f.Type, col.DataType())
		}
		cols = append(cols, col)
	}
	return array.NewRecordBatch(sc, cols, rec.NumRows()), nil
}

// AppendKey appends an unambiguous encoding of value i of a key column
// (an array of a primary-key column type of the stream or the lake) to
// buf, so that two keys of one table are equal exactly when their
// encodings are. A null is an error.
func AppendKey(buf []byte, a arrow.Array, i int) ([]byte, error) {
	if a.IsNull(i) {
		return nil, fmt.Errorf("row %d is null", i)
	}
	switch a := a.(type) {
	case *array.Boolean:
		if a.Value(i) {
			return append(buf, 1), nil
		}
		return append(buf, 0), nil
	case *array.Int8:
		return append(buf, uint8(a.Value(i))), nil
	case *array.Int16:
		return binary.BigEndian.AppendUint16(buf, uint16(a.Value(i))), nil
	case *array.Int32:
		return binary.BigEndian.AppendUint32(buf, uint32(a.Value(i))), nil
	case *array.Int64:
		return binary.BigEndian.AppendUint64(buf, uint64(a.Value(i))), nil
	case *array.Date32:
		return binary.BigEndian.AppendUint32(buf, uint32(a.Value(i))), nil
	case *array.Time64:
		return binary.BigEndian.AppendUint64(buf, uint64(a.Value(i))), nil
	case *array.Timestamp:
		return binary.BigEndian.AppendUint64(buf, uint64(a.Value(i))), nil
	case *array.Decimal128:
		v := a.Value(i)
		buf = binary.BigEndian.AppendUint64(buf, uint64(v.HighBits()))
		return binary.BigEndian.AppendUint64(buf, v.LowBits()), nil
	case *array.String:
		s := a.Value(i)
		buf = binary.AppendUvarint(buf, uint64(len(s)))
		return append(buf, s...), nil
	case *array.Binary:
		s := a.Value(i)
		buf = binary.AppendUvarint(buf, uint64(len(s)))
		return append(buf, s...), nil
	case *array.Float32:
		return binary.BigEndian.AppendUint32(buf, math.Float32bits(a.Value(i))), nil
	case *array.Float64:
		return binary.BigEndian.AppendUint64(buf, math.Float64bits(a.Value(i))), nil
	}
	return nil, fmt.Errorf("unsupported key type %s", a.DataType())
}
