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
	put     bool       // the object is in the object store
	putDone chan error // the result of the upload started with the attempt; nil: upload when committing
	gen     uint64     // Writer.flushGen when collected
	buckets []*bucketState
	batches [][]*pending // per bucket, the batches after those of earlier attempts
	tries   int
}

// maxFlushesInFlight bounds the flush attempts between their encoding and
// the end of their commit: while one is uploaded and committed, the next
// is encoded and uploaded.
const maxFlushesInFlight = 2

// Run flushes every FlushInterval, or sooner when FlushBytes are pending,
// until ctx ends; then it flushes what is left (bounded by the commit
// timeout) and returns.
//
// Flushes are pipelined: an attempt is collected and encoded, and its
// upload started at once, while earlier attempts are still uploading or
// committing; commits happen strictly in order, one at a time, so a
// bucket's ranges are committed in offset order under its epoch, as
// before. At most maxFlushesInFlight attempts are in flight; past that a
// flush waits for the oldest to finish, then takes everything that
// accumulated meanwhile (under load, flushes grow instead of queueing).
// A commit the catalog refuses (fenced, gap, dropped) voids every attempt
// behind it: their batches are collected again, in order, by the next
// flush (their objects become orphans, which the janitor deletes).
func (w *Writer) Run(ctx context.Context) error {
	queue := make(chan *attempt, maxFlushesInFlight)
	// Commits outlive ctx for the drain, bounded by the commit timeout.
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	committerDone := make(chan struct{})
	go func() {
		defer close(committerDone)
		for a := range queue {
			w.finish(pctx, a)
			<-w.slots
			signal(w.flushed)
		}
	}()
	t := time.NewTicker(w.cfg.FlushInterval)
	defer t.Stop()
	// Group commit (FlushLinger): new data, or data left when a flush
	// ends, arms the linger; more data arriving within it, or writes still
	// on their way (Expect), extend it (a burst of writes goes into one
	// flush), up to the flush interval since it was armed.
	var linger *time.Timer
	var lingerC <-chan time.Time
	var armed time.Time
	arm := func() {
		now := time.Now()
		switch {
		case lingerC == nil:
			armed = now
			linger = time.NewTimer(w.cfg.FlushLinger)
			lingerC = linger.C
		case now.Add(w.cfg.FlushLinger).Sub(armed) <= w.cfg.FlushInterval:
			linger.Reset(w.cfg.FlushLinger)
		}
	}
	for {
		select {
		case <-ctx.Done():
			close(queue)
			return w.drain(pctx, cancel, committerDone)
		case <-t.C:
		case <-w.kick:
		case <-w.arrived:
			arm()
			continue
		case <-w.flushed:
			if w.cfg.FlushLinger > 0 && w.uncollected() {
				arm()
			}
			continue
		case <-lingerC:
			if w.incoming.Load() > 0 && time.Since(armed)+w.cfg.FlushLinger <= w.cfg.FlushInterval {
				// Writes are still being decoded: take them along.
				linger.Reset(w.cfg.FlushLinger)
				continue
			}
		}
		if linger != nil {
			linger.Stop()
			linger, lingerC = nil, nil
		}
		select {
		case w.slots <- struct{}{}:
		case <-ctx.Done():
			continue
		}
		a, err := w.collect()
		if err != nil {
			w.logger.Error("flush: encode segment", slog.Any("err", err))
		}
		if a == nil {
			<-w.slots
			continue
		}
		a.putDone = make(chan error, 1)
		go func() { a.putDone <- w.upload(pctx, a) }()
		queue <- a // never blocks: the slots bound the queue
	}
}

// uncollected reports whether some accepted batch is in no flush yet.
func (w *Writer) uncollected() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, bs := range w.buckets {
		if len(bs.batches) > bs.inFlight {
			return true
		}
	}
	return false
}

// drain stops accepting writes, waits for the flushes in flight, and
// commits what is pending, within the commit timeout.
func (w *Writer) drain(ctx context.Context, cancel context.CancelFunc, committerDone <-chan struct{}) error {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	stop := time.AfterFunc(w.cfg.CommitTimeout, cancel)
	defer stop.Stop()
	<-committerDone
	for ctx.Err() == nil {
		if a, err := w.collect(); err != nil {
			w.logger.Error("flush: encode segment", slog.Any("err", err))
		} else if a != nil {
			w.finish(ctx, a)
		}
		w.mu.Lock()
		left := w.pendingBytes
		w.mu.Unlock()
		if left == 0 {
			// Everything is committed: the WAL holds nothing to recover.
			if last := w.lastLSN.Load(); last > 0 {
				if err := w.log.TruncateBefore(last + 1); err != nil {
					w.logger.Warn("WAL truncation at shutdown failed", slog.Any("err", err))
				}
			}
			return nil
		}
		if !sleep(ctx, w.cfg.FlushInterval) {
			break
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return fmt.Errorf("writer: %d bytes not committed at shutdown (acknowledged `wal` writes stay in the WAL)", w.pendingBytes)
}

// sleep waits d or until ctx ends, reporting whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// upload PUTs a's object.
func (w *Writer) upload(ctx context.Context, a *attempt) error {
	return w.objects.Put(ctx, a.seg.ObjectKey, bytes.NewReader(a.data), int64(len(a.data)))
}

// finish uploads a (unless its upload is under way or done) and commits
// it, retrying failed uploads and commits whose outcome is unknown every
// flush interval, until the commit is accepted, refused, voided by an
// earlier refusal, or ctx ends.
func (w *Writer) finish(ctx context.Context, a *attempt) {
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
	for ctx.Err() == nil {
		w.mu.Lock()
		void := a.gen != w.flushGen
		w.mu.Unlock()
		if void {
			return // an earlier attempt's commit was refused: collected again
		}
		a.tries++
		if !a.put {
			var err error
			if a.putDone != nil {
				err, a.putDone = <-a.putDone, nil
			} else {
				err = w.upload(ctx, a)
			}
			if err != nil {
				if ctx.Err() == nil {
					w.logger.Warn("flush: segment upload failed; retrying", slog.String("object", a.seg.ObjectKey), slog.Int("try", a.tries), slog.Any("err", err))
				}
				report(err)
				sleep(ctx, w.cfg.FlushInterval)
				continue
			}
			a.put = true
		}
		err := w.store.CommitSegment(ctx, a.seg)
		if err != nil && a.tries > 1 && w.registered(ctx, a) {
			// An earlier try of this very commit succeeded but its answer
			// was lost (the catalog connection broke after the commit).
			err = nil
		}
		report(err)
		switch {
		case err == nil:
			w.committed(a)
			return
		case errors.Is(err, catalog.ErrFenced), errors.Is(err, catalog.ErrOffsetGap), errors.Is(err, catalog.ErrNotFound):
			w.refence(ctx, a, err)
			w.voidInFlight()
			return
		}
		if ctx.Err() == nil {
			w.logger.Warn("flush: segment commit failed; retrying", slog.String("object", a.seg.ObjectKey), slog.Int("try", a.tries), slog.Any("err", err))
		}
		sleep(ctx, w.cfg.FlushInterval)
	}
}

// voidInFlight voids every attempt in flight after a refused commit: the
// batches they carry are collected again, in order, by the next flush.
func (w *Writer) voidInFlight() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.flushGen++
	for _, bs := range w.buckets {
		bs.inFlight = 0
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
	a.gen = w.flushGen
	for _, bs := range w.buckets {
		if len(bs.batches) == bs.inFlight || bs.lead == nil {
			continue
		}
		if bs.lead.IsFenced() {
			continue // dropped by the next write or refence
		}
		codec, err := segment.ParseCodec(bs.table.Properties[catalog.PropLogCompression])
		if err != nil {
			codec = segment.CodecZstd
		}
		batches := append([]*pending(nil), bs.batches[bs.inFlight:]...)
		bs.inFlight = len(bs.batches)
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
		// Nothing of it will be committed: the next flush takes the
		// batches again. (Only this goroutine collects, so they are the
		// last ones counted in flight.)
		w.mu.Lock()
		for i, bs := range a.buckets {
			bs.inFlight -= len(a.batches[i])
		}
		w.mu.Unlock()
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
			bs.inFlight -= len(done)
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
