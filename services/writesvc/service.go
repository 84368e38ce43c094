// Package writesvc serves strom.v1.WriteService: it decodes rows sent as
// JSON or Arrow IPC against the table's schema, routes them to buckets and
// hands them to the writer.
package writesvc

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"

	"connectrpc.com/connect"
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"google.golang.org/protobuf/types/known/structpb"

	clusterv1 "github.com/strom-io/strom/api/gen/strom/cluster/v1"
	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/api/gen/strom/v1/stromv1connect"
	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/services/batch"
	"github.com/strom-io/strom/services/forward"
	"github.com/strom-io/strom/services/rpcerr"
	"github.com/strom-io/strom/services/writer"
)

// Tables finds tables by name.
type Tables interface {
	GetTable(ctx context.Context, database, name string) (catalog.Table, error)
}

// Writes writes the parts of a request where their buckets are led
// (forward.Router).
type Writes interface {
	Write(ctx context.Context, w forward.Write) ([]writer.Result, error)
}

// Service implements WriteService.
type Service struct {
	stromv1connect.UnimplementedWriteServiceHandler
	tables   Tables
	writes   Writes
	router   writer.Router
	logger   *slog.Logger
	mem      memory.Allocator
	maxBytes int64
	expect   Expecter
}

// Expecter is told of each write request before it is decoded, so that a
// lingering flush can wait for it (writer.Writer.Expect).
type Expecter interface {
	Expect(ctx context.Context) (context.Context, func())
}

// WithExpecter makes s announce its writes to e (the local writer, in a
// process with the write role).
func (s *Service) WithExpecter(e Expecter) *Service {
	s.expect = e
	return s
}

// expecting announces a write to the expecter, if any; the caller calls
// the returned func when the request ends.
func (s *Service) expecting(ctx context.Context) (context.Context, func()) {
	if s.expect == nil {
		return ctx, func() {}
	}
	return s.expect.Expect(ctx)
}

var _ stromv1connect.WriteServiceHandler = (*Service)(nil)

// New returns a WriteService. maxBytes bounds a request's decoded Arrow
// data.
func New(tables Tables, w Writes, logger *slog.Logger, maxBytes int64) *Service {
	return &Service{tables: tables, writes: w, logger: logger, mem: memory.DefaultAllocator, maxBytes: maxBytes}
}

// Append implements WriteService.
func (s *Service) Append(ctx context.Context, req *connect.Request[stromv1.AppendRequest]) (*connect.Response[stromv1.AppendResponse], error) {
	m := req.Msg
	if err := requireTable(m.GetDatabase(), m.GetTable()); err != nil {
		return nil, err
	}
	t, err := s.tables.GetTable(ctx, m.GetDatabase(), m.GetTable())
	if err != nil {
		return nil, rpcerr.Connect(ctx, s.logger, "append", err)
	}
	if t.IsPrimaryKey() {
		return nil, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("table %s.%s is a primary-key table: write it with Upsert and Delete", t.Database, t.Name))
	}
	if _, ok := stromv1.Durability_name[int32(m.GetDurability())]; !ok {
		return nil, rpcerr.Invalid(fmt.Sprintf("durability: unknown value %d: want DURABILITY_DURABLE or DURABILITY_WAL", m.GetDurability()))
	}
	ctx, settle := s.expecting(ctx)
	defer settle()
	rec, verbatim, err := s.decode(t, m.GetRows(), m.GetArrowIpc())
	if err != nil {
		return nil, rpcerr.Connect(ctx, s.logger, "append", err)
	}
	defer rec.Release()
	parts, err := s.router.Route(s.mem, t, rec, m.GetWriterId(), m.GetSequence())
	if err != nil {
		return nil, rpcerr.Connect(ctx, s.logger, "append", rpcerr.Invalid(err.Error()))
	}
	if verbatim && len(parts) == 1 && parts[0].Record == rec {
		// The request's rows go whole to one bucket: its bytes are the
		// batch's encoding (the WAL and a forward take them as they are).
		parts[0].IPC = m.GetArrowIpc()
	}
	defer func() {
		for _, p := range parts {
			p.Record.Release()
		}
	}()
	results, err := s.writes.Write(ctx, forward.Write{
		Request: writer.Request{
			Table: t, Parts: parts, Durability: durability(m.GetDurability()),
			WriterID: m.GetWriterId(), Sequence: m.GetSequence(),
		},
		Kind: clusterv1.WriteKind_WRITE_KIND_APPEND,
	})
	if err != nil {
		return nil, rpcerr.Connect(ctx, s.logger, "append", err)
	}
	return connect.NewResponse(&stromv1.AppendResponse{Offsets: offsetsToProto(results)}), nil
}

// requireTable refuses a request that does not name its database and
// table.
func requireTable(database, table string) error {
	return cmp.Or(rpcerr.Required("database", database), rpcerr.Required("table", table))
}

func durability(d stromv1.Durability) writer.Durability {
	if d == stromv1.Durability_DURABILITY_WAL {
		return writer.WAL
	}
	return writer.Durable
}

// decode turns the request's rows into one record batch of the table's
// schema, or an error naming the row and column at fault. verbatim reports
// that ipcData is that batch's canonical encoding (batch.DecodeIPCVerbatim).
func (s *Service) decode(t catalog.Table, rows []*structpb.Struct, ipcData []byte) (_ arrow.RecordBatch, verbatim bool, _ error) {
	switch {
	case len(rows) > 0 && len(ipcData) > 0:
		return nil, false, rpcerr.Invalid("send rows or arrow_ipc, not both")
	case len(ipcData) > 0:
		recs, verbatim, err := batch.DecodeIPCVerbatim(s.mem, t.Schema, ipcData, s.maxBytes)
		if err != nil {
			return nil, false, err
		}
		rec, err := concat(s.mem, recs)
		return rec, verbatim, err
	case len(rows) > 0:
		maps := make([]map[string]any, len(rows))
		for i, r := range rows {
			maps[i] = r.AsMap()
		}
		rec, err := batch.FromJSON(s.mem, t.Schema, maps)
		return rec, false, err
	default:
		return nil, false, rpcerr.Invalid("no rows: send rows (JSON objects) or arrow_ipc")
	}
}

// concat joins the batches of one IPC stream into one, so that each bucket
// gets one batch per request.
func concat(mem memory.Allocator, recs []arrow.RecordBatch) (arrow.RecordBatch, error) {
	defer func() {
		for _, r := range recs {
			r.Release()
		}
	}()
	var rows int64
	for _, r := range recs {
		rows += r.NumRows()
	}
	if rows == 0 {
		return nil, rpcerr.Invalid("arrow_ipc holds no rows")
	}
	if len(recs) == 1 {
		recs[0].Retain()
		return recs[0], nil
	}
	schema := recs[0].Schema()
	cols := make([]arrow.Array, schema.NumFields())
	for i := range cols {
		parts := make([]arrow.Array, len(recs))
		for j, r := range recs {
			parts[j] = r.Column(i)
		}
		c, err := array.Concatenate(parts, mem)
		if err != nil {
			for _, done := range cols[:i] {
				done.Release()
			}
			return nil, fmt.Errorf("concatenate batches: %w", err)
		}
		cols[i] = c
	}
	out := array.NewRecordBatch(schema, cols, rows)
	for _, c := range cols {
		c.Release()
	}
	return out, nil
}
