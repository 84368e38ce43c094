package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/strom-io/strom/api/client"
	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
)

var fastRetry = client.RetryPolicy{InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}

func unavailable() error {
	return connect.NewError(connect.CodeUnavailable, errors.New("leader moved"))
}

func sendN(t *testing.T, p *client.Producer, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if err := p.Send(t.Context(), map[string]any{"k": i, "v": "row"}); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
	}
}

// results collects SendResults from the WithOnResult callback.
type results struct {
	mu  sync.Mutex
	all []client.SendResult
}

func (r *results) add(res client.SendResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.all = append(r.all, res)
}

func (r *results) get() []client.SendResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]client.SendResult(nil), r.all...)
}

func TestProducerBatchesByRows(t *testing.T) {
	f, srv := newFakeServer(t, 1)
	var res results
	p := client.New(srv.URL).NewProducer("db", "t", client.WithBatchRows(3), client.WithLinger(time.Hour), client.WithOnResult(res.add))
	sendN(t, p, 0, 7)
	if err := p.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	var sizes []int
	for _, a := range f.appendAttempts() {
		sizes = append(sizes, len(a.GetRows()))
		if a.GetWriterId() != p.WriterID() || p.WriterID() == "" {
			t.Errorf("writer id %q, want %q", a.GetWriterId(), p.WriterID())
		}
	}
	if want := []int{3, 3, 1}; !equal(sizes, want) {
		t.Errorf("batch sizes %v, want %v", sizes, want)
	}
	r := res.get()
	if len(r) != 3 || r[2].Sequence != 3 || r[2].FirstRow != 6 || r[2].Rows != 1 || r[2].Offsets[0].GetBaseOffset() != 6 {
		t.Errorf("results %+v", r)
	}
	if err := p.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := len(f.log(0)); got != 7 {
		t.Errorf("%d rows written, want 7", got)
	}
}

func TestProducerLinger(t *testing.T) {
	f, srv := newFakeServer(t, 1)
	done := make(chan client.SendResult, 1)
	p := client.New(srv.URL).NewProducer("db", "t", client.WithLinger(20*time.Millisecond), client.WithOnResult(func(r client.SendResult) { done <- r }))
	defer p.Close(context.Background())
	start := time.Now()
	sendN(t, p, 0, 2)
	select {
	case r := <-done:
		if r.Err != nil || r.Rows != 2 {
			t.Fatalf("result %+v", r)
		}
		if d := time.Since(start); d < 20*time.Millisecond {
			t.Errorf("sent after %v, before the linger", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("linger did not send the batch")
	}
	if got := len(f.appendAttempts()); got != 1 {
		t.Errorf("%d requests, want 1", got)
	}
}

func TestProducerBatchBytes(t *testing.T) {
	f, srv := newFakeServer(t, 1)
	p := client.New(srv.URL).NewProducer("db", "t", client.WithBatchBytes(1000), client.WithLinger(time.Hour))
	big := string(make([]byte, 400))
	for range 5 {
		if err := p.Send(t.Context(), map[string]any{"v": big}); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	var sizes []int
	for _, a := range f.appendAttempts() {
		sizes = append(sizes, len(a.GetRows()))
	}
	if want := []int{2, 2, 1}; !equal(sizes, want) {
		t.Errorf("batch sizes %v, want %v", sizes, want)
	}
}

func TestProducerRetryKeepsSequence(t *testing.T) {
	f, srv := newFakeServer(t, 2)
	// Two failures before writing, then one after writing (response lost),
	// then success: the retry must get the original offsets back and the rows
	// must be written once.
	f.injectAppend(fault{err: unavailable()}, fault{err: connect.NewError(connect.CodeResourceExhausted, errors.New("slow down"))},
		fault{err: unavailable(), afterWrite: true})
	var res results
	p := client.New(srv.URL).NewProducer("db", "t", client.WithRetry(fastRetry), client.WithBatchRows(4), client.WithLinger(time.Hour), client.WithOnResult(res.add))
	sendN(t, p, 0, 4)
	sendN(t, p, 4, 2)
	if err := p.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	var seqs []int64
	for _, a := range f.appendAttempts() {
		seqs = append(seqs, a.GetSequence())
	}
	if want := []int64{1, 1, 1, 1, 2}; !equal(seqs, want) {
		t.Errorf("sequences %v, want %v", seqs, want)
	}
	if n0, n1 := len(f.log(0)), len(f.log(1)); n0 != 3 || n1 != 3 {
		t.Errorf("buckets hold %d and %d rows, want 3 and 3", n0, n1)
	}
	r := res.get()
	if len(r) != 2 || r[0].Attempts != 4 || r[0].Err != nil || r[1].Attempts != 1 {
		t.Fatalf("results %+v", r)
	}
	if o := r[0].Offsets; len(o) != 2 || o[0].GetBaseOffset() != 0 || o[0].GetCount() != 2 || o[1].GetCount() != 2 {
		t.Errorf("offsets of the retried batch %v", o)
	}
	if o := r[1].Offsets; len(o) != 2 || o[0].GetBaseOffset() != 2 || o[1].GetBaseOffset() != 2 {
		t.Errorf("offsets of the second batch %v", o)
	}
}

func TestProducerNonRetryableFailsBatch(t *testing.T) {
	f, srv := newFakeServer(t, 1)
	var res results
	p := client.New(srv.URL).NewProducer("db", "t", client.WithRetry(fastRetry), client.WithBatchRows(2), client.WithLinger(time.Hour), client.WithOnResult(res.add))
	sendN(t, p, 0, 2)
	if err := p.Send(t.Context(), map[string]any{"k": 2}); err != nil {
		t.Fatal(err)
	}
	if err := p.Send(t.Context(), map[string]any{"bad": true}); err != nil {
		t.Fatal(err)
	}
	sendN(t, p, 4, 1)
	err := p.Flush(t.Context())
	var be *client.BatchError
	if !errors.As(err, &be) || be.FirstRow != 2 || be.Rows != 2 || be.Attempts != 1 || connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("Flush = %v, want a BatchError for rows 2-3 with invalid_argument", err)
	}
	if err := p.Flush(t.Context()); err != nil {
		t.Errorf("second Flush = %v, want nil (errors are reported once)", err)
	}
	if err := p.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := len(f.log(0)); got != 3 {
		t.Errorf("%d rows written, want 3", got)
	}
	r := res.get()
	if len(r) != 3 || r[0].Err != nil || r[1].Err == nil || r[2].Err != nil {
		t.Errorf("results %+v", r)
	}
}

func TestProducerRetriesExhausted(t *testing.T) {
	f, srv := newFakeServer(t, 1)
	for range 10 {
		f.injectAppend(fault{err: unavailable()})
	}
	policy := fastRetry
	policy.MaxAttempts = 3
	p := client.New(srv.URL).NewProducer("db", "t", client.WithRetry(policy))
	sendN(t, p, 0, 1)
	err := p.Close(t.Context())
	var be *client.BatchError
	if !errors.As(err, &be) || be.Attempts != 3 || !client.IsRetryable(err) {
		t.Fatalf("Close = %v, want a retryable BatchError after 3 attempts", err)
	}
}

func TestProducerOneRequestInFlight(t *testing.T) {
	f, srv := newFakeServer(t, 4)
	f.appendWait = 2 * time.Millisecond
	p := client.New(srv.URL).NewProducer("db", "t", client.WithBatchRows(5), client.WithLinger(time.Millisecond))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() { sendN(t, p, g*100, 50) })
	}
	wg.Wait()
	if err := p.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if f.maxInflight != 1 {
		t.Errorf("%d requests in flight at once, want 1", f.maxInflight)
	}
	var rows int
	for i, a := range f.appendAttempts() {
		rows += len(a.GetRows())
		if a.GetSequence() != int64(i+1) {
			t.Fatalf("request %d has sequence %d", i, a.GetSequence())
		}
	}
	if rows != 400 {
		t.Errorf("%d rows sent, want 400", rows)
	}
}

func TestProducerSendArrow(t *testing.T) {
	f, srv := newFakeServer(t, 1)
	p := client.New(srv.URL).NewProducer("db", "t", client.WithLinger(time.Hour))
	schema := arrow.NewSchema([]arrow.Field{{Name: "id", Type: arrow.PrimitiveTypes.Int64}, {Name: "name", Type: arrow.BinaryTypes.String}}, nil)
	for i := range 2 {
		b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
		b.Field(0).(*array.Int64Builder).AppendValues([]int64{int64(i * 2), int64(i*2 + 1)}, nil)
		b.Field(1).(*array.StringBuilder).AppendValues([]string{"a", "b"}, nil)
		rec := b.NewRecordBatch()
		if err := p.SendArrow(t.Context(), rec); err != nil {
			t.Fatal(err)
		}
		rec.Release()
		b.Release()
	}
	sendN(t, p, 10, 1) // JSON rows go in their own request
	if err := p.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	a := f.appendAttempts()
	if len(a) != 2 || len(a[0].GetArrowIpc()) == 0 || len(a[0].GetRows()) != 0 || len(a[1].GetRows()) != 1 {
		t.Fatalf("requests %v", a)
	}
	log := f.log(0)
	if len(log) != 5 || log[3]["id"] != float64(3) || log[3]["name"] != "b" {
		t.Errorf("log %v", log)
	}
}

func TestProducerClose(t *testing.T) {
	f, srv := newFakeServer(t, 1)
	p := client.New(srv.URL).NewProducer("db", "t", client.WithLinger(time.Hour), client.WithDurability(stromv1.Durability_DURABILITY_WAL))
	sendN(t, p, 0, 3)
	if err := p.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if a := f.appendAttempts(); len(a) != 1 || a[0].GetDurability() != stromv1.Durability_DURABILITY_WAL {
		t.Errorf("requests %v", a)
	}
	if err := p.Send(t.Context(), map[string]any{}); !errors.Is(err, client.ErrProducerClosed) {
		t.Errorf("Send after Close = %v", err)
	}
	if err := p.Close(t.Context()); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

func TestProducerCloseTimeoutReportsBatches(t *testing.T) {
	f, srv := newFakeServer(t, 1)
	for range 100 {
		f.injectAppend(fault{err: unavailable()})
	}
	p := client.New(srv.URL).NewProducer("db", "t", client.WithRetry(client.RetryPolicy{MaxAttempts: -1, InitialBackoff: 10 * time.Millisecond}))
	sendN(t, p, 0, 1)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	err := p.Close(ctx)
	var be *client.BatchError
	if !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &be) {
		t.Errorf("Close = %v, want the deadline and the abandoned batch", err)
	}
}

func TestProducerBackpressure(t *testing.T) {
	f, srv := newFakeServer(t, 1)
	f.injectAppend(fault{err: unavailable()})
	p := client.New(srv.URL).NewProducer("db", "t", client.WithBatchBytes(10), client.WithMaxBufferedBytes(10),
		client.WithRetry(client.RetryPolicy{InitialBackoff: time.Second}))
	defer p.Close(context.Background())
	sendN(t, p, 0, 1) // buffered until the retry in a second
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if err := p.Send(ctx, map[string]any{"k": 1}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Send over the buffer limit = %v, want to block until the deadline", err)
	}
}

func TestSendValues(t *testing.T) {
	f, srv := newFakeServer(t, 1)
	p := client.New(srv.URL).NewProducer("db", "t")
	ts := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	row := map[string]any{
		"small": int64(42), "big": int64(math.MaxInt64), "ubig": uint64(math.MaxUint64),
		"num": json.Number("1.5"), "bignum": json.Number("12345678901234567890"), "dec": json.Number("0.1"), "huge": json.Number("1e999"),
		"ts": ts, "null": nil, "list": []any{1, "a"}, "obj": map[string]any{"x": 1},
	}
	if err := p.Send(t.Context(), row); err != nil {
		t.Fatal(err)
	}
	if err := p.Send(t.Context(), map[string]any{"ch": make(chan int)}); err == nil {
		t.Error("Send accepted a channel")
	}
	if err := p.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := f.log(0)[0]
	want := map[string]any{
		"small": float64(42), "big": "9223372036854775807", "ubig": "18446744073709551615",
		"num": 1.5, "bignum": "12345678901234567890", "dec": 0.1, "huge": "1e999",
		"ts": "2025-01-02T03:04:05.000000006Z", "null": nil,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %#v, want %#v", k, got[k], v)
		}
	}
}

func equal[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
