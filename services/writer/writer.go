// Package writer is the write path of a Strom frontend: it leads buckets,
// assigns offsets, appends every batch to the local WAL, and flushes the
// new batches of all its buckets as ONE segment object per flush, committed
// to the catalog in one transaction under each bucket's epoch.
package writer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/services/batch"
	"github.com/strom-io/strom/services/kv"
	"github.com/strom-io/strom/services/kvsnap"
	"github.com/strom-io/strom/services/lease"
	"github.com/strom-io/strom/services/notify"
	"github.com/strom-io/strom/services/objstore"
)

// Errors of Append; the API maps them to Connect codes.
var (
	// ErrNotLeader: this frontend does not (or no longer) lead the bucket;
	// the write was not accepted and may be retried.
	ErrNotLeader = errors.New("writer: not the leader of the bucket")
	// ErrBackpressure: too much data waits for its flush; retry later.
	ErrBackpressure = errors.New("writer: too much data waiting to be flushed")
	// ErrSequence: an idempotent writer sent a sequence older than its last
	// committed one.
	ErrSequence = errors.New("writer: sequence is older than the writer's last request")
	// ErrCommitTimeout: the data was accepted but its commit was not
	// confirmed within the commit timeout (object store or catalog
	// unavailable). It will still be committed when they return; an
	// idempotent retry returns its offsets.
	ErrCommitTimeout = errors.New("writer: commit not confirmed in time")
	// ErrWAL: the local WAL did not take the batch: its disk is full
	// (the cause matches wal.ErrDiskFull; later writes succeed once space
	// is freed) or it failed (wal.ErrFailed: it accepts no more writes
	// until the frontend restarts). The rows may still be committed.
	ErrWAL = errors.New("writer: WAL append failed")
	// ErrClosed: the writer is shutting down.
	ErrClosed = errors.New("writer: closed")
)

// Durability says when Append returns.
type Durability int

const (
	// Durable: after the segment object and its catalog commit.
	Durable Durability = iota
	// WAL: after the batch is fsynced in the local WAL.
	WAL
)

// Config configures the writer.
type Config struct {
	FlushInterval time.Duration
	// FlushLinger, if positive, flushes new data this long after it
	// arrives, instead of at the next FlushInterval tick, and data that
	// arrived while a flush was in flight as soon as that flush ends:
	// group commit, for the latency of durable writes under load.
	FlushLinger     time.Duration
	FlushBytes      int64
	MaxPendingBytes int64
	CommitTimeout   time.Duration
	// OnFlush, if set, is called after every flush attempt, e.g. to feed
	// metrics. It runs on the flushing goroutine and must not block.
	OnFlush func(FlushInfo)
	// KVDir holds the local KV state of the primary-key buckets this
	// writer leads, one pebble directory per bucket.
	KVDir string
	// KVMaxPendingBytes bounds each primary-key bucket's pre-write buffer.
	KVMaxPendingBytes int64
	// OnLead, if set, is told how long taking a bucket over took (lease,
	// catalog reads, WAL take-back, KV restore and changelog replay), for
	// every bucket this writer starts to lead.
	OnLead func(b catalog.BucketID, took time.Duration)
	// OnHandoffWait, if set, is called whenever a request starts to wait
	// for the handoff of b to end (AwaitHandoff).
	OnHandoffWait func(b catalog.BucketID)
}

// Changelog reads a bucket's committed changelog back, for a primary-key
// bucket whose local KV state is behind the log.
type Changelog interface {
	// Read calls fn with the committed records of b in [from, to) in
	// order; end is the offset after rec.
	Read(ctx context.Context, t catalog.Table, b catalog.BucketID, from, to int64, fn func(rec arrow.RecordBatch, end int64) error) error
}

// FlushInfo describes one flush attempt.
type FlushInfo struct {
	Bytes    int64 // size of the segment object
	Buckets  int
	Rows     int64
	Duration time.Duration // upload and commit
	Err      error         // nil when committed
}

// Store is the part of the catalog the writer uses.
type Store interface {
	GetTableByID(ctx context.Context, id int64) (catalog.Table, error)
	GetBucket(ctx context.Context, b catalog.BucketID) (catalog.BucketState, error)
	WriterSequences(ctx context.Context, b catalog.BucketID) ([]catalog.WriterSequence, error)
	CommitSegment(ctx context.Context, seg catalog.Segment) error
	ListSegments(ctx context.Context, b catalog.BucketID, from int64, limit int) ([]catalog.SegmentRange, error)
}

// Log is the write-ahead log (wal.WAL).
type Log interface {
	// CheckSpace returns an error (wal.ErrDiskFull) while the log's disk
	// is nearly full; Append then refuses new rows before changing anything.
	CheckSpace() error
	AppendAsync(payload []byte, done func(lsn uint64, err error))
	TruncateBefore(lsn uint64) error
	Replay(from uint64, fn func(lsn uint64, payload []byte) error) error
}

// Request is one write: the rows of one request, split by bucket.
type Request struct {
	Table      catalog.Table
	Parts      []Part
	Durability Durability
	// WriterID and Sequence make the write idempotent when WriterID is set:
	// per bucket, a request with the writer's last sequence is not written
	// again and returns the offsets it got.
	WriterID string
	Sequence int64
}

// Result is what one part of a request got.
type Result struct {
	Bucket     catalog.BucketID
	BaseOffset int64
	Count      int64
	// Duplicate: an earlier request with the same writer and sequence wrote
	// these rows; nothing was written now.
	Duplicate bool
}

// Writer is the write path. It is safe for concurrent use.
type Writer struct {
	cfg       Config
	store     Store
	objects   objstore.Bucket
	log       Log
	keeper    *lease.Keeper
	hub       *notify.Hub
	changelog Changelog
	logger    *slog.Logger
	mem       memory.Allocator

	kick     chan struct{}
	arrived  chan struct{} // a batch was accepted (FlushLinger)
	flushed  chan struct{} // a flush attempt finished
	incoming atomic.Int64  // write requests expected (Expect) and not yet settled

	mu           sync.Mutex
	buckets      map[catalog.BucketID]*bucketState
	pendingBytes int64
	closed       bool
	draining     atomic.Bool // Drain began: lead no new bucket
	replay       map[catalog.BucketID][]walRecord
	lastLSN      atomic.Uint64

	// The flush pipeline (flush.go): slots bounds the attempts between
	// their encoding and the end of their commit; flushGen (under mu)
	// changes when a refused commit makes every in-flight attempt void.
	slots    chan struct{}
	flushGen uint64
}

type bucketState struct {
	id             catalog.BucketID
	table          catalog.Table
	lead           *lease.Leadership
	next           int64 // next offset to assign
	committed      int64 // the catalog's next offset
	batches        []*pending
	inFlight       int // how many of batches (a prefix) are in a flush attempt
	writers        map[string]*writerState
	kv             *kv.Bucket              // primary-key tables: the bucket's KV state
	manifest       *kvsnap.Manifest        // the newest KV snapshot taken or restored
	snapshotOffset atomic.Int64            // the log offset that snapshot covers (read without snapMu)
	ready          chan struct{}           // closed when loaded
	handoff        atomic.Bool             // being handed over: accept no new batch
	handoffDone    chan struct{}           // closed when the handoff under way ends (guarded by Writer.mu)
	walHole        atomic.Pointer[pending] // the last batch whose WAL append failed (see await)
	snapMu         sync.Mutex              // held while a snapshot reads kv, and to close kv
	kvClosed       bool                    // kv was closed (guarded by snapMu)
	err            error                   // load error, set before ready is closed
}

type writerState struct {
	seq  int64
	base int64
	end  int64
	p    *pending // nil once committed
}

// pending is an accepted batch waiting for its commit.
type pending struct {
	base          int64
	rows          int64
	ts            time.Time
	schemaVersion int32
	rec           arrow.RecordBatch
	size          int64
	writer        string
	seq           int64
	changes       *kv.Changes // primary-key tables: applied to the KV state once committed

	lsn     atomic.Uint64
	walDone chan struct{}
	walErr  error
	// hole is the last earlier batch of the bucket whose WAL append had
	// failed when this one's completed (set before walDone is closed).
	hole *pending

	done chan struct{}
	err  error
}

// New returns a writer. Call Recover before serving writes and Run to
// flush.
func New(cfg Config, store Store, objects objstore.Bucket, log Log, keeper *lease.Keeper, hub *notify.Hub, changelog Changelog, logger *slog.Logger) *Writer {
	return &Writer{
		cfg: cfg, store: store, objects: objects, log: log, keeper: keeper, hub: hub, changelog: changelog, logger: logger,
		mem:     memory.DefaultAllocator,
		kick:    make(chan struct{}, 1),
		arrived: make(chan struct{}, 1),
		flushed: make(chan struct{}, 1),
		buckets: map[catalog.BucketID]*bucketState{},
		slots:   make(chan struct{}, maxFlushesInFlight),
	}
}

// Append writes req and returns once it is as durable as req.Durability
// asks. Rows of a rejected request are not written; after ErrCommitTimeout
// or ErrWAL the rows may still be committed later (an idempotent retry
// then returns their offsets instead of writing them twice).
func (w *Writer) Append(ctx context.Context, req Request) ([]Result, error) {
	states := make([]*bucketState, len(req.Parts))
	for i, p := range req.Parts {
		bs, err := w.bucket(ctx, req.Table, p.Bucket)
		if err != nil {
			return nil, err
		}
		states[i] = bs
	}
	// The WAL copy of a log batch is encoded before taking the lock; a
	// primary-key part's changelog exists only once prepared under it.
	walIPC := make([][]byte, len(req.Parts))
	for i, p := range req.Parts {
		if p.Ops != nil {
			continue
		}
		if p.IPC != nil { // the client's bytes, checked, are the batch's encoding
			walIPC[i] = p.IPC
			continue
		}
		data, err := batch.EncodeIPC(p.Record.Schema(), []arrow.RecordBatch{p.Record})
		if err != nil {
			return nil, fmt.Errorf("writer: encode batch for the WAL: %w", err)
		}
		walIPC[i] = data
	}

	now := time.Now().UTC().Truncate(time.Microsecond)
	results := make([]Result, len(req.Parts))
	var wait []*pending
	var size int64
	for _, p := range req.Parts {
		size += batchSize(p.Record)
	}

	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil, ErrClosed
	}
	// Check everything before changing anything: a rejected request
	// writes no part.
	dup := make([]*writerState, len(req.Parts))
	for i, bs := range states {
		if bs.lead.IsFenced() || w.buckets[bs.id] != bs {
			w.mu.Unlock()
			w.forget(bs)
			return nil, fmt.Errorf("%w %s", ErrNotLeader, bs.id)
		}
		if bs.handoff.Load() {
			w.mu.Unlock()
			return nil, fmt.Errorf("%w %s: being handed over", ErrNotLeader, bs.id)
		}
		if req.WriterID == "" {
			continue
		}
		if ws := bs.writers[req.WriterID]; ws != nil {
			switch {
			case req.Sequence == ws.seq:
				dup[i] = ws
			case req.Sequence < ws.seq:
				w.mu.Unlock()
				return nil, fmt.Errorf("%w: writer %q sent sequence %d after %d in bucket %s", ErrSequence, req.WriterID, req.Sequence, ws.seq, bs.id)
			}
		}
	}
	// The WAL's free-space watermark (statfs at most every 100 ms), for
	// requests that would write.
	if slices.Contains(dup, nil) {
		if err := w.log.CheckSpace(); err != nil {
			w.mu.Unlock()
			return nil, err
		}
	}
	if w.pendingBytes+size > w.cfg.MaxPendingBytes && w.pendingBytes > 0 {
		w.mu.Unlock()
		return nil, fmt.Errorf("%w (%d bytes pending, limit %d)", ErrBackpressure, w.pendingBytes, w.cfg.MaxPendingBytes)
	}
	// Primary-key parts: merge with the current state (pre-write buffer,
	// then pebble) into their changelog, all or nothing.
	changes := make([]*kv.Changes, len(req.Parts))
	for i, part := range req.Parts {
		if dup[i] != nil || states[i].kv == nil {
			continue
		}
		if err := w.evolve(states[i], req.Table); err != nil {
			w.discard(states[:i], changes[:i])
			w.mu.Unlock()
			return nil, err
		}
		c, err := states[i].kv.Prepare(fitOps(part.Ops, len(states[i].table.Schema.Columns)))
		if err != nil {
			w.discard(states[:i], changes[:i])
			w.mu.Unlock()
			return nil, fmt.Errorf("bucket %d: %w", states[i].id.Bucket, err)
		}
		changes[i] = c
	}
	for i, part := range req.Parts {
		bs := states[i]
		if ws := dup[i]; ws != nil {
			results[i] = Result{Bucket: bs.id, BaseOffset: ws.base, Count: ws.end - ws.base, Duplicate: true}
			if ws.p != nil {
				wait = append(wait, ws.p)
			}
			continue
		}
		rec := part.Record
		if c := changes[i]; c != nil {
			if c.Len() == 0 { // every op was a no-op: nothing to log
				_, _ = bs.kv.Discard(c)
				results[i] = Result{Bucket: bs.id, BaseOffset: bs.next}
				continue
			}
			rec = c.Record()
		}
		// A primary-key part's changelog has the columns of the KV
		// state's schema version, which may be newer than the request's.
		version := req.Table.SchemaVersion
		if changes[i] != nil {
			version = bs.table.SchemaVersion
		}
		rows := rec.NumRows()
		rec.Retain()
		p := &pending{
			base: bs.next, rows: rows, ts: now, schemaVersion: version,
			rec: rec, size: batchSize(rec), writer: req.WriterID, seq: req.Sequence,
			changes: changes[i],
			walDone: make(chan struct{}), done: make(chan struct{}),
		}
		bs.next += rows
		bs.batches = append(bs.batches, p)
		if req.WriterID != "" {
			bs.writers[req.WriterID] = &writerState{seq: req.Sequence, base: p.base, end: p.base + rows, p: p}
		}
		w.pendingBytes += p.size
		results[i] = Result{Bucket: bs.id, BaseOffset: p.base, Count: rows}
		data, err := walIPC[i], error(nil)
		if data == nil {
			data, err = batch.EncodeIPC(rec.Schema(), []arrow.RecordBatch{rec})
		}
		if err != nil {
			// Offsets are assigned: the batch stays and is committed; only
			// its WAL copy is missing, as if the WAL write had failed.
			p.walErr = fmt.Errorf("encode batch for the WAL: %w", err)
			setHole(bs, p)
			close(p.walDone)
			wait = append(wait, p)
			continue
		}
		wrec := walRecord{
			Bucket: bs.id, Epoch: bs.lead.Lease.Epoch, BaseOffset: p.base, Timestamp: now,
			SchemaVersion: version, WriterID: req.WriterID, Sequence: req.Sequence, IPC: data,
		}
		w.log.AppendAsync(wrec.encode(), func(lsn uint64, err error) {
			p.lsn.Store(lsn)
			p.walErr = err
			if err != nil {
				setHole(bs, p)
			}
			if h := bs.walHole.Load(); h != nil && h.base < p.base {
				p.hole = h
			}
			for old := w.lastLSN.Load(); lsn > old && !w.lastLSN.CompareAndSwap(old, lsn); old = w.lastLSN.Load() {
			}
			close(p.walDone)
		})
		wait = append(wait, p)
	}
	full := w.pendingBytes >= w.cfg.FlushBytes
	w.mu.Unlock()
	Settle(ctx)
	if full {
		w.Kick()
	} else if w.cfg.FlushLinger > 0 {
		signal(w.arrived)
	}

	for _, p := range wait {
		if err := w.await(ctx, p, req.Durability); err != nil {
			return nil, err
		}
	}
	return results, nil
}

// discard drops the prepared changes of a request that is refused.
func (w *Writer) discard(states []*bucketState, changes []*kv.Changes) {
	for j, c := range changes {
		if c != nil {
			_, _ = states[j].kv.Discard(c)
		}
	}
}

// evolve moves primary-key bucket bs to t's schema version when t is newer
// than the version its KV state has (an AlterTable added columns). Call it
// with w.mu held.
func (w *Writer) evolve(bs *bucketState, t catalog.Table) error {
	if t.SchemaVersion <= bs.table.SchemaVersion {
		return nil
	}
	if err := bs.kv.Evolve(t); err != nil {
		return fmt.Errorf("writer: bucket %s: %w", bs.id, err)
	}
	bs.table = t
	return nil
}

// fitOps returns ops with rows of n columns. A request decoded under an
// older schema version than the bucket's lacks the columns added since: it
// is written as it would have been before the AlterTable, with NULLs (or,
// for a partial update, no change) in them.
func fitOps(ops []kv.Op, n int) []kv.Op {
	for i := range ops {
		ops[i].Row = ops[i].Row.Resize(n)
	}
	return ops
}

// setHole records p, whose WAL append failed, as bs's last WAL hole.
// Holes only move forward (a rejection on the caller's goroutine may be
// recorded before an earlier batch's failure on the WAL's).
func setHole(bs *bucketState, p *pending) {
	for {
		h := bs.walHole.Load()
		if h != nil && h.base >= p.base || bs.walHole.CompareAndSwap(h, p) {
			return
		}
	}
}

// await waits until p is as durable as d asks.
//
// With WAL durability, p is acknowledged once its WAL record is synced —
// unless an earlier batch of the bucket is missing from the WAL (its append
// failed, e.g. on a full disk) and is not committed yet: recovery re-commits
// a bucket's WAL records only as a run without gaps, so after a crash p's
// record alone would be dropped. p then waits for its commit, as a durable
// write does.
func (w *Writer) await(ctx context.Context, p *pending, d Durability) error {
	if d == WAL {
		select {
		case <-p.done:
			return p.err
		case <-p.walDone:
			if p.walErr != nil {
				return fmt.Errorf("%w: %w", ErrWAL, p.walErr)
			}
			h := p.hole
			if h == nil {
				return nil
			}
			select {
			case <-h.done:
				if h.err == nil {
					return nil // committed, and so is everything before it
				}
			default:
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	t := time.NewTimer(w.cfg.CommitTimeout)
	defer t.Stop()
	select {
	case <-p.done:
		return p.err
	case <-t.C:
		return ErrCommitTimeout
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Expect tells the writer that a write request is on its way (being
// decoded): until it is settled — Append took its batches, it went to
// another frontend (Settle), or it failed (the returned func) — a
// lingering flush waits for it, up to the flush interval, so that a burst
// of concurrent writes goes into one segment object. The returned context
// carries the expectation to Append.
func (w *Writer) Expect(ctx context.Context) (context.Context, func()) {
	e := &expectation{w: w}
	w.incoming.Add(1)
	return context.WithValue(ctx, expectationKey{}, e), e.settle
}

type expectationKey struct{}

type expectation struct {
	w    *Writer
	once sync.Once
}

func (e *expectation) settle() {
	e.once.Do(func() { e.w.incoming.Add(-1) })
}

// Settle settles the expectation ctx carries (Expect), if any: its
// request will not bring this writer a batch, or it has.
func Settle(ctx context.Context) {
	if e, ok := ctx.Value(expectationKey{}).(*expectation); ok {
		e.settle()
	}
}

// Kick asks for a flush now.
func (w *Writer) Kick() { signal(w.kick) }

// signal sends on a channel of capacity 1 without blocking.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func batchSize(rec arrow.RecordBatch) int64 {
	var n int64
	for _, c := range rec.Columns() {
		for _, b := range c.Data().Buffers() {
			if b != nil {
				n += int64(b.Len())
			}
		}
	}
	return n
}

// KV returns the KV state of primary-key bucket b, leading the bucket first
// if this writer does not yet. Reads of it see committed changes only.
func (w *Writer) KV(ctx context.Context, t catalog.Table, b catalog.BucketID) (*kv.Bucket, error) {
	bs, err := w.bucket(ctx, t, b)
	if err != nil {
		return nil, err
	}
	if bs.kv == nil {
		return nil, fmt.Errorf("writer: table %s.%s has no primary key", t.Database, t.Name)
	}
	w.mu.Lock()
	err = w.evolve(bs, t)
	w.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if bs.lead.Expired() {
		// Paused past the lease (or cut off from the catalog): another
		// frontend may lead the bucket by now; do not serve stale rows.
		return nil, fmt.Errorf("%w %s: the lease could not be renewed in time", ErrNotLeader, b)
	}
	return bs.kv, nil
}
