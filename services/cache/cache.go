// Package cache is a bounded local disk cache of object byte ranges, the
// "local cache" of Strom's read path: the reader's range GETs go through a
// [Cache], which serves what it holds from local files and fetches the rest
// from the object store.
//
// Objects are cached as aligned blocks of [Config.BlockSize] bytes, one file
// per block, evicted least recently used first so that the files stay within
// [Config.MaxBytes]. Cached bytes are never revalidated: the cache is for
// immutable objects (segments, KV snapshot SSTs), whose keys are never
// rewritten with other bytes.
//
// On-disk layout: Dir/blocks-<block size>/<hh>/<hash>-<index>, where hash
// is 32 hex digits of the SHA-256 of the key, hh its first two, and index
// the block's number (block i holds bytes [i*BlockSize, (i+1)*BlockSize)).
// A file holds a prefix of its block (the whole block, except at the end
// of an object or of what has been read so far) followed by an 8-byte
// trailer: the CRC-32C of the data and a magic number. Files are written
// to a temporary file and renamed into place, without fsync: after a crash
// a file may be torn, which the checksum detects.
package cache

import (
	"bytes"
	"container/list"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// RangeReader reads byte ranges of objects: the interface of the inner
// store a [Cache] reads through, and the one Cache implements.
// objstore.BucketReader and segment.RangeReader have this method.
//
// GetRange must yield exactly length bytes of the object starting at off,
// or fail; it must be safe for concurrent use.
type RangeReader interface {
	GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error)
}

const (
	// maxAttempts bounds the planning rounds of one GetRange (a round is
	// repeated when a cached file turns out bad or a shared fetch was
	// cancelled by its leader); after that GetRange reads from inner.
	maxAttempts = 3
	// touchInterval is how stale a file's mtime (its recency after a
	// restart) may get before a hit refreshes it.
	touchInterval = time.Minute
)

// Cache is a bounded local disk cache in front of a [RangeReader]. It is
// safe for concurrent use. A Cache has no background goroutines and needs
// no Close; readers it returns must be closed.
type Cache struct {
	cfg   Config
	inner RangeReader
	log   *slog.Logger
	root  string // Dir/blocks-<BlockSize>
	bs    int64
	// maxBlocks is the most blocks a cached GetRange may span: half of
	// what MaxBytes holds, at least one. Larger ranges bypass the cache.
	maxBlocks int64

	mu      sync.Mutex
	index   map[blockID]*entry
	lru     list.List // of *entry, most recently used first
	objs    map[objID]*objInfo
	flights map[blockID]*flight
	bytes   int64 // on-disk bytes of the indexed files

	hits, misses, shared       atomic.Int64
	innerGets, innerBytes      atomic.Int64
	served, bypassed           atomic.Int64
	evictions, dropped, writes atomic.Int64
	writeErrors                atomic.Int64
	waiting                    atomic.Int64 // blocks of GetRange calls that wait for another call's fetch now
}

// objID names an object: the first 16 bytes of the SHA-256 of its key.
type objID [16]byte

func hashKey(key string) objID {
	s := sha256.Sum256([]byte(key))
	return objID(s[:16])
}

// blockID names block idx of an object.
type blockID struct {
	obj objID
	idx int64
}

// entry is a cached block file.
type entry struct {
	id       blockID
	n        int64 // data bytes in the file (a prefix of the block)
	elem     *list.Element
	verified bool      // checksum checked (or written by this process)
	touched  time.Time // last mtime set
}

// objInfo is what the cache knows about one object.
type objInfo struct {
	// extent is a lower bound on the object's size: the end of the
	// furthest byte read from it. Objects are immutable, so fetches may
	// extend to it without risking a read past the end.
	extent int64
	blocks int // indexed blocks; the objInfo is dropped at zero
}

// flight is a fetch in progress of the first n bytes of a block. data and
// err are set before done is closed.
type flight struct {
	n    int64
	done chan struct{}
	data []byte
	err  error
}

// Stats are counters since New, for metrics. Blocks count per aligned
// block touched by a GetRange.
type Stats struct {
	Hits        int64 // blocks served from cached files
	Misses      int64 // blocks fetched from the inner reader
	Shared      int64 // blocks taken from a concurrent caller's fetch
	InnerGets   int64 // GetRange calls on the inner reader for missing blocks
	InnerBytes  int64 // bytes read from the inner reader for missing blocks
	ServedBytes int64 // bytes returned through the cache (bypasses excluded)
	Bypassed    int64 // GetRange calls passed straight to inner (too large, invalid, or after repeated retries)
	Evictions   int64 // block files evicted to stay within MaxBytes
	Dropped     int64 // cached files found corrupt, short or missing, and deleted
	Writes      int64 // block files written
	WriteErrors int64 // block files that could not be written (the read still succeeds)
	Bytes       int64 // bytes of block files on disk now
	Blocks      int64 // block files on disk now
}

// New returns a Cache over inner in cfg.Dir. Zero MaxBytes and BlockSize
// take their defaults; then cfg must pass Validate. New creates the
// directory if needed, deletes temporary files and blocks of other block
// sizes left by earlier runs, and indexes the cached blocks with their
// file mtimes as recency, evicting beyond MaxBytes. Blocks found there are
// checksummed on their first use. A nil logger discards logs.
func New(cfg Config, inner RangeReader, logger *slog.Logger) (*Cache, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if inner == nil {
		return nil, errors.New("cache: inner reader is nil")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &Cache{
		cfg:       cfg,
		inner:     inner,
		log:       logger,
		bs:        cfg.BlockSize,
		maxBlocks: max(1, cfg.MaxBytes/2/(cfg.BlockSize+trailerLen)),
		index:     make(map[blockID]*entry),
		objs:      make(map[objID]*objInfo),
		flights:   make(map[blockID]*flight),
	}
	if err := c.load(); err != nil {
		return nil, err
	}
	return c, nil
}

// GetRange implements [RangeReader]: it returns a reader of exactly length
// bytes of key starting at off, then io.EOF. The caller must Close it.
//
// Cached blocks are served from local files; the missing ones are fetched
// from inner, consecutive ones in one GetRange, and cached. A fetch never
// extends past the requested range's end except up to bytes of the object
// already read once (the object's known extent), so it never asks inner for
// bytes beyond the object. Concurrent calls needing the same block share
// one fetch.
//
// Errors of inner are returned unchanged (or wrapped with %w when reading
// the body fails), so objstore.IsNotExist and errors.Is classify them; a
// failure to write the cache is logged and counted, never returned. Invalid
// ranges (negative off or length), empty ranges and ranges spanning more
// blocks than half of MaxBytes holds go straight to inner, uncached.
func (c *Cache) GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	if off < 0 || length <= 0 || off > math.MaxInt64-length ||
		(off+length-1)/c.bs-off/c.bs+1 > c.maxBlocks {
		c.bypassed.Add(1)
		return c.inner.GetRange(ctx, key, off, length)
	}
	obj := hashKey(key)
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		rc, retry, err := c.try(ctx, key, obj, off, length)
		if !retry {
			return rc, err
		}
		if attempt == maxAttempts {
			c.log.Warn("cache: giving up on the cache for a range after repeated retries", "key", key, "off", off, "length", length)
			c.bypassed.Add(1)
			return c.inner.GetRange(ctx, key, off, length)
		}
	}
}

// part is where one block of a request comes from: an open cached file
// (with its entry) or a flight, possibly one this call leads.
type part struct {
	file  *os.File
	entry *entry
	fl    *flight
	own   bool
}

// try makes one attempt at GetRange. It reports retry when the attempt
// found a bad cached file or a shared fetch cancelled by its leader.
func (c *Cache) try(ctx context.Context, key string, obj objID, off, length int64) (_ io.ReadCloser, retry bool, _ error) {
	bs := c.bs
	end := off + length
	first, last := off/bs, (end-1)/bs
	parts := make([]part, last-first+1)
	var touch []string
	now := time.Now()

	// Plan: for each block, a cached file, someone's flight, or a new
	// flight of our own.
	var joined int64 // others' flights this call waits for
	c.mu.Lock()
	limit := end
	if o := c.objs[obj]; o != nil && o.extent > limit {
		limit = o.extent
	}
	for i := range parts {
		idx := first + int64(i)
		id := blockID{obj, idx}
		need := min((idx+1)*bs, end) - idx*bs
		p := &parts[i]
		if e := c.index[id]; e != nil && e.n >= need {
			path := c.path(id)
			f, err := os.Open(path)
			if err == nil {
				p.file, p.entry = f, e
				c.lru.MoveToFront(e.elem)
				if now.Sub(e.touched) > touchInterval {
					e.touched = now
					touch = append(touch, path)
				}
				continue
			}
			c.log.Warn("cache: cached block file cannot be opened; refetching", "file", path, "err", err)
			c.dropLocked(e)
		}
		if fl := c.flights[id]; fl != nil && fl.n >= need {
			p.fl = fl
			joined++
			continue
		}
		fl := &flight{n: min(bs, limit-idx*bs), done: make(chan struct{})}
		c.flights[id] = fl
		p.fl, p.own = fl, true
	}
	c.waiting.Add(joined)
	c.mu.Unlock()
	defer c.waiting.Add(-joined)

	closeAll := func() {
		for i := range parts {
			if f := parts[i].file; f != nil {
				f.Close()
			}
		}
	}
	for _, path := range touch {
		_ = os.Chtimes(path, now, now) // recency for the next start; best effort
	}

	// Fetch our runs of consecutive missing blocks, concurrently.
	type run struct{ i, j int }
	var runs []run
	for i := 0; i < len(parts); {
		if !parts[i].own {
			i++
			continue
		}
		j := i + 1
		for j < len(parts) && parts[j].own {
			j++
		}
		runs = append(runs, run{i, j})
		i = j
	}
	errs := make([]error, len(runs))
	if len(runs) == 1 {
		r := runs[0]
		errs[0] = c.fetch(ctx, key, obj, first+int64(r.i), parts[r.i:r.j])
	} else if len(runs) > 1 {
		var wg sync.WaitGroup
		for k, r := range runs {
			wg.Go(func() { errs[k] = c.fetch(ctx, key, obj, first+int64(r.i), parts[r.i:r.j]) })
		}
		wg.Wait()
	}

	// Check the cached files we are about to serve.
	for i := range parts {
		p := &parts[i]
		if p.file == nil {
			continue
		}
		if err := c.check(p.entry, p.file); err != nil {
			c.log.Warn("cache: dropping bad cached block; refetching", "file", p.file.Name(), "err", err)
			c.mu.Lock()
			if c.index[p.entry.id] == p.entry {
				c.dropLocked(p.entry)
				os.Remove(c.path(p.entry.id))
			}
			c.mu.Unlock()
			retry = true
		}
	}
	for _, err := range errs {
		if err != nil {
			closeAll()
			return nil, false, err
		}
	}
	// Wait for the flights of others.
	for i := range parts {
		p := &parts[i]
		if p.fl == nil || p.own {
			continue
		}
		select {
		case <-p.fl.done:
		case <-ctx.Done():
			closeAll()
			return nil, false, ctx.Err()
		}
		if err := p.fl.err; err != nil {
			if (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) && ctx.Err() == nil {
				retry = true // the leader's context ended, not ours
				continue
			}
			closeAll()
			return nil, false, err
		}
	}
	if retry {
		closeAll()
		return nil, true, nil
	}

	// Assemble.
	readers := make([]io.Reader, len(parts))
	var files []*os.File
	var hits, misses, shared int64
	for i := range parts {
		p := &parts[i]
		idx := first + int64(i)
		a := max(off, idx*bs) - idx*bs
		b := min(end, (idx+1)*bs) - idx*bs
		switch {
		case p.file != nil:
			readers[i] = io.NewSectionReader(p.file, a, b-a)
			files = append(files, p.file)
			hits++
		default:
			readers[i] = bytes.NewReader(p.fl.data[a:b])
			if p.own {
				misses++
			} else {
				shared++
			}
		}
	}
	c.hits.Add(hits)
	c.misses.Add(misses)
	c.shared.Add(shared)
	c.served.Add(length)
	if len(readers) == 1 {
		return &readCloser{Reader: readers[0], files: files}, false, nil
	}
	return &readCloser{Reader: io.MultiReader(readers...), files: files}, false, nil
}

// fetch reads the blocks of ps, which start at block idx0 and are flights
// this call leads, with one inner GetRange; completes the flights; and
// caches the blocks. An error of inner is returned unchanged.
func (c *Cache) fetch(ctx context.Context, key string, obj objID, idx0 int64, ps []part) (err error) {
	bs := c.bs
	start := idx0 * bs
	total := int64(len(ps)-1)*bs + ps[len(ps)-1].fl.n
	defer func() {
		if err == nil {
			return
		}
		c.mu.Lock()
		for i, p := range ps {
			if id := (blockID{obj, idx0 + int64(i)}); c.flights[id] == p.fl {
				delete(c.flights, id)
			}
			p.fl.err = err
			close(p.fl.done)
		}
		c.mu.Unlock()
	}()
	c.innerGets.Add(1)
	rc, err := c.inner.GetRange(ctx, key, start, total)
	if err != nil {
		return err
	}
	buf := make([]byte, total)
	n, err := io.ReadFull(rc, buf)
	rc.Close()
	c.innerBytes.Add(int64(n))
	if err != nil {
		return fmt.Errorf("cache: read %q [%d, +%d) from the inner store: %w", key, start, total, err)
	}
	for i, p := range ps {
		a := int64(i) * bs
		p.fl.data = buf[a : a+p.fl.n : a+p.fl.n]
		close(p.fl.done) // waiters may serve the data now
	}
	for i, p := range ps {
		c.store(blockID{obj, idx0 + int64(i)}, p.fl)
	}
	return nil
}

// store writes the block that fl fetched to its file and indexes it,
// evicting as needed, then retires fl.
func (c *Cache) store(id blockID, fl *flight) {
	n := int64(len(fl.data))
	size := n + trailerLen
	var tmp string
	var werr error
	if size <= c.cfg.MaxBytes {
		tmp, werr = writeTemp(c.dir(id), fl.data)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.flights[id] == fl {
		delete(c.flights, id)
	}
	switch {
	case werr != nil:
		c.writeErrors.Add(1)
		c.log.Warn("cache: cannot write block file", "err", werr)
		return
	case tmp == "":
		return
	}
	if old := c.index[id]; old != nil {
		if old.n >= n { // a concurrent fetch cached as much or more
			os.Remove(tmp)
			return
		}
		c.unlinkLocked(old) // the rename below replaces its file
	}
	// Insert before evicting, so that what is known of the object (its
	// extent) survives the eviction of its other blocks.
	e := c.insertLocked(id, n, true, time.Now())
	c.evictLocked(e)
	if err := os.Rename(tmp, c.path(id)); err != nil {
		os.Remove(tmp)
		c.unlinkLocked(e)
		c.writeErrors.Add(1)
		c.log.Warn("cache: cannot write block file", "err", err)
		return
	}
	c.writes.Add(1)
}

// check verifies a cached file before it is served: its size, and its
// checksum if this process has not checked or written it.
func (c *Cache) check(e *entry, f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() != e.n+trailerLen {
		return fmt.Errorf("%d bytes, want %d", fi.Size(), e.n+trailerLen)
	}
	c.mu.Lock()
	verified := e.verified
	c.mu.Unlock()
	if verified {
		return nil
	}
	buf := make([]byte, fi.Size())
	if _, err := f.ReadAt(buf, 0); err != nil {
		return err
	}
	if err := verifyBlock(buf); err != nil {
		return err
	}
	c.mu.Lock()
	e.verified = true
	if c.index[e.id] == e {
		o := c.objs[e.id.obj]
		o.extent = max(o.extent, e.id.idx*c.bs+e.n)
	}
	c.mu.Unlock()
	return nil
}

// insertLocked indexes a block file as the most recently used.
func (c *Cache) insertLocked(id blockID, n int64, verified bool, mtime time.Time) *entry {
	e := &entry{id: id, n: n, verified: verified, touched: mtime}
	e.elem = c.lru.PushFront(e)
	c.index[id] = e
	c.bytes += n + trailerLen
	o := c.objs[id.obj]
	if o == nil {
		o = &objInfo{}
		c.objs[id.obj] = o
	}
	o.blocks++
	if verified {
		o.extent = max(o.extent, id.idx*c.bs+n)
	}
	return e
}

// unlinkLocked removes e from the index, leaving its file.
func (c *Cache) unlinkLocked(e *entry) {
	delete(c.index, e.id)
	c.lru.Remove(e.elem)
	c.bytes -= e.n + trailerLen
	if o := c.objs[e.id.obj]; o != nil {
		if o.blocks--; o.blocks <= 0 {
			delete(c.objs, e.id.obj)
		}
	}
}

// dropLocked removes a bad block from the index and counts it; the caller
// removes the file if there is one.
func (c *Cache) dropLocked(e *entry) {
	c.unlinkLocked(e)
	c.dropped.Add(1)
}

// evictLocked evicts least recently used blocks other than keep (which may
// be nil) until the indexed files fit within MaxBytes.
func (c *Cache) evictLocked(keep *entry) {
	for c.bytes > c.cfg.MaxBytes && c.lru.Len() > 0 {
		e := c.lru.Back().Value.(*entry)
		if e == keep {
			break // keep is the only block left; MaxBytes >= 2*BlockSize makes this unreachable
		}
		c.unlinkLocked(e)
		if err := os.Remove(c.path(e.id)); err != nil && !errors.Is(err, os.ErrNotExist) {
			c.log.Warn("cache: cannot remove evicted block file", "err", err)
		}
		c.evictions.Add(1)
	}
}

// Stats returns the counters since New and the current size.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	b, n := c.bytes, int64(len(c.index))
	c.mu.Unlock()
	return Stats{
		Hits:        c.hits.Load(),
		Misses:      c.misses.Load(),
		Shared:      c.shared.Load(),
		InnerGets:   c.innerGets.Load(),
		InnerBytes:  c.innerBytes.Load(),
		ServedBytes: c.served.Load(),
		Bypassed:    c.bypassed.Load(),
		Evictions:   c.evictions.Load(),
		Dropped:     c.dropped.Load(),
		Writes:      c.writes.Load(),
		WriteErrors: c.writeErrors.Load(),
		Bytes:       b,
		Blocks:      n,
	}
}

// readCloser serves a range and closes the cached files it reads from.
// Files stay readable after eviction unlinks them.
type readCloser struct {
	io.Reader
	files []*os.File
}

func (r *readCloser) Close() error {
	var err error
	for _, f := range r.files {
		if e := f.Close(); err == nil {
			err = e
		}
	}
	r.files = nil
	return err
}
