package readsvc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"connectrpc.com/connect"
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"google.golang.org/protobuf/types/known/structpb"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/services/batch"
	"github.com/strom-io/strom/services/reader"
	"github.com/strom-io/strom/services/rpcerr"
	"github.com/strom-io/strom/tiering"
	"github.com/strom-io/strom/tiering/lake"
)

// ColumnBucket is the system column of union rows that names the record's
// bucket (with ColumnOffset and ColumnTimestamp).
const ColumnBucket = "_bucket"

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

// unionScan answers Scan{union: true}: a log table read as one table from
// the lake snapshot and the stream tail after it; see docs/lake.md.
func (s *Service) unionScan(ctx context.Context, m *stromv1.ScanRequest) (*connect.Response[stromv1.ScanResponse], error) {
	t, err := s.tables.GetTable(ctx, m.GetDatabase(), m.GetTable())
	if err != nil {
		return nil, rpcerr.Connect(ctx, s.logger, "scan", err)
	}
	if t.IsPrimaryKey() {
		return nil, connect.NewError(connect.CodeUnimplemented, fmt.Errorf(
			"table %s.%s is a primary-key table: union reads of primary-key tables (the lake's merge-on-read snapshot with the changelog tail) are not implemented yet; scan without union for its current rows",
			t.Database, t.Name))
	}
	if m.GetLimit() < 0 {
		return nil, rpcerr.Invalid("limit: must not be negative")
	}
	schema, err := unionSchema(t, m.GetColumns())
	if err != nil {
		return nil, rpcerr.Connect(ctx, s.logger, "scan", err)
	}
	var u *unionRows
	for attempt := 1; ; attempt++ {
		u, err = s.union(ctx, t, m.GetColumns(), m.GetLimit(), schema)
		if err == nil || !errors.Is(err, reader.ErrOffsetOutOfRange) || attempt == unionAttempts {
			break
		}
		s.logger.DebugContext(ctx, "union scan: retention deleted records meanwhile; starting over",
			slog.String("table", t.Database+"."+t.Name), slog.Any("err", err))
	}
	switch {
	case errors.Is(err, lake.ErrForeignTable):
		return nil, connect.NewError(connect.CodeFailedPrecondition, err)
	case err != nil:
		return nil, rpcerr.Connect(ctx, s.logger, "scan", err)
	}
	defer u.release()
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

// unionSchema is the schema of union rows: the projected columns (all
// when columns is empty) with the stream's Arrow types, then _bucket,
// _offset and _timestamp.
func unionSchema(t catalog.Table, columns []string) (*arrow.Schema, error) {
	full := reader.OutputSchema(t)
	var fields []arrow.Field
	if len(columns) == 0 {
		fields = slices.Clone(full.Fields())
	}
	for i, c := range columns {
		idx := full.FieldIndices(c)
		if len(idx) == 0 {
			return nil, fmt.Errorf("%w %q in table %s.%s", reader.ErrUnknownColumn, c, t.Database, t.Name)
		}
		if slices.Contains(columns[:i], c) {
			return nil, fmt.Errorf("%w: column %q named twice", reader.ErrInvalidColumns, c)
		}
		fields = append(fields, full.Field(idx[0]))
	}
	fields = append(fields,
		arrow.Field{Name: ColumnBucket, Type: arrow.PrimitiveTypes.Int32},
		arrow.Field{Name: ColumnOffset, Type: arrow.PrimitiveTypes.Int64},
		arrow.Field{Name: ColumnTimestamp, Type: &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}})
	return arrow.NewSchema(fields, nil), nil
}

// union reads t once: (1) every bucket's next offset, which fixes where
// the scan ends; (2) the current lake snapshot, whose rows below the fixed
// ends it keeps; (3) per bucket the stream from the snapshot's offset (or
// the first retained one) up to the fixed end. Rows come bucket by bucket
// (partition, then bucket number), each bucket in offset order.
func (s *Service) union(ctx context.Context, t catalog.Table, columns []string, limit int64, schema *arrow.Schema) (*unionRows, error) {
	u := &unionRows{schema: schema, limit: limit}
	if err := s.unionInto(ctx, u, t, columns); err != nil {
		u.release()
		return nil, err
	}
	return u, nil
}

func (s *Service) unionInto(ctx context.Context, u *unionRows, t catalog.Table, columns []string) error {
	states, err := s.buckets.ListBuckets(ctx, t.ID)
	if err != nil {
		return err
	}
	slices.SortFunc(states, func(a, b catalog.BucketState) int { return a.BucketID.Compare(b.BucketID) })
	var snap *lake.Snapshot
	if s.lake != nil {
		settings, err := tiering.SettingsOf(t)
		if err != nil {
			return err
		}
		if settings.Enabled {
			if snap, err = s.lake.Snapshot(ctx, t); err != nil {
				return err
			}
		}
	}
	var projection []string
	if len(columns) > 0 {
		projection = columns
	}
	var lakeRows, tailRows, refreshes int64
	for _, st := range states {
		if u.full() {
			break
		}
		b, from, end := st.BucketID, st.StartOffset, st.NextOffset
		if snap != nil {
			n, err := s.addLakeRows(ctx, u, snap, b, 0, end, projection)
			lakeRows += n
			if err != nil {
				return err
			}
			from = max(from, snap.Offsets[b])
		}
		for from < end && !u.full() {
			res, err := s.reader.Fetch(ctx, reader.FetchRequest{Table: t, Bucket: b, Offset: from, MaxBytes: tailFetchBytes, Columns: projection})
			if errors.Is(err, reader.ErrOffsetOutOfRange) && snap != nil {
				// Since the snapshot was loaded, tiering moved past from
				// and retention deleted the records: a newer snapshot
				// holds them.
				fresh, ferr := s.lake.Snapshot(ctx, t)
				if ferr != nil {
					return ferr
				}
				if fresh.Offsets[b] <= from {
					return err // not in the lake either: gone
				}
				snap = fresh
				refreshes++
				n, err := s.addLakeRows(ctx, u, snap, b, from, end, projection)
				lakeRows += n
				if err != nil {
					return err
				}
				from = max(from, snap.Offsets[b])
				continue
			}
			if err == nil && len(res.Batches) == 0 {
				err = fmt.Errorf("readsvc: %s: no records at offset %d before the scan's end %d", b, from, end)
			}
			if err != nil {
				return err
			}
			for _, rb := range res.Batches {
				rec := rb.Record
				if n := min(rec.NumRows(), end-rb.BaseOffset); n < rec.NumRows() {
					rec = rec.NewSlice(0, n)
				} else {
					rec.Retain()
				}
				tailRows += rec.NumRows()
				from = rb.BaseOffset + rec.NumRows()
				err := u.addStream(s, rec, b.Bucket, rb.BaseOffset, rb.Timestamp)
				rec.Release()
				if err != nil {
					res.Release()
					return err
				}
				if from >= end || u.full() {
					break
				}
			}
			res.Release()
		}
	}
	attrs := []any{slog.String("table", t.Database+"."+t.Name), slog.Int64("lake_rows", lakeRows), slog.Int64("tail_rows", tailRows)}
	if snap != nil {
		attrs = append(attrs, slog.Int64("snapshot", snap.ID), slog.Int64("snapshot_refreshes", refreshes))
	}
	s.logger.DebugContext(ctx, "union scan", attrs...)
	return nil
}

// addLakeRows adds the snapshot's rows of b in [from, to) to u, up to
// its limit, and returns how many it read.
func (s *Service) addLakeRows(ctx context.Context, u *unionRows, snap *lake.Snapshot, b catalog.BucketID, from, to int64, projection []string) (int64, error) {
	var n int64
	for rec, err := range snap.Records(ctx, b, from, to, projection) {
		if err != nil {
			return n, err
		}
		n += rec.NumRows()
		if err := u.addLake(s, rec); err != nil {
			return n, err
		}
		if u.full() {
			break
		}
	}
	return n, nil
}

// unionRows collects union rows as batches of one schema, up to a limit.
type unionRows struct {
	schema *arrow.Schema
	recs   []arrow.RecordBatch
	n      int64
	limit  int64 // 0: no limit
}

func (u *unionRows) full() bool { return u.limit > 0 && u.n >= u.limit }

func (u *unionRows) release() {
	for _, r := range u.recs {
		r.Release()
	}
	u.recs = nil
}

// add keeps rec (owned by u from now on), cut to the limit.
func (u *unionRows) add(rec arrow.RecordBatch) {
	if u.limit > 0 && u.n+rec.NumRows() > u.limit {
		cut := rec.NewSlice(0, u.limit-u.n)
		rec.Release()
		rec = cut
	}
	if rec.NumRows() == 0 {
		rec.Release()
		return
	}
	u.n += rec.NumRows()
	u.recs = append(u.recs, rec)
}

// addLake adds a batch of lake.Snapshot.Records (the lake's Arrow types,
// then __bucket, __offset, __timestamp); it releases rec.
func (u *unionRows) addLake(s *Service, rec arrow.RecordBatch) error {
	defer rec.Release()
	ncols := u.schema.NumFields() - 3
	cols := make([]arrow.Array, 0, u.schema.NumFields())
	defer func() {
		for _, c := range cols {
			c.Release()
		}
	}()
	if rec.NumCols() != int64(u.schema.NumFields()) {
		return fmt.Errorf("readsvc: lake batch has %d columns, want %d", rec.NumCols(), u.schema.NumFields())
	}
	// Same order: the columns, then __bucket, __offset, __timestamp.
	for i, f := range u.schema.Fields() {
		name := rec.Schema().Field(i).Name
		if i < ncols && name != f.Name {
			return fmt.Errorf("readsvc: lake batch column %d is %q, want %q", i, name, f.Name)
		}
		col, err := s.cast(rec.Column(i), f.Type)
		if err != nil {
			return fmt.Errorf("readsvc: lake column %q: %w", name, err)
		}
		cols = append(cols, col)
	}
	u.add(array.NewRecordBatch(u.schema, cols, rec.NumRows()))
	return nil
}

// addStream adds a batch of the stream (the projected columns) of one
// bucket whose first row has offset base, committed at ts.
func (u *unionRows) addStream(s *Service, rec arrow.RecordBatch, bucket int32, base int64, ts time.Time) error {
	n := int(rec.NumRows())
	ncols := u.schema.NumFields() - 3
	cols := make([]arrow.Array, 0, u.schema.NumFields())
	defer func() {
		for _, c := range cols {
			c.Release()
		}
	}()
	for _, f := range u.schema.Fields()[:ncols] {
		idx := rec.Schema().FieldIndices(f.Name)
		if len(idx) == 0 {
			cols = append(cols, array.MakeArrayOfNull(s.mem, f.Type, n))
			continue
		}
		col, err := s.cast(rec.Column(idx[0]), f.Type)
		if err != nil {
			return fmt.Errorf("readsvc: column %q: %w", f.Name, err)
		}
		cols = append(cols, col)
	}
	bb := array.NewInt32Builder(s.mem)
	ob := array.NewInt64Builder(s.mem)
	tb := array.NewTimestampBuilder(s.mem, u.schema.Field(ncols+2).Type.(*arrow.TimestampType))
	defer bb.Release()
	defer ob.Release()
	defer tb.Release()
	bb.Reserve(n)
	ob.Reserve(n)
	tb.Reserve(n)
	us := arrow.Timestamp(ts.UnixMicro())
	for i := range n {
		bb.UnsafeAppend(bucket)
		ob.UnsafeAppend(base + int64(i))
		tb.UnsafeAppend(us)
	}
	cols = append(cols, bb.NewArray(), ob.NewArray(), tb.NewArray())
	u.add(array.NewRecordBatch(u.schema, cols, int64(n)))
	return nil
}

// cast returns src as an array of type dst: the lake widens TINYINT and
// SMALLINT to int32 and keeps timestamps in microseconds, where the stream
// has int8, int16 and the column's unit. The result must be released.
func (s *Service) cast(src arrow.Array, dst arrow.DataType) (arrow.Array, error) {
	if arrow.TypeEqual(src.DataType(), dst) {
		src.Retain()
		return src, nil
	}
	n := src.Len()
	switch dst := dst.(type) {
	case *arrow.Int8Type:
		if s32, ok := src.(*array.Int32); ok {
			b := array.NewInt8Builder(s.mem)
			defer b.Release()
			b.Reserve(n)
			for i := range n {
				if s32.IsNull(i) {
					b.UnsafeAppendBoolToBitmap(false)
				} else {
					b.UnsafeAppend(int8(s32.Value(i)))
				}
			}
			return b.NewArray(), nil
		}
	case *arrow.Int16Type:
		if s32, ok := src.(*array.Int32); ok {
			b := array.NewInt16Builder(s.mem)
			defer b.Release()
			b.Reserve(n)
			for i := range n {
				if s32.IsNull(i) {
					b.UnsafeAppendBoolToBitmap(false)
				} else {
					b.UnsafeAppend(int16(s32.Value(i)))
				}
			}
			return b.NewArray(), nil
		}
	case *arrow.TimestampType:
		if ts, ok := src.(*array.Timestamp); ok {
			from := ts.DataType().(*arrow.TimestampType).Unit
			b := array.NewTimestampBuilder(s.mem, dst)
			defer b.Release()
			b.Reserve(n)
			for i := range n {
				if ts.IsNull(i) {
					b.UnsafeAppendBoolToBitmap(false)
				} else {
					b.UnsafeAppend(arrow.Timestamp(tiering.ConvertTimeUnit(int64(ts.Value(i)), from, dst.Unit)))
				}
			}
			return b.NewArray(), nil
		}
	}
	return nil, fmt.Errorf("cannot convert %s to %s", src.DataType(), dst)
}

// unionJSON returns union rows as JSON objects: the columns as Fetch
// writes them, plus _bucket, _offset and _timestamp (RFC 3339, UTC).
func unionJSON(recs []arrow.RecordBatch) ([]*structpb.Struct, error) {
	var out []*structpb.Struct
	for _, rec := range recs {
		ncols := int(rec.NumCols()) - 3
		sc := rec.Schema()
		cols := arrow.NewSchema(sc.Fields()[:ncols], nil)
		data := array.NewRecordBatch(cols, rec.Columns()[:ncols], rec.NumRows())
		rows, err := batch.ToJSON(data)
		data.Release()
		if err != nil {
			return nil, err
		}
		buckets := rec.Column(ncols).(*array.Int32)
		offsets := rec.Column(ncols + 1).(*array.Int64)
		stamps := rec.Column(ncols + 2).(*array.Timestamp)
		for i, row := range rows {
			row[ColumnBucket] = int64(buckets.Value(i))
			row[ColumnOffset] = offsets.Value(i)
			row[ColumnTimestamp] = time.UnixMicro(int64(stamps.Value(i))).UTC().Format(time.RFC3339Nano)
			st, err := structpb.NewStruct(row)
			if err != nil {
				return nil, fmt.Errorf("scan: row at offset %d: %w", offsets.Value(i), err)
			}
			out = append(out, st)
		}
	}
	return out, nil
}
