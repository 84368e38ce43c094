package writer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"

	"github.com/strom-io/strom/catalog"
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
	if !ok {
		bs = &bucketState{id: b, table: t, ready: make(chan struct{}), writers: map[string]*writerState{}}
		w.buckets[b] = bs
		w.mu.Unlock()
		bs.err = w.load(ctx, bs)
		if bs.err != nil {
			w.mu.Lock()
			delete(w.buckets, b)
			w.mu.Unlock()
		}
		close(bs.ready)
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

func (w *Writer) load(ctx context.Context, bs *bucketState) error {
	states, err := w.store.ListBuckets(ctx, bs.id.TableID)
	if err != nil {
		return fmt.Errorf("writer: bucket %s: %w", bs.id, err)
	}
	var before catalog.BucketState
	for _, s := range states {
		if s.BucketID == bs.id {
			before = s
		}
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
	states, err = w.store.ListBuckets(ctx, bs.id.TableID)
	if err != nil {
		return fmt.Errorf("writer: bucket %s: %w", bs.id, err)
	}
	for _, s := range states {
		if s.BucketID == bs.id {
			bs.committed = s.NextOffset
		}
	}
	seqs, err := w.store.WriterSequences(ctx, bs.id)
	if err != nil {
		return fmt.Errorf("writer: bucket %s: writer sequences: %w", bs.id, err)
	}
	for _, s := range seqs {
		bs.writers[s.WriterID] = &writerState{seq: s.Sequence, base: s.BaseOffset, end: s.EndOffset}
	}
	bs.lead = lead
	bs.next = bs.committed

	w.mu.Lock()
	records := w.replay[bs.id]
	delete(w.replay, bs.id)
	w.mu.Unlock()
	return w.takeBack(bs, before, records)
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

// forget drops a bucket whose leadership ended: its uncommitted batches
// fail with ErrNotLeader (their writers retry against the new leader).
func (w *Writer) forget(bs *bucketState) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.buckets[bs.id] != bs {
		return
	}
	delete(w.buckets, bs.id)
	for _, p := range bs.batches {
		w.pendingBytes -= p.size
		p.err = fmt.Errorf("%w %s: leadership lost before commit", ErrNotLeader, bs.id)
		p.rec.Release()
		close(p.done)
	}
	bs.batches = nil
	w.logger.Warn("bucket dropped: leadership lost", slog.String("bucket", bs.id.String()))
}
