package writer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/services/kvsnap"
)

// SnapshotStore is the part of the catalog KV snapshots use.
type SnapshotStore interface {
	PutKVSnapshot(ctx context.Context, s catalog.KVSnapshot) (catalog.KVSnapshot, error)
	ListKVSnapshots(ctx context.Context, b catalog.BucketID) ([]catalog.KVSnapshot, error)
	DeleteKVSnapshot(ctx context.Context, b catalog.BucketID, id int64) error
}

// SnapshotPrefix is where KV snapshot files live in the object store.
const SnapshotPrefix = "kv/"

// snapshotPrefix is where a bucket's KV snapshot files live.
func snapshotPrefix(b catalog.BucketID) string {
	return fmt.Sprintf("%s%d/%s/%d", SnapshotPrefix, b.TableID, partitionDir(b.Partition), b.Bucket)
}

// RunSnapshots takes an incremental KV snapshot of every primary-key bucket
// this writer leads whose state moved since its last snapshot, every
// interval, keeping the newest keep snapshots per bucket, until ctx ends.
func (w *Writer) RunSnapshots(ctx context.Context, interval time.Duration, keep int) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		w.mu.Lock()
		var due []*bucketState
		for _, bs := range w.buckets {
			if bs.kv != nil && bs.lead != nil && !bs.lead.IsFenced() && bs.kv.AppliedOffset() > bs.snapshotOffset.Load() {
				due = append(due, bs)
			}
		}
		w.mu.Unlock()
		for _, bs := range due {
			if err := w.snapshot(ctx, bs, keep); err != nil && ctx.Err() == nil {
				w.logger.Warn("KV snapshot failed", slog.String("bucket", bs.id.String()), slog.Any("err", err))
			}
		}
	}
}

// snapshot takes one snapshot of bs and prunes the old ones.
func (w *Writer) snapshot(ctx context.Context, bs *bucketState, keep int) error {
	store, ok := w.store.(SnapshotStore)
	if !ok {
		return errors.New("writer: the catalog does not keep KV snapshots")
	}
	bs.snapMu.Lock()
	defer bs.snapMu.Unlock()
	if bs.kvClosed {
		return nil // the bucket was dropped meanwhile
	}
	start := time.Now()
	// The applied offset read before the checkpoint is a lower bound of
	// what the snapshot holds; replaying the changelog from it is
	// idempotent.
	offset := bs.kv.AppliedOffset()
	scratch := filepath.Join(w.cfg.KVDir, "scratch")
	if err := os.MkdirAll(scratch, 0o755); err != nil {
		return err
	}
	m, err := kvsnap.Take(ctx, bs.kv.DB(), scratch, w.objects, snapshotPrefix(bs.id), bs.manifest)
	if err != nil {
		return err
	}
	rec, err := store.PutKVSnapshot(ctx, catalog.KVSnapshot{Bucket: bs.id, Epoch: bs.lead.Lease.Epoch, LogOffset: offset, Files: m.Files()})
	if err != nil {
		// The uploaded files are unreferenced; the janitor removes them.
		return fmt.Errorf("record snapshot: %w", err)
	}
	bs.manifest = m
	bs.snapshotOffset.Store(offset)
	w.logger.Info("KV snapshot taken", slog.String("bucket", bs.id.String()), slog.Int64("id", rec.ID),
		slog.Int64("log_offset", offset), slog.Int("files", len(m.Entries)), slog.Duration("took", time.Since(start)))
	return w.prune(ctx, store, bs, keep)
}

// prune deletes the catalog records of all but the newest keep snapshots,
// then the files only they referenced.
func (w *Writer) prune(ctx context.Context, store SnapshotStore, bs *bucketState, keep int) error {
	snaps, err := store.ListKVSnapshots(ctx, bs.id) // newest first
	if err != nil || len(snaps) <= keep {
		return err
	}
	var kept, dropped []*kvsnap.Manifest
	for i, s := range snaps {
		key, ok := kvsnap.ManifestKey(s.Files)
		if !ok {
			continue
		}
		m, err := kvsnap.Load(ctx, w.objects, key)
		if err != nil {
			return fmt.Errorf("load snapshot %d: %w", s.ID, err)
		}
		if i < keep {
			kept = append(kept, m)
			continue
		}
		if err := store.DeleteKVSnapshot(ctx, bs.id, s.ID); err != nil && !errors.Is(err, catalog.ErrNotFound) {
			return err
		}
		dropped = append(dropped, m)
	}
	for _, key := range kvsnap.Unreferenced(kept, dropped) {
		if err := w.objects.Delete(ctx, key); err != nil {
			return err
		}
	}
	return nil
}

// restoreSnapshot restores the newest KV snapshot of b into dir, which does
// not exist, and returns its manifest; nil when b has none.
func (w *Writer) restoreSnapshot(ctx context.Context, b catalog.BucketID, dir string) (*kvsnap.Manifest, error) {
	store, ok := w.store.(SnapshotStore)
	if !ok {
		return nil, nil
	}
	snaps, err := store.ListKVSnapshots(ctx, b)
	if err != nil || len(snaps) == 0 {
		return nil, err
	}
	key, ok := kvsnap.ManifestKey(snaps[0].Files)
	if !ok {
		return nil, fmt.Errorf("snapshot %d of bucket %s names no manifest", snaps[0].ID, b)
	}
	start := time.Now()
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, err
	}
	if err := kvsnap.Restore(ctx, w.objects, key, dir); err != nil {
		return nil, fmt.Errorf("restore snapshot %d of bucket %s: %w", snaps[0].ID, b, err)
	}
	m, err := kvsnap.Load(ctx, w.objects, key)
	if err != nil {
		return nil, err
	}
	w.logger.Info("KV snapshot restored", slog.String("bucket", b.String()), slog.Int64("id", snaps[0].ID),
		slog.Int64("log_offset", snaps[0].LogOffset), slog.Duration("took", time.Since(start)))
	return m, nil
}
