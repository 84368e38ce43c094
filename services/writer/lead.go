package writer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/strom-io/strom/catalog"
)

// Leads reports whether this writer currently leads b: it is loaded, its
// lease is neither fenced nor past its local deadline, and it is not being
// handed over.
func (w *Writer) Leads(b catalog.BucketID) bool {
	w.mu.Lock()
	bs, ok := w.buckets[b]
	w.mu.Unlock()
	if !ok {
		return false
	}
	select {
	case <-bs.ready:
	default:
		return false
	}
	return bs.err == nil && bs.lead != nil && !bs.lead.IsFenced() && !bs.lead.Expired() && !bs.handoff.Load()
}

// Led returns the buckets this writer leads.
func (w *Writer) Led() []catalog.BucketID {
	w.mu.Lock()
	ids := make([]catalog.BucketID, 0, len(w.buckets))
	for id := range w.buckets {
		ids = append(ids, id)
	}
	w.mu.Unlock()
	out := ids[:0]
	for _, id := range ids {
		if w.Leads(id) {
			out = append(out, id)
		}
	}
	return out
}

// Lead makes this writer the leader of b if it is not: it acquires the
// lease and recovers the bucket (log position, idempotent writers, KV state
// from its snapshot and changelog). It fails with ErrNotLeader while another
// frontend holds the lease, and while this writer drains.
func (w *Writer) Lead(ctx context.Context, b catalog.BucketID) error {
	t, err := w.store.GetTableByID(ctx, b.TableID)
	if err != nil {
		return fmt.Errorf("writer: bucket %s: %w", b, err)
	}
	_, err = w.bucket(ctx, t, b)
	return err
}

// Handoff gives b up cleanly so that another frontend can lead it at once:
// new writes to it are refused with ErrNotLeader (the caller forwards or
// retries them), its accepted batches are committed, a primary-key bucket's
// KV state is snapshotted (so the next leader replays little), and the
// lease is released. Requests that reach b meanwhile can wait for the end
// with AwaitHandoff. It is a no-op when this writer does not lead b, and
// waits for the handoff under way when one is.
func (w *Writer) Handoff(ctx context.Context, b catalog.BucketID, keepSnapshots int) error {
	w.mu.Lock()
	bs, ok := w.buckets[b]
	w.mu.Unlock()
	if !ok {
		return nil
	}
	select {
	case <-bs.ready:
	case <-ctx.Done():
		return ctx.Err()
	}
	if bs.err != nil {
		return nil
	}
	for {
		w.mu.Lock()
		if w.buckets[b] != bs || bs.lead.IsFenced() {
			w.mu.Unlock()
			return nil
		}
		if !bs.handoff.Load() {
			break // with w.mu held
		}
		// Another handoff is under way: wait for it, then start over (it
		// may have failed).
		under := bs.handoffDone
		w.mu.Unlock()
		select {
		case <-under:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	done := make(chan struct{})
	bs.handoffDone = done
	bs.handoff.Store(true)
	w.mu.Unlock()
	defer func() {
		// After the release: whoever waited re-reads the leaders and
		// finds the lease free (or this writer leading again).
		w.mu.Lock()
		if bs.handoffDone == done { // not yet the next handoff's, after a failure
			bs.handoffDone = nil
		}
		w.mu.Unlock()
		close(done)
	}()
	start := time.Now()
	if err := w.awaitCommitted(ctx, bs); err != nil {
		// Keep leading: the batches are still pending and the next flush
		// commits them.
		bs.handoff.Store(false)
		return fmt.Errorf("writer: hand %s over: %w", b, err)
	}
	if bs.kv != nil && bs.kv.AppliedOffset() > bs.snapshotOffset.Load() && keepSnapshots > 0 {
		if err := w.snapshot(ctx, bs, keepSnapshots); err != nil {
			w.logger.Warn("KV snapshot before handoff failed; the next leader replays more of the changelog", slog.String("bucket", b.String()), slog.Any("err", err))
		}
	}
	w.keeper.Release(ctx, bs.lead)
	why := handedOver
	if errors.Is(bs.lead.Err(), catalog.ErrNotFound) {
		why = dropped // meanwhile
	}
	select {
	case <-w.unload(bs, why): // KV state closed: its directory may be opened again
	case <-ctx.Done():
	}
	w.logger.Info("bucket handed over", slog.String("bucket", b.String()), slog.Int64("epoch", bs.lead.Lease.Epoch),
		slog.Int64("next_offset", bs.committed), slog.Duration("took", time.Since(start)))
	return nil
}

// AwaitHandoff waits until the handoff of b under way, if any, ends: b is
// then led elsewhere (its lease released, so the next leader acquires it at
// once), or here again if the handoff failed. It returns at once when b is
// not being handed over, and ctx's error if ctx ends first.
//
// A request that reaches b during a handoff waits here instead of being
// refused: the handoff commits b's accepted batches first, which takes as
// long as the object store and the catalog take, and no fixed number of
// re-routes is sure to outlast it.
func (w *Writer) AwaitHandoff(ctx context.Context, b catalog.BucketID) error {
	w.mu.Lock()
	var done chan struct{}
	if bs, ok := w.buckets[b]; ok {
		done = bs.handoffDone
	}
	w.mu.Unlock()
	if done == nil {
		return nil
	}
	if w.cfg.OnHandoffWait != nil {
		w.cfg.OnHandoffWait(b)
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// awaitCommitted waits until every batch bs accepted is committed, kicking
// flushes.
func (w *Writer) awaitCommitted(ctx context.Context, bs *bucketState) error {
	for {
		w.mu.Lock()
		var last *pending
		if n := len(bs.batches); n > 0 {
			last = bs.batches[n-1]
		}
		w.mu.Unlock()
		if last == nil {
			return nil
		}
		w.Kick()
		select {
		case <-last.done:
			if last.err != nil {
				return last.err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Drain hands every led bucket over (see Handoff) and leads no new bucket
// afterwards: writes that reach this writer fail with ErrNotLeader, which
// the caller forwards to the new leaders. It is the first step of a clean
// shutdown.
func (w *Writer) Drain(ctx context.Context, keepSnapshots int) error {
	w.draining.Store(true)
	w.mu.Lock()
	ids := make([]catalog.BucketID, 0, len(w.buckets))
	for id := range w.buckets {
		ids = append(ids, id)
	}
	w.mu.Unlock()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	sem := make(chan struct{}, 8)
	for _, id := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := w.Handoff(ctx, id, keepSnapshots); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	w.logger.Info("writer drained: every bucket handed over", slog.Int("buckets", len(ids)))
	return nil
}
