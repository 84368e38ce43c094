package notify

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/strom-io/strom/catalog"
)

func TestHubWakesWaiters(t *testing.T) {
	h := NewHub()
	b := catalog.BucketID{TableID: 1, Bucket: 2}
	other := catalog.BucketID{TableID: 1, Bucket: 3}
	done := make(chan bool)
	go func() { done <- h.Wait(context.Background(), b, 10, 10*time.Second) }()
	// Let the waiter register, then publish to another bucket and an old offset.
	for {
		h.mu.Lock()
		_, ok := h.buckets[b]
		h.mu.Unlock()
		if ok {
			break
		}
		time.Sleep(time.Millisecond)
	}
	h.Publish(other, 100)
	h.Publish(b, 5)
	select {
	case <-done:
		t.Fatal("woken by an unrelated publish")
	case <-time.After(50 * time.Millisecond):
	}
	h.Publish(b, 11)
	select {
	case woken := <-done:
		if !woken {
			t.Fatal("Wait returned false after a publish")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waiter not woken")
	}
	// A commit published before the waiter arrives still counts.
	if !h.Wait(context.Background(), b, 10, time.Millisecond) {
		t.Fatal("a later waiter did not see the published offset")
	}
}

func TestHubTimeoutAndCancel(t *testing.T) {
	h := NewHub()
	b := catalog.BucketID{TableID: 1}
	if h.Wait(context.Background(), b, 0, 10*time.Millisecond) {
		t.Fatal("woken without a publish")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if h.Wait(ctx, b, 0, time.Minute) {
		t.Fatal("woken by a cancelled context")
	}
}

// fakeWatch fails once, then delivers one commit and blocks.
type fakeWatch struct{ calls int }

func (f *fakeWatch) WatchCommits(ctx context.Context, fn func(catalog.BucketID, int64)) error {
	f.calls++
	if f.calls == 1 {
		return catalog.ErrUnavailable
	}
	fn(catalog.BucketID{TableID: 7}, 3)
	<-ctx.Done()
	return ctx.Err()
}

func TestFollowRetriesAndPublishes(t *testing.T) {
	h := NewHub()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &fakeWatch{}
	woken := make(chan bool)
	go func() { woken <- h.Wait(ctx, catalog.BucketID{TableID: 7}, 0, 10*time.Second) }()
	time.Sleep(10 * time.Millisecond)
	go h.Follow(ctx, w, slog.New(slog.DiscardHandler))
	if !<-woken {
		t.Fatal("waiter not woken through Follow")
	}
	cancel()
}
