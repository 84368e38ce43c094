// Package notify wakes long-polling readers when a bucket's committed offset
// moves: the local writer publishes its own commits at once, and commits of
// other frontends arrive through the catalog's watch (PostgreSQL
// LISTEN/NOTIFY), whose connection also carries the table changes that
// invalidate cached tables (Follow).
package notify

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/strom-io/strom/catalog"
)

// Hub tracks the newest known next offset per bucket and wakes waiters.
// It is safe for concurrent use.
type Hub struct {
	mu      sync.Mutex
	buckets map[catalog.BucketID]*entry
}

type entry struct {
	next   int64
	resets int           // times the commit watch failed
	wake   chan struct{} // closed and replaced on every advance or reset
	waits  int           // times a Wait began to block on wake (tests wait for it)
}

// NewHub returns an empty hub.
func NewHub() *Hub { return &Hub{buckets: map[catalog.BucketID]*entry{}} }

// Publish records that b's committed records now end before next and wakes
// its waiters. Publishing an older offset changes nothing.
func (h *Hub) Publish(b catalog.BucketID, next int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.entry(b)
	if next > e.next {
		e.next = next
		close(e.wake)
		e.wake = make(chan struct{})
	}
}

// Next returns the newest next offset of b the hub knows: every record
// before it is committed (a lower bound of the catalog's next offset,
// which it lags while a commit's notification is on its way or was lost).
// ok is false when the hub knows none.
func (h *Hub) Next(b catalog.BucketID) (next int64, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e, ok := h.buckets[b]
	if !ok || e.next < 0 {
		return 0, false
	}
	return e.next, true
}

// Wait blocks until b's next offset is known to exceed after (or the
// commit watch failed and may have missed it), the timeout passes or ctx
// ends; it reports whether it was woken. Waiters re-read the catalog
// afterwards: a wake-up is a hint, not a promise.
func (h *Hub) Wait(ctx context.Context, b catalog.BucketID, after int64, timeout time.Duration) bool {
	h.mu.Lock()
	e := h.entry(b)
	if e.next > after {
		h.mu.Unlock()
		return true
	}
	wake, resets := e.wake, e.resets
	e.waits++
	h.mu.Unlock()

	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case <-wake:
		case <-t.C:
			return false
		case <-ctx.Done():
			return false
		}
		h.mu.Lock()
		if e.next > after || e.resets != resets {
			h.mu.Unlock()
			return true
		}
		wake = e.wake
		e.waits++
		h.mu.Unlock()
	}
}

// entry returns b's entry, creating it. The newest offset of every bucket
// seen is kept (a few dozen bytes per bucket), so that a commit published
// between a reader's catalog read and its Wait still wakes it. h.mu is held.
func (h *Hub) entry(b catalog.BucketID) *entry {
	e, ok := h.buckets[b]
	if !ok {
		e = &entry{next: -1, wake: make(chan struct{})}
		h.buckets[b] = e
	}
	return e
}

// Watcher is the catalog's change watch (catalog.Store.Watch).
type Watcher interface {
	Watch(ctx context.Context, ev catalog.Events) error
}

// Follow runs the catalog's watch until ctx ends, re-establishing it after
// failures. It publishes every commit to the hub; ev, if it has callbacks,
// gets every event too (its Commit after the hub's Publish), so one
// catalog connection serves both. A failed watch wakes every waiter so
// none sleeps through a commit it missed.
func (h *Hub) Follow(ctx context.Context, w Watcher, ev catalog.Events, logger *slog.Logger) {
	also := ev.Commit
	ev.Commit = func(b catalog.BucketID, next int64) {
		h.Publish(b, next)
		if also != nil {
			also(b, next)
		}
	}
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		start := time.Now()
		err := w.Watch(ctx, ev)
		if ctx.Err() != nil || errors.Is(err, context.Canceled) {
			return
		}
		h.wakeAll()
		if time.Since(start) > time.Minute {
			backoff = 100 * time.Millisecond
		}
		logger.Warn("catalog watch failed; retrying", slog.Any("err", err), slog.Duration("backoff", backoff))
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// wakeAll wakes every waiter without changing offsets.
func (h *Hub) wakeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range h.buckets {
		e.resets++
		close(e.wake)
		e.wake = make(chan struct{})
	}
}
