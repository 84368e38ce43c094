// Package wal is the write-ahead log of a Strom frontend: every write request
// is appended and fsynced here before it is acknowledged with durability
// `wal` and before its data is flushed to a segment object. Once that data is
// committed to object storage and the catalog, the log is truncated up to it.
//
// The log is a directory of files named by the LSN of their first record.
// Records carry a CRC32C; Open truncates a torn tail left by a crash and
// refuses (ErrCorrupt) a log damaged anywhere else. Concurrent Appends are
// group-committed: one goroutine writes every waiting record with one write
// and one fsync. The format is documented in docs/wal.md.
package wal

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// Errors returned by the WAL; classify them with errors.Is.
var (
	// ErrCorrupt means a record or file header that should be durable is
	// damaged or missing. Open returns it rather than drop acknowledged data.
	ErrCorrupt = errors.New("wal: corrupt log")
	// ErrTooLarge means a payload is larger than MaxPayloadSize.
	ErrTooLarge = errors.New("wal: payload too large")
	// ErrClosed means the WAL was closed.
	ErrClosed = errors.New("wal: closed")
	// ErrFailed means an earlier fsync failed (or a failed write could not
	// be rolled back); the WAL accepts no more appends (see WAL.Append) and
	// must be closed and reopened.
	ErrFailed = errors.New("wal: failed by an earlier I/O error")
	// ErrLocked means another WAL (in this or another process) has the
	// directory open.
	ErrLocked = errors.New("wal: directory in use")
)

const (
	// MaxPayloadSize is the largest payload Append accepts.
	MaxPayloadSize = 64 << 20
	// DefaultSegmentSize is the default Options.SegmentSize.
	DefaultSegmentSize = 64 << 20
	// MaxSegmentSize is the largest Options.SegmentSize: Open reads each file
	// whole into memory to validate it.
	MaxSegmentSize = 1 << 30
	// DefaultMaxBatchBytes is the default Options.MaxBatchBytes.
	DefaultMaxBatchBytes = 4 << 20
)

// Options configures a WAL. The zero value of every field but Dir selects
// its default.
type Options struct {
	// Dir is the directory of the log; Open creates it if needed. Required.
	Dir string `yaml:"dir"`
	// SegmentSize is the size at which the log rolls to a new file (default
	// DefaultSegmentSize, at most MaxSegmentSize). A file is rolled once it
	// has reached SegmentSize, so it can exceed it by one write batch.
	SegmentSize int64 `yaml:"segment_size"`
	// MaxBatchDelay is how long the committer waits for more records after
	// the first one of a batch before writing it. The default 0 writes at
	// once: under load, records arriving during an fsync form the next
	// batch anyway, and a lone writer gets the lowest latency.
	MaxBatchDelay time.Duration `yaml:"max_batch_delay"`
	// MaxBatchBytes bounds the payload bytes of one write batch (default
	// DefaultMaxBatchBytes); a batch always takes at least one record.
	MaxBatchBytes int `yaml:"max_batch_bytes"`
	// MinFreeBytes is the free-space watermark of Dir's filesystem:
	// CheckSpace fails while fewer bytes are available. Unlike the other
	// fields, 0 disables it; the flag's default is DefaultMinFreeBytes.
	// Open fails if it is not below the size of the filesystem (no write
	// could ever be accepted).
	MinFreeBytes int64 `yaml:"min_free_bytes"`
	// Logger receives recovery warnings and I/O failures (default: discard).
	Logger *slog.Logger `yaml:"-"`
	// NoSync skips every fsync. For tests only: an acknowledged record can
	// then be lost by a machine crash.
	NoSync bool `yaml:"-"`
	// OnCommit, if set, is called on the committer goroutine after every
	// write batch is durable, e.g. to feed latency and batch-size
	// histograms. It must not block or call into the WAL.
	OnCommit func(CommitInfo) `yaml:"-"`

	minFreeFlag string           // the flag of MinFreeBytes, for messages
	now         func() time.Time // clock of the free-space readings; nil is time.Now (tests fake it)
}

// RegisterFlags registers the configurable fields of Options, each name
// prefixed with prefix (e.g. "wal." gives -wal.dir), with their defaults.
func (o *Options) RegisterFlags(prefix string, f *flag.FlagSet) {
	f.StringVar(&o.Dir, prefix+"dir", o.Dir, "Directory of the write-ahead log, one per frontend process (default <data-dir>/wal).")
	f.Int64Var(&o.SegmentSize, prefix+"segment-size", DefaultSegmentSize, "Size in bytes at which the write-ahead log rolls to a new file.")
	f.DurationVar(&o.MaxBatchDelay, prefix+"max-batch-delay", 0, "How long a write-ahead log group commit waits for more records (0: write at once).")
	f.IntVar(&o.MaxBatchBytes, prefix+"max-batch-bytes", DefaultMaxBatchBytes, "Largest payload bytes of one write-ahead log group commit.")
	f.Int64Var(&o.MinFreeBytes, prefix+"min-free-bytes", DefaultMinFreeBytes, "Writes are refused with resource_exhausted while the filesystem of the write-ahead log has fewer free bytes (reads go on; writes resume once flushed segments free the log). Must be below the filesystem's size; 0 disables the check.")
	o.minFreeFlag = "-" + prefix + "min-free-bytes"
}

// CommitInfo describes one group commit (one write and one fsync).
type CommitInfo struct {
	// Records is the number of records in the batch.
	Records int
	// Bytes is the number of bytes written, headers included.
	Bytes int
	// SyncDuration is the time the fsync took (0 with NoSync).
	SyncDuration time.Duration
}

// Validate reports the first invalid field.
func (o *Options) Validate() error {
	switch {
	case o.Dir == "":
		return errors.New("wal: Options.Dir is required")
	case o.SegmentSize < 0 || o.SegmentSize > MaxSegmentSize:
		return fmt.Errorf("wal: Options.SegmentSize %d must be between 0 (default) and %d (1 GiB)", o.SegmentSize, MaxSegmentSize)
	case o.MaxBatchDelay < 0:
		return fmt.Errorf("wal: Options.MaxBatchDelay %v must not be negative", o.MaxBatchDelay)
	case o.MaxBatchBytes < 0:
		return fmt.Errorf("wal: Options.MaxBatchBytes %d must not be negative", o.MaxBatchBytes)
	case o.MinFreeBytes < 0:
		return fmt.Errorf("wal: Options.MinFreeBytes %d must not be negative (0 disables the free-space check)", o.MinFreeBytes)
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.SegmentSize == 0 {
		o.SegmentSize = DefaultSegmentSize
	}
	if o.MaxBatchBytes == 0 {
		o.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// WAL is an open write-ahead log. All methods are safe for concurrent use.
type WAL struct {
	opts Options
	log  *slog.Logger
	lock io.Closer

	reqs         chan *request
	rollc        chan uint64 // TruncateBefore asks the committer to roll (see rollFor)
	committerEnd chan struct{}

	// closeMu guards closed. Senders on reqs hold it for reading, so Close
	// (holding it for writing) can close reqs safely.
	closeMu sync.RWMutex
	closed  bool

	segMu sync.Mutex
	segs  []segment // oldest first; the last is the active file

	truncMu sync.Mutex // serializes TruncateBefore

	durable atomic.Uint64         // LSN of the last fsynced record
	failErr atomic.Pointer[error] // set once by the committer
	space   *space                // free space of the filesystem of Dir

	// Owned by the committer goroutine.
	f     *os.File
	fSize int64
	next  uint64
	buf   []byte
	batch []*request

	stats stats
}

// request is one record waiting for the committer.
type request struct {
	payload []byte
	done    func(lsn uint64, err error) // AppendAsync
	ch      chan struct{}               // Append: signalled when lsn/err are set
	lsn     uint64
	err     error
}

var requestPool = sync.Pool{New: func() any { return &request{ch: make(chan struct{}, 1)} }}

// Open opens the log in opts.Dir, creating it if needed, and validates every
// record of every file. A torn or corrupt tail of the LAST file — an
// incomplete or invalid record that no record of a later write batch
// follows — is what a crash during a write leaves behind: it was never
// acknowledged, so Open truncates it and logs a WARN line naming the file,
// offset and reason. Any other damage (a bad record followed by a record
// written after it was synced, a bad record or header in an earlier file, a
// missing file) would lose acknowledged data and returns ErrCorrupt; Open
// then changes nothing. Open fsyncs the files it keeps and takes an
// exclusive lock on the directory (ErrLocked).
func Open(opts Options) (*WAL, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	if _, err := os.Stat(opts.Dir); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("wal: create dir: %w", err)
		}
		if !opts.NoSync {
			if err := syncDir(filepath.Dir(filepath.Clean(opts.Dir))); err != nil {
				return nil, fmt.Errorf("wal: create dir: %w", err)
			}
		}
	}
	lock, err := lockDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	sp := newSpace(opts.Dir, opts.MinFreeBytes, opts.minFreeFlag, opts.Logger, opts.now)
	sp.refresh()
	if total := sp.total.Load(); opts.MinFreeBytes > 0 && total >= 0 && opts.MinFreeBytes >= total {
		lock.Close()
		return nil, fmt.Errorf("wal: %s %s is not below the size of the filesystem of %s (%s): no write could ever be accepted; lower it (0 disables the check)",
			sp.flag, FormatBytes(opts.MinFreeBytes), opts.Dir, FormatBytes(total))
	}
	rec, err := recoverDir(opts.Dir, opts.NoSync, opts.Logger)
	if err != nil {
		lock.Close()
		return nil, err
	}
	active := filepath.Join(opts.Dir, fileName(rec.segs[len(rec.segs)-1].first))
	f, err := os.OpenFile(active, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("wal: open %s: %w", active, err)
	}
	w := &WAL{
		opts:         opts,
		log:          opts.Logger,
		lock:         lock,
		reqs:         make(chan *request, 1024),
		rollc:        make(chan uint64, 1),
		committerEnd: make(chan struct{}),
		segs:         rec.segs,
		space:        sp,
		f:            f,
		fSize:        rec.activeEnd,
		next:         rec.last + 1,
	}
	w.durable.Store(rec.last)
	w.stats.files.Store(int64(len(rec.segs)))
	go w.commitLoop()
	return w, nil
}

// Append appends payload as one record and returns its LSN once the record
// is fsynced. Concurrent Appends share one write and fsync (group commit).
// Append does not retain payload after it returns. It does not apply the
// free-space watermark: callers call CheckSpace first.
//
// If ctx is done before the record is handed to the committer, Append
// returns ctx.Err() and nothing is written. Once handed over, Append waits
// for the fsync whatever ctx does: the write cannot be taken back, and an
// early return would leave the caller unsure whether the record exists.
//
// A failed write (a full disk: ENOSPC, possibly after part of the batch
// was written) is rolled back: the active file is truncated to the end of
// the last durable batch and synced. Every Append of that batch returns an
// error — matching ErrDiskFull for ENOSPC and EDQUOT — and its record is
// not in the log; the WAL goes on, and later Appends succeed once there is
// space.
//
// After a failed fsync (or a rollback that failed) the WAL is failed: that
// Append and every later one return an error wrapping ErrFailed and the
// cause. An fsync error cannot be retried safely: Linux may already have
// dropped the dirty pages it failed to write (marking them clean), so a
// second fsync can succeed without the data ever reaching the disk. So the
// WAL stops; the owner should close it and reopen it (or restart). The
// record of such an Append has an unknown outcome, as after a timeout: it
// may or may not be in the log after a reopen or a crash (a reopen in the
// same boot can even read it back from the page cache).
func (w *WAL) Append(ctx context.Context, payload []byte) (uint64, error) {
	if len(payload) > MaxPayloadSize {
		return 0, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(payload), MaxPayloadSize)
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	r := requestPool.Get().(*request)
	r.payload = payload
	if err := w.enqueue(ctx, r); err != nil {
		r.payload = nil
		requestPool.Put(r)
		return 0, err
	}
	<-r.ch
	lsn, err := r.lsn, r.err
	*r = request{ch: r.ch}
	requestPool.Put(r)
	return lsn, err
}

// AppendAsync appends payload as one record and calls done with its LSN
// once it is fsynced, or with the error that prevented it (the errors of
// Append). done is called exactly once: on the caller's goroutine before
// AppendAsync returns if the record is rejected (too large, closed, failed),
// else on the committer goroutine, where it must be quick and must not call
// Append. The caller must not modify payload until done is called.
// AppendAsync may block while the committer's queue is full. It does not
// apply the free-space watermark: callers call CheckSpace first.
func (w *WAL) AppendAsync(payload []byte, done func(lsn uint64, err error)) {
	if len(payload) > MaxPayloadSize {
		done(0, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(payload), MaxPayloadSize))
		return
	}
	r := &request{payload: payload, done: done}
	if err := w.enqueue(context.Background(), r); err != nil {
		done(0, err)
	}
}

func (w *WAL) enqueue(ctx context.Context, r *request) error {
	if err := w.failure(); err != nil {
		return err
	}
	w.closeMu.RLock()
	defer w.closeMu.RUnlock()
	if w.closed {
		return ErrClosed
	}
	select {
	case w.reqs <- r:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// failure returns the error that failed the WAL, or nil.
func (w *WAL) failure() error {
	if p := w.failErr.Load(); p != nil {
		return *p
	}
	return nil
}

// LastLSN returns the LSN of the last durable record, 0 if none was ever
// written. Records up to it are visible to Replay.
func (w *WAL) LastLSN() uint64 { return w.durable.Load() }

// FirstLSN returns the LSN of the oldest record still in the log, or
// LastLSN()+1 if it holds none. TruncateBefore works on whole files, so
// FirstLSN can be lower than the LSN last passed to it, also after a reopen.
func (w *WAL) FirstLSN() uint64 {
	w.segMu.Lock()
	defer w.segMu.Unlock()
	return w.segs[0].first
}

// Replay calls fn, in LSN order and on the caller's goroutine, for every
// durable record with lsn >= from: those up to LastLSN at the time of the
// call. Records before FirstLSN were released by TruncateBefore and are
// skipped. payload is valid only during the call. Replay re-verifies every CRC (ErrCorrupt) and returns the
// first error from fn as is. It is safe concurrently with Append and
// TruncateBefore: the records it delivers are always a dense run, files
// deleted during the call being still read.
func (w *WAL) Replay(from uint64, fn func(lsn uint64, payload []byte) error) error {
	w.closeMu.RLock()
	closed := w.closed
	w.closeMu.RUnlock()
	if closed {
		return ErrClosed
	}
	durable := w.durable.Load()

	// Open the files while holding segMu: TruncateBefore removes a file from
	// segs before deleting it, so every file listed exists, and an open file
	// stays readable after it is deleted. Replay thus sees a dense run of
	// records even while TruncateBefore runs.
	type part struct {
		s    segment
		f    *os.File
		last uint64
	}
	var parts []part
	defer func() {
		for _, p := range parts {
			p.f.Close()
		}
	}()
	w.segMu.Lock()
	for i, s := range w.segs {
		last := durable
		if i+1 < len(w.segs) {
			last = min(durable, w.segs[i+1].first-1)
		}
		if s.first > last || last < from {
			continue // empty, or entirely before from
		}
		f, err := os.Open(filepath.Join(w.opts.Dir, fileName(s.first)))
		if err != nil {
			w.segMu.Unlock()
			return fmt.Errorf("wal: replay: %w", err)
		}
		parts = append(parts, part{s, f, last})
	}
	w.segMu.Unlock()

	var buf []byte
	for _, p := range parts {
		var err error
		buf, err = replayFile(p.f, p.s, p.last, from, buf, fn)
		if err != nil {
			return err
		}
	}
	return nil
}

// replayFile replays the records of s, read from f, with LSNs in [from, last].
func replayFile(f *os.File, s segment, last, from uint64, buf []byte, fn func(uint64, []byte) error) ([]byte, error) {
	path := f.Name()
	r := newReader(f)

	var hdr [fileHeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return buf, fmt.Errorf("%w: %s: file header: %v", ErrCorrupt, path, err)
	}
	if first, err := decodeFileHeader(hdr[:]); err != nil || first != s.first {
		return buf, fmt.Errorf("%w: %s: bad file header (first LSN %d): %v", ErrCorrupt, path, first, err)
	}
	off := int64(fileHeaderSize)
	for want := s.first; want <= last; want++ {
		buf = grow(buf, recHeaderSize)
		if _, err := io.ReadFull(r, buf[:recHeaderSize]); err != nil {
			return buf, fmt.Errorf("%w: %s at offset %d (lsn %d): %v", ErrCorrupt, path, off, want, err)
		}
		n := int(uint32le(buf))
		if n > MaxPayloadSize {
			return buf, fmt.Errorf("%w: %s at offset %d (lsn %d): length %d over limit", ErrCorrupt, path, off, want, n)
		}
		buf = grow(buf, recHeaderSize+n)
		if _, err := io.ReadFull(r, buf[recHeaderSize:recHeaderSize+n]); err != nil {
			return buf, fmt.Errorf("%w: %s at offset %d (lsn %d): %v", ErrCorrupt, path, off, want, err)
		}
		rec, size, err := decodeRecord(buf[:recHeaderSize+n])
		if err == nil && rec.lsn != want {
			err = fmt.Errorf("record lsn %d, want %d", rec.lsn, want)
		}
		if err != nil {
			return buf, fmt.Errorf("%w: %s at offset %d (lsn %d): %v", ErrCorrupt, path, off, want, err)
		}
		off += int64(size)
		if want >= from {
			if err := fn(want, rec.payload); err != nil {
				return buf, err
			}
		}
	}
	return buf, nil
}

// TruncateBefore releases the records with LSN < lsn: it deletes, oldest
// first, every file all of whose records are below lsn, never the active
// file (file granularity: records below lsn in a kept file stay, and
// FirstLSN says where the log now starts). Each deletion is made durable
// before the next, so a crash never leaves a gap. It is safe concurrently
// with Append and Replay.
//
// While free space is below Options.MinFreeBytes, a TruncateBefore that
// releases every record also has the committer roll to a new file and
// delete the old active one (soon after, asynchronously): else the space
// of the active file, up to SegmentSize, could only be freed by a write,
// which the watermark refuses.
func (w *WAL) TruncateBefore(lsn uint64) error {
	w.closeMu.RLock()
	closed := w.closed
	w.closeMu.RUnlock()
	if closed {
		return ErrClosed
	}
	if err := w.release(lsn); err != nil {
		return err
	}
	if w.space.low.Load() && lsn > w.durable.Load() {
		select {
		case w.rollc <- lsn:
		default:
		}
	}
	return nil
}

// release deletes the files all of whose records are below lsn.
func (w *WAL) release(lsn uint64) error {
	w.truncMu.Lock()
	defer w.truncMu.Unlock()
	for deleted := false; ; deleted = true {
		w.segMu.Lock()
		if len(w.segs) < 2 || w.segs[1].first > lsn {
			w.segMu.Unlock()
			if deleted {
				w.space.refresh() // writes refused below the watermark may resume
			}
			return nil
		}
		s := w.segs[0]
		w.segs = append(w.segs[:0:0], w.segs[1:]...)
		w.segMu.Unlock()

		path := filepath.Join(w.opts.Dir, fileName(s.first))
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("wal: truncate: %w", err)
		}
		if !w.opts.NoSync {
			if err := syncDir(w.opts.Dir); err != nil {
				return fmt.Errorf("wal: truncate: sync dir: %w", err)
			}
		}
		w.stats.filesDeleted.Add(1)
		w.stats.files.Add(-1)
	}
}

// Close waits for the records already handed to Append and AppendAsync to be
// committed, then closes the log; later calls return ErrClosed. It returns
// the error that failed the WAL, if any, joined with errors from closing.
func (w *WAL) Close() error {
	w.closeMu.Lock()
	if w.closed {
		w.closeMu.Unlock()
		return ErrClosed
	}
	w.closed = true
	close(w.reqs)
	w.closeMu.Unlock()
	<-w.committerEnd
	return errors.Join(w.failure(), w.f.Close(), w.lock.Close())
}

// commitLoop is the committer goroutine: it takes every waiting request (up
// to MaxBatchBytes), writes them with one write and one fsync, then
// completes them.
func (w *WAL) commitLoop() {
	defer close(w.committerEnd)
	var timer *time.Timer
	if w.opts.MaxBatchDelay > 0 {
		timer = time.NewTimer(time.Hour)
		timer.Stop()
	}
	for {
		var r *request
		var ok bool
		select {
		case r, ok = <-w.reqs:
		case lsn := <-w.rollc:
			w.rollFor(lsn)
			continue
		}
		if !ok {
			return
		}
		batch := append(w.batch[:0], r)
		bytes := len(r.payload)
		closing := false
		if timer != nil {
			timer.Reset(w.opts.MaxBatchDelay)
		}
	collect:
		for bytes < w.opts.MaxBatchBytes {
			select {
			case r, ok = <-w.reqs:
			default:
				if timer == nil {
					break collect
				}
				select {
				case r, ok = <-w.reqs:
				case <-timer.C:
					break collect
				}
			}
			if !ok {
				closing = true
				break
			}
			batch = append(batch, r)
			bytes += len(r.payload)
		}
		if timer != nil {
			timer.Stop()
		}
		w.commit(batch)
		clear(batch)
		w.batch = batch[:0]
		if closing {
			return
		}
	}
}

// commit writes and syncs one batch and completes its requests.
func (w *WAL) commit(batch []*request) {
	if err := w.failure(); err != nil {
		complete(batch, 0, err)
		return
	}
	if w.fSize >= w.opts.SegmentSize && w.fSize > fileHeaderSize {
		if err := w.roll(); err != nil {
			complete(batch, 0, err)
			return
		}
	}
	first := w.next
	buf := w.buf[:0]
	payloadBytes := 0
	for i, r := range batch {
		buf = appendRecord(buf, first+uint64(i), first, r.payload)
		payloadBytes += len(r.payload)
	}
	if cap(buf) <= 2*w.opts.MaxBatchBytes {
		w.buf = buf
	} else {
		w.buf = nil // don't pin a buffer grown for one huge record
	}
	if _, err := write(w.f, buf); err != nil {
		complete(batch, 0, w.writeFailed(err))
		return
	}
	w.fSize += int64(len(buf))
	var syncDur time.Duration
	if !w.opts.NoSync {
		start := time.Now()
		if err := fsync(w.f); err != nil {
			complete(batch, 0, w.fail(fmt.Errorf("sync %s: %w", w.f.Name(), err)))
			return
		}
		syncDur = time.Since(start)
		w.stats.fsyncs.Add(1)
		w.stats.fsyncNanos.Add(int64(syncDur))
	}
	w.next += uint64(len(batch))
	w.durable.Store(w.next - 1)
	w.stats.appends.Add(uint64(len(batch)))
	w.stats.payloadBytes.Add(uint64(payloadBytes))
	w.stats.writtenBytes.Add(uint64(len(buf)))
	w.stats.batches.Add(1)
	if w.opts.OnCommit != nil {
		w.opts.OnCommit(CommitInfo{Records: len(batch), Bytes: len(buf), SyncDuration: syncDur})
	}
	complete(batch, first, nil)
}

// complete reports the outcome of a batch whose first LSN is first.
func complete(batch []*request, first uint64, err error) {
	for i, r := range batch {
		lsn := uint64(0)
		if err == nil {
			lsn = first + uint64(i)
		}
		if r.done != nil {
			r.done(lsn, err)
			continue
		}
		r.lsn, r.err = lsn, err
		r.ch <- struct{}{}
	}
}

// fail marks the WAL failed by cause and returns the error every later
// Append gets.
func (w *WAL) fail(cause error) error {
	err := fmt.Errorf("%w: %w", ErrFailed, cause)
	if w.failErr.CompareAndSwap(nil, &err) {
		w.log.Error("wal: I/O error, failing the log; reopen it to recover", "err", cause)
	}
	return w.failure()
}

// rollFor rolls to a new file if every record of the active one is below
// lsn, then deletes the files below lsn (see TruncateBefore).
func (w *WAL) rollFor(lsn uint64) {
	if w.failure() != nil || w.next > lsn || w.fSize <= fileHeaderSize {
		return
	}
	if err := w.roll(); err != nil {
		return // logged
	}
	if err := w.release(lsn); err != nil {
		w.log.Warn("wal: deleting the released active file failed", "err", err)
	}
}

// writeFailed handles a failed write of a batch to the active file (a full
// disk, typically, after part of the batch was written): it truncates the
// file back to the end of the last durable batch and syncs that, so the log
// is as before the write and accepts the next one. The batch gets an error
// (a *SpaceError for ENOSPC). Only if the rollback fails is the WAL failed:
// the partial batch then stays as a torn tail, which Open truncates.
func (w *WAL) writeFailed(err error) error {
	w.stats.writeErrors.Add(1)
	name := w.f.Name() // err, an *os.PathError, names it too
	rerr := truncate(w.f, w.fSize)
	if rerr == nil && !w.opts.NoSync {
		rerr = fsync(w.f)
	}
	if rerr != nil {
		return w.fail(fmt.Errorf("%w; rolling it back to offset %d failed: %w", err, w.fSize, rerr))
	}
	w.log.Warn("wal: write failed and was rolled back", "file", name, "offset", w.fSize, "err", err)
	return w.space.writeError("", err)
}

// roll closes the active file (already fsynced: every batch is) and starts
// a new one at the next LSN. If the new file cannot be created (a full
// disk), it is removed again and the error returned; the WAL goes on with
// the old file and retries the roll with the next batch. Only if that
// removal fails is the WAL failed.
func (w *WAL) roll() error {
	path := filepath.Join(w.opts.Dir, fileName(w.next))
	if err := createFile(w.opts.Dir, w.next, w.opts.NoSync, false); err != nil {
		w.stats.writeErrors.Add(1)
		if errors.Is(err, os.ErrExist) { // not ours to remove
			return w.fail(err)
		}
		// A crash before the removal is durable leaves a file with a torn
		// header or no record, which Open repairs: no record was written
		// after it.
		if rerr := os.Remove(path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			return w.fail(fmt.Errorf("%w; removing the new file failed: %w", err, rerr))
		}
		w.log.Warn("wal: creating a new file failed; retrying with the next write", "file", path, "err", err)
		return w.space.writeError("", err)
	}
	defer w.space.refresh()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return w.fail(fmt.Errorf("open %s: %w", path, err))
	}
	old := w.f
	w.f, w.fSize = f, fileHeaderSize
	w.segMu.Lock()
	w.segs = append(w.segs, segment{first: w.next})
	w.segMu.Unlock()
	w.stats.filesCreated.Add(1)
	w.stats.files.Add(1)
	if err := old.Close(); err != nil {
		w.log.Warn("wal: closing rolled file", "file", old.Name(), "err", err)
	}
	return nil
}
