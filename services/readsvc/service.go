// Package readsvc serves strom.v1.ReadService for log tables: offsets,
// long-poll Fetch and streaming Subscribe, as JSON rows or Arrow IPC.
package readsvc

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"connectrpc.com/connect"
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	flatbuffers "github.com/google/flatbuffers/go"
	"google.golang.org/protobuf/types/known/structpb"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/api/gen/strom/v1/stromv1connect"
	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/services/batch"
	"github.com/strom-io/strom/services/reader"
	"github.com/strom-io/strom/services/rpcerr"
	"github.com/strom-io/strom/services/segment"
)

// Limits of Fetch.
const (
	DefaultMaxBytes = 4 << 20
	MaxMaxBytes     = 64 << 20
	MaxWait         = 30 * time.Second
	// subscribeWait is how long each Subscribe round long-polls.
	subscribeWait = 5 * time.Second
)

// System columns every returned row carries.
const (
	ColumnOffset    = "_offset"
	ColumnTimestamp = "_timestamp"
)

// Tables finds tables by name.
type Tables interface {
	GetTable(ctx context.Context, database, name string) (catalog.Table, error)
}

// Buckets lists a table's buckets.
type Buckets interface {
	ListBuckets(ctx context.Context, tableID int64) ([]catalog.BucketState, error)
}

// Service implements ReadService.
type Service struct {
	stromv1connect.UnimplementedReadServiceHandler
	tables  Tables
	buckets Buckets
	reader  *reader.Reader
	kv      KV
	lake    Lake // nil without a lake: union scans read the stream alone
	logger  *slog.Logger
	mem     memory.Allocator
	onScan  func(ScanInfo)
}

var _ stromv1connect.ReadServiceHandler = (*Service)(nil)

// New returns a ReadService. lk is the lake that union scans read; nil
// when the deployment has none (union scans then read the stream alone).
func New(tables Tables, buckets Buckets, r *reader.Reader, state KV, lk Lake, logger *slog.Logger, opts ...Option) *Service {
	s := &Service{tables: tables, buckets: buckets, reader: r, kv: state, lake: lk, logger: logger, mem: memory.DefaultAllocator}
	for _, o := range opts {
		o(s)
	}
	return s
}

// ListOffsets implements ReadService.
func (s *Service) ListOffsets(ctx context.Context, req *connect.Request[stromv1.ListOffsetsRequest]) (*connect.Response[stromv1.ListOffsetsResponse], error) {
	m := req.Msg
	if err := requireTable("", m.GetDatabase(), m.GetTable()); err != nil {
		return nil, err
	}
	t, err := s.tables.GetTable(ctx, m.GetDatabase(), m.GetTable())
	if err != nil {
		return nil, rpcerr.Connect(ctx, s.logger, "list offsets", err)
	}
	if err := t.ValidatePartition(m.GetPartition()); err != nil {
		return nil, rpcerr.Connect(ctx, s.logger, "list offsets", err)
	}
	if m.GetSpec() == stromv1.OffsetSpec_OFFSET_SPEC_TIMESTAMP && m.GetTimestamp() == nil {
		return nil, rpcerr.Invalid("timestamp: required with OFFSET_SPEC_TIMESTAMP")
	}
	resp := &stromv1.ListOffsetsResponse{}
	for b := int32(0); b < t.Buckets; b++ {
		id := catalog.BucketID{TableID: t.ID, Partition: m.GetPartition(), Bucket: b}
		var off int64
		switch m.GetSpec() {
		case stromv1.OffsetSpec_OFFSET_SPEC_EARLIEST:
			o, err := s.reader.BucketOffsets(ctx, id)
			if err != nil {
				return nil, rpcerr.Connect(ctx, s.logger, "list offsets", err)
			}
			off = o.Start
		case stromv1.OffsetSpec_OFFSET_SPEC_TIMESTAMP:
			if off, err = s.reader.OffsetForTimestamp(ctx, id, m.GetTimestamp().AsTime()); err != nil {
				return nil, rpcerr.Connect(ctx, s.logger, "list offsets", err)
			}
		default:
			o, err := s.reader.BucketOffsets(ctx, id)
			if err != nil {
				return nil, rpcerr.Connect(ctx, s.logger, "list offsets", err)
			}
			off = o.Next
		}
		resp.Offsets = append(resp.Offsets, &stromv1.BucketOffset{Partition: id.Partition, Bucket: b, Offset: off})
	}
	return connect.NewResponse(resp), nil
}

// Fetch implements ReadService.
func (s *Service) Fetch(ctx context.Context, req *connect.Request[stromv1.FetchRequest]) (*connect.Response[stromv1.FetchResponse], error) {
	resp, err := s.fetch(ctx, req.Msg, time.Duration(req.Msg.GetMaxWaitMs())*time.Millisecond)
	if err != nil {
		return nil, rpcerr.Connect(ctx, s.logger, "fetch", err)
	}
	return connect.NewResponse(resp), nil
}

func (s *Service) fetch(ctx context.Context, m *stromv1.FetchRequest, wait time.Duration) (*stromv1.FetchResponse, error) {
	if err := requireTable("", m.GetDatabase(), m.GetTable()); err != nil {
		return nil, err
	}
	t, err := s.tables.GetTable(ctx, m.GetDatabase(), m.GetTable())
	if err != nil {
		return nil, err
	}
	if err := t.ValidatePartition(m.GetPartition()); err != nil {
		return nil, err
	}
	if err := checkColumns(t, reader.OutputSchema(t), m.GetColumns()); err != nil {
		return nil, err
	}
	maxBytes := m.GetMaxBytes()
	switch {
	case maxBytes <= 0:
		maxBytes = DefaultMaxBytes
	case maxBytes > MaxMaxBytes:
		maxBytes = MaxMaxBytes
	}
	res, err := s.reader.Fetch(ctx, reader.FetchRequest{
		Table:    t,
		Bucket:   catalog.BucketID{TableID: t.ID, Partition: m.GetPartition(), Bucket: m.GetBucket()},
		Offset:   m.GetOffset(),
		MaxBytes: maxBytes,
		MaxWait:  min(wait, MaxWait),
		Columns:  m.GetColumns(),
		Stored:   m.GetFormat() == stromv1.Format_FORMAT_ARROW && m.GetArrowCompressed(),
	})
	if err != nil {
		return nil, err
	}
	defer res.Release()
	out := &stromv1.FetchResponse{NextOffset: res.NextOffset, HighWatermark: res.HighWatermark}
	if m.GetFormat() == stromv1.Format_FORMAT_ARROW {
		out.ArrowIpc, err = s.encodeArrow(t, m.GetColumns(), res.Batches)
		return out, err
	}
	if m.GetArrowCompressed() {
		return nil, rpcerr.Invalid("arrow_compressed: applies to FORMAT_ARROW only")
	}
	for _, b := range res.Batches {
		rows, err := batch.ToJSON(b.Record)
		if err != nil {
			return nil, err
		}
		ts := b.Timestamp.UTC().Format(time.RFC3339Nano)
		for i, row := range rows {
			row[ColumnOffset] = b.BaseOffset + int64(i)
			row[ColumnTimestamp] = ts
			st, err := structpb.NewStruct(row)
			if err != nil {
				return nil, fmt.Errorf("fetch: row at offset %d: %w", b.BaseOffset+int64(i), err)
			}
			out.Rows = append(out.Rows, st)
		}
	}
	return out, nil
}

// requireTable refuses a request that does not name its database and
// table; prefix is the path to the fields ("fetch.").
func requireTable(prefix, database, table string) error {
	return cmp.Or(rpcerr.Required(prefix+"database", database), rpcerr.Required(prefix+"table", table))
}

// encodeArrow returns the batches with _offset and _timestamp appended, as
// one IPC stream whose schema is the projection's even when empty. Batches
// read as stored (segment.ReadBatch.Stored) go into it with their
// compressed buffers as they are; others uncompressed.
func (s *Service) encodeArrow(t catalog.Table, columns []string, batches []segment.ReadBatch) ([]byte, error) {
	full := reader.OutputSchema(t)
	var fields []arrow.Field
	if len(columns) == 0 {
		fields = append(fields, full.Fields()...)
	} else {
		for _, c := range columns {
			fields = append(fields, full.Field(full.FieldIndices(c)[0]))
		}
	}
	fields = append(fields,
		arrow.Field{Name: ColumnOffset, Type: arrow.PrimitiveTypes.Int64},
		arrow.Field{Name: ColumnTimestamp, Type: timestampUTC})
	schema := arrow.NewSchema(fields, nil)
	stored := slices.ContainsFunc(batches, func(b segment.ReadBatch) bool { return b.Record == nil })
	if !stored {
		return s.encodeDecoded(schema, batches)
	}
	out, err := batch.SchemaMessage(schema)
	if err != nil {
		return nil, err
	}
	size := len(out) + 8
	for _, b := range batches {
		size += 1024 + 16*int(b.Rows)
		for _, c := range b.Stored {
			if c != nil {
				for _, buf := range c.Buffers {
					size += len(buf) + 8
				}
			}
		}
		if b.Record != nil {
			size += int(recordBytes(b.Record))
		}
	}
	out = append(make([]byte, 0, size), out...)
	bld := flatbuffers.NewBuilder(1024)
	for _, b := range batches {
		compression := -1
		if b.Record == nil {
			compression = b.StoredCompression
		}
		if out, err = s.appendBatch(out, bld, fields, b, compression); err != nil {
			return nil, err
		}
	}
	return append(out, batch.EOS[:]...), nil
}

// appendBatch appends b, with its _offset and _timestamp, as one record
// batch message of the given compression.
func (s *Service) appendBatch(out []byte, bld *flatbuffers.Builder, fields []arrow.Field, b segment.ReadBatch, compression int) ([]byte, error) {
	var arrays []arrow.Array // released once their bytes are copied into out
	defer func() {
		for _, a := range arrays {
			a.Release()
		}
	}()
	cols := make([]batch.IPCColumn, 0, len(fields))
	add := func(a arrow.Array, name string) error {
		arrays = append(arrays, a)
		c, copied, err := ipcColumn(s.mem, a, compression)
		if copied != nil {
			arrays = append(arrays, copied)
		}
		if err != nil {
			return fmt.Errorf("encode column %q of the batch at offset %d: %w", name, b.BaseOffset, err)
		}
		cols = append(cols, c)
		return nil
	}
	for j := range len(fields) - 2 {
		var err error
		switch {
		case b.Record != nil:
			col := b.Record.Column(j)
			col.Retain()
			err = add(col, fields[j].Name)
		case b.Stored[j] != nil:
			cols = append(cols, *b.Stored[j])
		default: // a column the batch lacks: nulls
			err = add(array.MakeArrayOfNull(s.mem, fields[j].Type, int(b.Rows)), fields[j].Name)
		}
		if err != nil {
			return nil, err
		}
	}
	// _offset, a sequence, goes uncompressed: zstd takes longer over it
	// than sending its 8 bytes a row. _timestamp, one value per batch,
	// compresses to next to nothing at memory speed.
	offsets, stamps := s.offsetColumns(b)
	defer stamps.Release()
	if err := add(offsets, ColumnOffset); err != nil {
		return nil, err
	}
	c, err := segment.CompressedColumn(stamps, compression)
	if err != nil {
		return nil, err
	}
	cols = append(cols, c)
	return batch.AppendRecordBatch(out, bld, b.Rows, compression, cols)
}

// encodeDecoded encodes decoded batches with arrow-go's writer.
func (s *Service) encodeDecoded(schema *arrow.Schema, batches []segment.ReadBatch) ([]byte, error) {
	recs := make([]arrow.RecordBatch, 0, len(batches))
	defer func() {
		for _, r := range recs {
			r.Release()
		}
	}()
	for _, b := range batches {
		offsets, stamps := s.offsetColumns(b)
		cols := append(append([]arrow.Array(nil), b.Record.Columns()...), offsets, stamps)
		recs = append(recs, array.NewRecordBatch(schema, cols, b.Rows))
		offsets.Release()
		stamps.Release()
	}
	return batch.EncodeIPC(schema, recs)
}

// timestampUTC is the type of the _timestamp column.
var timestampUTC = &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}

// offsetColumns returns the _offset and _timestamp columns of b.
func (s *Service) offsetColumns(b segment.ReadBatch) (arrow.Array, arrow.Array) {
	n := int(b.Rows)
	offs, tss := make([]int64, n), make([]int64, n)
	ts := b.Timestamp.UnixMicro()
	for i := range offs {
		offs[i], tss[i] = b.BaseOffset+int64(i), ts
	}
	offsets := array.NewInt64Data(array.NewData(arrow.PrimitiveTypes.Int64, n,
		[]*memory.Buffer{nil, memory.NewBufferBytes(arrow.Int64Traits.CastToBytes(offs))}, nil, 0, 0))
	stamps := array.NewTimestampData(array.NewData(timestampUTC, n,
		[]*memory.Buffer{nil, memory.NewBufferBytes(arrow.Int64Traits.CastToBytes(tss))}, nil, 0, 0))
	return offsets, stamps
}

// ipcColumn returns a's buffers for a message of the given compression
// (uncompressed), copying a first when it is sliced; the caller releases
// the copy after using the column.
func ipcColumn(mem memory.Allocator, a arrow.Array, compression int) (batch.IPCColumn, arrow.Array, error) {
	if c, ok := batch.IPCColumnOf(a, compression); ok {
		return c, nil, nil
	}
	// A slice (the first batch of a fetch from inside it): a copy starts
	// at offset 0.
	copied, err := array.Concatenate([]arrow.Array{a}, mem)
	if err != nil {
		return batch.IPCColumn{}, nil, err
	}
	if c, ok := batch.IPCColumnOf(copied, compression); ok {
		return c, copied, nil
	}
	return batch.IPCColumn{}, copied, fmt.Errorf("column of type %s is not flat", a.DataType())
}

func recordBytes(rec arrow.RecordBatch) int64 {
	var n int64
	for _, c := range rec.Columns() {
		for _, b := range c.Data().Buffers() {
			if b != nil {
				n += int64(b.Len())
			}
		}
	}
	return n
}
