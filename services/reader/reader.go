// Package reader is the read path of a Strom frontend: it finds a bucket's
// committed segment ranges in the catalog and reads only the projected
// columns' bytes from the object store, waiting for new commits when asked
// to long-poll.
package reader

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/services/batch"
	"github.com/strom-io/strom/services/kv"
	"github.com/strom-io/strom/services/notify"
	"github.com/strom-io/strom/services/objstore"
	"github.com/strom-io/strom/services/segment"
)

// Errors of Fetch.
var (
	// ErrOffsetOutOfRange: the offset is before the bucket's first retained
	// offset or after its next offset.
	ErrOffsetOutOfRange = errors.New("reader: offset out of range")
	// ErrUnknownColumn: a projected column is not in the table.
	ErrUnknownColumn = errors.New("reader: unknown column")
	// ErrInvalidColumns: the projection names a column twice.
	ErrInvalidColumns = errors.New("reader: invalid projection")
	// ErrUnknownBucket: the bucket number is not in the table.
	ErrUnknownBucket = errors.New("reader: unknown bucket")
)

// segmentsPerFetch bounds the catalog rows read per Fetch; MaxBytes
// usually ends a Fetch first.
const segmentsPerFetch = 128

// Store is the part of the catalog the reader uses.
type Store interface {
	ListSegments(ctx context.Context, b catalog.BucketID, from int64, limit int) ([]catalog.SegmentRange, error)
	GetBucket(ctx context.Context, b catalog.BucketID) (catalog.BucketState, error)
	OffsetForTimestamp(ctx context.Context, b catalog.BucketID, ts time.Time) (int64, error)
}

// Reader reads committed records. It is safe for concurrent use.
type Reader struct {
	store   Store
	objects segment.RangeReader
	hub     *notify.Hub
	mem     memory.Allocator
	indexes *segment.IndexCache
}

// IndexCacheBytes bounds the memory of the decoded section indexes a reader
// keeps (segment.IndexCache): with them, a read of a section already read
// once fetches only its chunks. An index takes about 130 bytes per column
// per batch, so 32 MiB hold those of some 10,000 sections of 20 columns.
const IndexCacheBytes = 32 << 20

// New returns a reader over store and objects, woken by hub.
func New(store Store, objects segment.RangeReader, hub *notify.Hub) *Reader {
	return &Reader{store: store, objects: objects, hub: hub, mem: memory.DefaultAllocator, indexes: segment.NewIndexCache(IndexCacheBytes)}
}

// IndexCacheStats returns the counters of the reader's section index
// cache.
func (r *Reader) IndexCacheStats() segment.IndexCacheStats { return r.indexes.Stats() }

// FetchRequest selects records of one bucket.
type FetchRequest struct {
	Table    catalog.Table
	Bucket   catalog.BucketID
	Offset   int64
	MaxBytes int64         // bound on the batches' bytes (segment.ReadBatch.Bytes); the first batch comes however large
	MaxWait  time.Duration // long-poll: wait this long for a commit when none is after Offset
	Columns  []string      // projection; nil for all columns
	// Stored asks for the batches' columns as stored (segment.ReadBatch
	// .Stored, not decompressed) where they can be: all but a first batch
	// that starts before Offset.
	Stored bool
}

// FetchResult holds the records from the requested offset on.
type FetchResult struct {
	// Batches start exactly at the requested offset and are contiguous;
	// the caller releases their records.
	Batches       []segment.ReadBatch
	NextOffset    int64
	HighWatermark int64
	Stats         segment.ReadStats
}

// Release releases every batch's record.
func (r *FetchResult) Release() {
	for _, b := range r.Batches {
		b.Release()
	}
	r.Batches = nil
}

// OutputSchema is the schema of the records a table's log holds: its
// columns, and for a primary-key table (whose log is its changelog) the
// _change_type column.
func OutputSchema(t catalog.Table) *arrow.Schema {
	if t.IsPrimaryKey() {
		return kv.ChangelogSchema(t.Schema)
	}
	return batch.ArrowSchema(t.Schema)
}

// Read calls fn with the committed records of b in [from, to), in order;
// end is the offset after rec. It implements writer.Changelog, which
// rebuilds a primary-key bucket's KV state from its changelog.
func (r *Reader) Read(ctx context.Context, t catalog.Table, b catalog.BucketID, from, to int64, fn func(rec arrow.RecordBatch, end int64) error) error {
	return r.ReadBatches(ctx, t, b, from, to, func(rec arrow.RecordBatch, base int64, _ time.Time) error {
		return fn(rec, base+rec.NumRows())
	})
}

// ReadBatches calls fn with the committed records of b in [from, to), in
// order, each with the offset of its first row and its commit timestamp.
// It implements tiering.Source.
func (r *Reader) ReadBatches(ctx context.Context, t catalog.Table, b catalog.BucketID, from, to int64, fn func(rec arrow.RecordBatch, base int64, ts time.Time) error) error {
	for from < to {
		res, err := r.Fetch(ctx, FetchRequest{Table: t, Bucket: b, Offset: from, MaxBytes: 8 << 20})
		if err != nil {
			return err
		}
		if len(res.Batches) == 0 {
			res.Release()
			return fmt.Errorf("reader: bucket %s: no data at offset %d before %d", b, from, to)
		}
		for _, rb := range res.Batches {
			rec := rb.Record
			end := rb.BaseOffset + rec.NumRows()
			if end > to {
				rec = rec.NewSlice(0, to-rb.BaseOffset)
				end = to
			} else {
				rec.Retain()
			}
			err := fn(rec, rb.BaseOffset, rb.Timestamp)
			rec.Release()
			if err != nil {
				res.Release()
				return err
			}
			from = end
			if from >= to {
				break
			}
		}
		res.Release()
	}
	return nil
}

// Offsets are a bucket's retained range.
type Offsets struct {
	Start, Next int64
}

// BucketOffsets returns b's first retained and next offsets: one read of
// its catalog row, whose next offset it also tells the hub.
func (r *Reader) BucketOffsets(ctx context.Context, b catalog.BucketID) (Offsets, error) {
	st, err := r.store.GetBucket(ctx, b)
	if errors.Is(err, catalog.ErrNotFound) && b.Partition != "" {
		// A partition's bucket has no row before its first write.
		return Offsets{}, nil
	}
	if err != nil {
		return Offsets{}, err
	}
	r.hub.Publish(b, st.NextOffset)
	return Offsets{Start: st.StartOffset, Next: st.NextOffset}, nil
}

// OffsetForTimestamp returns the first offset committed at or after ts.
func (r *Reader) OffsetForTimestamp(ctx context.Context, b catalog.BucketID, ts time.Time) (int64, error) {
	return r.store.OffsetForTimestamp(ctx, b, ts)
}

// Fetch returns committed records of req.Bucket from req.Offset, waiting
// up to req.MaxWait for the first commit after it. Only committed data is
// ever returned.
func (r *Reader) Fetch(ctx context.Context, req FetchRequest) (FetchResult, error) {
	if req.Bucket.Bucket < 0 || req.Bucket.Bucket >= req.Table.Buckets {
		return FetchResult{}, fmt.Errorf("%w: bucket %d, table %s.%s has buckets 0..%d", ErrUnknownBucket, req.Bucket.Bucket, req.Table.Database, req.Table.Name, req.Table.Buckets-1)
	}
	schema := OutputSchema(req.Table)
	named := make(map[string]bool, len(req.Columns))
	for _, c := range req.Columns {
		if len(schema.FieldIndices(c)) == 0 {
			return FetchResult{}, fmt.Errorf("%w %q in table %s.%s", ErrUnknownColumn, c, req.Table.Database, req.Table.Name)
		}
		if named[c] {
			return FetchResult{}, fmt.Errorf("%w: column %q named twice", ErrInvalidColumns, c)
		}
		named[c] = true
	}
	// The committed ranges from the offset on are the one catalog read a
	// Fetch needs: they prove the data committed and say where it is. Only
	// when none is there does it need the bucket's offsets — to tell a
	// consumer that caught up (wait for the next commit) from an offset out
	// of range — and not even then when the hub knows the next offset to
	// be the requested one.
	deadline := time.Now().Add(req.MaxWait)
	for {
		ranges, err := r.store.ListSegments(ctx, req.Bucket, req.Offset, segmentsPerFetch)
		if err != nil {
			return FetchResult{}, err
		}
		if len(ranges) > 0 && ranges[0].BaseOffset <= req.Offset {
			// With fewer ranges than asked for, the last one ends at the
			// bucket's next offset; else that is at least as far.
			hw := ranges[len(ranges)-1].EndOffset
			r.hub.Publish(req.Bucket, hw)
			if next, ok := r.hub.Next(req.Bucket); ok {
				hw = max(hw, next)
			}
			return r.read(ctx, req, schema, ranges, hw)
		}
		if next, ok := r.hub.Next(req.Bucket); !ok || next != req.Offset || len(ranges) > 0 {
			off, err := r.BucketOffsets(ctx, req.Bucket)
			if err != nil {
				return FetchResult{}, err
			}
			if req.Offset < off.Start || req.Offset > off.Next {
				return FetchResult{}, fmt.Errorf("%w: offset %d, bucket %s holds [%d, %d)", ErrOffsetOutOfRange, req.Offset, req.Bucket, off.Start, off.Next)
			}
			if len(ranges) > 0 {
				// Retained, yet no range holds it: the catalog changed
				// under us; the client reads the offsets again.
				return FetchResult{}, fmt.Errorf("%w: no committed range holds offset %d of bucket %s, which holds [%d, %d); read from the earliest offset", ErrOffsetOutOfRange, req.Offset, req.Bucket, off.Start, off.Next)
			}
			if req.Offset < off.Next {
				continue // committed since ListSegments ran
			}
		}
		// No range ends after the offset, and the next offset is known to
		// be at least the offset: the consumer caught up.
		wait := time.Until(deadline)
		if wait <= 0 {
			return FetchResult{NextOffset: req.Offset, HighWatermark: req.Offset}, nil
		}
		r.hub.Wait(ctx, req.Bucket, req.Offset, wait)
		if ctx.Err() != nil {
			return FetchResult{}, ctx.Err()
		}
	}
}

// A fetch reads up to readAhead segment sections concurrently, and no
// more of them than the fetch can use: their bytes (what the projection
// stores in them, from the cached section index, else the whole section)
// within MaxBytes, or readAheadBytes without a limit. A bucket's log is many
// small objects (one per flush), and reading them one GET after another
// would bound catch-up reads, projections and changelog replays by the
// object store's latency rather than its bandwidth; reading beyond what the
// response takes would fetch bytes only to drop them.
const (
	readAhead      = 32
	readAheadBytes = 64 << 20
)

// sectionRead is one segment section being read.
type sectionRead struct {
	batches []segment.ReadBatch
	st      segment.ReadStats
	err     error
	done    chan struct{}
}

// read reads the records of ranges (committed, the first holding
// req.Offset) from req.Offset on.
func (r *Reader) read(ctx context.Context, req FetchRequest, schema *arrow.Schema, ranges []catalog.SegmentRange, hw int64) (FetchResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	reads := make([]*sectionRead, len(ranges))
	start := func(i int) {
		rg := ranges[i]
		sr := &sectionRead{done: make(chan struct{})}
		reads[i] = sr
		go func() {
			defer close(sr.done)
			sr.batches, sr.st, sr.err = segment.ReadSection(ctx, r.objects, rg.ObjectKey, rg.ByteOffset, rg.ByteLength, segment.ReadOptions{
				Schema: schema, Columns: req.Columns, FromOffset: max(req.Offset, rg.BaseOffset), MaxBytes: req.MaxBytes, Allocator: r.mem,
				IndexCache: r.indexes, Stored: req.Stored,
			})
		}()
	}
	consumed := 0
	defer func() {
		// Stop and release the reads started ahead and not used.
		cancel()
		for _, sr := range reads[consumed:] {
			if sr == nil {
				break
			}
			<-sr.done
			for _, b := range sr.batches {
				b.Release()
			}
		}
	}()
	budget := int64(readAheadBytes)
	if req.MaxBytes > 0 {
		budget = req.MaxBytes
	}
	// estimate is what ranges[i] brings to the response (at most).
	estimate := make([]int64, len(ranges))
	for i, rg := range ranges {
		estimate[i] = rg.ByteLength
		if n, ok := r.indexes.ProjectedBytes(rg.ObjectKey, rg.ByteOffset, rg.ByteLength, req.Columns, max(req.Offset, rg.BaseOffset)); ok {
			estimate[i] = max(n, 1)
		}
	}
	started, ahead := 0, int64(0) // sections started; the estimates of all started so far
	startMore := func() {
		for started < len(ranges) && started-consumed < readAhead && (started == consumed || ahead < budget) {
			ahead += estimate[started]
			start(started)
			started++
		}
	}
	startMore()
	res := FetchResult{NextOffset: req.Offset, HighWatermark: hw}
	var used int64 // what the returned batches count against MaxBytes
	for i, rg := range ranges {
		if rg.BaseOffset > res.NextOffset {
			if i == 0 {
				// Retention deleted the offset since BucketOffsets.
				return FetchResult{}, fmt.Errorf("%w: offset %d of bucket %s was deleted by retention; read from the earliest offset", ErrOffsetOutOfRange, req.Offset, req.Bucket)
			}
			break // retention raced with us; return what is contiguous
		}
		sr := reads[i]
		<-sr.done
		consumed = i + 1
		startMore()
		res.Stats.Gets += sr.st.Gets
		res.Stats.BytesFetched += sr.st.BytesFetched
		res.Stats.ChunkBytes += sr.st.ChunkBytes
		res.Stats.Chunks += sr.st.Chunks
		if objstore.IsNotExist(sr.err) {
			res.Release()
			return FetchResult{}, fmt.Errorf("%w: offset %d of bucket %s was deleted by retention; read from the earliest offset", ErrOffsetOutOfRange, res.NextOffset, req.Bucket)
		}
		if sr.err != nil {
			res.Release()
			return FetchResult{}, fmt.Errorf("reader: segment %s: %w", rg.ObjectKey, sr.err)
		}
		full := false
		for _, b := range sr.batches {
			end := b.BaseOffset + b.Rows
			if full || end <= res.NextOffset {
				b.Release()
				continue
			}
			if req.MaxBytes > 0 && len(res.Batches) > 0 && used+b.Bytes > req.MaxBytes {
				// Each section was read with the whole budget.
				full = true
				b.Release()
				continue
			}
			if b.BaseOffset < res.NextOffset {
				if b.Record == nil {
					// Stored batches start at or after the offset each
					// section was read from; sections never overlap.
					b.Release()
					res.Release()
					return FetchResult{}, fmt.Errorf("reader: segment %s: batch at offset %d overlaps the previous section's, which ends at %d", rg.ObjectKey, b.BaseOffset, res.NextOffset)
				}
				skip := res.NextOffset - b.BaseOffset
				sliced := b.Record.NewSlice(skip, b.Record.NumRows())
				b.Release()
				b.Record, b.Rows = sliced, sliced.NumRows()
				b.BaseOffset = res.NextOffset
			}
			res.Batches = append(res.Batches, b)
			res.NextOffset = end
			used += b.Bytes
			full = req.MaxBytes > 0 && used >= req.MaxBytes
		}
		if full {
			break
		}
	}
	return res, nil
}
