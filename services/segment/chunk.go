package segment

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/bitutil"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	flatbuffers "github.com/google/flatbuffers/go"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"

	"github.com/strom-io/strom/services/batch"
)

// A column chunk is a standalone Arrow IPC stream: the schema message of
// its one field, one record batch message, the end-of-stream marker. For
// the flat column types of Strom's tables (every type but nested ones),
// this file writes and reads the record batch message itself instead of
// going through arrow-go's ipc.Writer and ipc.Reader, which create a
// streaming, multi-goroutine compressor or decompressor per stream (the
// reader even per batch) and compress buffer by buffer through it: that
// was most of the CPU of a flush and of a read. Here each buffer is
// compressed with one call of a shared, pooled codec (zstd EncodeAll and
// DecodeAll), and the bytes are the standard format: any Arrow reader
// reads the chunks (TestChunksReadByArrowGo checks arrow-go's). Columns of
// other layouts (nested types, sliced arrays) go through arrow-go.

// DefaultZstdLevel is the zstd level of the chunk encoder, picked by
// measurement (BenchmarkChunkCodec): on Strom's benchmark data the
// fastest level stores 0.56 of the Arrow bytes at several times the speed
// of the default level, which stores 0.53.
const DefaultZstdLevel = zstd.SpeedFastest

var (
	zstdEncoder = sync.OnceValue(func() *zstd.Encoder {
		e, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(DefaultZstdLevel), zstd.WithEncoderCRC(false),
			zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)), zstd.WithZeroFrames(true))
		if err != nil {
			panic(err) // only for invalid options
		}
		return e
	})
	zstdDecoder = sync.OnceValue(func() *zstd.Decoder {
		d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(runtime.GOMAXPROCS(0)),
			zstd.IgnoreChecksum(true), zstd.WithDecoderMaxMemory(maxDecodedBase))
		if err != nil {
			panic(err)
		}
		return d
	})
	lz4Writers = sync.Pool{New: func() any {
		w := lz4.NewWriter(nil)
		// As arrow-go (and Arrow C++) write LZ4 frames.
		_ = w.Apply(lz4.ChecksumOption(false), lz4.BlockSizeOption(lz4.Block64Kb))
		return w
	}}
	lz4Readers = sync.Pool{New: func() any { return lz4.NewReader(nil) }}
	builders   = sync.Pool{New: func() any { return flatbuffers.NewBuilder(512) }}
)

// schemaMessages caches the schema message of each field, the first part
// of every chunk of a column with that field: arrow-go's own bytes (an
// ipc.Writer closed before its first batch writes the schema and the
// end-of-stream marker).
var schemaMessages sync.Map // fieldKey → []byte

type fieldKey struct {
	name     string
	typ      string
	nullable bool
	meta     string
}

func keyOf(f arrow.Field) fieldKey {
	return fieldKey{name: f.Name, typ: f.Type.Fingerprint(), nullable: f.Nullable, meta: f.Metadata.String()}
}

func schemaMessage(f arrow.Field) ([]byte, error) {
	k := keyOf(f)
	if v, ok := schemaMessages.Load(k); ok {
		return v.([]byte), nil
	}
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(arrow.NewSchema([]arrow.Field{f}, nil)))
	if err := w.Close(); err != nil {
		return nil, err
	}
	if buf.Len() < len(eos) || !bytes.HasSuffix(buf.Bytes(), eos[:]) {
		return nil, fmt.Errorf("arrow/ipc wrote a %d-byte empty stream", buf.Len())
	}
	msg := bytes.Clone(buf.Bytes()[:buf.Len()-len(eos)])
	schemaMessages.Store(k, msg)
	if headerFieldsN.Add(1) <= maxHeaderFields {
		headerFields.Store(string(msg), f)
	}
	return msg, nil
}

// appendChunk appends the chunk of col (field f) to out, compressed with c.
func appendChunk(out []byte, c Codec, f arrow.Field, col arrow.Array, cw *chunkWriters) ([]byte, error) {
	bufs, ok := batch.FlatBuffers(col)
	if !ok {
		return cw.append(out, c, f, col)
	}
	header, err := schemaMessage(f)
	if err != nil {
		return nil, err
	}
	out = append(out, header...)

	// The body: each buffer (compressed: its uncompressed length, then the
	// codec's frame, or -1 and the bytes where compressing does not pay),
	// padded to 8 bytes. It is built in a scratch buffer, since the
	// message's metadata, which comes first, lists where each buffer is.
	m := batch.RecordBatchMessage{
		Length:      int64(col.Len()),
		Nodes:       []batch.FieldNode{{Length: int64(col.Len()), NullCount: int64(col.NullN())}},
		Buffers:     make([]batch.BodySpan, len(bufs)),
		Compression: c.ipcCompression(),
	}
	sc := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sc)
	body := sc.body[:0]
	for i, b := range bufs {
		start := len(body)
		if len(b) > 0 {
			if body, err = appendBuffer(body, c, b); err != nil {
				return nil, err
			}
		}
		m.Buffers[i] = batch.BodySpan{Offset: int64(start), Length: int64(len(body) - start)}
		body = append(body, padding[:paddingFor(len(body))]...)
	}
	sc.body = body
	m.BodyLength = int64(len(body))
	bld := builders.Get().(*flatbuffers.Builder)
	out = batch.AppendRecordBatchMessage(out, bld, &m)
	builders.Put(bld)
	out = append(out, body...)
	return append(out, eos[:]...), nil
}

// scratch is a pooled buffer for chunk bodies.
type scratch struct{ body []byte }

var scratchPool = sync.Pool{New: func() any { return &scratch{} }}

var padding [8]byte

func paddingFor(n int) int { return (8 - n%8) % 8 }

// appendBuffer appends one body buffer, compressed with c.
func appendBuffer(dst []byte, c Codec, b []byte) ([]byte, error) {
	if c == CodecNone {
		return append(dst, b...), nil
	}
	start := len(dst)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(len(b)))
	switch c {
	case CodecZstd:
		dst = zstdEncoder().EncodeAll(b, dst)
	case CodecLZ4:
		w := lz4Writers.Get().(*lz4.Writer)
		bw := sliceWriter{b: dst}
		w.Reset(&bw)
		_, err := w.Write(b)
		if err == nil {
			err = w.Close()
		}
		lz4Writers.Put(w)
		if err != nil {
			return nil, err
		}
		dst = bw.b
	}
	if len(dst)-start-8 >= len(b) {
		// Stored as is: the length -1 tells readers so.
		dst = binary.LittleEndian.AppendUint64(dst[:start], ^uint64(0))
		dst = append(dst, b...)
	}
	return dst, nil
}

// CompressedColumn returns a flat array's column for an IPC message of
// the given compression (batch.CompressionZSTD or CompressionLZ4Frame; -1
// none), its buffers compressed with the codecs chunks are written with.
func CompressedColumn(a arrow.Array, compression int) (batch.IPCColumn, error) {
	c, ok := batch.IPCColumnOf(a, -1)
	if !ok {
		return c, fmt.Errorf("segment: a %s column is not flat", a.DataType())
	}
	codec := CodecNone
	switch compression {
	case batch.CompressionZSTD:
		codec = CodecZstd
	case batch.CompressionLZ4Frame:
		codec = CodecLZ4
	}
	c.Compression = compression
	if codec == CodecNone {
		return c, nil
	}
	for i, b := range c.Buffers {
		if len(b) > 0 {
			var err error
			if c.Buffers[i], err = appendBuffer(nil, codec, b); err != nil {
				return c, err
			}
		}
	}
	return c, nil
}

type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }

func (c Codec) ipcCompression() int {
	switch c {
	case CodecZstd:
		return batch.CompressionZSTD
	case CodecLZ4:
		return batch.CompressionLZ4Frame
	}
	return -1
}

// errSlowPath: the chunk is not one decodeFlatChunk reads; arrow-go's
// reader takes it.
var errSlowPath = errors.New("segment: chunk needs the general reader")

// headerFields maps the schema messages seen (encoded or decoded) to their
// field, so that decodeFlatChunk knows a chunk's field by its first bytes.
// It holds at most maxHeaderFields entries.
var (
	headerFields   sync.Map // string(schema message) → arrow.Field
	headerFieldsN  atomic.Int64
	errNoSchemaMsg = errors.New("no schema message")
)

const maxHeaderFields = 1 << 16

// chunkField returns the field of the schema message that starts a chunk,
// and the message's length.
func chunkField(data []byte) (arrow.Field, int, error) {
	if len(data) < 8 || binary.LittleEndian.Uint32(data) != 0xFFFFFFFF {
		return arrow.Field{}, 0, errNoSchemaMsg
	}
	metaLen := int64(int32(binary.LittleEndian.Uint32(data[4:])))
	if metaLen < 8 || metaLen > int64(len(data)-8) {
		return arrow.Field{}, 0, errNoSchemaMsg
	}
	n := int(8 + metaLen)
	if f, ok := headerFields.Load(string(data[:n])); ok {
		return f.(arrow.Field), n, nil
	}
	// A field not seen yet: arrow-go reads the schema message (and the
	// checks of batch.DecodeIPC guard it against hostile metadata).
	stream := append(bytes.Clone(data[:n]), eos[:]...)
	s, err := batch.DecodeIPCSchema(stream)
	if err != nil || s.NumFields() != 1 {
		return arrow.Field{}, 0, errNoSchemaMsg
	}
	f := s.Field(0)
	if headerFieldsN.Add(1) <= maxHeaderFields {
		headerFields.Store(string(data[:n]), f)
	}
	return f, n, nil
}

// decodeFlatChunk decodes a chunk of a flat column (see flatLayout)
// without arrow-go's reader: it checks the message metadata, decompresses
// each buffer with one call of the shared codec, and validates the array.
// A chunk of another layout returns errSlowPath. The array's buffers are
// Go memory: decompressed ones allocated here, uncompressed ones slices of
// data.
func decodeFlatChunk(data []byte, rows int64) (arrow.Array, arrow.Field, error) {
	f, n, err := chunkField(data)
	if err != nil {
		return nil, f, errSlowPath
	}
	nbufs := 2
	switch f.Type.ID() {
	case arrow.STRING, arrow.BINARY:
		nbufs = 3
	case arrow.BOOL, arrow.INT8, arrow.INT16, arrow.INT32, arrow.INT64, arrow.UINT8, arrow.UINT16, arrow.UINT32, arrow.UINT64,
		arrow.FLOAT32, arrow.FLOAT64, arrow.DATE32, arrow.DATE64, arrow.TIME32, arrow.TIME64, arrow.TIMESTAMP,
		arrow.DURATION, arrow.DECIMAL128, arrow.DECIMAL256:
	default:
		return nil, f, errSlowPath
	}
	p := data[n : len(data)-len(eos)] // the caller checked the end-of-stream marker
	if len(p) < 8 || binary.LittleEndian.Uint32(p) != 0xFFFFFFFF {
		return nil, f, errSlowPath
	}
	metaLen := int64(int32(binary.LittleEndian.Uint32(p[4:])))
	if metaLen < 8 || metaLen > int64(len(p)-8) {
		return nil, f, fmt.Errorf("%w chunk: metadata length %d, %d bytes follow", ErrCorrupt, metaLen, len(p)-8)
	}
	meta, tail := p[8:8+metaLen], p[8+metaLen:]
	m, err := batch.ParseRecordBatchMessage(meta, tail)
	if err != nil {
		return nil, f, fmt.Errorf("%w chunk: %v", ErrCorrupt, err)
	}
	if m.BodyLength != int64(len(tail)) {
		return nil, f, fmt.Errorf("%w chunk: a %d-byte body and %d bytes before the end-of-stream marker", ErrCorrupt, m.BodyLength, len(tail))
	}
	if m.Length != rows || len(m.Nodes) != 1 || m.Nodes[0].Length != rows {
		return nil, f, fmt.Errorf("%w chunk: %d rows, index says %d", ErrCorrupt, m.Length, rows)
	}
	if len(m.Buffers) != nbufs {
		return nil, f, fmt.Errorf("%w chunk: %d buffers, a %s column has %d", ErrCorrupt, len(m.Buffers), f.Type, nbufs)
	}
	bufs := make([]*memory.Buffer, nbufs)
	for i, s := range m.Buffers {
		b, err := decodeBuffer(tail[s.Offset:s.Offset+s.Length], m.Compression)
		if err != nil {
			return nil, f, fmt.Errorf("%w chunk: buffer %d: %v", ErrCorrupt, i, err)
		}
		if len(b) > 0 {
			bufs[i] = memory.NewBufferBytes(b)
		}
	}
	nulls := m.Nodes[0].NullCount
	if nulls > 0 && (bufs[0] == nil || int64(bufs[0].Len()) < bitutil.BytesForBits(rows)) {
		return nil, f, fmt.Errorf("%w chunk: %d nulls without a validity bitmap", ErrCorrupt, nulls)
	}
	if nulls == 0 {
		bufs[0] = nil
	}
	d := array.NewData(f.Type, int(rows), bufs, nil, int(nulls), 0)
	defer d.Release()
	col := array.MakeFromData(d)
	if err := validate(col); err != nil {
		col.Release()
		return nil, f, fmt.Errorf("%w chunk: %v", ErrCorrupt, err)
	}
	return col, f, nil
}

// validate checks col's structure: buffer sizes, and for strings and
// binaries offsets that never decrease and stay inside the data, so that
// no access to a value can go out of bounds. It does not check that
// strings are valid UTF-8: that is checked when rows are written (batch
// DecodeIPC, FromJSON), the chunk's CRC vouches for its bytes since, and
// the check took a sixth of a full read's CPU.
func validate(col arrow.Array) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("invalid array: %v", p)
		}
	}()
	if err := array.Validate(col); err != nil {
		return err
	}
	switch a := col.(type) {
	case *array.String:
		return checkOffsets(a.ValueOffsets(), len(a.ValueBytes()))
	case *array.Binary:
		return checkOffsets(a.ValueOffsets(), len(a.ValueBytes()))
	}
	return nil
}

// checkOffsets reports offsets that decrease or leave [0, n].
func checkOffsets(offsets []int32, n int) error {
	prev := int32(0)
	for i, o := range offsets {
		if o < prev || int(o) > n {
			return fmt.Errorf("offset %d is %d after %d, with %d data bytes", i, o, prev, n)
		}
		prev = o
	}
	return nil
}

// decodeBuffer returns the bytes of one body buffer.
func decodeBuffer(b []byte, compression int) ([]byte, error) {
	if compression < 0 || len(b) == 0 {
		return b, nil
	}
	if len(b) < 8 {
		return nil, fmt.Errorf("%d bytes, shorter than the length prefix", len(b))
	}
	n := int64(binary.LittleEndian.Uint64(b))
	switch {
	case n == -1:
		return b[8:], nil
	case n < 0 || n > maxDecodedBase:
		return nil, fmt.Errorf("uncompressed length %d", n)
	}
	// A forged length must not allocate: reserve no more than a plausible
	// ratio of the compressed size; DecodeAll grows the slice (up to the
	// decoder's memory limit) if the data really is that compressible.
	out := make([]byte, 0, min(n, 64*int64(len(b))+64<<10))
	var err error
	switch compression {
	case batch.CompressionZSTD:
		out, err = zstdDecoder().DecodeAll(b[8:], out)
	case batch.CompressionLZ4Frame:
		r := lz4Readers.Get().(*lz4.Reader)
		r.Reset(bytes.NewReader(b[8:]))
		var buf bytes.Buffer
		buf.Grow(cap(out))
		_, err = io.Copy(&buf, io.LimitReader(r, n+1))
		out = buf.Bytes()
		lz4Readers.Put(r)
	}
	if err != nil {
		return nil, err
	}
	if int64(len(out)) != n {
		return nil, fmt.Errorf("%d bytes decompressed, want %d", len(out), n)
	}
	return out, nil
}

// storedChunk checks a chunk (its CRC and end-of-stream marker, its
// schema message against want's type, its record batch message against
// the index) and returns its column as stored, without decompressing it:
// the buffers are slices of data.
func storedChunk(data []byte, meta ColumnMeta, rows int64, want arrow.Field) (*batch.IPCColumn, error) {
	if err := checkChunk(data, meta); err != nil {
		return nil, err
	}
	f, n, err := chunkField(data)
	if err != nil {
		return nil, fmt.Errorf("%w chunk: no schema message", ErrCorrupt)
	}
	if f.Name != meta.Name {
		return nil, fmt.Errorf("%w chunk: stores column %q, index says %q", ErrCorrupt, f.Name, meta.Name)
	}
	if !arrow.TypeEqual(f.Type, want.Type) {
		return nil, fmt.Errorf("%w: column %q is stored as %s, the schema says %s", ErrSchemaMismatch, meta.Name, f.Type, want.Type)
	}
	p := data[n : len(data)-len(eos)]
	if len(p) < 8 || binary.LittleEndian.Uint32(p) != 0xFFFFFFFF {
		return nil, fmt.Errorf("%w chunk: no record batch message", ErrCorrupt)
	}
	metaLen := int64(int32(binary.LittleEndian.Uint32(p[4:])))
	if metaLen < 8 || metaLen > int64(len(p)-8) {
		return nil, fmt.Errorf("%w chunk: metadata length %d, %d bytes follow", ErrCorrupt, metaLen, len(p)-8)
	}
	body := p[8+metaLen:]
	m, err := batch.ParseRecordBatchMessage(p[8:8+metaLen], body)
	if err != nil {
		return nil, fmt.Errorf("%w chunk: %v", ErrCorrupt, err)
	}
	switch {
	case m.BodyLength != int64(len(body)):
		return nil, fmt.Errorf("%w chunk: a %d-byte body and %d bytes before the end-of-stream marker", ErrCorrupt, m.BodyLength, len(body))
	case m.Length != rows || len(m.Nodes) == 0 || m.Nodes[0].Length != rows:
		return nil, fmt.Errorf("%w chunk: %d rows, index says %d", ErrCorrupt, m.Length, rows)
	case m.Nodes[0].NullCount != meta.NullCount:
		return nil, fmt.Errorf("%w chunk: %d nulls, index says %d", ErrCorrupt, m.Nodes[0].NullCount, meta.NullCount)
	case !want.Nullable && meta.NullCount > 0:
		return nil, fmt.Errorf("%w: NOT NULL column %q has %d nulls", ErrSchemaMismatch, meta.Name, meta.NullCount)
	}
	col := &batch.IPCColumn{Nodes: m.Nodes, Compression: m.Compression, Buffers: make([][]byte, len(m.Buffers))}
	for i, s := range m.Buffers {
		col.Buffers[i] = body[s.Offset : s.Offset+s.Length]
	}
	return col, nil
}

// checkChunk checks a chunk's length and CRC against its index entry, and
// its end-of-stream marker.
func checkChunk(data []byte, meta ColumnMeta) error {
	if int64(len(data)) != meta.Length {
		return fmt.Errorf("%w chunk: %d bytes, index says %d", ErrCorrupt, len(data), meta.Length)
	}
	if got := crc32c(data); got != meta.CRC {
		return fmt.Errorf("%w chunk: crc32c %08x, index says %08x", ErrCorrupt, got, meta.CRC)
	}
	if !bytes.HasSuffix(data, eos[:]) {
		return fmt.Errorf("%w chunk: no end-of-stream marker", ErrCorrupt)
	}
	return nil
}
