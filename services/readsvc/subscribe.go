package readsvc

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"slices"

	"connectrpc.com/connect"
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/compute"
	"github.com/apache/arrow-go/v18/arrow/memory"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/catalog/changelog"
	"github.com/strom-io/strom/services/batch"
	"github.com/strom-io/strom/services/reader"
	"github.com/strom-io/strom/services/rpcerr"
	"github.com/strom-io/strom/tiering"
	"github.com/strom-io/strom/tiering/lake"
)

// subscribeLakeRows bounds the rows of one SubscribeResponse read from
// the lake.
const subscribeLakeRows = 4096

// Subscribe implements ReadService: it streams every committed batch from
// the offset on until the client goes away. With full, it first streams
// the lake's rows of the bucket from the offset (subscribeLake) and goes
// on live from where the lake ends. The stream never ends cleanly: a
// client's deadline ends it with deadline_exceeded, a cancellation with
// canceled (see subscribeEnded).
func (s *Service) Subscribe(ctx context.Context, req *connect.Request[stromv1.SubscribeRequest], stream *connect.ServerStream[stromv1.SubscribeResponse]) error {
	f := req.Msg.GetFetch()
	if f == nil {
		return rpcerr.Invalid("fetch: required")
	}
	if err := requireTable("fetch.", f.GetDatabase(), f.GetTable()); err != nil {
		return err
	}
	full := req.Msg.GetFull()
	if full {
		if _, err := s.subscribeLake(ctx, f, stream); err != nil {
			return s.subscribeError(ctx, err)
		}
	}
	for {
		resp, err := s.fetch(ctx, f, subscribeWait)
		if ctx.Err() != nil {
			return s.subscribeEnded(ctx)
		}
		if full && errors.Is(err, reader.ErrOffsetOutOfRange) {
			// Tiering moved past f.Offset since the lake was read and
			// retention deleted the records: a newer snapshot holds them.
			moved, lerr := s.subscribeLake(ctx, f, stream)
			if lerr != nil {
				return s.subscribeError(ctx, lerr)
			}
			if moved {
				continue
			}
		}
		if err != nil {
			return s.subscribeError(ctx, err)
		}
		if resp.GetNextOffset() > f.GetOffset() {
			if err := stream.Send(&stromv1.SubscribeResponse{Records: resp}); err != nil {
				return err
			}
			f.Offset = resp.GetNextOffset()
		}
	}
}

// subscribeEnded is the error a stream ends with once its context ended:
// deadline_exceeded when the deadline the client sent passed, canceled
// when the client cancelled or went away. Not nil: a clean end of the
// stream would tell the client that no more data comes, and the server's
// deadline may pass before the client's own (the Connect protocol sends
// the timeout in whole milliseconds, rounded down).
func (s *Service) subscribeEnded(ctx context.Context) error {
	return rpcerr.Connect(ctx, s.logger, "subscribe", ctx.Err())
}

func (s *Service) subscribeError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return s.subscribeEnded(ctx)
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce
	}
	if errors.Is(err, lake.ErrForeignTable) {
		return connect.NewError(connect.CodeFailedPrecondition, err)
	}
	return rpcerr.Connect(ctx, s.logger, "subscribe", err)
}

// subscribeLake sends the current lake snapshot's rows of f's bucket from
// f.Offset up to the snapshot's offset L of the bucket, in offset order,
// and moves f.Offset to L when it is below. It reports whether f.Offset
// moved. Without a lake, or for a table whose lake is off, it does
// nothing.
//
// For a log table these are the bucket's records. For a primary-key table
// they are its current rows as of L (subscribeKeyedLake), each as an
// insert at the offset of the change that wrote it; the changelog from L
// on follows. A subscriber that applies the changes by key ends up with
// the table, as it would replaying the changelog from 0.
func (s *Service) subscribeLake(ctx context.Context, f *stromv1.FetchRequest, stream *connect.ServerStream[stromv1.SubscribeResponse]) (bool, error) {
	if s.lake == nil {
		return false, nil
	}
	t, err := s.tables.GetTable(ctx, f.GetDatabase(), f.GetTable())
	if err != nil {
		return false, err
	}
	settings, err := tiering.SettingsOf(t)
	if err != nil {
		return false, err
	}
	if !settings.Enabled {
		return false, nil
	}
	if err := t.ValidatePartition(f.GetPartition()); err != nil {
		return false, err
	}
	schema, err := unionSchema(t, reader.OutputSchema(t), f.GetColumns())
	if err != nil {
		return false, err
	}
	b := catalog.BucketID{TableID: t.ID, Partition: f.GetPartition(), Bucket: f.GetBucket()}
	from := max(f.GetOffset(), 0)
	if t.IsPrimaryKey() && from > 0 {
		// A resumed subscription: it holds the lake rows below from
		// already, and the changelog from there on completes them.
		return false, nil
	}
	snap, err := s.lake.Snapshot(ctx, t)
	if err != nil {
		return false, err
	}
	end := snap.Offsets[b]
	if from >= end {
		return false, nil
	}
	offs, err := s.reader.BucketOffsets(ctx, b)
	if err != nil {
		return false, err
	}
	hw := max(offs.Next, end)
	var projection []string
	if len(f.GetColumns()) > 0 {
		projection = slices.DeleteFunc(slices.Clone(f.GetColumns()), func(c string) bool { return c == changelog.Column })
	}
	u := &unionRows{mem: s.mem, schema: schema}
	defer u.release()
	var rows int64
	if t.IsPrimaryKey() {
		rows, err = s.subscribeKeyedLake(ctx, u, snap, b, projection, f.GetFormat(), hw, stream)
	} else {
		for rec, rerr := range snap.Records(ctx, b, from, end, projection) {
			if rerr != nil {
				return false, rerr
			}
			lr := lakeRows(rec)
			err = u.add(ctx, lr)
			lr.Release()
			for _, r := range u.recs {
				if err == nil {
					err = s.sendLake(f.GetFormat(), r, 0, hw, stream)
					rows += r.NumRows()
				}
			}
			u.release()
			if err != nil {
				break
			}
		}
	}
	if err != nil {
		return false, err
	}
	s.logger.DebugContext(ctx, "subscribe: lake rows sent", slog.String("table", t.Database+"."+t.Name),
		slog.String("bucket", b.String()), slog.Int64("from", from), slog.Int64("lake_offset", end),
		slog.Int64("snapshot", snap.ID), slog.Int64("rows", rows))
	f.Offset = end
	return true, nil
}

// subscribeKeyedLake sends the snapshot's rows of primary-key table
// bucket b as inserts, in the order of their offsets (the offsets of the
// changes that wrote them: ascending, with gaps), so that a subscription
// resumed at the offset after the last row it got misses nothing. It
// holds the bucket's lake rows in memory to order them. It returns how
// many rows it sent.
func (s *Service) subscribeKeyedLake(ctx context.Context, u *unionRows, snap *lake.Snapshot, b catalog.BucketID, projection []string, format stromv1.Format, hw int64, stream *connect.ServerStream[stromv1.SubscribeResponse]) (int64, error) {
	for rec, err := range snap.Rows(ctx, b, projection) {
		if err != nil {
			return 0, err
		}
		lr := lakeRows(rec)
		err := u.add(ctx, lr)
		lr.Release()
		if err != nil {
			return 0, err
		}
	}
	all, err := sortByOffset(ctx, s.mem, u.schema, u.recs)
	if err != nil {
		return 0, err
	}
	defer all.Release()
	if err := s.sendLake(format, all, snap.Offsets[b], hw, stream); err != nil {
		return 0, err
	}
	return all.NumRows(), nil
}

// sendLake sends rec (union rows of one bucket: the columns, _bucket,
// _offset, _timestamp, in offset order) as SubscribeResponses in Fetch's
// format, subscribeLakeRows rows each. Each response's next_offset is its
// last row's offset + 1, except the last one's when end is above 0: end,
// the snapshot's offset of the bucket, which a primary-key table's rows
// need not reach (rows of keys deleted later are not in the lake). Then
// the last response may have no rows.
func (s *Service) sendLake(format stromv1.Format, rec arrow.RecordBatch, end, hw int64, stream *connect.ServerStream[stromv1.SubscribeResponse]) error {
	n := rec.NumRows()
	for lo := int64(0); lo < n || (lo == 0 && end > 0); lo += subscribeLakeRows {
		hi := min(lo+subscribeLakeRows, n)
		next := end
		if hi < n || end <= 0 {
			next = lastOffset(rec, hi) + 1
		}
		part := rec.NewSlice(lo, hi)
		err := s.sendLakeResponse(format, part, next, hw, stream)
		part.Release()
		if err != nil {
			return err
		}
	}
	return nil
}

// lastOffset is the _offset of row n-1 of union rows rec.
func lastOffset(rec arrow.RecordBatch, n int64) int64 {
	return rec.Column(int(rec.NumCols()) - 2).(*array.Int64).Value(int(n) - 1)
}

func (s *Service) sendLakeResponse(format stromv1.Format, rec arrow.RecordBatch, next, hw int64, stream *connect.ServerStream[stromv1.SubscribeResponse]) error {
	n := rec.NumRows()
	ncols := int(rec.NumCols()) - 3
	out := &stromv1.FetchResponse{NextOffset: next, HighWatermark: hw}
	if format == stromv1.Format_FORMAT_ARROW {
		// Fetch's schema: the columns, _offset, _timestamp.
		fields := append(append([]arrow.Field(nil), rec.Schema().Fields()[:ncols]...), rec.Schema().Fields()[ncols+1:]...)
		cols := append(append([]arrow.Array(nil), rec.Columns()[:ncols]...), rec.Columns()[ncols+1:]...)
		schema := arrow.NewSchema(fields, nil)
		data := array.NewRecordBatch(schema, cols, n)
		var err error
		out.ArrowIpc, err = batch.EncodeIPC(schema, []arrow.RecordBatch{data})
		data.Release()
		if err != nil {
			return err
		}
	} else {
		rows, err := unionJSON([]arrow.RecordBatch{rec})
		if err != nil {
			return err
		}
		for _, r := range rows {
			delete(r.Fields, ColumnBucket)
		}
		out.Rows = rows
	}
	return stream.Send(&stromv1.SubscribeResponse{Records: out})
}

// sortByOffset returns the rows of recs (union rows of schema) as one
// batch ordered by _offset. The result must be released.
func sortByOffset(ctx context.Context, mem memory.Allocator, schema *arrow.Schema, recs []arrow.RecordBatch) (arrow.RecordBatch, error) {
	if len(recs) == 0 {
		return array.NewRecordBatch(schema, nil, 0), nil
	}
	tbl := array.NewTableFromRecords(schema, recs)
	defer tbl.Release()
	cols := make([]arrow.Array, 0, schema.NumFields())
	defer func() {
		for _, c := range cols {
			c.Release()
		}
	}()
	for i := range schema.NumFields() {
		col, err := array.Concatenate(tbl.Column(i).Data().Chunks(), mem)
		if err != nil {
			return nil, err
		}
		cols = append(cols, col)
	}
	offsets := cols[schema.NumFields()-2].(*array.Int64)
	order := make([]int64, offsets.Len())
	for i := range order {
		order[i] = int64(i)
	}
	slices.SortFunc(order, func(a, b int64) int { return cmp.Compare(offsets.Value(int(a)), offsets.Value(int(b))) })
	ib := array.NewInt64Builder(mem)
	defer ib.Release()
	ib.AppendValues(order, nil)
	indices := ib.NewArray()
	defer indices.Release()
	sorted := make([]arrow.Array, 0, len(cols))
	for _, col := range cols {
		out, err := compute.TakeArray(compute.WithAllocator(ctx, mem), col, indices)
		if err != nil {
			for _, c := range sorted {
				c.Release()
			}
			return nil, err
		}
		sorted = append(sorted, out)
	}
	rec := array.NewRecordBatch(schema, sorted, int64(offsets.Len()))
	for _, c := range sorted {
		c.Release()
	}
	return rec, nil
}
