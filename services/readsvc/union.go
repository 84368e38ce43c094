package readsvc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"connectrpc.com/connect"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/services/batch"
	"github.com/strom-io/strom/services/reader"
	"github.com/strom-io/strom/services/rpcerr"
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
}

var _ Lake = (*lake.Lake)(nil)

// unionAttempts bounds how often a union scan of a table without the lake
// starts over when retention deleted records it was about to read.
// (With the lake, the records are in a newer snapshot, which the scan
// loads instead.)
const unionAttempts = 3

// tailFetchBytes bounds each read of the stream tail.
const tailFetchBytes = 8 << 20

// unionScan answers Scan{union: true}: a table read as one from the lake
// snapshot and the stream tail after it; see docs/lake.md.
func (s *Service) unionScan(ctx context.Context, m *stromv1.ScanRequest) (*connect.Response[stromv1.ScanResponse], error) {
	t, err := s.tables.GetTable(ctx, m.GetDatabase(), m.GetTable())
	if err != nil {
		return nil, rpcerr.Connect(ctx, s.logger, "scan", err)
	}
	if m.GetLimit() < 0 {
		return nil, rpcerr.Invalid("limit: must not be negative")
	}
	schema, err := unionSchema(t, batch.ArrowSchema(t.Schema), m.GetColumns())
	if err != nil {
		return nil, rpcerr.Connect(ctx, s.logger, "scan", err)
	}
	var u *unionRows
	for attempt := 1; ; attempt++ {
		u = &unionRows{mem: s.mem, schema: schema, limit: m.GetLimit()}
		err = s.union(ctx, u, t, m.GetColumns())
		if err == nil || !errors.Is(err, reader.ErrOffsetOutOfRange) || attempt == unionAttempts {
			break
		}
		u.release()
		s.logger.DebugContext(ctx, "union scan: retention deleted records meanwhile; starting over",
			slog.String("table", t.Database+"."+t.Name), slog.Any("err", err))
	}
	defer u.release()
	switch {
	case errors.Is(err, lake.ErrForeignTable):
		return nil, connect.NewError(connect.CodeFailedPrecondition, err)
	case err != nil:
		return nil, rpcerr.Connect(ctx, s.logger, "scan", err)
	}
	out := &stromv1.ScanResponse{}
	if m.GetFormat() == stromv1.Format_FORMAT_ARROW {
		out.ArrowIpc, err = batch.EncodeIPC(schema, u.recs)
	} else {
		out.Rows, err = unionJSON(u.recs)
	}
	if err != nil {
		return nil, rpcerr.Connect(ctx, s.logger, "scan", err)
	}
	return connect.NewResponse(out), nil
}

// unionReader is one union read of a table.
type unionReader struct {
	s *Service
	t catalog.Table
	u *unionRows
	// snap is the lake snapshot read; nil when the lake is off.
	snap *lake.Snapshot
	// columns is the projection (nil: every column).
	columns []string

	lakeRows, tailRows, refreshes int64
}

// union reads t once into u: (1) the current lake snapshot; (2) every
// bucket's next offset, which fixes where the scan ends (at or past the
// snapshot's offsets, which tiering took from committed records); (3) per
// bucket, the snapshot's rows and the stream from the snapshot's offset
// (or the first retained one) up to the fixed end: a log table's records
// in offset order (logBucket), a primary-key table's current rows merged
// by key (keyedBucket). Buckets come in order (partition, then bucket
// number).
func (s *Service) union(ctx context.Context, u *unionRows, t catalog.Table, columns []string) error {
	r := &unionReader{s: s, t: t, u: u}
	if len(columns) > 0 {
		r.columns = columns
	}
	if s.lake != nil {
		settings, err := tiering.SettingsOf(t)
		if err != nil {
			return err
		}
		if settings.Enabled {
			if r.snap, err = s.lake.Snapshot(ctx, t); err != nil {
				return err
			}
		}
	}
	states, err := s.buckets.ListBuckets(ctx, t.ID)
	if err != nil {
		return err
	}
	slices.SortFunc(states, func(a, b catalog.BucketState) int { return a.BucketID.Compare(b.BucketID) })
	for _, st := range states {
		if u.full() {
			break
		}
		if t.IsPrimaryKey() {
			err = r.keyedBucket(ctx, st)
		} else {
			err = r.logBucket(ctx, st)
		}
		if err != nil {
			return err
		}
	}
	attrs := []any{slog.String("table", t.Database+"."+t.Name), slog.Int64("lake_rows", r.lakeRows), slog.Int64("tail_rows", r.tailRows)}
	if r.snap != nil {
		attrs = append(attrs, slog.Int64("snapshot", r.snap.ID), slog.Int64("snapshot_refreshes", r.refreshes))
	}
	s.logger.DebugContext(ctx, "union scan", attrs...)
	return nil
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

// logBucket adds the records of log table bucket st in [0, st.NextOffset)
// that are still in the lake or the stream, in offset order.
func (r *unionReader) logBucket(ctx context.Context, st catalog.BucketState) error {
	b, from, end := st.BucketID, st.StartOffset, st.NextOffset
	if r.snap != nil {
		if err := r.lakeRecords(ctx, b, 0, end); err != nil {
			return err
		}
		// From the lake's end, even when the stream no longer starts
		// there: st was read after the snapshot, so tiering and
		// retention may have moved on meanwhile. The stream read then
		// answers out of range, and a newer snapshot fills the gap.
		from = r.lakeOffset(b)
	}
	for from < end && !r.u.full() {
		res, err := r.s.reader.Fetch(ctx, reader.FetchRequest{Table: r.t, Bucket: b, Offset: from, MaxBytes: tailFetchBytes, Columns: r.columns})
		if errors.Is(err, reader.ErrOffsetOutOfRange) {
			if err := r.refresh(ctx, b, from, err); err != nil {
				return err
			}
			if err := r.lakeRecords(ctx, b, from, end); err != nil {
				return err
			}
			from = max(from, r.lakeOffset(b))
			continue
		}
		if err == nil && len(res.Batches) == 0 {
			err = fmt.Errorf("readsvc: %s: no records at offset %d before the scan's end %d", b, from, end)
		}
		if err != nil {
			return err
		}
		for _, rb := range res.Batches {
			n := min(rb.Record.NumRows(), end-rb.BaseOffset)
			rec := rb.Record.NewSlice(0, n)
			rows := streamRows(r.s.mem, rec, b.Bucket, rb.BaseOffset, rb.Timestamp)
			rec.Release()
			err := r.u.add(ctx, rows)
			rows.Release()
			if err != nil {
				res.Release()
				return err
			}
			r.tailRows += n
			from = rb.BaseOffset + n
			if from >= end || r.u.full() {
				break
			}
		}
		res.Release()
	}
	return nil
}

// lakeRecords adds the snapshot's records of log table bucket b in
// [from, to), up to u's limit.
func (r *unionReader) lakeRecords(ctx context.Context, b catalog.BucketID, from, to int64) error {
	for rec, err := range r.snap.Records(ctx, b, from, to, r.columns) {
		if err != nil {
			return err
		}
		r.lakeRows += rec.NumRows()
		rows := lakeRows(rec)
		err := r.u.add(ctx, rows)
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
