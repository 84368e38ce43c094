package readsvc

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/util"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/catalog/changelog"
	"github.com/strom-io/strom/services/batch"
	"github.com/strom-io/strom/services/reader"
	"github.com/strom-io/strom/tiering"
	"github.com/strom-io/strom/tiering/lake"
)

// tailKeepBytes bounds the changelog tail a primary-key union scan keeps
// in memory from reading it for its keys until it returns its rows; a
// longer tail is read twice instead.
const tailKeepBytes = 16 << 20

// keyedBucket adds the rows of primary-key table bucket i as of its fixed
// end, from pos on (the zero position: from the bucket's start): of the
// lake snapshot's rows (the bucket's state at the snapshot's offset L,
// deletes applied), those whose keys the changelog did not touch in
// [L, end); then, in offset order, every touched key's last change when
// that is an insert or an update (a key whose last change is a delete is
// gone). Each row's _offset is the offset of the change that wrote it.
// end is the bucket's end, or L when a newer snapshot, loaded because
// retention deleted the changelog meanwhile, is past it.
func (r *unionReader) keyedBucket(ctx context.Context, i int, pos position) error {
	b := r.bucket(i)
	resumed := pos.lake != nil || pos.offset > 0
	// The lake rows are read (ahead) while the changelog is.
	var lr *lakeRead
	if pos.offset == 0 && r.lakeOffset(b) > 0 {
		lr = r.lakeRead(ctx, i, pos)
	}
	defer func() {
		if lr != nil {
			lr.close()
		}
	}()
	var tail *changeTail
	for attempt := 1; ; attempt++ {
		from := r.lakeOffset(b)
		end := max(r.ends[i].End, from)
		var err error
		if ta := r.takeTail(i); ta != nil {
			tail, err = ta.tail, ta.err // read ahead while the bucket before was
		} else {
			tail, err = r.readChanges(ctx, b, from, end)
		}
		if err == nil {
			r.ends[i].End = end
			r.tailRows += tail.rows
			break
		}
		if !errors.Is(err, reader.ErrOffsetOutOfRange) || attempt == unionAttempts {
			return err
		}
		if resumed {
			// The rows before pos came from this snapshot: another one
			// would not continue them.
			return fmt.Errorf("%w: retention deleted the changelog of %s after the scan's lake snapshot %d meanwhile (%w)", errCannotContinue, b, r.snapID(), err)
		}
		if err := r.refresh(ctx, b, from, err); err != nil {
			if r.snap == nil {
				return fmt.Errorf("%w: without a lake copy of table %s.%s, a union scan of it replays its whole changelog", err, r.t.Database, r.t.Name)
			}
			return err
		}
	}
	defer tail.release()
	r.tailKeys = max(r.tailKeys, int64(len(tail.last)))
	r.startTail(ctx, i+1)
	if pos.offset == 0 && tail.from > 0 {
		if lr != nil && lr.snap != r.snap {
			lr.close() // of the snapshot before a refresh
			lr = nil
		}
		if lr == nil {
			lr = r.lakeRead(ctx, i, pos)
		}
		err := r.lakeState(ctx, i, tail, lr.items())
		if err != nil {
			return err
		}
	}
	return r.addLast(ctx, i, tail, max(pos.offset, tail.from))
}

// tailRead is the changelog tail of the scan's bucket after the current
// one, read in its own goroutine while the current one's rows go out.
type tailRead struct {
	bucket int
	snap   *lake.Snapshot // the snapshot whose offset the tail starts at
	cancel context.CancelFunc
	done   chan struct{}
	tail   *changeTail
	err    error
}

// startTail starts reading the changelog tail of the scan's bucket i, if
// there is one, after the current snapshot's offset of it.
func (r *unionReader) startTail(ctx context.Context, i int) {
	r.closeTail()
	if i >= len(r.ends) {
		return
	}
	b := r.bucket(i)
	from := r.lakeOffset(b)
	end := max(r.ends[i].End, from)
	ctx, cancel := context.WithCancel(ctx)
	tr := &tailRead{bucket: i, snap: r.snap, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(tr.done)
		tr.tail, tr.err = r.readChanges(ctx, b, from, end)
	}()
	r.tailAhead = tr
}

// takeTail returns the tail read ahead when it is of bucket i and of the
// current snapshot, once read; else nil (and drops the read).
func (r *unionReader) takeTail(i int) *tailRead {
	tr := r.tailAhead
	if tr == nil || tr.bucket != i || tr.snap != r.snap {
		r.closeTail()
		return nil
	}
	r.tailAhead = nil
	<-tr.done
	tr.cancel()
	return tr
}

// closeTail stops the tail read ahead, if any, and drops what it read.
func (r *unionReader) closeTail() {
	if tr := r.tailAhead; tr != nil {
		tr.cancel()
		<-tr.done
		if tr.tail != nil {
			tr.tail.release()
		}
		r.tailAhead = nil
	}
}

// readChanges reads the changelog of b in [from, end): every key's last
// change, and the records themselves while they fit tailKeepBytes. It
// touches nothing of r but what reads share (it runs ahead, startTail).
func (r *unionReader) readChanges(ctx context.Context, b catalog.BucketID, from, end int64) (*changeTail, error) {
	tail := &changeTail{keys: r.t.Schema.PrimaryKey, from: from, end: end, last: map[string]changePos{}}
	for off := from; off < end; {
		res, err := r.s.reader.Fetch(ctx, reader.FetchRequest{Table: r.t, Bucket: b, Offset: off, MaxBytes: tailFetchBytes})
		if err == nil && len(res.Batches) == 0 {
			res.Release()
			err = fmt.Errorf("readsvc: %s: no changelog records at offset %d before the scan's end %d", b, off, end)
		}
		if err != nil {
			tail.release()
			return nil, err
		}
		for _, rb := range res.Batches {
			n := min(rb.Record.NumRows(), end-rb.BaseOffset)
			rec := rb.Record.NewSlice(0, n)
			rows := streamRows(r.s.mem, rec, b.Bucket, rb.BaseOffset, rb.Timestamp)
			rec.Release()
			if err := tail.add(rows, rb.BaseOffset); err != nil {
				res.Release()
				tail.release()
				return nil, fmt.Errorf("readsvc: %s changelog at offset %d: %w", b, rb.BaseOffset, err)
			}
			tail.rows += n
			off = rb.BaseOffset + n
			if off >= end {
				break
			}
		}
		res.Release()
	}
	tail.markWinners()
	return tail, nil
}

// lakeColumns is the projection a primary-key table's lake rows are read
// with: the scan's, plus the key columns to merge by (nil: all).
func (r *unionReader) lakeColumns() []string {
	if r.columns == nil {
		return nil
	}
	var columns []string
	for _, c := range r.t.Schema.Columns {
		if slices.Contains(r.columns, c.Name) || slices.Contains(r.t.Schema.PrimaryKey, c.Name) {
			columns = append(columns, c.Name)
		}
	}
	return columns
}

// lakeState adds the lake rows of the scan's bucket i (items, from
// RowsFrom) whose keys tail did not touch.
func (r *unionReader) lakeState(ctx context.Context, i int, tail *changeTail, items iter.Seq2[lakeItem, error]) error {
	stream := batch.ArrowSchema(r.t.Schema)
	snap := r.snapID()
	for it, err := range items {
		if err != nil {
			return err
		}
		r.lakeRows += it.rec.NumRows()
		rows := lakeRows(it.rec)
		at := it.at
		r.p.holding = tail.keptRows + rows.NumRows()
		err := r.addUntouched(ctx, rows, tail, stream, func(row int64) position {
			return position{bucket: i, lake: &lake.RowsPos{Chunk: at.Chunk, Row: at.Row + row + 1}, snapshot: snap}
		})
		r.p.holding = 0
		rows.Release()
		if err != nil {
			return err
		}
		if r.p.done() {
			break
		}
	}
	return nil
}

// addUntouched adds the rows of lake batch rows whose keys tail did not
// touch; at(row) is the position after row of rows. The lake's key
// columns are cast to the stream's types first, so that keys compare as
// the changelog's do.
func (r *unionReader) addUntouched(ctx context.Context, rows arrow.RecordBatch, tail *changeTail, stream *arrow.Schema, at func(row int64) position) error {
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
	var kept []int64 // row of rows of each kept row
	var buf []byte
	for i := range keep {
		var err error
		if buf, err = appendRowKey(buf[:0], keyCols, i); err != nil {
			return fmt.Errorf("readsvc: lake row of %s.%s: %w", r.t.Database, r.t.Name, err)
		}
		if _, touched := tail.last[string(buf)]; !touched {
			keep[i] = true
			kept = append(kept, int64(i))
		}
	}
	if len(kept) == 0 {
		return nil
	}
	if len(kept) == len(keep) {
		return r.add(ctx, rows, at)
	}
	filtered, err := filterRows(ctx, r.s.mem, rows, keep)
	if err != nil {
		return err
	}
	defer filtered.Release()
	return r.add(ctx, filtered, func(k int64) position { return at(kept[k]) })
}

// addLast adds, in offset order from offset from on, each key's last
// change in tail that is not a delete: from the records tail kept, or
// read again.
func (r *unionReader) addLast(ctx context.Context, i int, tail *changeTail, from int64) error {
	b := r.bucket(i)
	if !tail.spilled {
		for _, tb := range tail.recs {
			if r.p.done() {
				break
			}
			if err := r.addWinners(ctx, i, tail, tb.base, tb.rec, from); err != nil {
				return err
			}
		}
		return nil
	}
	for from < tail.end && !r.p.done() {
		res, err := r.s.reader.Fetch(ctx, reader.FetchRequest{Table: r.t, Bucket: b, Offset: from, MaxBytes: tailFetchBytes})
		if errors.Is(err, reader.ErrOffsetOutOfRange) {
			return fmt.Errorf("%w: retention deleted the changelog of %s while the scan read it; start the scan again", err, b)
		}
		if err == nil && len(res.Batches) == 0 {
			res.Release()
			err = fmt.Errorf("readsvc: %s: no changelog records at offset %d before the scan's end %d", b, from, tail.end)
		}
		if err != nil {
			return err
		}
		for _, rb := range res.Batches {
			n := min(rb.Record.NumRows(), tail.end-rb.BaseOffset)
			rec := rb.Record.NewSlice(0, n)
			rows := streamRows(r.s.mem, rec, b.Bucket, rb.BaseOffset, rb.Timestamp)
			rec.Release()
			err := r.addWinners(ctx, i, tail, rb.BaseOffset, rows, from)
			rows.Release()
			if err != nil {
				res.Release()
				return err
			}
			from = rb.BaseOffset + n
			if from >= tail.end || r.p.done() {
				break
			}
		}
		res.Release()
	}
	return nil
}

// addWinners adds the rows of changelog batch rows (whose first row has
// offset base) at offset from or later that are their key's last change
// and not a delete.
func (r *unionReader) addWinners(ctx context.Context, i int, tail *changeTail, base int64, rows arrow.RecordBatch, from int64) error {
	n := rows.NumRows()
	keep := make([]bool, n)
	var kept []int64
	for k := max(from-base, 0); k < n; k++ {
		if tail.winner(base + k) {
			keep[k] = true
			kept = append(kept, base+k)
		}
	}
	if len(kept) == 0 {
		return nil
	}
	filtered, err := filterRows(ctx, r.s.mem, rows, keep)
	if err != nil {
		return err
	}
	defer filtered.Release()
	r.p.holding = tail.keptRows + n
	defer func() { r.p.holding = 0 }()
	snap := r.snapID()
	return r.add(ctx, filtered, func(k int64) position { return position{bucket: i, offset: kept[k] + 1, snapshot: snap} })
}

// changeTail is a primary-key bucket's changelog [from, end) after the
// lake snapshot: per key where its last change is, which changes are
// their key's last and no delete, and, while they fit tailKeepBytes, the
// records (with _bucket, _offset and _timestamp).
type changeTail struct {
	keys      []string // the primary-key columns
	from, end int64
	last      map[string]changePos // by appendRowKey
	// winners has bit o-from set when the change at offset o is its key's
	// last and not a delete (markWinners).
	winners []uint64
	recs    []tailBatch
	// keptRows and keptBytes are the rows and bytes of recs; spilled:
	// recs outgrew tailKeepBytes and were dropped; rows are all the
	// records read.
	keptRows, keptBytes, rows int64
	spilled                   bool
}

// tailBatch is a changelog batch whose first row has offset base.
type tailBatch struct {
	base int64
	rec  arrow.RecordBatch
}

// changePos is the offset of a key's last change, and whether it deletes
// the key.
type changePos struct {
	offset  int64
	deleted bool
}

func (c *changeTail) release() {
	for _, tb := range c.recs {
		tb.rec.Release()
	}
	c.recs, c.keptRows, c.keptBytes = nil, 0, 0
}

// add takes rec, a changelog batch whose first row has offset base,
// records its changes by key, and keeps it while the kept records fit
// tailKeepBytes (else releases it).
func (c *changeTail) add(rec arrow.RecordBatch, base int64) error {
	idx := rec.Schema().FieldIndices(changelog.Column)
	if len(idx) == 0 {
		rec.Release()
		return fmt.Errorf("no %s column", changelog.Column)
	}
	kinds, ok := rec.Column(idx[0]).(*array.String)
	if !ok {
		rec.Release()
		return fmt.Errorf("%s is %s, want utf8", changelog.Column, rec.Column(idx[0]).DataType())
	}
	keyCols := make([]arrow.Array, len(c.keys))
	for i, name := range c.keys {
		idx := rec.Schema().FieldIndices(name)
		if len(idx) == 0 {
			rec.Release()
			return fmt.Errorf("no key column %q", name)
		}
		keyCols[i] = rec.Column(idx[0])
	}
	var buf []byte
	for i := range kinds.Len() {
		kind := kinds.Value(i)
		if kind == changelog.UpdateBefore.String() {
			continue // the +U after it is the change
		}
		var err error
		if buf, err = appendRowKey(buf[:0], keyCols, i); err != nil {
			rec.Release()
			return err
		}
		c.last[string(buf)] = changePos{offset: base + int64(i), deleted: kind == changelog.Delete.String()}
	}
	if !c.spilled {
		if size := util.TotalRecordSize(rec); c.keptBytes+size <= tailKeepBytes {
			c.recs = append(c.recs, tailBatch{base: base, rec: rec})
			c.keptRows += rec.NumRows()
			c.keptBytes += size
			return nil
		}
		c.release()
		c.spilled = true
	}
	rec.Release()
	return nil
}

// markWinners sets winners from last.
func (c *changeTail) markWinners() {
	c.winners = make([]uint64, (c.end-c.from+63)/64)
	for _, p := range c.last {
		if !p.deleted {
			o := p.offset - c.from
			c.winners[o/64] |= 1 << (o % 64)
		}
	}
}

// winner reports whether the change at offset o is its key's last and not
// a delete.
func (c *changeTail) winner(o int64) bool {
	o -= c.from
	return o >= 0 && o < c.end-c.from && c.winners[o/64]&(1<<(o%64)) != 0
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
