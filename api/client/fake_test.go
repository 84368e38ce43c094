package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/api/gen/strom/v1/stromv1connect"
)

// fault is an error injected into the next attempt of an RPC. afterWrite
// makes Append write the rows and then fail, as if the response was lost.
type fault struct {
	err        error
	afterWrite bool
}

type record struct {
	values *structpb.Struct
	ts     time.Time
}

type writer struct {
	seq  int64
	resp *stromv1.AppendResponse
}

// fakeServer is an in-memory test double of the AdminService (GetTable),
// WriteService (Append) and ReadService (ListOffsets, Fetch) with the
// semantics the client relies on: rows go to bucket k mod buckets (column
// "k", else 0); idempotence by writer id and sequence; long-poll fetches.
type fakeServer struct {
	stromv1connect.UnimplementedAdminServiceHandler
	stromv1connect.UnimplementedWriteServiceHandler
	stromv1connect.UnimplementedReadServiceHandler

	buckets    int
	fetchLimit int // rows per fetch
	appendWait time.Duration

	mu          sync.Mutex
	changed     chan struct{}
	logs        [][]record
	writers     map[string]*writer
	attempts    []*stromv1.AppendRequest // every Append received
	inflight    int
	maxInflight int
	appendFault []fault
	fetchFault  []fault
	fetches     []*stromv1.FetchRequest
	header      http.Header
	now         func() time.Time
}

func newFakeServer(t *testing.T, buckets int, opts ...connect.HandlerOption) (*fakeServer, *httptest.Server) {
	f := &fakeServer{buckets: buckets, fetchLimit: 4, logs: make([][]record, buckets), writers: map[string]*writer{}, changed: make(chan struct{}), now: time.Now}
	mux := http.NewServeMux()
	mux.Handle(stromv1connect.NewAdminServiceHandler(f, opts...))
	mux.Handle(stromv1connect.NewWriteServiceHandler(f, opts...))
	mux.Handle(stromv1connect.NewReadServiceHandler(f, opts...))
	srv := httptest.NewUnstartedServer(mux)
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv.Config.Protocols = &p
	srv.Start()
	t.Cleanup(srv.Close)
	return f, srv
}

func popFault(q *[]fault) (fault, bool) {
	if len(*q) == 0 {
		return fault{}, false
	}
	f := (*q)[0]
	*q = (*q)[1:]
	return f, true
}

func (f *fakeServer) GetTable(_ context.Context, req *connect.Request[stromv1.GetTableRequest]) (*connect.Response[stromv1.GetTableResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &stromv1.GetTableResponse{Table: &stromv1.Table{Database: req.Msg.GetDatabase(), Name: req.Msg.GetName(), Buckets: int32(f.buckets)}}
	for b := range f.buckets {
		resp.Buckets = append(resp.Buckets, &stromv1.Bucket{Bucket: int32(b), NextOffset: int64(len(f.logs[b]))})
	}
	return connect.NewResponse(resp), nil
}

func (f *fakeServer) Append(ctx context.Context, req *connect.Request[stromv1.AppendRequest]) (*connect.Response[stromv1.AppendResponse], error) {
	f.mu.Lock()
	f.header = req.Header().Clone()
	f.attempts = append(f.attempts, proto.CloneOf(req.Msg))
	f.inflight++
	f.maxInflight = max(f.maxInflight, f.inflight)
	flt, faulty := popFault(&f.appendFault)
	wait := f.appendWait
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.inflight--
		f.mu.Unlock()
	}()
	if wait > 0 {
		time.Sleep(wait)
	}
	if faulty && !flt.afterWrite {
		return nil, flt.err
	}
	resp, err := f.write(req.Msg)
	if err != nil {
		return nil, err
	}
	if faulty {
		return nil, flt.err
	}
	return connect.NewResponse(resp), nil
}

func (f *fakeServer) write(req *stromv1.AppendRequest) (*stromv1.AppendResponse, error) {
	rows := req.GetRows()
	if len(req.GetArrowIpc()) > 0 {
		r, err := ipc.NewReader(bytes.NewReader(req.GetArrowIpc()))
		if err != nil {
			return nil, connect.NewError(connect.CodeInvalidArgument, err)
		}
		defer r.Release()
		for r.Next() {
			rec := r.RecordBatch()
			for i := range int(rec.NumRows()) {
				m := map[string]any{}
				for c, col := range rec.Columns() {
					m[rec.ColumnName(c)] = col.GetOneForMarshal(i)
				}
				s, err := structpb.NewStruct(m)
				if err != nil {
					return nil, connect.NewError(connect.CodeInvalidArgument, err)
				}
				rows = append(rows, s)
			}
		}
		if r.Err() != nil {
			return nil, connect.NewError(connect.CodeInvalidArgument, r.Err())
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var w *writer
	if id := req.GetWriterId(); id != "" {
		w = f.writers[id]
		if w == nil {
			w = &writer{}
			f.writers[id] = w
		}
		switch {
		case req.GetSequence() == w.seq:
			return w.resp, nil
		case req.GetSequence() < w.seq:
			return nil, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("sequence %d after %d", req.GetSequence(), w.seq))
		}
	}
	for i, r := range rows {
		if r.GetFields()["bad"] != nil {
			return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("row %d: column \"bad\" is not in the table", i))
		}
	}
	byBucket := map[int]*stromv1.BucketOffsets{}
	now := f.now()
	for _, r := range rows {
		b := 0
		if k := r.GetFields()["k"]; k != nil {
			b = int(k.GetNumberValue()) % f.buckets
		}
		o := byBucket[b]
		if o == nil {
			o = &stromv1.BucketOffsets{Bucket: int32(b), BaseOffset: int64(len(f.logs[b]))}
			byBucket[b] = o
		}
		o.Count++
		f.logs[b] = append(f.logs[b], record{values: r, ts: now})
	}
	resp := &stromv1.AppendResponse{}
	for b := range f.buckets {
		if o := byBucket[b]; o != nil {
			resp.Offsets = append(resp.Offsets, o)
		}
	}
	if w != nil {
		w.seq, w.resp = req.GetSequence(), resp
	}
	close(f.changed)
	f.changed = make(chan struct{})
	return resp, nil
}

func (f *fakeServer) ListOffsets(_ context.Context, req *connect.Request[stromv1.ListOffsetsRequest]) (*connect.Response[stromv1.ListOffsetsResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &stromv1.ListOffsetsResponse{}
	for b, log := range f.logs {
		var off int64
		switch req.Msg.GetSpec() {
		case stromv1.OffsetSpec_OFFSET_SPEC_EARLIEST:
		case stromv1.OffsetSpec_OFFSET_SPEC_TIMESTAMP:
			ts := req.Msg.GetTimestamp().AsTime()
			off = int64(len(log))
			for i, r := range log {
				if !r.ts.Before(ts) {
					off = int64(i)
					break
				}
			}
		default:
			off = int64(len(log))
		}
		resp.Offsets = append(resp.Offsets, &stromv1.BucketOffset{Bucket: int32(b), Offset: off})
	}
	return connect.NewResponse(resp), nil
}

func (f *fakeServer) Fetch(ctx context.Context, req *connect.Request[stromv1.FetchRequest]) (*connect.Response[stromv1.FetchResponse], error) {
	m := req.Msg
	deadline := time.Now().Add(time.Duration(m.GetMaxWaitMs()) * time.Millisecond)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fetches = append(f.fetches, proto.CloneOf(m))
	if flt, ok := popFault(&f.fetchFault); ok && flt.err != nil {
		return nil, flt.err
	}
	if m.GetBucket() < 0 || int(m.GetBucket()) >= f.buckets {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("no such bucket"))
	}
	for int64(len(f.logs[m.GetBucket()])) <= m.GetOffset() {
		ch := f.changed
		f.mu.Unlock()
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-ch:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		f.mu.Lock()
		if time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
	}
	log := f.logs[m.GetBucket()]
	resp := &stromv1.FetchResponse{NextOffset: m.GetOffset(), HighWatermark: int64(len(log))}
	for off := m.GetOffset(); off < int64(len(log)) && len(resp.Rows) < f.fetchLimit; off++ {
		r := log[off]
		s := &structpb.Struct{Fields: map[string]*structpb.Value{
			"_offset":    structpb.NewNumberValue(float64(off)),
			"_timestamp": structpb.NewStringValue(r.ts.UTC().Format(time.RFC3339Nano)),
		}}
		for k, v := range r.values.GetFields() {
			if len(m.GetColumns()) == 0 || slices.Contains(m.GetColumns(), k) {
				s.Fields[k] = v
			}
		}
		resp.Rows = append(resp.Rows, s)
		resp.NextOffset = off + 1
	}
	return connect.NewResponse(resp), nil
}

// log returns the values of bucket b's records.
func (f *fakeServer) log(b int) []map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []map[string]any
	for _, r := range f.logs[b] {
		out = append(out, r.values.AsMap())
	}
	return out
}

func (f *fakeServer) injectAppend(faults ...fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.appendFault = append(f.appendFault, faults...)
}

func (f *fakeServer) injectFetch(faults ...fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fetchFault = append(f.fetchFault, faults...)
}

func (f *fakeServer) appendAttempts() []*stromv1.AppendRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.attempts)
}
