package segment

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/strom-io/strom/services/batch"
)

// RangeReader reads byte ranges of objects. objstore.BucketReader satisfies
// it. GetRange must yield exactly length bytes (or fail); it may be called
// from several goroutines at once.
type RangeReader interface {
	GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error)
}

// Defaults of [ReadOptions].
const (
	DefaultTailSize    = 64 << 10 // first GET: the section's last 64 KiB
	DefaultCoalesceGap = 32 << 10 // merge chunk ranges less than 32 KiB apart
	DefaultConcurrency = 4        // parallel GETs per ReadSection
)

// ReadOptions selects what [ReadSection] reads. The zero value reads every
// stored column of every batch with the default allocator.
type ReadOptions struct {
	// Schema is the output schema: the table's current schema. Every
	// returned record has the fields of Schema named by Columns, in that
	// order, with Schema's types and nullability. A nullable column missing
	// from an older batch comes back all null; a NOT NULL one is an error
	// wrapping ErrSchemaMismatch, as is a stored column of another type.
	// With a nil Schema, records have the stored fields of each batch.
	Schema *arrow.Schema

	// Columns projects by name; nil means all fields of Schema (or, with
	// no Schema, all stored columns of each batch). A name that Schema
	// (or, with no Schema, a selected batch) lacks is an error wrapping
	// ErrUnknownColumn; naming a column twice is an error wrapping
	// ErrInvalidOptions.
	Columns []string

	// FromOffset skips whole batches that end at or before it. The first
	// returned batch may start before FromOffset: the caller slices it.
	FromOffset int64

	// MaxBytes, when positive, bounds the bytes of the returned batches
	// (see ReadBatch.Bytes): the batch that would bring their total over
	// MaxBytes is not returned, nor any after it. The first batch after
	// FromOffset is returned however large, so that a reader makes
	// progress.
	MaxBytes int64

	// TailSize is the length of the first GET, from the end of the section
	// (default DefaultTailSize; at least the index is fetched). Chunks that
	// lie inside it are not fetched again, so a small section takes one GET.
	TailSize int64

	// CoalesceGap merges the ranges of two wanted chunks into one GET when
	// fewer than CoalesceGap unwanted bytes lie between them (default
	// DefaultCoalesceGap; negative disables merging).
	CoalesceGap int64

	// Concurrency bounds parallel GETs (default DefaultConcurrency).
	Concurrency int

	// Allocator allocates the returned arrays (default
	// memory.DefaultAllocator).
	Allocator memory.Allocator

	// IndexCache, if set, holds decoded section indexes: a section whose
	// index it has is read without the GET of its tail.
	IndexCache *IndexCache

	// Stored returns the batches that start at or after FromOffset with
	// their columns as stored (ReadBatch.Stored) instead of decoded: their
	// chunks are checked (CRC, message metadata, type against Schema) but
	// not decompressed, for a reader that hands them on as they are. It
	// needs Schema. A batch that starts before FromOffset is decoded.
	Stored bool
}

// Release releases the batch's record, if it has one.
func (b ReadBatch) Release() {
	if b.Record != nil {
		b.Record.Release()
	}
}

// ReadBatch is one batch read by [ReadSection]. Row i has offset
// BaseOffset+i and append time Timestamp; readers synthesize the `_offset`
// and `_timestamp` columns from them.
type ReadBatch struct {
	BaseOffset    int64
	Timestamp     time.Time // UTC, microsecond precision
	SchemaVersion int32
	// Rows is the number of rows.
	Rows int64
	// Record holds the projected columns. The caller must Release it.
	// It is nil when Stored is set.
	Record arrow.RecordBatch
	// Stored, with ReadOptions.Stored, holds the projected columns as
	// their chunks store them (compressed), one per output column, nil
	// for a column the batch lacks (it reads as nulls), all with the
	// section's compression, StoredCompression.
	Stored            []*batch.IPCColumn
	StoredCompression int
	// Bytes is what the batch counts against ReadOptions.MaxBytes: its
	// projected chunks' bytes as stored (encoded), plus, for each projected
	// column the batch lacks (added to the schema after it was written;
	// it reads as nulls), the bytes of a validity bitmap of its rows. It
	// is positive for any batch with rows, so a small MaxBytes always ends
	// a read.
	Bytes int64
}

// missingColumnBytes is what a projected column a batch of rows lacks
// counts against ReadOptions.MaxBytes: the bytes of its validity bitmap.
func missingColumnBytes(rows int64) int64 { return max(1, (rows+7)/8) }

// ReadStats reports the I/O of one [ReadSection].
type ReadStats struct {
	Gets         int   // GetRange calls
	BytesFetched int64 // bytes of all GetRange calls
	IndexBytes   int64 // section index and its 8-byte trailer
	ChunkBytes   int64 // bytes of the chunks decoded
	Chunks       int   // chunks decoded
}

// ReadSection reads the section [off, off+length) of the object key, as
// recorded in the catalog (SegmentRange.ByteOffset and ByteLength), and
// returns its batches from opts.FromOffset on, projected to opts.Columns.
//
// It first GETs the section's tail (opts.TailSize bytes, or the whole index
// if larger: then a second GET), verifies the index, then GETs only the
// column chunks of the projection, merging neighbouring ranges, and decodes
// them with arrow-go's IPC stream reader. Every chunk's CRC-32C is checked
// and every decoded array validated; bad bytes yield an error wrapping
// ErrCorrupt, never a panic.
//
// The caller releases every returned record. On error no record is returned
// and everything allocated has been released. ReadStats is valid on error
// too (what was fetched before it).
func ReadSection(ctx context.Context, r RangeReader, key string, off, length int64, opts ReadOptions) ([]ReadBatch, ReadStats, error) {
	var st ReadStats
	if off < 0 || length < minSectionLen {
		return nil, st, fmt.Errorf("%w: section range [%d, +%d) (a section has at least %d bytes)", ErrInvalidOptions, off, length, minSectionLen)
	}
	opts.setDefaults()
	proj, err := opts.projection()
	if err != nil {
		return nil, st, err
	}

	// 1. The index: from the cache, or from the tail (index, trailer and
	// maybe some chunks).
	ck := indexKey{object: key, offset: off, length: length}
	var tail []byte
	tailStart := length // relative to the section: no chunk comes from the tail
	idxp, cached := opts.IndexCache.get(ck)
	if !cached {
		tailLen := min(length, max(opts.TailSize, sectionTrailerLen))
		tailStart = length - tailLen
		var err error
		if tail, err = fetch(ctx, r, key, off+tailStart, tailLen, &st); err != nil {
			return nil, st, err
		}
		idxLen := int64(leUint32(tail[len(tail)-8:]))
		if need := idxLen + sectionTrailerLen; need > tailLen {
			if need > length {
				return nil, st, fmt.Errorf("%w section: index length %d exceeds the section length %d", ErrCorrupt, idxLen, length)
			}
			head, err := fetch(ctx, r, key, off+length-need, need-tailLen, &st)
			if err != nil {
				return nil, st, err
			}
			tail = append(head, tail...)
			tailStart = length - need
		}
		idx, err := DecodeSectionIndexTail(tail, length)
		if err != nil {
			return nil, st, fmt.Errorf("object %q section [%d, +%d): %w", key, off, length, err)
		}
		st.IndexBytes = idxLen + sectionTrailerLen
		idxp = &idx
		opts.IndexCache.add(ck, idxp)
	}
	idx := idxp // shared with the cache: read only

	// 2. Batches and chunks to read.
	type want struct {
		batch int
		col   int // index into the batch's output columns
		meta  ColumnMeta
		data  []byte
	}
	var wants []*want
	type outBatch struct {
		meta  *BatchMeta
		names []string
		wants []*want // per output column; nil for a missing column
		bytes int64   // see ReadBatch.Bytes
	}
	var batches []outBatch
	var total int64
	for i := range idx.Batches {
		b := &idx.Batches[i]
		if b.BaseOffset+b.RowCount <= opts.FromOffset {
			continue
		}
		ob := outBatch{meta: b, names: proj}
		if ob.names == nil {
			ob.names = make([]string, len(b.Columns))
			for j, c := range b.Columns {
				ob.names[j] = c.Name
			}
		}
		ob.wants = make([]*want, len(ob.names))
		for j, name := range ob.names {
			c, ok := b.Column(name)
			if !ok {
				if opts.Schema == nil {
					return nil, st, fmt.Errorf("%w %q: batch at offset %d does not store it", ErrUnknownColumn, name, b.BaseOffset)
				}
				ob.bytes += missingColumnBytes(b.RowCount)
				continue
			}
			ob.wants[j] = &want{batch: len(batches), col: j, meta: c}
			ob.bytes += c.Length
		}
		if opts.MaxBytes > 0 && len(batches) > 0 && total+ob.bytes > opts.MaxBytes {
			break
		}
		for _, w := range ob.wants {
			if w != nil {
				wants = append(wants, w)
			}
		}
		batches = append(batches, ob)
		total += ob.bytes
		if opts.MaxBytes > 0 && total >= opts.MaxBytes {
			break
		}
	}

	// 3. Fetch: chunks in the tail are sliced from it; the rest in
	// coalesced ranges.
	sorted := slices.Clone(wants)
	slices.SortFunc(sorted, func(a, b *want) int { return cmp.Compare(a.meta.Offset, b.meta.Offset) })
	type span struct {
		start, end int64
		wants      []*want
	}
	var spans []*span
	for _, w := range sorted {
		if w.meta.Offset >= tailStart {
			p := w.meta.Offset - tailStart
			w.data = tail[p : p+w.meta.Length]
			continue
		}
		end := w.meta.Offset + w.meta.Length
		if n := len(spans); n > 0 && opts.CoalesceGap >= 0 && w.meta.Offset-spans[n-1].end < opts.CoalesceGap {
			s := spans[n-1]
			s.end = max(s.end, end)
			s.wants = append(s.wants, w)
			continue
		}
		spans = append(spans, &span{start: w.meta.Offset, end: end, wants: []*want{w}})
	}
	var (
		mu       sync.Mutex
		wg       sync.WaitGroup
		firstErr error
		sem      = make(chan struct{}, opts.Concurrency)
	)
	for _, s := range spans {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			var local ReadStats
			data, err := fetch(ctx, r, key, off+s.start, s.end-s.start, &local)
			mu.Lock()
			defer mu.Unlock()
			st.Gets += local.Gets
			st.BytesFetched += local.BytesFetched
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			for _, w := range s.wants {
				p := w.meta.Offset - s.start
				w.data = data[p : p+w.meta.Length]
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, st, firstErr
	}

	// 4. Decode and assemble.
	var outSchema *arrow.Schema
	if opts.Schema != nil {
		fields := make([]arrow.Field, len(proj))
		for i, name := range proj {
			j := opts.Schema.FieldIndices(name)[0]
			fields[i] = opts.Schema.Field(j)
		}
		md := opts.Schema.Metadata()
		outSchema = arrow.NewSchema(fields, &md)
	}
	if opts.Stored && outSchema == nil {
		return nil, st, fmt.Errorf("%w: Stored needs a Schema", ErrInvalidOptions)
	}
	out := make([]ReadBatch, 0, len(batches))
	release := func() {
		for _, b := range out {
			b.Release()
		}
	}
	for _, ob := range batches {
		b := ob.meta
		if opts.Stored && b.BaseOffset >= opts.FromOffset {
			rb := ReadBatch{BaseOffset: b.BaseOffset, Timestamp: b.Timestamp, SchemaVersion: b.SchemaVersion, Rows: b.RowCount, Bytes: ob.bytes,
				Stored: make([]*batch.IPCColumn, len(ob.names)), StoredCompression: idx.Codec.ipcCompression()}
			for j, name := range ob.names {
				w, f := ob.wants[j], outSchema.Field(j)
				if w == nil {
					if !f.Nullable {
						release()
						return nil, st, fmt.Errorf("%w: NOT NULL column %q is missing from the batch at offset %d (schema version %d)", ErrSchemaMismatch, name, b.BaseOffset, b.SchemaVersion)
					}
					continue
				}
				st.Chunks++
				st.ChunkBytes += w.meta.Length
				col, err := storedChunk(w.data, w.meta, b.RowCount, f)
				if err != nil {
					release()
					return nil, st, fmt.Errorf("object %q section [%d, +%d) batch at offset %d column %q: %w", key, off, length, b.BaseOffset, name, err)
				}
				if col.Compression != rb.StoredCompression {
					release()
					return nil, st, fmt.Errorf("%w chunk: object %q batch at offset %d column %q: compression %d, the section's is %d", ErrCorrupt, key, b.BaseOffset, name, col.Compression, rb.StoredCompression)
				}
				rb.Stored[j] = col
			}
			out = append(out, rb)
			continue
		}
		cols := make([]arrow.Array, len(ob.names))
		fields := make([]arrow.Field, len(ob.names))
		releaseCols := func() {
			for _, c := range cols {
				if c != nil {
					c.Release()
				}
			}
		}
		for j, name := range ob.names {
			w := ob.wants[j]
			var outField *arrow.Field
			if outSchema != nil {
				f := outSchema.Field(j)
				outField = &f
				fields[j] = f
			}
			if w == nil {
				if !outField.Nullable {
					releaseCols()
					release()
					return nil, st, fmt.Errorf("%w: NOT NULL column %q is missing from the batch at offset %d (schema version %d)", ErrSchemaMismatch, name, b.BaseOffset, b.SchemaVersion)
				}
				cols[j] = array.MakeArrayOfNull(opts.Allocator, outField.Type, int(b.RowCount))
				continue
			}
			st.Chunks++
			st.ChunkBytes += w.meta.Length
			col, f, err := decodeChunk(w.data, w.meta, b.RowCount, opts.Allocator)
			if err != nil {
				releaseCols()
				release()
				return nil, st, fmt.Errorf("object %q section [%d, +%d) batch at offset %d column %q: %w", key, off, length, b.BaseOffset, name, err)
			}
			cols[j] = col
			if outField == nil {
				fields[j] = f
				continue
			}
			switch {
			case !arrow.TypeEqual(f.Type, outField.Type):
				err = fmt.Errorf("%w: column %q is stored as %s in the batch at offset %d (schema version %d), the schema says %s", ErrSchemaMismatch, name, f.Type, b.BaseOffset, b.SchemaVersion, outField.Type)
			case !outField.Nullable && col.NullN() > 0:
				err = fmt.Errorf("%w: NOT NULL column %q has %d nulls in the batch at offset %d", ErrSchemaMismatch, name, col.NullN(), b.BaseOffset)
			}
			if err != nil {
				releaseCols()
				release()
				return nil, st, err
			}
		}
		schema := outSchema
		if schema == nil {
			schema = arrow.NewSchema(fields, nil)
		}
		rec := array.NewRecordBatch(schema, cols, b.RowCount)
		releaseCols() // rec holds its own references
		out = append(out, ReadBatch{BaseOffset: b.BaseOffset, Timestamp: b.Timestamp, SchemaVersion: b.SchemaVersion, Rows: b.RowCount, Record: rec, Bytes: ob.bytes})
	}
	return out, st, nil
}

func (o *ReadOptions) setDefaults() {
	if o.TailSize <= 0 {
		o.TailSize = DefaultTailSize
	}
	if o.CoalesceGap == 0 {
		o.CoalesceGap = DefaultCoalesceGap
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.Allocator == nil {
		o.Allocator = memory.DefaultAllocator
	}
}

// projection returns the output column names, or nil for "each batch's
// stored columns" (no Schema and no Columns).
func (o *ReadOptions) projection() ([]string, error) {
	names := o.Columns
	if names == nil && o.Schema != nil {
		names = make([]string, o.Schema.NumFields())
		for i, f := range o.Schema.Fields() {
			names[i] = f.Name
		}
	}
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		if seen[n] {
			return nil, fmt.Errorf("%w: column %q named twice", ErrInvalidOptions, n)
		}
		seen[n] = true
		if o.Schema != nil {
			switch len(o.Schema.FieldIndices(n)) {
			case 0:
				return nil, fmt.Errorf("%w %q: the table has no such column", ErrUnknownColumn, n)
			case 1:
			default:
				return nil, fmt.Errorf("%w: the schema has several columns named %q", ErrInvalidOptions, n)
			}
		}
	}
	if names == nil {
		return nil, nil
	}
	return slices.Clone(names), nil
}

// fetch GETs [off, off+length) of key into a new buffer.
func fetch(ctx context.Context, r RangeReader, key string, off, length int64, st *ReadStats) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	st.Gets++
	rc, err := r.GetRange(ctx, key, off, length)
	if err != nil {
		return nil, fmt.Errorf("segment: read %q [%d, +%d): %w", key, off, length, err)
	}
	defer rc.Close()
	buf := make([]byte, length)
	n, err := io.ReadFull(rc, buf)
	st.BytesFetched += int64(n)
	if err != nil {
		return nil, fmt.Errorf("segment: read %q [%d, +%d): %w", key, off, length, err)
	}
	return buf, nil
}

func leUint32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// maxDecodedBase bounds what decoding one chunk may allocate, beyond 64
// times its encoded size: enough for any batch a frontend accepts (ZSTD
// compresses constant columns by far more than 64x), and a bound on what a
// forged uncompressed length can make the reader allocate.
const maxDecodedBase = 256 << 20

// DecodeChunk decodes one column chunk: a standalone Arrow IPC stream with
// one single-column record batch. meta is the chunk's entry in the section
// index (its CRC, name and null count are checked) and rows the batch's row
// count. It returns the column (the caller releases it) and its stored
// field. It never panics; bad bytes yield an error wrapping [ErrCorrupt].
func DecodeChunk(data []byte, meta ColumnMeta, rows int64, mem memory.Allocator) (arrow.Array, arrow.Field, error) {
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	return decodeChunk(data, meta, rows, mem)
}

func decodeChunk(data []byte, meta ColumnMeta, rows int64, mem memory.Allocator) (col arrow.Array, field arrow.Field, err error) {
	if err := checkChunk(data, meta); err != nil {
		return nil, field, err
	}
	if col, f, err := decodeFlatChunk(data, rows); !errors.Is(err, errSlowPath) {
		switch {
		case err != nil:
			return nil, f, err
		case f.Name != meta.Name:
			col.Release()
			return nil, f, fmt.Errorf("%w chunk: stores column %q, index says %q", ErrCorrupt, f.Name, meta.Name)
		case int64(col.NullN()) != meta.NullCount:
			n := col.NullN()
			col.Release()
			return nil, f, fmt.Errorf("%w chunk: %d nulls, index says %d", ErrCorrupt, n, meta.NullCount)
		}
		return col, f, nil
	}
	// arrow-go trusts the metadata (a forged vector length makes it
	// allocate without bound): check it first.
	if err := batch.CheckIPC(data, int64(len(data))); err != nil {
		return nil, field, fmt.Errorf("%w chunk: %v", ErrCorrupt, err)
	}
	lim := batch.NewBudgetAllocator(mem, maxDecodedBase+64*int64(len(data)))
	defer func() {
		if p := recover(); p != nil {
			if col != nil {
				col.Release()
				col = nil
			}
			err = fmt.Errorf("%w chunk: arrow ipc: %v", ErrCorrupt, p)
		}
		if err != nil {
			lim.FreeAll()
		}
	}()
	limit := int64(len(data))
	rdr, err := ipc.NewReader(bytes.NewReader(data), ipc.WithAllocator(lim),
		ipc.WithMetadataSizeLimit(limit), ipc.WithBodySizeLimit(limit))
	if err != nil {
		return nil, field, fmt.Errorf("%w chunk: %v", ErrCorrupt, err)
	}
	defer rdr.Release()
	s := rdr.Schema()
	if s == nil || s.NumFields() != 1 {
		return nil, field, fmt.Errorf("%w chunk: schema must have exactly one field", ErrCorrupt)
	}
	field = s.Field(0)
	if field.Name != meta.Name {
		return nil, field, fmt.Errorf("%w chunk: stores column %q, index says %q", ErrCorrupt, field.Name, meta.Name)
	}
	if !rdr.Next() {
		e := rdr.Err()
		if e == nil {
			e = errors.New("no record batch")
		}
		return nil, field, fmt.Errorf("%w chunk: %v", ErrCorrupt, e)
	}
	rec := rdr.RecordBatch()
	if rec.NumCols() != 1 || rec.NumRows() != rows || int64(rec.Column(0).Len()) != rows {
		return nil, field, fmt.Errorf("%w chunk: %d rows, index says %d", ErrCorrupt, rec.NumRows(), rows)
	}
	col = rec.Column(0)
	col.Retain()
	if rdr.Next() {
		return nil, field, fmt.Errorf("%w chunk: more than one record batch", ErrCorrupt)
	}
	if e := rdr.Err(); e != nil {
		return nil, field, fmt.Errorf("%w chunk: %v", ErrCorrupt, e)
	}
	if e := array.ValidateFull(col); e != nil {
		return nil, field, fmt.Errorf("%w chunk: %v", ErrCorrupt, e)
	}
	if int64(col.NullN()) != meta.NullCount {
		return nil, field, fmt.Errorf("%w chunk: %d nulls, index says %d", ErrCorrupt, col.NullN(), meta.NullCount)
	}
	return col, field, nil
}
