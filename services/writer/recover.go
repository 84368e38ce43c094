package writer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"

	"github.com/strom-io/strom/catalog"
)

// Recover reads the WAL left by an earlier run and leads every bucket it
// has records for, so that records which were acknowledged with `wal`
// durability but never committed are committed now. Records of buckets
// another leader took over meanwhile are dropped (they were fenced), as
// are records of dropped tables, whose local KV state is removed too.
// Call it once, before serving writes.
func (w *Writer) Recover(ctx context.Context) error {
	if err := w.removeDroppedKV(ctx); err != nil {
		return err
	}
	replay := map[catalog.BucketID][]walRecord{}
	n := 0
	err := w.log.Replay(0, func(lsn uint64, payload []byte) error {
		r, err := decodeWALRecord(payload)
		if err != nil {
			return fmt.Errorf("WAL record %d: %w", lsn, err)
		}
		// The payload buffer may be reused after fn returns.
		r.IPC = append([]byte(nil), r.IPC...)
		replay[r.Bucket] = append(replay[r.Bucket], r)
		if lsn > w.lastLSN.Load() {
			w.lastLSN.Store(lsn)
		}
		n++
		return nil
	})
	if err != nil {
		return fmt.Errorf("writer: replay WAL: %w", err)
	}
	if n == 0 {
		return nil
	}
	w.mu.Lock()
	w.replay = replay
	w.mu.Unlock()
	w.logger.Info("WAL replayed", slog.Int("records", n), slog.Int("buckets", len(replay)))
	for b, records := range replay {
		t, err := w.store.GetTableByID(ctx, b.TableID)
		if errors.Is(err, catalog.ErrNotFound) {
			w.logger.Warn("WAL records of a dropped table discarded", slog.Int64("table_id", b.TableID))
			continue
		}
		if err != nil {
			return fmt.Errorf("writer: recover bucket %s: %w", b, err)
		}
		pending, err := w.uncommitted(ctx, b, records)
		if errors.Is(err, catalog.ErrNotFound) { // dropped since GetTableByID
			w.logger.Warn("WAL records of a dropped table discarded", slog.Int64("table_id", b.TableID))
			continue
		}
		if err != nil {
			return fmt.Errorf("writer: recover bucket %s: %w", b, err)
		}
		if !pending {
			// Every record was committed (or given up by a fenced
			// leader): nothing to take back, and no reason to lead it.
			continue
		}
		if _, err := w.bucket(ctx, t, b); err != nil {
			if errors.Is(err, ErrNotLeader) {
				w.logger.Warn("uncommitted WAL records of a bucket led elsewhere discarded (acknowledged with wal durability, fenced by the new leader)",
					slog.String("bucket", b.String()), slog.Any("err", err))
				continue
			}
			if errors.Is(err, catalog.ErrNotFound) {
				w.logger.Warn("WAL records of a dropped table discarded", slog.Int64("table_id", b.TableID))
				continue
			}
			return err
		}
	}
	w.mu.Lock()
	w.replay = nil
	w.mu.Unlock()
	w.Kick()
	return nil
}

// uncommitted reports whether any of b's WAL records starts at or after the
// bucket's committed next offset: a batch is committed whole or not at
// all, so a record below it was committed (or fenced and replaced).
func (w *Writer) uncommitted(ctx context.Context, b catalog.BucketID, records []walRecord) (bool, error) {
	st, err := w.store.GetBucket(ctx, b)
	if err != nil && !errors.Is(err, catalog.ErrNotFound) {
		return false, err
	}
	next := st.NextOffset // 0 for a bucket without a row
	for _, r := range records {
		if r.BaseOffset >= next {
			return true, nil
		}
	}
	return false, nil
}

// removeDroppedKV removes the local KV state of tables dropped while this
// frontend did not lead their buckets (it was down, or crashed before it
// removed them): <KVDir>/<table id> for every table id the catalog no
// longer knows.
func (w *Writer) removeDroppedKV(ctx context.Context) error {
	entries, err := os.ReadDir(w.cfg.KVDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("writer: list KV states: %w", err)
	}
	for _, e := range entries {
		id, err := strconv.ParseInt(e.Name(), 10, 64)
		if err != nil || !e.IsDir() {
			continue // the snapshot scratch directory
		}
		_, err = w.store.GetTableByID(ctx, id)
		if !errors.Is(err, catalog.ErrNotFound) {
			continue // kept, or the catalog did not answer: next start
		}
		dir := filepath.Join(w.cfg.KVDir, e.Name())
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("writer: remove the KV state of dropped table %d: %w", id, err)
		}
		w.logger.Info("KV state of a dropped table removed", slog.Int64("table_id", id), slog.String("dir", dir))
	}
	return nil
}
