package writer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/google/uuid"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/services/segment"
)

// ObjectPrefix is where segment objects live in the object store.
const ObjectPrefix = "segments/"

// attempt is one flush: the batches it carries per bucket and its segment.
type attempt struct {
	seg     catalog.Segment
	data    []byte
	put     bool // the object is in the object store
	buckets []*bucketState
	batches [][]*pending // per bucket, a prefix of its batches
	tries   int
}

// Run flushes every FlushInterval, or sooner when FlushBytes are pending,
// until ctx ends; then it flushes what is left (bounded by the commit
// timeout) and returns.
func (w *Writer) Run(ctx context.Context) error {
	t := time.NewTicker(w.cfg.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return w.drain()
		case <-t.C:
		case <-w.kick:
		}
		w.flush(ctx)
	}
}

// drain stops accepting writes and commits what is pending.
func (w *Writer) drain() error {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.CommitTimeout)
	defer cancel()
	for ctx.Err() == nil {
		w.flush(ctx)
		w.mu.Lock()
		left := w.pendingBytes
		w.mu.Unlock()
		if left == 0 && w.retry == nil {
			// Everything is committed: the WAL holds nothing to recover.
			if last := w.lastLSN.Load(); last > 0 {
				if err := w.log.TruncateBefore(last + 1); err != nil {
					w.logger.Warn("WAL truncation at shutdown failed", slog.Any("err", err))
				}
			}
			return nil
		}
		time.Sleep(w.cfg.FlushInterval)
	}
	return fmt.Errorf("writer: %d bytes not committed at shutdown (acknowledged `wal` writes stay in the WAL)", w.pendingBytes)
}

// flush commits one segment object: the retried attempt if the last
// commit's outcome is unknown, else every bucket's pending batches.
func (w *Writer) flush(ctx context.Context) {
	a := w.retry
	if a == nil {
		var err error
		if a, err = w.collect(); err != nil {
			w.logger.Error("flush: encode segment", slog.Any("err", err))
			return
		}
		if a == nil {
			return
		}
	}
	w.retry = a
	a.tries++
	start := time.Now()
	report := func(err error) {
		if w.cfg.OnFlush == nil {
			return
		}
		var rows int64
		for _, r := range a.seg.Ranges {
			rows += r.EndOffset - r.BaseOffset
		}
		w.cfg.OnFlush(FlushInfo{Bytes: a.seg.Size, Buckets: len(a.seg.Ranges), Rows: rows, Duration: time.Since(start), Err: err})
	}
	if !a.put {
		if err := w.objects.Put(ctx, a.seg.ObjectKey, bytes.NewReader(a.data), int64(len(a.data))); err != nil {
			if ctx.Err() == nil {
				w.logger.Warn("flush: segment upload failed; retrying", slog.String("object", a.seg.ObjectKey), slog.Int("try", a.tries), slog.Any("err", err))
			}
			report(err)
			return
		}
		a.put = true
	}
	err := w.store.CommitSegment(ctx, a.seg)
	if err != nil && a.tries > 1 && w.registered(ctx, a) {
		// An earlier try of this very commit succeeded but its answer was
		// lost (the catalog connection broke after the commit).
		err = nil
	}
	report(err)
	switch {
	case err == nil:
		w.retry = nil
		w.committed(a)
	case errors.Is(err, catalog.ErrFenced), errors.Is(err, catalog.ErrOffsetGap), errors.Is(err, catalog.ErrNotFound):
		w.retry = nil
		w.refence(ctx, a, err)
	default:
		if ctx.Err() == nil {
			w.logger.Warn("flush: segment commit failed; retrying", slog.String("object", a.seg.ObjectKey), slog.Int("try", a.tries), slog.Any("err", err))
		}
	}
}

// registered reports whether a's segment is already in the catalog.
func (w *Writer) registered(ctx context.Context, a *attempt) bool {
	r := a.seg.Ranges[0]
	ranges, err := w.store.ListSegments(ctx, r.Bucket, r.BaseOffset, 1)
	return err == nil && len(ranges) == 1 && ranges[0].ObjectKey == a.seg.ObjectKey && ranges[0].BaseOffset == r.BaseOffset
}

// collect builds the next attempt from every bucket's pending batches.
func (w *Writer) collect() (*attempt, error) {
	a := &attempt{}
	var sections []segment.Section
	var epochs []int64
	w.mu.Lock()
	for _, bs := range w.buckets {
		if len(bs.batches) == 0 || bs.lead == nil {
			continue
		}
		if bs.lead.IsFenced() {
			continue // dropped by the next write or refence
		}
		codec, err := segment.ParseCodec(bs.table.Properties[catalog.PropLogCompression])
		if err != nil {
			codec = segment.CodecZstd
		}
		batches := append([]*pending(nil), bs.batches...)
		sec := segment.Section{TableID: bs.id.TableID, Partition: bs.id.Partition, Bucket: bs.id.Bucket, Codec: codec}
		for _, p := range batches {
			p.rec.Retain() // a fenced bucket's batches may be released meanwhile
			sec.Batches = append(sec.Batches, segment.Batch{BaseOffset: p.base, Timestamp: p.ts, SchemaVersion: p.schemaVersion, Record: p.rec})
		}
		sections = append(sections, sec)
		epochs = append(epochs, bs.lead.Lease.Epoch)
		a.buckets = append(a.buckets, bs)
		a.batches = append(a.batches, batches)
	}
	w.mu.Unlock()
	if len(sections) == 0 {
		return nil, nil
	}
	// Encoding (compression) takes the longest part of a flush: appends
	// go on meanwhile.
	data, infos, err := segment.Encode(sections)
	for _, sec := range sections {
		for _, b := range sec.Batches {
			b.Record.Release()
		}
	}
	if err != nil {
		return nil, err
	}
	a.data = data
	a.seg = catalog.Segment{ObjectKey: newObjectKey(), Size: int64(len(data))}
	for i, info := range infos {
		r := info.SegmentRange(a.seg.ObjectKey, epochs[i])
		last := map[string]catalog.WriterSequence{}
		for _, p := range a.batches[i] {
			if p.writer != "" {
				last[p.writer] = catalog.WriterSequence{WriterID: p.writer, Sequence: p.seq, BaseOffset: p.base, EndOffset: p.base + p.rows}
			}
		}
		for _, s := range last {
			r.Writers = append(r.Writers, s)
		}
		a.seg.Ranges = append(a.seg.Ranges, r)
	}
	return a, nil
}

// newObjectKey names a segment object: time first, so listings are in
// write order and the janitor can tell an object's age from its key.
func newObjectKey() string {
	now := time.Now().UTC()
	return fmt.Sprintf("%s%s/%d-%s.seg", ObjectPrefix, now.Format("2006-01-02"), now.UnixMilli(), uuid.NewString())
}

// ObjectTime returns when the segment object key was created, from its name.
func ObjectTime(key string) (time.Time, bool) {
	var day string
	var ms int64
	var rest string
	if _, err := fmt.Sscanf(key, ObjectPrefix+"%10s/%d-%s", &day, &ms, &rest); err != nil {
		return time.Time{}, false
	}
	return time.UnixMilli(ms).UTC(), true
}

// committed applies a successful commit: the batches are durable.
func (w *Writer) committed(a *attempt) {
	broken := map[*bucketState]bool{}
	defer func() {
		for bs := range broken {
			w.keeper.Fence(bs.lead, fmt.Errorf("writer: bucket %s: applying a committed changelog to the KV state failed", bs.id))
			w.forget(bs)
		}
	}()
	w.mu.Lock()
	for i, bs := range a.buckets {
		done := a.batches[i]
		end := a.seg.Ranges[i].EndOffset
		if len(bs.batches) >= len(done) && bs.batches[0] == done[0] {
			bs.batches = bs.batches[len(done):]
		}
		bs.committed = end
		for _, p := range done {
			select {
			case <-p.done:
				// Failed already: the bucket was unloaded (its table
				// dropped, its leadership lost) while this commit ran.
				continue
			default:
			}
			if bs.kv != nil && !broken[bs] {
				// The changelog is committed: its values leave the
				// pre-write buffer for pebble, where lookups see them.
				var err error
				if p.changes != nil {
					err = bs.kv.Apply(p.changes, p.base+p.rows)
				} else { // taken back from the WAL after a restart
					err = bs.kv.ApplyChangelog(p.rec, p.base+p.rows)
				}
				if err != nil {
					w.logger.Error("applying a committed changelog to the KV state failed; the bucket will be rebuilt from the log", slog.String("bucket", bs.id.String()), slog.Any("err", err))
					broken[bs] = true
				}
			}
			w.pendingBytes -= p.size
			p.rec.Release()
			p.rec = nil
			close(p.done)
		}
		for _, ws := range bs.writers {
			if ws.p != nil && ws.end <= end {
				ws.p = nil
			}
		}
	}
	w.mu.Unlock()
	for i, bs := range a.buckets {
		w.hub.Publish(bs.id, a.seg.Ranges[i].EndOffset)
	}
	w.truncateWAL()
}

// truncateWAL releases the WAL records before the oldest pending batch's:
// every record when nothing is pending.
func (w *Writer) truncateWAL() {
	w.mu.Lock()
	minLSN := uint64(math.MaxUint64)
	for _, bs := range w.buckets {
		for _, p := range bs.batches {
			select {
			case <-p.walDone:
				minLSN = min(minLSN, p.lsn.Load())
			default:
				minLSN = 0 // its LSN is not known yet: keep the WAL
			}
		}
	}
	w.mu.Unlock()
	if minLSN == math.MaxUint64 {
		minLSN = w.lastLSN.Load() + 1
	}
	if minLSN > 1 {
		if err := w.log.TruncateBefore(minLSN); err != nil {
			w.logger.Warn("WAL truncation failed", slog.Any("err", err))
		}
	}
}

// refence handles a commit the catalog refused for some bucket: it finds
// the buckets whose epoch is gone (or whose offsets no longer match), drops
// them, and leaves the other buckets' batches for the next flush.
func (w *Writer) refence(ctx context.Context, a *attempt, cause error) {
	for i, bs := range a.buckets {
		s, err := w.store.GetBucket(ctx, bs.id)
		if err != nil {
			if errors.Is(err, catalog.ErrNotFound) { // the table was dropped
				w.keeper.Fence(bs.lead, fmt.Errorf("writer: bucket %s: %w", bs.id, err))
				w.drop(bs)
			}
			continue
		}
		if s.Epoch != bs.lead.Lease.Epoch || s.Leader != bs.lead.Lease.Holder || s.NextOffset != a.seg.Ranges[i].BaseOffset {
			w.logger.Warn("commit refused: fencing bucket", slog.String("bucket", bs.id.String()), slog.Int64("epoch", bs.lead.Lease.Epoch), slog.Any("cause", cause))
			w.keeper.Fence(bs.lead, fmt.Errorf("writer: bucket %s: commit refused (%v): %w", bs.id, cause, catalog.ErrFenced))
			w.forget(bs)
		}
	}
}
