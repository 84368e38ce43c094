package readsvc

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/services/batch"
	"github.com/strom-io/strom/services/kv"
	"github.com/strom-io/strom/services/reader"
	"github.com/strom-io/strom/tiering"
)

// keyedBucket adds the rows of primary-key table bucket st as of its
// fixed end: of the lake snapshot's rows (the bucket's state at the
// snapshot's offset L, deletes applied), those whose keys the changelog
// did not touch in [L, end); then, for every key the changelog touched,
// its last change when that is an insert or an update (a key whose last
// change is a delete is gone). Each row's _offset is the offset of the
// change that wrote it. end is st.NextOffset, or L when a newer snapshot,
// loaded because retention deleted the changelog meanwhile, is past it.
func (r *unionReader) keyedBucket(ctx context.Context, st catalog.BucketState) error {
	b := st.BucketID
	var tail *changeTail
	for attempt := 1; ; attempt++ {
		from := r.lakeOffset(b)
		var err error
		tail, err = r.readChanges(ctx, b, from, max(st.NextOffset, from))
		if err == nil {
			break
		}
		if !errors.Is(err, reader.ErrOffsetOutOfRange) || attempt == unionAttempts {
			return err
		}
		if err := r.refresh(ctx, b, from, err); err != nil {
			if r.snap == nil {
				return fmt.Errorf("%w: without a lake copy of table %s.%s, a union scan of it replays its whole changelog", err, r.t.Database, r.t.Name)
			}
			return err
		}
	}
	defer tail.release()
	if r.lakeOffset(b) > 0 {
		if err := r.lakeState(ctx, b, tail); err != nil {
			return err
		}
	}
	return tail.addLast(ctx, r.u)
}

// readChanges reads the changelog of b in [from, end).
func (r *unionReader) readChanges(ctx context.Context, b catalog.BucketID, from, end int64) (*changeTail, error) {
	tail := &changeTail{mem: r.s.mem, keys: r.t.Schema.PrimaryKey, last: map[string]changePos{}}
	for from < end {
		res, err := r.s.reader.Fetch(ctx, reader.FetchRequest{Table: r.t, Bucket: b, Offset: from, MaxBytes: tailFetchBytes})
		if err == nil && len(res.Batches) == 0 {
			res.Release()
			err = fmt.Errorf("readsvc: %s: no changelog records at offset %d before the scan's end %d", b, from, end)
		}
		if err != nil {
			tail.release()
			return nil, err
		}
		for _, rb := range res.Batches {
			n := min(rb.Record.NumRows(), end-rb.BaseOffset)
			rec := rb.Record.NewSlice(0, n)
			err := tail.add(streamRows(r.s.mem, rec, b.Bucket, rb.BaseOffset, rb.Timestamp))
			rec.Release()
			if err != nil {
				res.Release()
				tail.release()
				return nil, fmt.Errorf("readsvc: %s changelog at offset %d: %w", b, rb.BaseOffset, err)
			}
			r.tailRows += n
			from = rb.BaseOffset + n
			if from >= end {
				break
			}
		}
		res.Release()
	}
	return tail, nil
}

// lakeState adds the snapshot's rows of b whose keys tail did not touch.
func (r *unionReader) lakeState(ctx context.Context, b catalog.BucketID, tail *changeTail) error {
	// The projection, plus the key columns to merge by.
	var columns []string
	if r.columns != nil {
		for _, c := range r.t.Schema.Columns {
			if slices.Contains(r.columns, c.Name) || slices.Contains(tail.keys, c.Name) {
				columns = append(columns, c.Name)
			}
		}
	}
	stream := batch.ArrowSchema(r.t.Schema)
	for rec, err := range r.snap.Rows(ctx, b, columns) {
		if err != nil {
			return err
		}
		r.lakeRows += rec.NumRows()
		rows := lakeRows(rec)
		err := r.addUntouched(ctx, rows, tail, stream)
		rows.Release()
		if err != nil {
			return err
		}
		if r.u.full() {
			break
		}
	}
	return nil
}

// addUntouched adds the rows of lake batch rows whose keys tail did not
// touch. The lake's key columns are cast to the stream's types first, so
// that keys compare as the changelog's do.
func (r *unionReader) addUntouched(ctx context.Context, rows arrow.RecordBatch, tail *changeTail, stream *arrow.Schema) error {
	keyCols := make([]arrow.Array, 0, len(tail.keys))
	defer func() {
		for _, c := range keyCols {
			c.Release()
		}
	}()
	for _, name := range tail.keys {
		idx := rows.Schema().FieldIndices(name)
		if len(idx) == 0 {
			return fmt.Errorf("readsvc: lake rows of %s.%s have no key column %q", r.t.Database, r.t.Name, name)
		}
		col := rows.Column(idx[0])
		col.Retain()
		col, err := castTo(ctx, r.s.mem, col, stream.Field(stream.FieldIndices(name)[0]).Type)
		if err != nil {
			return fmt.Errorf("readsvc: lake key column %q: %w", name, err)
		}
		keyCols = append(keyCols, col)
	}
	keep := make([]bool, rows.NumRows())
	var buf []byte
	for i := range keep {
		var err error
		if buf, err = appendRowKey(buf[:0], keyCols, i); err != nil {
			return fmt.Errorf("readsvc: lake row of %s.%s: %w", r.t.Database, r.t.Name, err)
		}
		_, touched := tail.last[string(buf)]
		keep[i] = !touched
	}
	kept, err := filterRows(ctx, r.s.mem, rows, keep)
	if err != nil {
		return err
	}
	defer kept.Release()
	return r.u.add(ctx, kept)
}

// changeTail is a primary-key bucket's changelog after the lake snapshot,
// as batches with _bucket, _offset and _timestamp, and per key where its
// last change is.
type changeTail struct {
	mem  memory.Allocator
	keys []string // the primary-key columns
	recs []arrow.RecordBatch
	last map[string]changePos // by appendRowKey
}

// changePos is where a key's last change is, and whether it deletes the
// key.
type changePos struct {
	rec, row int
	deleted  bool
}

func (c *changeTail) release() {
	for _, r := range c.recs {
		r.Release()
	}
	c.recs = nil
}

// add takes rec, a changelog batch, records its changes by key and keeps
// it.
func (c *changeTail) add(rec arrow.RecordBatch) error {
	c.recs = append(c.recs, rec)
	idx := rec.Schema().FieldIndices(kv.ChangeTypeColumn)
	if len(idx) == 0 {
		return fmt.Errorf("no %s column", kv.ChangeTypeColumn)
	}
	kinds, ok := rec.Column(idx[0]).(*array.String)
	if !ok {
		return fmt.Errorf("%s is %s, want utf8", kv.ChangeTypeColumn, rec.Column(idx[0]).DataType())
	}
	keyCols := make([]arrow.Array, len(c.keys))
	for i, name := range c.keys {
		idx := rec.Schema().FieldIndices(name)
		if len(idx) == 0 {
			return fmt.Errorf("no key column %q", name)
		}
		keyCols[i] = rec.Column(idx[0])
	}
	var buf []byte
	for i := range kinds.Len() {
		kind := kinds.Value(i)
		if kind == kv.ChangeUpdateBefore {
			continue // the +U after it is the change
		}
		var err error
		if buf, err = appendRowKey(buf[:0], keyCols, i); err != nil {
			return err
		}
		c.last[string(buf)] = changePos{rec: len(c.recs) - 1, row: i, deleted: kind == kv.ChangeDelete}
	}
	return nil
}

// addLast adds to u, in offset order, each key's last change that is not
// a delete.
func (c *changeTail) addLast(ctx context.Context, u *unionRows) error {
	keep := make([][]bool, len(c.recs))
	for _, p := range c.last {
		if p.deleted {
			continue
		}
		if keep[p.rec] == nil {
			keep[p.rec] = make([]bool, c.recs[p.rec].NumRows())
		}
		keep[p.rec][p.row] = true
	}
	for i, rec := range c.recs {
		if keep[i] == nil || u.full() {
			continue
		}
		kept, err := filterRows(ctx, c.mem, rec, keep[i])
		if err != nil {
			return err
		}
		err = u.add(ctx, kept)
		kept.Release()
		if err != nil {
			return err
		}
	}
	return nil
}

// appendRowKey appends the encoding of row i's key (the values of cols,
// the key columns) to buf.
func appendRowKey(buf []byte, cols []arrow.Array, i int) ([]byte, error) {
	for _, col := range cols {
		var err error
		if buf, err = tiering.AppendKey(buf, col, i); err != nil {
			return nil, err
		}
	}
	return buf, nil
}
