package writer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/services/kv"
)

// bucket returns the loaded state of bucket b, leading it first if this
// writer does not yet: acquire the lease, read the committed offset and the
// idempotent writers' sequences, and take back WAL records that were never
// committed.
func (w *Writer) bucket(ctx context.Context, t catalog.Table, b catalog.BucketID) (*bucketState, error) {
	w.mu.Lock()
	bs, ok := w.buckets[b]
	if ok && bs.lead != nil && bs.lead.IsFenced() {
		w.mu.Unlock()
		w.forget(bs)
		w.mu.Lock()
		bs, ok = w.buckets[b]
	}
	if !ok && w.draining.Load() {
		w.mu.Unlock()
		return nil, fmt.Errorf("%w %s: this frontend is shutting down", ErrNotLeader, b)
	}
	if !ok {
		bs = &bucketState{id: b, table: t, ready: make(chan struct{}), writers: map[string]*writerState{}}
		w.buckets[b] = bs
		w.mu.Unlock()
		// The load serves every request that waits for the bucket, so the
		// first one's cancellation must not fail it: it runs on its own,
		// bounded by loadTimeout.
		loadCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), loadTimeout)
		go func() {
			defer cancel()
			start := time.Now()
			bs.err = w.load(loadCtx, bs)
			if bs.err == nil && w.cfg.OnLead != nil {
				w.cfg.OnLead(b, time.Since(start))
			}
			if bs.err != nil {
				w.mu.Lock()
				delete(w.buckets, b)
				w.mu.Unlock()
			} else {
				go w.watch(bs)
			}
			close(bs.ready)
		}()
	} else {
		w.mu.Unlock()
	}
	select {
	case <-bs.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if bs.err != nil {
		return nil, bs.err
	}
	return bs, nil
}

// loadTimeout bounds taking a bucket over: the lease, the catalog reads, and
// for a primary-key bucket restoring its KV snapshot and replaying the
// changelog after it.
const loadTimeout = 10 * time.Minute

func (w *Writer) load(ctx context.Context, bs *bucketState) error {
	// A partition's bucket has no row before its first lease.
	before, err := w.store.GetBucket(ctx, bs.id)
	if err != nil && !errors.Is(err, catalog.ErrNotFound) {
		return fmt.Errorf("writer: bucket %s: %w", bs.id, err)
	}
	lead, err := w.keeper.Acquire(ctx, bs.id)
	if errors.Is(err, catalog.ErrLeaseHeld) {
		return fmt.Errorf("%w %s: %w", ErrNotLeader, bs.id, err)
	}
	if err != nil {
		return err
	}
	// Re-read after acquiring: the previous leader may have committed
	// until its epoch ended.
	after, err := w.store.GetBucket(ctx, bs.id)
	if err != nil {
		return fmt.Errorf("writer: bucket %s: %w", bs.id, err)
	}
	bs.committed = after.NextOffset
	seqs, err := w.store.WriterSequences(ctx, bs.id)
	if err != nil {
		return fmt.Errorf("writer: bucket %s: writer sequences: %w", bs.id, err)
	}
	writers := map[string]*writerState{}
	for _, s := range seqs {
		writers[s.WriterID] = &writerState{seq: s.Sequence, base: s.BaseOffset, end: s.EndOffset}
	}
	var state *kv.Bucket
	if bs.table.IsPrimaryKey() {
		if state, err = w.openKV(ctx, bs); err != nil {
			return err
		}
	}

	w.mu.Lock()
	bs.writers = writers
	bs.kv = state
	bs.lead = lead
	bs.next = bs.committed
	records := w.replay[bs.id]
	delete(w.replay, bs.id)
	w.mu.Unlock()
	if err := w.takeBack(bs, before, records); err != nil {
		return err
	}
	if state != nil {
		// New writes must merge with the taken-back changes, which are not
		// in the pre-write buffer: commit them before serving.
		return w.awaitCommitted(ctx, bs)
	}
	return nil
}

// openKV opens the local KV state of a primary-key bucket — restoring the
// newest snapshot from the object store when there is none on local disk —
// and brings it up to the committed end of its changelog, replaying what
// the state lacks from the log.
func (w *Writer) openKV(ctx context.Context, bs *bucketState) (*kv.Bucket, error) {
	t, b, committed := bs.table, bs.id, bs.committed
	dir := w.kvDir(b)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		m, err := w.restoreSnapshot(ctx, b, dir)
		if err != nil {
			return nil, fmt.Errorf("writer: bucket %s: %w", b, err)
		}
		bs.manifest = m
	}
	state, err := kv.Open(dir, t, kv.Options{MaxPendingBytes: w.cfg.KVMaxPendingBytes})
	if err != nil {
		return nil, fmt.Errorf("writer: bucket %s: open KV state: %w", b, err)
	}
	if applied := state.AppliedOffset(); applied > committed {
		// The local state is ahead of the catalog: it cannot be (the KV
		// state is applied only after commits); start over from the log.
		_ = state.Close()
		w.logger.Warn("local KV state ahead of the log; rebuilding it", slog.String("bucket", b.String()), slog.Int64("applied", applied), slog.Int64("committed", committed))
		if err := os.RemoveAll(dir); err != nil {
			return nil, err
		}
		bs.manifest = nil
		if state, err = kv.Open(dir, t, kv.Options{MaxPendingBytes: w.cfg.KVMaxPendingBytes}); err != nil {
			return nil, err
		}
	}
	from := state.AppliedOffset()
	if from < committed {
		start := time.Now()
		err := w.changelog.Read(ctx, t, b, from, committed, func(rec arrow.RecordBatch, end int64) error {
			return state.ApplyChangelog(rec, end)
		})
		if err != nil {
			_ = state.Close()
			return nil, fmt.Errorf("writer: bucket %s: replay changelog [%d, %d): %w", b, from, committed, err)
		}
		w.logger.Info("KV state caught up from the changelog", slog.String("bucket", b.String()),
			slog.Int64("from", from), slog.Int64("to", committed), slog.Int64("rows", state.Count()), slog.Duration("took", time.Since(start)))
	}
	return state, nil
}

// kvDir is where the KV state of primary-key bucket b lives:
// <KVDir>/<table id>/<partition>/<bucket>.
func (w *Writer) kvDir(b catalog.BucketID) string {
	return filepath.Join(w.cfg.KVDir, fmt.Sprint(b.TableID), partitionDir(b.Partition), fmt.Sprint(b.Bucket))
}

// partitionDir names a partition's directory; partition values are user
// data, so they are escaped.
func partitionDir(p string) string {
	if p == "" {
		return "_"
	}
	return "p-" + url.PathEscape(p)
}

// takeBack re-queues WAL records of bs that were never committed: those of
// the epoch the catalog had before this writer acquired the bucket (nobody
// else led it since), from the committed offset on, without gaps. Others
// were fenced, and are dropped with a log line.
func (w *Writer) takeBack(bs *bucketState, before catalog.BucketState, records []walRecord) error {
	slices.SortFunc(records, func(a, b walRecord) int { return compareInt64(a.BaseOffset, b.BaseOffset) })
	dropped := 0
	for _, r := range records {
		if r.Epoch != before.Epoch || r.BaseOffset < bs.next {
			if r.BaseOffset >= bs.committed {
				dropped++
			}
			continue
		}
		if r.BaseOffset != bs.next {
			dropped++
			continue
		}
		rec, err := decodeIPC(r.IPC)
		if err != nil {
			return fmt.Errorf("writer: bucket %s: WAL record at offset %d: %w", bs.id, r.BaseOffset, err)
		}
		p := &pending{
			base: r.BaseOffset, rows: rec.NumRows(), ts: r.Timestamp, schemaVersion: r.SchemaVersion,
			rec: rec, size: batchSize(rec), writer: r.WriterID, seq: r.Sequence,
			walDone: make(chan struct{}), done: make(chan struct{}),
		}
		close(p.walDone)
		bs.next += p.rows
		bs.batches = append(bs.batches, p)
		if r.WriterID != "" {
			if ws := bs.writers[r.WriterID]; ws == nil || ws.seq <= r.Sequence {
				bs.writers[r.WriterID] = &writerState{seq: r.Sequence, base: p.base, end: p.base + p.rows, p: p}
			}
		}
		w.mu.Lock()
		w.pendingBytes += p.size
		w.mu.Unlock()
	}
	if len(bs.batches) > 0 || dropped > 0 {
		w.logger.Info("WAL records taken back", slog.String("bucket", bs.id.String()),
			slog.Int("recommitting", len(bs.batches)), slog.Int("dropped_fenced", dropped),
			slog.Int64("committed_offset", bs.committed))
	}
	return nil
}

func compareInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// decodeIPC reads the one batch of a WAL record. The bytes were written by
// this process and passed the WAL's checksum.
func decodeIPC(data []byte) (arrow.RecordBatch, error) {
	r, err := ipc.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	defer r.Release()
	if !r.Next() {
		if r.Err() != nil {
			return nil, r.Err()
		}
		return nil, errors.New("no batch")
	}
	rec := r.RecordBatch()
	rec.Retain()
	return rec, nil
}

// watch unloads bs as soon as its leadership ends outside the request
// path, when the lease keeper learns it: the bucket no longer exists (its
// table or database was dropped), or another frontend took it over. A
// released leadership is unloaded by Handoff, or ends with the writer.
func (w *Writer) watch(bs *bucketState) {
	<-bs.lead.Fenced()
	switch err := bs.lead.Err(); {
	case errors.Is(err, catalog.ErrNotFound):
		w.drop(bs)
	case errors.Is(err, catalog.ErrFenced):
		w.forget(bs)
	}
}

// unloadReason says why a bucket is unloaded.
type unloadReason int

const (
	handedOver unloadReason = iota // nothing is pending
	lost                           // another frontend leads it now
	dropped                        // its table no longer exists
)

// forget drops a bucket whose leadership ended: its uncommitted batches
// fail with ErrNotLeader (their writers retry against the new leader).
func (w *Writer) forget(bs *bucketState) { w.unload(bs, lost) }

// drop unloads a bucket whose table was dropped: its uncommitted batches
// fail with an error wrapping catalog.ErrNotFound, its KV state is closed
// and its directory removed, and the WAL is truncated past its records
// (recovery would discard them anyway: their table is gone).
func (w *Writer) drop(bs *bucketState) {
	w.unload(bs, dropped)
	w.truncateWAL()
}

// unload drops bs from the led buckets, failing its uncommitted batches
// unless it was handed over (then none is left). The returned channel is
// closed once the bucket's KV state is closed (and, for a dropped bucket,
// its directory removed).
func (w *Writer) unload(bs *bucketState, why unloadReason) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	closed := make(chan struct{})
	if w.buckets[bs.id] != bs {
		close(closed)
		return closed
	}
	delete(w.buckets, bs.id)
	failed := len(bs.batches)
	for _, p := range bs.batches {
		w.pendingBytes -= p.size
		if why == dropped {
			p.err = fmt.Errorf("writer: bucket %s: its table was dropped before the batch was committed: %w", bs.id, catalog.ErrNotFound)
		} else {
			p.err = fmt.Errorf("%w %s: leadership lost before commit", ErrNotLeader, bs.id)
		}
		p.rec.Release()
		p.rec = nil
		close(p.done)
	}
	bs.batches = nil
	if bs.kv != nil {
		// Its pre-write buffer dies with it; the next leader rebuilds the
		// state from the log.
		// Close once no snapshot reads it any more (a snapshot upload
		// may be running); without blocking the writer meanwhile.
		dir := w.kvDir(bs.id)
		go func() {
			defer close(closed)
			bs.snapMu.Lock()
			defer bs.snapMu.Unlock()
			bs.kvClosed = true
			_ = bs.kv.Close()
			if why == dropped {
				w.removeKVDir(bs.id, dir)
			}
		}()
	} else {
		close(closed)
	}
	switch why {
	case lost:
		w.logger.Warn("bucket dropped: leadership lost", slog.String("bucket", bs.id.String()))
	case dropped:
		w.logger.Info("bucket unloaded: its table was dropped", slog.String("bucket", bs.id.String()), slog.Int("failed_batches", failed))
	}
	return closed
}

// removeKVDir removes the KV directory of bucket b of a dropped table, and
// its partition's and table's directories once they are empty.
func (w *Writer) removeKVDir(b catalog.BucketID, dir string) {
	if err := os.RemoveAll(dir); err != nil {
		w.logger.Warn("removing the KV state of a dropped table failed", slog.String("bucket", b.String()), slog.String("dir", dir), slog.Any("err", err))
		return
	}
	part := filepath.Dir(dir)
	if os.Remove(part) == nil { // fails while other buckets' directories remain
		_ = os.Remove(filepath.Dir(part))
	}
}
