package segment

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/strom-io/strom/catalog"
)

// Batch is one Arrow record batch of a bucket with its offsets: its rows get
// offsets BaseOffset, BaseOffset+1, ..., and all of them the append time
// Timestamp (stored with microsecond precision).
type Batch struct {
	BaseOffset int64
	Timestamp  time.Time
	// SchemaVersion is the table schema version the batch was written
	// with; it is stored, not interpreted.
	SchemaVersion int32
	// Record holds the batch's columns, named uniquely. Encode reads it and
	// neither retains nor releases it.
	Record arrow.RecordBatch
}

// Section is the new data of one bucket in one object.
type Section struct {
	TableID   int64
	Partition string
	Bucket    int32
	Codec     Codec
	// Batches in offset order; each must start where the previous one
	// ends, and none may be empty.
	Batches []Batch
}

// SectionInfo is where [Encode] put a section and what it holds: exactly the
// fields of a catalog.SegmentRange that come from the object.
type SectionInfo struct {
	TableID      int64
	Partition    string
	Bucket       int32
	ByteOffset   int64 // section start in the object
	ByteLength   int64 // section length, index and trailer included
	BaseOffset   int64
	EndOffset    int64 // exclusive
	RowCount     int64
	MinTimestamp time.Time // UTC, microsecond precision
	MaxTimestamp time.Time
}

// SegmentRange returns the catalog row for the section in the object key,
// committed by a leader of epoch epoch (Writers and CommittedAt left for the
// caller and the store).
func (s SectionInfo) SegmentRange(key string, epoch int64) catalog.SegmentRange {
	return catalog.SegmentRange{
		Bucket:       catalog.BucketID{TableID: s.TableID, Partition: s.Partition, Bucket: s.Bucket},
		Epoch:        epoch,
		ObjectKey:    key,
		BaseOffset:   s.BaseOffset,
		EndOffset:    s.EndOffset,
		ByteOffset:   s.ByteOffset,
		ByteLength:   s.ByteLength,
		RowCount:     s.RowCount,
		MinTimestamp: s.MinTimestamp,
		MaxTimestamp: s.MaxTimestamp,
	}
}

// Encode writes a segment object holding sections and returns its bytes and
// one SectionInfo per section, infos[i] describing sections[i]. In the
// object, sections are ordered by (TableID, Partition, Bucket) whatever their
// order in the argument; two sections of one bucket are an error.
//
// Encode validates its input and returns an error wrapping
// [ErrInvalidSection] for a section without batches, an empty or nil record,
// an unknown codec, a zero Timestamp, duplicate column names or offsets that
// are not contiguous (each batch must start where the previous one ends).
// The records are read, not retained or released. Encode is safe for
// concurrent use.
func Encode(sections []Section) ([]byte, []SectionInfo, error) {
	order := make([]int, len(sections))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		sa, sb := &sections[a], &sections[b]
		switch {
		case sectionLess(sa.TableID, sa.Partition, sa.Bucket, sb.TableID, sb.Partition, sb.Bucket):
			return -1
		case sectionLess(sb.TableID, sb.Partition, sb.Bucket, sa.TableID, sa.Partition, sa.Bucket):
			return 1
		}
		return 0
	})
	for k := 1; k < len(order); k++ {
		a, b := &sections[order[k-1]], &sections[order[k]]
		if a.TableID == b.TableID && a.Partition == b.Partition && a.Bucket == b.Bucket {
			return nil, nil, fmt.Errorf("%w: two sections for table %d partition %q bucket %d", ErrInvalidSection, a.TableID, a.Partition, a.Bucket)
		}
	}

	out := make([]byte, 0, estimateSize(sections))
	out = append(out, Magic...)
	out = binary.LittleEndian.AppendUint16(out, FormatVersion)

	infos := make([]SectionInfo, len(sections))
	metas := make([]SectionMeta, 0, len(sections))
	for _, i := range order {
		start := int64(len(out))
		var err error
		var info SectionInfo
		out, info, err = appendSection(out, &sections[i])
		if err != nil {
			return nil, nil, err
		}
		info.ByteOffset = start
		info.ByteLength = int64(len(out)) - start
		infos[i] = info
		metas = append(metas, SectionMeta(info))
	}
	footerStart := len(out)
	out = encodeObjectFooter(out, metas)
	footer := out[footerStart:]
	if len(footer) > maxMetaLen {
		return nil, nil, fmt.Errorf("%w: object footer of %d bytes exceeds 4 GiB", ErrInvalidSection, len(footer))
	}
	out = binary.LittleEndian.AppendUint32(out, uint32(len(footer)))
	out = binary.LittleEndian.AppendUint32(out, crc32c(footer))
	out = append(out, Magic...)
	return out, infos, nil
}

// estimateSize guesses the object size to size the output buffer once.
func estimateSize(sections []Section) int {
	n := 64 << 10
	for i := range sections {
		for _, b := range sections[i].Batches {
			if b.Record != nil {
				for _, c := range b.Record.Columns() {
					for _, buf := range c.Data().Buffers() {
						if buf != nil {
							n += buf.Len()
						}
					}
				}
			}
		}
	}
	return n
}

// appendSection appends the column chunks, index and trailer of s to out.
// The chunks are stored column by column (columnOrder), each column's
// chunks encoded on a goroutine of their own, up to GOMAXPROCS at once.
func appendSection(out []byte, s *Section) ([]byte, SectionInfo, error) {
	info := SectionInfo{TableID: s.TableID, Partition: s.Partition, Bucket: s.Bucket}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: table %d partition %q bucket %d: %s", ErrInvalidSection, s.TableID, s.Partition, s.Bucket, fmt.Sprintf(format, args...))
	}
	if !s.Codec.valid() {
		return nil, info, bad("unknown codec %d", s.Codec)
	}
	if len(s.Batches) == 0 {
		return nil, info, bad("no batches")
	}
	idx := SectionIndex{
		TableID: s.TableID, Partition: s.Partition, Bucket: s.Bucket, Codec: s.Codec,
		BaseOffset: s.Batches[0].BaseOffset,
		Batches:    make([]BatchMeta, len(s.Batches)),
	}
	if idx.BaseOffset < 0 {
		return nil, info, bad("negative base offset %d", idx.BaseOffset)
	}
	next := idx.BaseOffset
	for bi, b := range s.Batches {
		switch {
		case b.Record == nil:
			return nil, info, bad("batch %d: nil record", bi)
		case b.Record.NumRows() <= 0:
			return nil, info, bad("batch %d: no rows", bi)
		case b.Record.NumCols() == 0:
			return nil, info, bad("batch %d: no columns", bi)
		case b.BaseOffset != next:
			return nil, info, bad("batch %d: base offset %d, want %d (offsets must be contiguous)", bi, b.BaseOffset, next)
		case b.Timestamp.IsZero():
			return nil, info, bad("batch %d: zero timestamp", bi)
		case b.Record.NumRows() > math.MaxInt64-next:
			return nil, info, bad("batch %d: offsets overflow", bi)
		}
		rows := b.Record.NumRows()
		ts := b.Timestamp.UnixMicro()
		bm := BatchMeta{
			BaseOffset: next, RowCount: rows, SchemaVersion: b.SchemaVersion,
			Timestamp: time.UnixMicro(ts).UTC(),
			Columns:   make([]ColumnMeta, b.Record.NumCols()),
		}
		if bi == 0 || ts < idx.MinTimestamp.UnixMicro() {
			idx.MinTimestamp = bm.Timestamp
		}
		if bi == 0 || ts > idx.MaxTimestamp.UnixMicro() {
			idx.MaxTimestamp = bm.Timestamp
		}
		schema := b.Record.Schema()
		for ci := range bm.Columns {
			f := schema.Field(ci)
			if f.Name == "" {
				return nil, info, bad("batch %d: column %d has no name", bi, ci)
			}
			for _, prev := range bm.Columns[:ci] {
				if prev.Name == f.Name {
					return nil, info, bad("batch %d: duplicate column %q", bi, f.Name)
				}
			}
			if col := b.Record.Column(ci); int64(col.Len()) != rows {
				return nil, info, bad("batch %d: column %q has %d rows, the record %d", bi, f.Name, col.Len(), rows)
			}
			bm.Columns[ci] = ColumnMeta{Name: f.Name}
		}
		idx.Batches[bi] = bm
		next += rows
	}
	idx.RowCount = next - idx.BaseOffset
	idx.EndOffset = next

	// Encode each column's chunks, columns in parallel.
	order := columnOrder(idx.Batches)
	chunks := make([][]byte, len(order))
	errs := make([]error, len(order))
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for k, name := range order {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			chunks[k], errs[k] = encodeColumn(s, idx.Batches, name)
		}()
	}
	wg.Wait()
	for k, err := range errs {
		if err != nil {
			return nil, info, bad("column %q: %v", order[k], err)
		}
	}
	for _, c := range chunks {
		out = append(out, c...)
	}
	columnMajorOffsets(idx.Batches)

	idxStart := len(out)
	out = encodeSectionIndex(out, &idx)
	body := out[idxStart:]
	if len(body) > maxMetaLen {
		return nil, info, bad("section index of %d bytes exceeds 4 GiB", len(body))
	}
	out = binary.LittleEndian.AppendUint32(out, uint32(len(body)))
	out = binary.LittleEndian.AppendUint32(out, crc32c(body))
	info.BaseOffset, info.EndOffset, info.RowCount = idx.BaseOffset, idx.EndOffset, idx.RowCount
	info.MinTimestamp, info.MaxTimestamp = idx.MinTimestamp, idx.MaxTimestamp
	return out, info, nil
}

// encodeColumn returns the chunks of column name of every batch of s that
// has it, in batch order, filling in their entries of batches (the length,
// CRC, null count and statistics).
func encodeColumn(s *Section, batches []BatchMeta, name string) ([]byte, error) {
	cw := chunkWriterPool.Get().(*chunkWriters)
	defer putChunkWriters(cw)
	var out []byte
	for bi, b := range s.Batches {
		ci := b.Record.Schema().FieldIndices(name)
		if len(ci) == 0 {
			continue
		}
		f, col := b.Record.Schema().Field(ci[0]), b.Record.Column(ci[0])
		pos := len(out)
		var err error
		if out, err = appendChunk(out, s.Codec, f, col, cw); err != nil {
			return nil, fmt.Errorf("batch %d: %w", bi, err)
		}
		cm := &batches[bi].Columns[ci[0]]
		cm.Length = int64(len(out) - pos)
		cm.CRC = crc32c(out[pos:])
		cm.NullCount = int64(col.NullN())
		cm.Min, cm.Max, cm.HasStats = columnStats(col)
	}
	return out, nil
}

// chunkWriters keeps one ipc.Writer per (codec, field), pooled across
// Encode calls, so that compressors are reused: a zstd encoder costs ~2 MB
// and ~1 ms to create, which for a 50 ms flush of a few hundred rows was
// most of the flush's CPU (BenchmarkEncodeSmall). A stream writer is stateless between record
// batches except for dictionaries, so a chunk is the schema message bytes,
// the record batch message the writer emits for the column, and the
// end-of-stream marker: byte for byte what a fresh writer would write.
// Columns with dictionaries get a fresh writer per chunk.
type chunkWriters struct {
	m map[string]*chunkWriter
}

type chunkWriter struct {
	field   arrow.Field
	schema  *arrow.Schema
	opts    []ipc.Option
	buf     bytes.Buffer
	w       *ipc.Writer
	header  []byte // the schema message, as the writer emits it first
	written bool   // whether w has emitted header (with its first batch)
}

// eos is the Arrow IPC end-of-stream marker: continuation token, length 0.
var eos = [8]byte{0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0}

func newChunkWriters() *chunkWriters { return &chunkWriters{m: map[string]*chunkWriter{}} }

// chunkWriterPool holds idle chunkWriters between Encode calls; the garbage
// collector may drop them, which costs only their re-creation.
var chunkWriterPool = sync.Pool{New: func() any { return newChunkWriters() }}

// maxPooledWriters bounds the writers one pooled chunkWriters keeps (one per
// distinct column and codec seen); past it the set starts afresh.
const maxPooledWriters = 1024

func putChunkWriters(cw *chunkWriters) {
	if len(cw.m) > maxPooledWriters {
		cw.close()
		cw = newChunkWriters()
	}
	chunkWriterPool.Put(cw)
}

func (cw *chunkWriters) close() {
	for _, w := range cw.m {
		if w.w != nil {
			_ = w.w.Close()
		}
	}
}

func ipcOptions(c Codec, schema *arrow.Schema) []ipc.Option {
	opts := []ipc.Option{ipc.WithSchema(schema), ipc.WithAllocator(memory.DefaultAllocator)}
	switch c {
	case CodecZstd:
		opts = append(opts, ipc.WithZstd())
	case CodecLZ4:
		opts = append(opts, ipc.WithLZ4())
	}
	return opts
}

// append appends the chunk of col (field f) to out.
func (cw *chunkWriters) append(out []byte, c Codec, f arrow.Field, col arrow.Array) ([]byte, error) {
	key := c.String() + "\x00" + f.Name
	w := cw.m[key]
	if w == nil || !w.field.Equal(f) || hasDictionary(f.Type) {
		if w != nil && w.w != nil {
			_ = w.w.Close()
		}
		schema := arrow.NewSchema([]arrow.Field{f}, nil)
		w = &chunkWriter{field: f, schema: schema, opts: ipcOptions(c, schema)}
		// The schema message: what a writer emits before its first batch.
		hw := ipc.NewWriter(&w.buf, w.opts...)
		if err := hw.Close(); err != nil {
			return nil, err
		}
		if w.buf.Len() < len(eos) {
			return nil, fmt.Errorf("arrow/ipc wrote a %d-byte empty stream", w.buf.Len())
		}
		w.header = bytes.Clone(w.buf.Bytes()[:w.buf.Len()-len(eos)])
		w.buf.Reset()
		w.w = ipc.NewWriter(&w.buf, w.opts...)
		cw.m[key] = w
	}
	rec := array.NewRecordBatch(w.schema, []arrow.Array{col}, int64(col.Len()))
	defer rec.Release()
	first := !w.written
	w.buf.Reset()
	if err := w.w.Write(rec); err != nil {
		w.w = nil
		delete(cw.m, key)
		return nil, err
	}
	msg := w.buf.Bytes()
	if first {
		if !bytes.HasPrefix(msg, w.header) {
			return nil, fmt.Errorf("arrow/ipc: stream does not start with the expected schema message")
		}
		msg = msg[len(w.header):]
	}
	w.written = true
	out = append(out, w.header...)
	out = append(out, msg...)
	out = append(out, eos[:]...)
	return out, nil
}

func hasDictionary(t arrow.DataType) bool {
	if t.ID() == arrow.DICTIONARY {
		return true
	}
	if n, ok := t.(arrow.NestedType); ok {
		for _, f := range n.Fields() {
			if hasDictionary(f.Type) {
				return true
			}
		}
	}
	return false
}
