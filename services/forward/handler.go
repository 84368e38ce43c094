package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"connectrpc.com/connect"
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	clusterv1 "github.com/strom-io/strom/api/gen/strom/cluster/v1"
	"github.com/strom-io/strom/api/gen/strom/cluster/v1/clusterv1connect"
	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/services/batch"
	"github.com/strom-io/strom/services/cluster"
	"github.com/strom-io/strom/services/kv"
	"github.com/strom-io/strom/services/rpcerr"
	"github.com/strom-io/strom/services/writer"
)

// Tables finds tables by id (tablecache.Store).
type Tables interface {
	GetTableByID(ctx context.Context, id int64) (catalog.Table, error)
	// GetTableByIDAtLeast returns the table at schema version version or
	// newer: a cached definition older than the rows a sender decoded is
	// read anew.
	GetTableByIDAtLeast(ctx context.Context, id int64, version int32) (catalog.Table, error)
}

// Handler serves the internal ClusterService: the receiving end of
// forwarded requests. It serves only buckets this process leads, or may
// lead now, and never forwards again.
type Handler struct {
	clusterv1connect.UnimplementedClusterServiceHandler
	tables   Tables
	local    Local
	loc      Locator
	logger   *slog.Logger
	mem      memory.Allocator
	maxBytes int64
}

var _ clusterv1connect.ClusterServiceHandler = (*Handler)(nil)

// NewHandler returns the ClusterService of a write frontend. maxBytes
// bounds a forwarded request's decoded Arrow data.
func NewHandler(tables Tables, local Local, loc Locator, logger *slog.Logger, maxBytes int64) *Handler {
	return &Handler{tables: tables, local: local, loc: loc, logger: logger, mem: memory.DefaultAllocator, maxBytes: maxBytes}
}

// mayServe reports whether this frontend leads b or is the member that
// should lead it now, re-reading the cluster once if its view says
// otherwise. A sender with a stale view would otherwise make whichever
// frontend it picked acquire the bucket, only for the balancer to hand it
// over again (for a primary-key bucket: a snapshot and a catch-up each
// time); refusing makes the sender re-read the leaders instead.
//
// While this frontend hands b over, it first waits for the handoff to
// end, so that a refusal reaches the sender only once the lease is
// released and its re-read finds the next leader.
func (h *Handler) mayServe(ctx context.Context, b catalog.BucketID) error {
	if err := h.local.AwaitHandoff(ctx, b); err != nil {
		return err
	}
	t, err := h.loc.Locate(b)
	if err == nil && t.Local {
		return nil
	}
	if rerr := h.loc.Refresh(ctx); rerr != nil {
		return rerr
	}
	if t, err = h.loc.Locate(b); err == nil && t.Local {
		return nil
	}
	if err == nil {
		err = fmt.Errorf("%w %s: led by or assigned to %s", writer.ErrNotLeader, b, t.Member)
	}
	return err
}

// Write implements ClusterService.
func (h *Handler) Write(ctx context.Context, req *connect.Request[clusterv1.WriteRequest]) (*connect.Response[clusterv1.WriteResponse], error) {
	m := req.Msg
	if m.GetTableId() == 0 {
		return nil, rpcerr.Invalid("table_id: required")
	}
	if len(m.GetParts()) == 0 {
		return nil, rpcerr.Invalid("parts: required")
	}
	t, err := h.tables.GetTableByIDAtLeast(ctx, m.GetTableId(), m.GetSchemaVersion())
	if err != nil {
		return nil, h.error(ctx, "forwarded write", err)
	}
	if t.SchemaVersion != m.GetSchemaVersion() {
		// The sender decoded the rows under an older version: it raced an
		// AlterTable (docs/catalog.md, "Table cache").
		return nil, connect.NewError(connect.CodeAborted, fmt.Errorf("table %s.%s changed schema (version %d, the rows have %d) while the write was forwarded: retry",
			t.Database, t.Name, t.SchemaVersion, m.GetSchemaVersion()))
	}
	var (
		schema  catalog.Schema
		kind    kv.OpKind
		targets []int
	)
	switch m.GetKind() {
	case clusterv1.WriteKind_WRITE_KIND_APPEND:
		if t.IsPrimaryKey() {
			return nil, rpcerr.Invalid("append to a primary-key table")
		}
		schema = t.Schema
	case clusterv1.WriteKind_WRITE_KIND_UPSERT, clusterv1.WriteKind_WRITE_KIND_DELETE:
		if !t.IsPrimaryKey() {
			return nil, rpcerr.Invalid("upsert or delete on a log table")
		}
		kind, schema = kv.OpUpsert, t.Schema
		if m.GetKind() == clusterv1.WriteKind_WRITE_KIND_DELETE {
			kind, schema = kv.OpDelete, kv.KeySchema(t)
		} else if len(m.GetTargetColumns()) > 0 {
			if targets, err = kv.TargetColumns(t.Schema, m.GetTargetColumns()); err != nil {
				return nil, h.error(ctx, "forwarded write", err)
			}
			schema = kv.UpsertSchema(t.Schema, targets)
		}
	default:
		return nil, rpcerr.Invalid(fmt.Sprintf("kind: unknown write kind %d", m.GetKind()))
	}
	parts := make([]writer.Part, 0, len(m.GetParts()))
	defer func() {
		for _, p := range parts {
			p.Record.Release()
		}
	}()
	for i, p := range m.GetParts() {
		if err := t.ValidatePartition(p.GetBucket().GetPartition()); err != nil {
			return nil, rpcerr.Invalid(fmt.Sprintf("parts[%d].bucket.%v", i, err))
		}
		rec, verbatim, err := h.decode(schema, p.GetArrowIpc())
		if err != nil {
			return nil, h.error(ctx, "forwarded write", err)
		}
		part := writer.Part{Bucket: bucketFromProto(t.ID, p.GetBucket()), Record: rec}
		if verbatim && m.GetKind() == clusterv1.WriteKind_WRITE_KIND_APPEND {
			part.IPC = p.GetArrowIpc()
		}
		if err := h.mayServe(ctx, part.Bucket); err != nil {
			rec.Release()
			return nil, h.error(ctx, "forwarded write", err)
		}
		parts = append(parts, part)
		if t.IsPrimaryKey() {
			if parts[len(parts)-1].Ops, err = kv.OpsFromRecord(t.Schema, rec, kind, targets); err != nil {
				return nil, h.error(ctx, "forwarded write", err)
			}
		}
	}
	results, err := h.local.Append(ctx, writer.Request{
		Table: t, Parts: parts, Durability: durabilityFromProto(m.GetDurability()),
		WriterID: m.GetWriterId(), Sequence: m.GetSequence(),
	})
	if errors.Is(err, writer.ErrNotLeader) {
		// A handoff began after mayServe: refuse once it ended (as
		// mayServe does), so the sender's re-read finds the next leader.
		for _, p := range parts {
			if werr := h.local.AwaitHandoff(ctx, p.Bucket); werr != nil {
				return nil, h.error(ctx, "forwarded write", werr)
			}
		}
	}
	if err != nil {
		return nil, h.error(ctx, "forwarded write", err)
	}
	out := &clusterv1.WriteResponse{Results: make([]*clusterv1.PartResult, len(results))}
	for i, r := range results {
		out.Results[i] = &clusterv1.PartResult{Bucket: bucketToProto(r.Bucket), BaseOffset: r.BaseOffset, Count: r.Count, Duplicate: r.Duplicate}
	}
	return connect.NewResponse(out), nil
}

// decode reads one part's rows; they must be one non-empty batch. verbatim
// reports that data is that batch's canonical encoding.
func (h *Handler) decode(schema catalog.Schema, data []byte) (arrow.RecordBatch, bool, error) {
	recs, verbatim, err := batch.DecodeIPCVerbatim(h.mem, schema, data, h.maxBytes)
	if err != nil {
		return nil, false, err
	}
	if len(recs) != 1 || recs[0].NumRows() == 0 {
		for _, r := range recs {
			r.Release()
		}
		return nil, false, rpcerr.Invalid(fmt.Sprintf("arrow_ipc: want one non-empty batch per part, got %d batches", len(recs)))
	}
	return recs[0], verbatim, nil
}

// Lookup implements ClusterService.
func (h *Handler) Lookup(ctx context.Context, req *connect.Request[clusterv1.LookupRequest]) (*connect.Response[clusterv1.LookupResponse], error) {
	m := req.Msg
	t, state, err := h.state(ctx, m.GetTableId(), m.GetBucket())
	if err != nil {
		return nil, h.error(ctx, "forwarded lookup", err)
	}
	keys := make([]kv.Row, len(m.GetKeys()))
	for i, data := range m.GetKeys() {
		values, err := kv.DecodeKey(data)
		if err != nil {
			return nil, rpcerr.Invalid(fmt.Sprintf("keys[%d]: %v", i, err))
		}
		keys[i] = values
	}
	rows, err := state.Lookup(keys)
	if err != nil {
		return nil, h.error(ctx, "forwarded lookup", err)
	}
	out := &clusterv1.LookupResponse{Rows: make([][]byte, len(rows))}
	s := senderSchema(t.Schema, m.GetColumnCount())
	for i, row := range rows {
		if row != nil {
			out.Rows[i] = kv.EncodeRow(nil, s, row.Resize(len(s.Columns)))
		}
	}
	return connect.NewResponse(out), nil
}

// PrefixLookup implements ClusterService.
func (h *Handler) PrefixLookup(ctx context.Context, req *connect.Request[clusterv1.PrefixLookupRequest]) (*connect.Response[clusterv1.PrefixLookupResponse], error) {
	m := req.Msg
	t, state, err := h.state(ctx, m.GetTableId(), m.GetBucket())
	if err != nil {
		return nil, h.error(ctx, "forwarded prefix lookup", err)
	}
	values, err := kv.DecodeKey(m.GetPrefix())
	if err != nil {
		return nil, rpcerr.Invalid(fmt.Sprintf("prefix: %v", err))
	}
	rows, err := state.PrefixLookup(values)
	if err != nil {
		return nil, h.error(ctx, "forwarded prefix lookup", err)
	}
	return connect.NewResponse(&clusterv1.PrefixLookupResponse{Rows: encodeRows(senderSchema(t.Schema, m.GetColumnCount()), rows)}), nil
}

// Scan implements ClusterService.
func (h *Handler) Scan(ctx context.Context, req *connect.Request[clusterv1.ScanRequest]) (*connect.Response[clusterv1.ScanResponse], error) {
	m := req.Msg
	if m.GetLimit() < 0 {
		return nil, rpcerr.Invalid("limit: must not be negative")
	}
	t, state, err := h.state(ctx, m.GetTableId(), m.GetBucket())
	if err != nil {
		return nil, h.error(ctx, "forwarded scan", err)
	}
	var after []byte
	if len(m.GetAfterKey()) > 0 {
		after = m.GetAfterKey()
	}
	rows, last, more, err := state.ScanAfter(after, int(m.GetLimit()))
	if err != nil {
		return nil, h.error(ctx, "forwarded scan", err)
	}
	return connect.NewResponse(&clusterv1.ScanResponse{Rows: encodeRows(senderSchema(t.Schema, m.GetColumnCount()), rows), LastKey: last, More: more}), nil
}

// Count implements ClusterService.
func (h *Handler) Count(ctx context.Context, req *connect.Request[clusterv1.CountRequest]) (*connect.Response[clusterv1.CountResponse], error) {
	m := req.Msg
	_, state, err := h.state(ctx, m.GetTableId(), m.GetBucket())
	if err != nil {
		return nil, h.error(ctx, "forwarded count", err)
	}
	return connect.NewResponse(&clusterv1.CountResponse{Count: state.Count()}), nil
}

func (h *Handler) state(ctx context.Context, tableID int64, b *clusterv1.Bucket) (catalog.Table, *kv.Bucket, error) {
	if tableID == 0 {
		return catalog.Table{}, nil, rpcerr.Invalid("table_id: required")
	}
	t, err := h.tables.GetTableByID(ctx, tableID)
	if err != nil {
		return t, nil, err
	}
	if err := t.ValidatePartition(b.GetPartition()); err != nil {
		return t, nil, rpcerr.Invalid("bucket." + err.Error())
	}
	if !t.IsPrimaryKey() {
		return t, nil, rpcerr.Invalid(fmt.Sprintf("table %s.%s has no primary key", t.Database, t.Name))
	}
	id := bucketFromProto(t.ID, b)
	if err := h.mayServe(ctx, id); err != nil {
		return t, nil, err
	}
	state, err := h.local.KV(ctx, t, id)
	return t, state, err
}

// error converts err for the sender; "not the leader" answers are marked
// as having written nothing, so the sender re-routes at once.
func (h *Handler) error(ctx context.Context, op string, err error) error {
	if errors.Is(err, writer.ErrNotLeader) || errors.Is(err, cluster.ErrNoLeader) {
		// Expected while leaderships move; the sender re-routes.
		ce := connect.NewError(connect.CodeUnavailable, err)
		ce.Meta().Set(notWrittenHeader, "1")
		return ce
	}
	return rpcerr.Connect(ctx, h.logger, op, err)
}

// encodeRows encodes rows with the columns of s (see senderSchema).
func encodeRows(s catalog.Schema, rows []kv.Row) [][]byte {
	out := make([][]byte, len(rows))
	for i, row := range rows {
		out[i] = kv.EncodeRow(nil, s, row.Resize(len(s.Columns)))
	}
	return out
}

// senderSchema is s as the sender of a read knows it: its first n columns
// (the sender's schema version may be older than s; columns are only ever
// appended). n <= 0 or beyond s means all of s; the sender then pads.
func senderSchema(s catalog.Schema, n int32) catalog.Schema {
	if n > 0 && int(n) < len(s.Columns) {
		s.Columns = s.Columns[:n]
	}
	return s
}
