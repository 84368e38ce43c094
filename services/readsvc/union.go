package readsvc

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"slices"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/services/batch"
	"github.com/strom-io/strom/services/reader"
	"github.com/strom-io/strom/tiering"
	"github.com/strom-io/strom/tiering/lake"
)

// Lake is the Iceberg copy of lake-enabled tables that union scans read
// (tiering/lake.Lake).
type Lake interface {
	// Snapshot returns the current snapshot of t's lake table: its
	// strom.offsets and its records by bucket. A table the lake does not
	// hold yet is an empty snapshot (no offsets), not an error.
	Snapshot(ctx context.Context, t catalog.Table) (*lake.Snapshot, error)
	// SnapshotAt returns snapshot id of t's lake table (0: the empty
	// one), or lake.ErrSnapshotGone when the lake no longer has it.
	SnapshotAt(ctx context.Context, t catalog.Table, id int64) (*lake.Snapshot, error)
}

var _ Lake = (*lake.Lake)(nil)

// unionAttempts bounds how often a union scan reads the start of a
// bucket again when retention deleted records it was about to read.
const unionAttempts = 3

// tailFetchBytes bounds each read of the stream tail.
const tailFetchBytes = 8 << 20

// unionReader is one union scan of a table (or its continuation from a
// page token), read bucket by bucket into a pager.
type unionReader struct {
	s *Service
	t catalog.Table
	p *pager
	// schema is the union rows' (unionSchema).
	schema *arrow.Schema
	// snap is the lake snapshot read; nil when the lake is off.
	snap *lake.Snapshot
	// columns is the projection (nil: every column).
	columns []string
	// ends are the scan's buckets, in order, with the offsets they end
	// at; starts the first offsets the stream held when the scan (or its
	// continuation) began, for buckets read without the lake.
	ends   []bucketEnd
	starts map[catalog.BucketID]int64
	// ahead are the reads of the lake part of the buckets after the
	// current one, in order (lakeRead); tailAhead the read of the next
	// primary-key bucket's changelog tail (startTail).
	ahead     []*lakeRead
	tailAhead *tailRead

	lakeRows, tailRows, refreshes, tailKeys int64
}

// scanUnion pages through t read as one from the lake snapshot and the
// stream tail after it; see docs/lake.md. A new scan (cur nil) loads (1)
// the current lake snapshot, then (2) every bucket's next offset, which
// fixes where the scan ends (at or past the snapshot's offsets, which
// tiering took from committed records); then, per bucket, the snapshot's
// rows and the stream from the snapshot's offset (or the first retained
// one) up to the fixed end: a log table's records in offset order
// (logBucket), a primary-key table's current rows merged by key
// (keyedBucket). Buckets come in order (partition, then bucket number). A
// continued scan takes the ends, and for a primary-key table the
// snapshot, from its cursor. It returns the most keys a bucket's
// changelog tail held.
func (s *Service) scanUnion(ctx context.Context, t catalog.Table, m *stromv1.ScanRequest, base cursor, cur *cursor, p *pager) (int64, error) {
	schema, err := unionSchema(t, batch.ArrowSchema(t.Schema), m.GetColumns())
	if err != nil {
		return 0, err
	}
	r := &unionReader{s: s, t: t, p: p, schema: schema}
	if len(m.GetColumns()) > 0 {
		r.columns = m.GetColumns()
	}
	lakeOn := false
	if s.lake != nil {
		settings, err := tiering.SettingsOf(t)
		if err != nil {
			return 0, err
		}
		lakeOn = settings.Enabled
	}
	switch {
	case lakeOn && cur != nil && t.IsPrimaryKey():
		r.snap, err = s.lake.SnapshotAt(ctx, t, cur.Snapshot)
	case lakeOn:
		r.snap, err = s.lake.Snapshot(ctx, t)
	}
	if err != nil {
		return 0, err
	}
	states, err := s.buckets.ListBuckets(ctx, t.ID)
	if err != nil {
		return 0, err
	}
	r.starts = make(map[catalog.BucketID]int64, len(states))
	for _, st := range states {
		r.starts[st.BucketID] = st.StartOffset
	}
	if cur != nil {
		r.ends = slices.Clone(cur.Ends)
	} else {
		slices.SortFunc(states, func(a, b catalog.BucketState) int { return a.BucketID.Compare(b.BucketID) })
		for _, st := range states {
			r.ends = append(r.ends, bucketEnd{Partition: st.Partition, Bucket: st.Bucket, End: st.NextOffset})
		}
	}
	p.encode = (&unionPageEncoder{schema: schema, format: m.GetFormat()}).encode
	p.token = func(next position) cursor {
		c := base
		c.Ends = slices.Clone(r.ends[next.bucket:])
		c.Offset, c.Lake = next.offset, next.lake
		if t.IsPrimaryKey() {
			c.Snapshot = next.snapshot
		}
		return c
	}
	defer r.closeAhead()
	defer r.closeTail()
	for i := range r.ends {
		if p.done() {
			break
		}
		var from position
		if i == 0 && cur != nil {
			from = position{offset: cur.Offset, lake: cur.Lake}
		}
		if t.IsPrimaryKey() {
			err = r.keyedBucket(ctx, i, from)
		} else {
			err = r.logBucket(ctx, i, from.offset)
		}
		if err != nil {
			return r.tailKeys, err
		}
	}
	if err := p.finish(ctx); err != nil {
		return r.tailKeys, err
	}
	attrs := []any{slog.Int64("lake_rows", r.lakeRows), slog.Int64("tail_rows", r.tailRows), slog.Int64("pages", p.pages)}
	if r.snap != nil {
		attrs = append(attrs, slog.Int64("snapshot", r.snap.ID), slog.Int64("snapshot_refreshes", r.refreshes))
	}
	s.logScan(ctx, t, attrs...)
	return r.tailKeys, nil
}

// bucket returns the id of the scan's bucket i.
func (r *unionReader) bucket(i int) catalog.BucketID {
	return catalog.BucketID{TableID: r.t.ID, Partition: r.ends[i].Partition, Bucket: r.ends[i].Bucket}
}

// snapID is the id of the snapshot read (0 without one).
func (r *unionReader) snapID() int64 {
	if r.snap == nil {
		return 0
	}
	return r.snap.ID
}

// refresh loads a newer lake snapshot after the stream of b lost offset
// from to retention (cause): tiering moved past it since the snapshot was
// loaded. When the lake does not hold from either, it returns cause.
func (r *unionReader) refresh(ctx context.Context, b catalog.BucketID, from int64, cause error) error {
	if r.snap == nil {
		return cause
	}
	fresh, err := r.s.lake.Snapshot(ctx, r.t)
	if err != nil {
		return err
	}
	if fresh.Offsets[b] <= from {
		return cause // not in the lake either: gone
	}
	r.snap = fresh
	r.refreshes++
	return nil
}

// lakeOffset is the snapshot's offset of b: its first record not in the
// lake; 0 without a lake.
func (r *unionReader) lakeOffset(b catalog.BucketID) int64 {
	if r.snap == nil {
		return 0
	}
	return r.snap.Offsets[b]
}

// add conforms rows (columns by name, with _bucket, _offset and
// _timestamp) to the union schema and adds them to the page; at(k) is
// the position after row k of rows.
func (r *unionReader) add(ctx context.Context, rows arrow.RecordBatch, at func(k int64) position) error {
	n := rows.NumRows()
	if r.p.left >= 0 {
		n = min(n, r.p.left) // the pager takes no more
	}
	if n <= 0 {
		return nil
	}
	rec, err := conform(ctx, r.s.mem, r.schema, rows, n)
	if err != nil {
		return err
	}
	defer rec.Release()
	return r.p.add(ctx, arrowChunk{rec}, at)
}

// logBucket adds the records of log table bucket i in [from, end) that
// are still in the lake or the stream, in offset order; from 0 is the
// bucket's start.
func (r *unionReader) logBucket(ctx context.Context, i int, from int64) error {
	b, end := r.bucket(i), r.ends[i].End
	resumed := from > 0
	if r.snap != nil {
		lr := r.lakeRead(ctx, i, position{offset: from})
		err := r.addLakeRecords(ctx, i, lr.items())
		lr.close()
		if err != nil {
			return err
		}
		// From the lake's end, even when the stream no longer starts
		// there: the ends were read after the snapshot, so tiering and
		// retention may have moved on meanwhile. The stream read then
		// answers out of range, and a newer snapshot fills the gap.
		from = max(from, lr.snap.Offsets[b])
	} else if !resumed {
		from = r.starts[b]
	}
	first := from // where the stream part of the bucket begins
	for attempt := 1; from < end && !r.p.done(); {
		res, err := r.s.reader.Fetch(ctx, reader.FetchRequest{Table: r.t, Bucket: b, Offset: from, MaxBytes: tailFetchBytes, Columns: r.columns})
		if errors.Is(err, reader.ErrOffsetOutOfRange) {
			if r.snap != nil {
				if err := r.refresh(ctx, b, from, err); err != nil {
					return err
				}
				if err := r.addLakeRecords(ctx, i, records(ctx, r.snap, b, from, end, r.columns)); err != nil {
					return err
				}
				from = max(from, r.lakeOffset(b))
				continue
			}
			// Without a lake, a bucket whose first records retention
			// deleted before the scan read any of them starts at the
			// first it still has.
			if resumed || from != first || attempt == unionAttempts {
				return err
			}
			attempt++
			offs, oerr := r.s.reader.BucketOffsets(ctx, b)
			if oerr != nil {
				return oerr
			}
			r.s.logger.DebugContext(ctx, "union scan: retention deleted the start of a bucket meanwhile; starting at its first record",
				slog.String("table", r.t.Database+"."+r.t.Name), slog.String("bucket", b.String()), slog.Int64("start", offs.Start))
			from, first = max(from, offs.Start), max(from, offs.Start)
			continue
		}
		if err == nil && len(res.Batches) == 0 {
			err = fmt.Errorf("readsvc: %s: no records at offset %d before the scan's end %d", b, from, end)
		}
		if err != nil {
			return err
		}
		err = r.addStream(ctx, i, res, &from, end)
		res.Release()
		if err != nil {
			return err
		}
	}
	return nil
}

// addStream adds the records of res (a fetch of the scan's bucket i) below
// end, and moves from past them.
func (r *unionReader) addStream(ctx context.Context, i int, res reader.FetchResult, from *int64, end int64) error {
	var held int64
	for _, rb := range res.Batches {
		held += rb.Record.NumRows()
	}
	r.p.holding = held
	defer func() { r.p.holding = 0 }()
	b := r.bucket(i)
	for _, rb := range res.Batches {
		n := min(rb.Record.NumRows(), end-rb.BaseOffset)
		rec := rb.Record.NewSlice(0, n)
		rows := streamRows(r.s.mem, rec, b.Bucket, rb.BaseOffset, rb.Timestamp)
		rec.Release()
		base := rb.BaseOffset
		err := r.add(ctx, rows, func(k int64) position { return position{bucket: i, offset: base + k + 1} })
		rows.Release()
		if err != nil {
			return err
		}
		r.tailRows += n
		*from = rb.BaseOffset + n
		if *from >= end || r.p.done() {
			break
		}
	}
	return nil
}

// addLakeRecords adds lake records of log table bucket i, up to the
// limit.
func (r *unionReader) addLakeRecords(ctx context.Context, i int, items iter.Seq2[lakeItem, error]) error {
	for it, err := range items {
		if err != nil {
			return err
		}
		r.lakeRows += it.rec.NumRows()
		rows := lakeRows(it.rec)
		offsets, ok := rows.Column(rows.Schema().FieldIndices(ColumnOffset)[0]).(*array.Int64)
		if !ok {
			rows.Release()
			return fmt.Errorf("readsvc: lake rows of %s.%s: %s is not int64", r.t.Database, r.t.Name, ColumnOffset)
		}
		r.p.holding = rows.NumRows()
		err := r.add(ctx, rows, func(k int64) position { return position{bucket: i, offset: offsets.Value(int(k)) + 1} })
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

// unionPageEncoder encodes pages of union rows. An Arrow page reuses the
// bytes of the one before, which the pager sent before it encodes the
// next.
type unionPageEncoder struct {
	schema *arrow.Schema
	format stromv1.Format
	buf    []byte
}

func (e *unionPageEncoder) encode(chunks []pageChunk) (*stromv1.ScanResponse, error) {
	recs := make([]arrow.RecordBatch, len(chunks))
	for i, c := range chunks {
		recs[i] = c.(arrowChunk).rec
	}
	out := &stromv1.ScanResponse{}
	var err error
	if e.format == stromv1.Format_FORMAT_ARROW {
		out.ArrowIpc, err = batch.AppendIPC(e.buf[:0], e.schema, recs)
		e.buf = out.ArrowIpc
	} else {
		out.Rows, err = unionJSON(recs)
	}
	return out, err
}
