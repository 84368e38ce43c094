package client

import (
	"context"
	"fmt"
	"sync"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/structpb"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
)

// KVWriter upserts and deletes rows of a primary-key table, exactly once:
// every call is one request carrying the writer's id and the next sequence
// number, retried with the same sequence on retryable errors (a frontend
// failing over, backpressure), so a retry whose first attempt was in fact
// written is not written again.
//
// Calls are serialized: one request is in flight at a time, so changes to
// one key apply in call order. A KVWriter is safe for concurrent use.
type KVWriter struct {
	client          *Client
	database, table string
	writerID        string
	retry           RetryPolicy
	durability      stromv1.Durability

	mu  sync.Mutex
	seq int64
}

// KVWriterOption configures a KVWriter.
type KVWriterOption func(*KVWriter)

// WithKVRetry sets the retry policy (default: RetryPolicy's defaults).
func WithKVRetry(p RetryPolicy) KVWriterOption { return func(w *KVWriter) { w.retry = p } }

// WithKVDurability sets when writes are acknowledged (default durable).
func WithKVDurability(d stromv1.Durability) KVWriterOption {
	return func(w *KVWriter) { w.durability = d }
}

// NewKVWriter returns a writer for database.table with a new writer id.
func (c *Client) NewKVWriter(database, table string, opts ...KVWriterOption) *KVWriter {
	w := &KVWriter{client: c, database: database, table: table, writerID: uuid.NewString(), durability: stromv1.Durability_DURABILITY_DURABLE}
	for _, o := range opts {
		o(w)
	}
	w.retry = w.retry.withDefaults()
	return w
}

// WriterID is the id the writer's requests carry.
func (w *KVWriter) WriterID() string { return w.writerID }

// Upsert merges rows into the table by its merge engine. With
// targetColumns, only those columns change (a partial update). It returns
// the changelog offsets written per bucket.
func (w *KVWriter) Upsert(ctx context.Context, rows []map[string]any, targetColumns ...string) ([]*stromv1.BucketOffsets, error) {
	msgs, err := structs(rows)
	if err != nil {
		return nil, err
	}
	return w.do(ctx, func(ctx context.Context, seq int64) ([]*stromv1.BucketOffsets, error) {
		resp, err := w.client.write.Upsert(ctx, connect.NewRequest(&stromv1.UpsertRequest{
			Database: w.database, Table: w.table, Rows: msgs, TargetColumns: targetColumns,
			Durability: w.durability, WriterId: w.writerID, Sequence: seq,
		}))
		if err != nil {
			return nil, err
		}
		return resp.Msg.GetOffsets(), nil
	})
}

// Delete deletes the rows with keys (objects of the primary-key columns).
func (w *KVWriter) Delete(ctx context.Context, keys []map[string]any) ([]*stromv1.BucketOffsets, error) {
	msgs, err := structs(keys)
	if err != nil {
		return nil, err
	}
	return w.do(ctx, func(ctx context.Context, seq int64) ([]*stromv1.BucketOffsets, error) {
		resp, err := w.client.write.Delete(ctx, connect.NewRequest(&stromv1.DeleteRequest{
			Database: w.database, Table: w.table, Keys: msgs,
			Durability: w.durability, WriterId: w.writerID, Sequence: seq,
		}))
		if err != nil {
			return nil, err
		}
		return resp.Msg.GetOffsets(), nil
	})
}

// do runs one request under the next sequence, retrying it.
func (w *KVWriter) do(ctx context.Context, call func(ctx context.Context, seq int64) ([]*stromv1.BucketOffsets, error)) ([]*stromv1.BucketOffsets, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seq++
	seq := w.seq
	var out []*stromv1.BucketOffsets
	attempts, err := retry(ctx, w.retry, func(ctx context.Context) error {
		var err error
		out, err = call(ctx, seq)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s.%s: sequence %d failed after %d attempts: %w", w.database, w.table, seq, attempts, err)
	}
	return out, nil
}

func structs(rows []map[string]any) ([]*structpb.Struct, error) {
	out := make([]*structpb.Struct, len(rows))
	for i, r := range rows {
		st, err := newStruct(r)
		if err != nil {
			return nil, fmt.Errorf("row %d: %w", i, err)
		}
		out[i] = st
	}
	return out, nil
}
