package readsvc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"connectrpc.com/connect"
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/catalog"
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
// on live from where the lake ends.
func (s *Service) Subscribe(ctx context.Context, req *connect.Request[stromv1.SubscribeRequest], stream *connect.ServerStream[stromv1.SubscribeResponse]) error {
	f := req.Msg.GetFetch()
	if f == nil {
		return rpcerr.Invalid("fetch: required")
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
			return nil
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

func (s *Service) subscribeError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
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
	if t.IsPrimaryKey() {
		return false, connect.NewError(connect.CodeUnimplemented, fmt.Errorf(
			"table %s.%s is a primary-key table: its lake holds the current rows, not the changelog, so a full subscribe is for log tables only; subscribe without full",
			t.Database, t.Name))
	}
	if t.PartitionKey == "" && f.GetPartition() != "" {
		return false, rpcerr.Invalid(fmt.Sprintf("partition: table %s.%s is not partitioned", t.Database, t.Name))
	}
	schema, err := unionSchema(t, f.GetColumns())
	if err != nil {
		return false, err
	}
	b := catalog.BucketID{TableID: t.ID, Partition: f.GetPartition(), Bucket: f.GetBucket()}
	snap, err := s.lake.Snapshot(ctx, t)
	if err != nil {
		return false, err
	}
	end := snap.Offsets[b]
	from := max(f.GetOffset(), 0)
	if from >= end {
		return false, nil
	}
	offs, err := s.reader.BucketOffsets(ctx, b)
	if err != nil {
		return false, err
	}
	var projection []string
	if len(f.GetColumns()) > 0 {
		projection = f.GetColumns()
	}
	var rows int64
	for rec, err := range snap.Records(ctx, b, from, end, projection) {
		if err != nil {
			return false, err
		}
		u := &unionRows{schema: schema}
		err := u.addLake(s, rec)
		if err == nil {
			for _, r := range u.recs {
				for lo := int64(0); lo < r.NumRows() && err == nil; lo += subscribeLakeRows {
					part := r.NewSlice(lo, min(lo+subscribeLakeRows, r.NumRows()))
					err = s.sendLake(f.GetFormat(), part, max(offs.Next, end), stream)
					part.Release()
					rows += min(subscribeLakeRows, r.NumRows()-lo)
				}
			}
		}
		u.release()
		if err != nil {
			return false, err
		}
	}
	s.logger.DebugContext(ctx, "subscribe: lake rows sent", slog.String("table", t.Database+"."+t.Name),
		slog.String("bucket", b.String()), slog.Int64("from", from), slog.Int64("lake_offset", end),
		slog.Int64("snapshot", snap.ID), slog.Int64("rows", rows))
	f.Offset = end
	return true, nil
}

// sendLake sends rec (union rows of one bucket: the columns, _bucket,
// _offset, _timestamp) as one SubscribeResponse in Fetch's format.
func (s *Service) sendLake(format stromv1.Format, rec arrow.RecordBatch, hw int64, stream *connect.ServerStream[stromv1.SubscribeResponse]) error {
	n := rec.NumRows()
	if n == 0 {
		return nil
	}
	ncols := int(rec.NumCols()) - 3
	offsets := rec.Column(ncols + 1).(*array.Int64)
	out := &stromv1.FetchResponse{NextOffset: offsets.Value(int(n)-1) + 1, HighWatermark: hw}
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
