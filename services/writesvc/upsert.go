package writesvc

import (
	"context"
	"fmt"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

	clusterv1 "github.com/strom-io/strom/api/gen/strom/cluster/v1"
	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/services/forward"
	"github.com/strom-io/strom/services/kv"
	"github.com/strom-io/strom/services/rpcerr"
	"github.com/strom-io/strom/services/writer"
)

// Upsert implements WriteService: rows are merged into a primary-key table
// by its merge engine; with target_columns only those columns change.
func (s *Service) Upsert(ctx context.Context, req *connect.Request[stromv1.UpsertRequest]) (*connect.Response[stromv1.UpsertResponse], error) {
	m := req.Msg
	if err := requireTable(m.GetDatabase(), m.GetTable()); err != nil {
		return nil, err
	}
	t, err := s.primaryKeyTable(ctx, m.GetDatabase(), m.GetTable(), "upsert")
	if err != nil {
		return nil, rpcerr.Connect(ctx, s.logger, "upsert", err)
	}
	targets, err := kv.TargetColumns(t.Schema, m.GetTargetColumns())
	if err != nil {
		return nil, rpcerr.Connect(ctx, s.logger, "upsert", err)
	}
	// A partial update leaves the other columns as they are, so it need
	// not send them, NOT NULL or not.
	schema := kv.UpsertSchema(t.Schema, targets)
	offsets, err := s.writeOps(ctx, t, schema, m.GetRows(), m.GetArrowIpc(), kv.OpUpsert, targets, m.GetTargetColumns(), m.GetDurability(), m.GetWriterId(), m.GetSequence())
	if err != nil {
		return nil, rpcerr.Connect(ctx, s.logger, "upsert", err)
	}
	return connect.NewResponse(&stromv1.UpsertResponse{Offsets: offsets}), nil
}

// Delete implements WriteService: it deletes rows of a primary-key table by
// key.
func (s *Service) Delete(ctx context.Context, req *connect.Request[stromv1.DeleteRequest]) (*connect.Response[stromv1.DeleteResponse], error) {
	m := req.Msg
	if err := requireTable(m.GetDatabase(), m.GetTable()); err != nil {
		return nil, err
	}
	if len(m.GetKeys()) == 0 {
		return nil, rpcerr.Invalid("keys: required: name at least one key, as a JSON object of the primary-key columns")
	}
	t, err := s.primaryKeyTable(ctx, m.GetDatabase(), m.GetTable(), "delete")
	if err != nil {
		return nil, rpcerr.Connect(ctx, s.logger, "delete", err)
	}
	offsets, err := s.writeOps(ctx, t, kv.KeySchema(t), m.GetKeys(), nil, kv.OpDelete, nil, nil, m.GetDurability(), m.GetWriterId(), m.GetSequence())
	if err != nil {
		return nil, rpcerr.Connect(ctx, s.logger, "delete", err)
	}
	return connect.NewResponse(&stromv1.DeleteResponse{Offsets: offsets}), nil
}

func (s *Service) primaryKeyTable(ctx context.Context, db, name, op string) (catalog.Table, error) {
	t, err := s.tables.GetTable(ctx, db, name)
	if err != nil {
		return t, err
	}
	if !t.IsPrimaryKey() {
		return t, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("table %s.%s is a log table without a primary key: %s needs a primary-key table; append to it instead", t.Database, t.Name, op))
	}
	return t, nil
}

// writeOps decodes rows against schema, routes them by key and writes them
// as ops of kind to the table's buckets.
func (s *Service) writeOps(ctx context.Context, t catalog.Table, schema catalog.Schema, rows []*structpb.Struct, ipcData []byte,
	kind kv.OpKind, targets []int, targetNames []string, d stromv1.Durability, writerID string, seq int64) ([]*stromv1.BucketOffsets, error) {
	if _, ok := stromv1.Durability_name[int32(d)]; !ok {
		return nil, rpcerr.Invalid(fmt.Sprintf("durability: unknown value %d: want DURABILITY_DURABLE or DURABILITY_WAL", d))
	}
	ctx, settle := s.expecting(ctx)
	defer settle()
	decoded := t
	decoded.Schema = schema
	rec, _, err := s.decode(decoded, rows, ipcData) // primary-key parts log their changelog, not the rows
	if err != nil {
		return nil, err
	}
	defer rec.Release()
	parts, err := s.router.Route(s.mem, t, rec, writerID, seq)
	if err != nil {
		return nil, rpcerr.Invalid(err.Error())
	}
	defer func() {
		for _, p := range parts {
			p.Record.Release()
		}
	}()
	for i := range parts {
		if parts[i].Ops, err = kv.OpsFromRecord(t.Schema, parts[i].Record, kind, targets); err != nil {
			return nil, err
		}
	}
	wk := clusterv1.WriteKind_WRITE_KIND_UPSERT
	if kind == kv.OpDelete {
		wk = clusterv1.WriteKind_WRITE_KIND_DELETE
	}
	results, err := s.writes.Write(ctx, forward.Write{
		Request: writer.Request{Table: t, Parts: parts, Durability: durability(d), WriterID: writerID, Sequence: seq},
		Kind:    wk, TargetColumns: targetNames,
	})
	if err != nil {
		return nil, err
	}
	return offsetsToProto(results), nil
}

func offsetsToProto(results []writer.Result) []*stromv1.BucketOffsets {
	out := make([]*stromv1.BucketOffsets, 0, len(results))
	for _, r := range results {
		out = append(out, &stromv1.BucketOffsets{Partition: r.Bucket.Partition, Bucket: r.Bucket.Bucket, BaseOffset: r.BaseOffset, Count: r.Count, Duplicate: r.Duplicate})
	}
	return out
}
