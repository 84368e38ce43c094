package client_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/strom-io/strom/api/client"
	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/api/gen/strom/v1/stromv1connect"
)

// kvFake answers Upsert and Delete, failing the first attempts of each
// request as told, and records the sequences it saw.
type kvFake struct {
	stromv1connect.UnimplementedWriteServiceHandler
	mu       sync.Mutex
	failures int // left to inject, unavailable
	seen     []int64
	writers  map[string]bool
}

func (f *kvFake) attempt(writer string, seq int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen = append(f.seen, seq)
	f.writers[writer] = true
	if f.failures > 0 {
		f.failures--
		return connect.NewError(connect.CodeUnavailable, errors.New("leader moved"))
	}
	return nil
}

func (f *kvFake) Upsert(_ context.Context, req *connect.Request[stromv1.UpsertRequest]) (*connect.Response[stromv1.UpsertResponse], error) {
	if len(req.Msg.GetRows()) == 0 {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("no rows"))
	}
	if err := f.attempt(req.Msg.GetWriterId(), req.Msg.GetSequence()); err != nil {
		return nil, err
	}
	return connect.NewResponse(&stromv1.UpsertResponse{Offsets: []*stromv1.BucketOffsets{{Count: int64(len(req.Msg.GetRows()))}}}), nil
}

func (f *kvFake) Delete(_ context.Context, req *connect.Request[stromv1.DeleteRequest]) (*connect.Response[stromv1.DeleteResponse], error) {
	if err := f.attempt(req.Msg.GetWriterId(), req.Msg.GetSequence()); err != nil {
		return nil, err
	}
	return connect.NewResponse(&stromv1.DeleteResponse{}), nil
}

func TestKVWriterRetriesWithTheSameSequence(t *testing.T) {
	f := &kvFake{failures: 3, writers: map[string]bool{}}
	_, h := stromv1connect.NewWriteServiceHandler(f)
	srv := httptest.NewServer(h)
	defer srv.Close()
	w := client.New(srv.URL).NewKVWriter("db", "t", client.WithKVRetry(client.RetryPolicy{InitialBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond}))
	offsets, err := w.Upsert(t.Context(), []map[string]any{{"id": 1, "v": "a"}, {"id": 2}})
	if err != nil {
		t.Fatal(err)
	}
	if len(offsets) != 1 || offsets[0].GetCount() != 2 {
		t.Fatalf("offsets = %v", offsets)
	}
	if _, err := w.Delete(t.Context(), []map[string]any{{"id": 1}}); err != nil {
		t.Fatal(err)
	}
	// Four attempts of sequence 1 (three failed), then sequence 2.
	if got := f.seen; len(got) != 5 || got[0] != 1 || got[3] != 1 || got[4] != 2 {
		t.Fatalf("sequences seen %v, want [1 1 1 1 2]", got)
	}
	if len(f.writers) != 1 || !f.writers[w.WriterID()] {
		t.Fatalf("writer ids %v, want only %q", f.writers, w.WriterID())
	}
	// A non-retryable error is returned at once, naming the sequence.
	_, err = w.Upsert(t.Context(), nil)
	if connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("empty upsert = %v, want invalid_argument", err)
	}
}
