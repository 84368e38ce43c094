package client_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/strom-io/strom/api/client"
)

// produce writes n rows with k = from..from+n-1 through a Producer.
func produce(t *testing.T, c *client.Client, from, n int) {
	t.Helper()
	p := c.NewProducer("db", "t", client.WithLinger(0))
	sendN(t, p, from, n)
	if err := p.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// collect reads rows until the iteration ends or n rows arrived, and checks
// that every bucket's offsets are consecutive from its start.
func collect(t *testing.T, ctx context.Context, sub *client.Subscription, n int) ([]client.Row, error) {
	t.Helper()
	var rows []client.Row
	next := sub.Positions()
	for r, err := range sub.Rows(ctx) {
		if err != nil {
			return rows, err
		}
		if r.Offset != next[r.BucketID] {
			t.Fatalf("%v: got offset %d, want %d (duplicate or gap)", r.BucketID, r.Offset, next[r.BucketID])
		}
		next[r.BucketID]++
		rows = append(rows, r)
		if len(rows) == n {
			break
		}
	}
	return rows, nil
}

func TestSubscribeEarliestStopAtEnd(t *testing.T) {
	_, srv := newFakeServer(t, 3)
	c := client.New(srv.URL)
	produce(t, c, 0, 30)
	sub, err := c.Subscribe(t.Context(), "db", "t", client.StopAtEnd())
	if err != nil {
		t.Fatal(err)
	}
	if b := sub.Buckets(); len(b) != 3 {
		t.Fatalf("buckets %v", b)
	}
	produce(t, c, 30, 6) // after the end offsets were listed: not read
	rows, err := collect(t, t.Context(), sub, -1)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 30 {
		t.Fatalf("%d rows, want 30", len(rows))
	}
	for _, r := range rows {
		k := int(r.Values["k"].(float64))
		if k%3 != int(r.Bucket) || r.Offset != int64(k/3) || r.Timestamp.IsZero() {
			t.Errorf("row %+v", r)
		}
	}
	for b, off := range sub.Positions() {
		if off != 10 {
			t.Errorf("%v at %d, want 10", b, off)
		}
	}
}

func TestSubscribeFollow(t *testing.T) {
	_, srv := newFakeServer(t, 2)
	c := client.New(srv.URL)
	produce(t, c, 0, 4)
	sub, err := c.Subscribe(t.Context(), "db", "t", client.FromLatest(), client.WithMaxWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	produced := make(chan error, 1)
	go func() {
		time.Sleep(100 * time.Millisecond) // some long polls time out empty
		// Not produce(t, ...): t.Fatal must not run on this goroutine, and
		// the producer must finish even after the rows were seen.
		p := c.NewProducer("db", "t", client.WithLinger(0))
		for k := 4; k < 10; k++ {
			if err := p.Send(context.Background(), map[string]any{"k": k, "v": "row"}); err != nil {
				produced <- err
				return
			}
		}
		produced <- p.Close(context.Background())
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	rows, err := collect(t, ctx, sub, 6)
	if perr := <-produced; perr != nil {
		t.Fatalf("produce: %v", perr)
	}
	if err != nil || len(rows) != 6 {
		t.Fatalf("got %d rows, err %v; want 6", len(rows), err)
	}
	for _, r := range rows {
		if r.Values["k"].(float64) < 4 {
			t.Errorf("row %+v was written before FromLatest", r)
		}
	}
}

func TestSubscribeResumesAfterRetryableErrors(t *testing.T) {
	f, srv := newFakeServer(t, 2)
	c := client.New(srv.URL)
	produce(t, c, 0, 40)
	for range 6 {
		f.injectFetch(fault{err: unavailable()}, fault{err: connect.NewError(connect.CodeDeadlineExceeded, errors.New("slow"))}, fault{})
	}
	sub, err := c.Subscribe(t.Context(), "db", "t", client.StopAtEnd(),
		client.WithSubscribeRetry(client.RetryPolicy{InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := collect(t, t.Context(), sub, -1)
	if err != nil || len(rows) != 40 {
		t.Fatalf("got %d rows, err %v; want 40", len(rows), err)
	}
}

func TestSubscribeRowsAgainContinues(t *testing.T) {
	f, srv := newFakeServer(t, 2)
	c := client.New(srv.URL)
	produce(t, c, 0, 20)
	sub, err := c.Subscribe(t.Context(), "db", "t", client.StopAtEnd())
	if err != nil {
		t.Fatal(err)
	}
	first, err := collect(t, t.Context(), sub, 5)
	if err != nil || len(first) != 5 {
		t.Fatal(len(first), err)
	}
	// A non-retryable error ends the iteration; Rows goes on from Positions.
	time.Sleep(100 * time.Millisecond) // let fetches abandoned by the break reach the server first
	f.injectFetch(fault{err: connect.NewError(connect.CodePermissionDenied, errors.New("no"))})
	// The other bucket's rows may come before the error.
	before, err := collect(t, t.Context(), sub, -1)
	if connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("err %v, want permission_denied", err)
	}
	rest, err := collect(t, t.Context(), sub, -1)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[float64]bool{}
	for _, r := range slices.Concat(first, before, rest) {
		seen[r.Values["k"].(float64)] = true
	}
	if len(seen) != 20 {
		t.Errorf("%d distinct rows, want 20", len(seen))
	}
	// A new subscription from saved positions reads nothing more.
	sub2, err := c.Subscribe(t.Context(), "db", "t", client.FromPositions(sub.Positions()), client.StopAtEnd())
	if err != nil {
		t.Fatal(err)
	}
	if more, err := collect(t, t.Context(), sub2, -1); err != nil || len(more) != 0 {
		t.Errorf("from positions: %d rows, err %v", len(more), err)
	}
}

func TestSubscribeStartAndProjection(t *testing.T) {
	f, srv := newFakeServer(t, 2)
	c := client.New(srv.URL)
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 3 {
		f.now = func() time.Time { return base.Add(time.Duration(i) * time.Hour) }
		produce(t, c, i*4, 4) // 2 rows per bucket per hour
	}
	for _, tc := range []struct {
		opt  client.SubscribeOption
		want int
	}{
		{client.FromEarliest(), 12},
		{client.FromLatest(), 0},
		{client.FromOffset(5), 2},
		{client.FromTimestamp(base.Add(90 * time.Minute)), 4},
	} {
		sub, err := c.Subscribe(t.Context(), "db", "t", tc.opt, client.StopAtEnd(), client.WithColumns("k"))
		if err != nil {
			t.Fatal(err)
		}
		rows, err := collect(t, t.Context(), sub, -1)
		if err != nil || len(rows) != tc.want {
			t.Errorf("%d rows, err %v; want %d", len(rows), err, tc.want)
		}
		for _, r := range rows {
			if _, ok := r.Values["v"]; ok || len(r.Values) != 1 {
				t.Errorf("row %v: want only column k", r.Values)
			}
		}
	}
	sub, err := c.Subscribe(t.Context(), "db", "t", client.WithBuckets(1), client.StopAtEnd())
	if err != nil {
		t.Fatal(err)
	}
	rows, _ := collect(t, t.Context(), sub, -1)
	for _, r := range rows {
		if r.Bucket != 1 {
			t.Errorf("row from %v", r.BucketID)
		}
	}
	if len(rows) != 6 {
		t.Errorf("%d rows from bucket 1, want 6", len(rows))
	}
	if _, err := c.Subscribe(t.Context(), "db", "t", client.WithBuckets(7)); err == nil {
		t.Error("subscribing to a missing bucket succeeded")
	}
}

func TestSubscribeContextEnds(t *testing.T) {
	_, srv := newFakeServer(t, 1)
	c := client.New(srv.URL)
	sub, err := c.Subscribe(t.Context(), "db", "t")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err = collect(t, ctx, sub, -1)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err %v, want deadline exceeded", err)
	}
}

func TestClientHeadersAndGRPC(t *testing.T) {
	for _, proto := range []client.Protocol{client.ProtocolConnect, client.ProtocolGRPC} {
		t.Run(fmt.Sprint(proto), func(t *testing.T) {
			f, srv := newFakeServer(t, 1)
			c := client.New(srv.URL, client.WithProtocol(proto), client.WithBearerToken("s3cret"), client.WithHeader("X-Tenant", "a"))
			produce(t, c, 0, 1)
			if got := f.header.Get("Authorization"); got != "Bearer s3cret" {
				t.Errorf("Authorization %q", got)
			}
			if got := f.header.Get("X-Tenant"); got != "a" {
				t.Errorf("X-Tenant %q", got)
			}
			if ct := f.header.Get("Content-Type"); (proto == client.ProtocolGRPC) != (ct == "application/grpc") {
				t.Errorf("content type %q", ct)
			}
		})
	}
}
