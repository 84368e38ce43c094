package notify

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strom-io/strom/catalog"
)

// waitWaits waits until Waits on b have begun to block n times in all.
// A Wait that returns meanwhile on done fails the test.
func waitWaits(t *testing.T, h *Hub, b catalog.BucketID, n int, done <-chan bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		select {
		case woken := <-done:
			t.Fatalf("Wait returned %v while %d blocking Waits were awaited", woken, n)
		default:
		}
		h.mu.Lock()
		got := 0
		if e := h.buckets[b]; e != nil {
			got = e.waits
		}
		h.mu.Unlock()
		if got == n {
			return
		}
		if got > n || time.Now().After(deadline) {
			t.Fatalf("Waits on %s blocked %d times, want %d", b, got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestHubWakesWaiters(t *testing.T) {
	h := NewHub()
	b := catalog.BucketID{TableID: 1, Bucket: 2}
	other := catalog.BucketID{TableID: 1, Bucket: 3}
	done := make(chan bool, 1)
	go func() { done <- h.Wait(context.Background(), b, 10, time.Minute) }()
	waitWaits(t, h, b, 1, done) // the waiter blocks
	// A publish to another bucket does not wake it; one of an older
	// offset wakes it to look, and it blocks again.
	h.Publish(other, 100)
	h.Publish(b, 5)
	waitWaits(t, h, b, 2, done) // fails if the Wait returned
	h.Publish(b, 11)
	if !<-done {
		t.Fatal("Wait returned false after a publish")
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

// fakeWatch fails once, then, once proceed is closed, delivers a table
// change and a commit and blocks.
type fakeWatch struct {
	calls   atomic.Int32
	proceed chan struct{}
}

func (f *fakeWatch) Watch(ctx context.Context, ev catalog.Events) error {
	if f.calls.Add(1) == 1 {
		return catalog.ErrUnavailable
	}
	select {
	case <-f.proceed:
	case <-ctx.Done():
		return ctx.Err()
	}
	ev.Table(catalog.TableChange{ID: 7})
	ev.Commit(catalog.BucketID{TableID: 7}, 3)
	<-ctx.Done()
	return ctx.Err()
}

// TestFollowRetriesAndPublishes: a failed commit watch wakes the waiters
// (they may have missed a commit); the watch is re-established, and a
// commit it delivers wakes a waiter blocked on it.
func TestFollowRetriesAndPublishes(t *testing.T) {
	h := NewHub()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b := catalog.BucketID{TableID: 7}
	w := &fakeWatch{proceed: make(chan struct{})}
	woken := make(chan bool, 1)
	go func() { woken <- h.Wait(ctx, b, 0, time.Minute) }()
	waitWaits(t, h, b, 1, woken)
	tables, commits := make(chan catalog.TableChange, 1), make(chan int64, 1)
	go h.Follow(ctx, w, catalog.Events{
		Table:  func(c catalog.TableChange) { tables <- c },
		Commit: func(_ catalog.BucketID, next int64) { commits <- next },
	}, slog.New(slog.DiscardHandler))
	if !<-woken {
		t.Fatal("waiter not woken by the failed watch")
	}
	// The retried watch is to deliver a commit: a new waiter blocks first.
	go func() { woken <- h.Wait(ctx, b, 0, time.Minute) }()
	waitWaits(t, h, b, 2, woken)
	if w.calls.Load() > 2 {
		t.Fatalf("%d watches, want at most 2", w.calls.Load())
	}
	close(w.proceed)
	if !<-woken {
		t.Fatal("waiter not woken by the commit of the re-established watch")
	}
	h.mu.Lock()
	next := h.buckets[b].next
	h.mu.Unlock()
	if next != 3 || w.calls.Load() != 2 {
		t.Fatalf("after the commit: next offset %d, %d watches; want 3 and 2", next, w.calls.Load())
	}
	if c := <-tables; c.ID != 7 {
		t.Fatalf("table change passed on = %+v, want table 7", c)
	}
	if next := <-commits; next != 3 {
		t.Fatalf("commit passed on = %d, want 3", next)
	}
	cancel()
}
