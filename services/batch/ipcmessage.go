package batch

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/bitutil"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	flatbuffers "github.com/google/flatbuffers/go"
)

// RecordBatchMessage is the checked metadata of one Arrow IPC RecordBatch
// message (format/Message.fbs): what a reader needs to find the buffers of
// the batch in the message body.
type RecordBatchMessage struct {
	Length  int64       // rows
	Nodes   []FieldNode // one per field, depth first
	Buffers []BodySpan  // into the body, in the order of the fields' layouts
	// Compression is the body compression of every buffer: -1 none,
	// CompressionLZ4Frame or CompressionZSTD. A compressed buffer starts
	// with its uncompressed length (int64 little endian), -1 for a buffer
	// stored uncompressed.
	Compression int
	BodyLength  int64
}

// Body compression codecs (format/Message.fbs CompressionType).
const (
	CompressionLZ4Frame = 0
	CompressionZSTD     = 1
)

// FieldNode is one field's row count and null count.
type FieldNode struct{ Length, NullCount int64 }

// BodySpan is a buffer's place in a message body.
type BodySpan struct{ Offset, Length int64 }

// ParseRecordBatchMessage checks meta, the flatbuffer metadata of one
// encapsulated IPC message, whose body (at least BodyLength bytes) starts
// tail, and returns its RecordBatch. Every offset is checked to lie inside
// meta, and every buffer inside the body; a message of another kind, or
// bytes that are not such a message, fail with ErrMalformed.
func ParseRecordBatchMessage(meta, tail []byte) (RecordBatchMessage, error) {
	var out RecordBatchMessage
	c := &fbChecker{buf: meta, maxTables: len(meta)/sizeOffset + 1}
	if len(meta) < sizeOffset {
		return out, fmt.Errorf("%w: %d bytes of message metadata", ErrMalformed, len(meta))
	}
	if _, err := c.message(false, tail, int64(len(tail))); err != nil {
		return out, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	// c.message verified every offset followed below.
	m, _ := c.table(int64(flatbuffers.GetUOffsetT(meta)), "Message")
	htype, _ := c.enumField(m, slotMessageHeaderType, sizeByte, "header_type", 0, 255)
	if htype != headerRecordBatch {
		return out, fmt.Errorf("%w: a %s message, want RecordBatch", ErrMalformed, headerName(byte(htype)))
	}
	out.BodyLength = int64(len(c.body))
	hpos, _ := c.ref(m, slotMessageHeader, "header")
	rb, _ := c.table(hpos, "RecordBatch")
	out.Length, _ = c.int64Field(rb, slotRecordBatchLength, "length", 0)
	out.Compression = -1
	if cpos, _ := c.ref(rb, slotRecordBatchCompression, "compression"); cpos != 0 {
		comp, _ := c.table(cpos, "RecordBatch.compression")
		out.Compression, _ = c.enumField(comp, slotCompressionCodec, sizeByte, "codec", 0, 1)
	}
	start, count, _ := c.vector(rb, slotRecordBatchNodes, sizeStruct, "nodes")
	out.Nodes = make([]FieldNode, count)
	for i := range out.Nodes {
		p := start + int64(i)*sizeStruct
		out.Nodes[i] = FieldNode{Length: flatbuffers.GetInt64(meta[p:]), NullCount: flatbuffers.GetInt64(meta[p+sizeLong:])}
	}
	start, count, _ = c.vector(rb, slotRecordBatchBuffers, sizeStruct, "buffers")
	out.Buffers = make([]BodySpan, count)
	for i := range out.Buffers {
		p := start + int64(i)*sizeStruct
		out.Buffers[i] = BodySpan{Offset: flatbuffers.GetInt64(meta[p:]), Length: flatbuffers.GetInt64(meta[p+sizeLong:])}
	}
	if _, n, _ := c.vector(rb, slotRecordBatchVariadic, sizeLong, "variadicBufferCounts"); n != 0 {
		return out, fmt.Errorf("%w: RecordBatch.variadicBufferCounts: variadic buffers are not supported", ErrMalformed)
	}
	return out, nil
}

// AppendRecordBatchMessage appends to dst one encapsulated IPC message (the
// continuation marker, the metadata length, the flatbuffer metadata padded
// to 8 bytes) holding a RecordBatch of m's rows, nodes, buffers and
// compression (-1 none), for a body of m.BodyLength bytes that the caller
// appends next. b is a scratch builder, reset first.
func AppendRecordBatchMessage(dst []byte, b *flatbuffers.Builder, m *RecordBatchMessage) []byte {
	b.Reset()
	var comp flatbuffers.UOffsetT
	if m.Compression >= 0 {
		b.StartObject(2)
		b.PrependInt8Slot(slotCompressionCodec, int8(m.Compression), -1) // always written, LZ4_FRAME (0) included
		comp = b.EndObject()
	}
	b.StartVector(sizeStruct, len(m.Buffers), 8)
	for i := len(m.Buffers) - 1; i >= 0; i-- {
		b.Prep(8, sizeStruct)
		b.PrependInt64(m.Buffers[i].Length)
		b.PrependInt64(m.Buffers[i].Offset)
	}
	bufs := b.EndVector(len(m.Buffers))
	b.StartVector(sizeStruct, len(m.Nodes), 8)
	for i := len(m.Nodes) - 1; i >= 0; i-- {
		b.Prep(8, sizeStruct)
		b.PrependInt64(m.Nodes[i].NullCount)
		b.PrependInt64(m.Nodes[i].Length)
	}
	nodes := b.EndVector(len(m.Nodes))
	b.StartObject(5)
	b.PrependInt64Slot(slotRecordBatchLength, m.Length, 0)
	b.PrependUOffsetTSlot(slotRecordBatchNodes, nodes, 0)
	b.PrependUOffsetTSlot(slotRecordBatchBuffers, bufs, 0)
	if comp != 0 {
		b.PrependUOffsetTSlot(slotRecordBatchCompression, comp, 0)
	}
	rb := b.EndObject()
	b.StartObject(5)
	b.PrependInt16Slot(slotMessageVersion, metadataV5, 0)
	b.PrependByteSlot(slotMessageHeaderType, headerRecordBatch, 0)
	b.PrependUOffsetTSlot(slotMessageHeader, rb, 0)
	b.PrependInt64Slot(slotMessageBodyLength, m.BodyLength, 0)
	b.Finish(b.EndObject())
	meta := b.FinishedBytes()
	padded := (len(meta) + 7) &^ 7
	dst = binary.LittleEndian.AppendUint32(dst, ipcContinuation)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(padded))
	dst = append(dst, meta...)
	return append(dst, make([]byte, padded-len(meta))...)
}

// metadataV5 is MetadataVersion.V5, the current one.
const metadataV5 = 4

// DecodeIPCSchema reads the schema of an Arrow IPC stream, data, which may
// be untrusted: its metadata is checked as DecodeIPC checks it, and bytes
// that are not a stream fail with ErrMalformed. The batches after the
// schema are not read.
func DecodeIPCSchema(data []byte) (s *arrow.Schema, err error) {
	if err := checkIPC(data, int64(len(data))); err != nil {
		return nil, err
	}
	defer func() {
		if p := recover(); p != nil {
			s, err = nil, fmt.Errorf("%w: %v", ErrMalformed, p)
		}
	}()
	r, err := ipc.NewReader(bytes.NewReader(data), ipc.WithMetadataSizeLimit(int64(len(data))), ipc.WithBodySizeLimit(int64(len(data))))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	defer r.Release()
	return r.Schema(), nil
}

// CheckIPC checks the framing and the flatbuffer metadata of an Arrow IPC
// stream as DecodeIPC does before arrow-go reads it (forged vector lengths,
// offsets outside the metadata, deep nesting, bodies past the input or
// above maxBytes), failing with ErrMalformed. Run it before handing
// untrusted bytes to arrow-go's ipc reader.
func CheckIPC(data []byte, maxBytes int64) error { return checkIPC(data, maxBytes) }

// IPCColumn is one column of an Arrow IPC record batch as its message
// carries it: the field's nodes (depth first) and its body buffers in the
// message's compression (Compression, as in RecordBatchMessage): a
// compressed buffer holds its uncompressed length, then the codec's frame,
// or -1 and the raw bytes. Columns taken from messages with the same
// compression can be put together into one record batch (AppendRecordBatch)
// without decompressing them.
type IPCColumn struct {
	Nodes       []FieldNode
	Buffers     [][]byte
	Compression int
}

// IPCColumnOf returns the buffers of a flat array (one without children;
// offsets of strings and binaries starting at 0) for a message of the
// given compression: uncompressed, marked as such (-1) when compression is
// set. ok is false for an array of another layout.
func IPCColumnOf(a arrow.Array, compression int) (IPCColumn, bool) {
	bufs, ok := FlatBuffers(a)
	if !ok {
		return IPCColumn{}, false
	}
	col := IPCColumn{Nodes: []FieldNode{{Length: int64(a.Len()), NullCount: int64(a.NullN())}}, Compression: compression, Buffers: bufs}
	if compression >= 0 {
		for i, b := range bufs {
			if len(b) > 0 {
				col.Buffers[i] = append(binary.LittleEndian.AppendUint64(make([]byte, 0, 8+len(b)), ^uint64(0)), b...)
			}
		}
	}
	return col, true
}

// FlatBuffers returns the buffers of a in IPC order when a is a flat array
// of a fixed-width, boolean, string or binary type that is not sliced (a
// validity bitmap without nulls is returned empty). ok is false otherwise.
func FlatBuffers(a arrow.Array) ([][]byte, bool) {
	d := a.Data()
	if d.Offset() != 0 || len(d.Children()) != 0 {
		return nil, false
	}
	n := d.Len()
	bufs := d.Buffers()
	var validity []byte
	if a.NullN() > 0 {
		if len(bufs) == 0 || bufs[0] == nil || bufs[0].Len() < int(bitutil.BytesForBits(int64(n))) {
			return nil, false
		}
		validity = bufs[0].Bytes()[:bitutil.BytesForBits(int64(n))]
	}
	buf := func(i, size int) ([]byte, bool) {
		if len(bufs) <= i || bufs[i] == nil {
			return nil, size == 0
		}
		if b := bufs[i].Bytes(); len(b) >= size {
			return b[:size], true
		}
		return nil, false
	}
	switch dt := d.DataType().(type) {
	case *arrow.BooleanType:
		data, ok := buf(1, int(bitutil.BytesForBits(int64(n))))
		return [][]byte{validity, data}, ok
	case arrow.FixedWidthDataType:
		switch dt.ID() {
		case arrow.INT8, arrow.INT16, arrow.INT32, arrow.INT64, arrow.UINT8, arrow.UINT16, arrow.UINT32, arrow.UINT64,
			arrow.FLOAT32, arrow.FLOAT64, arrow.DATE32, arrow.DATE64, arrow.TIME32, arrow.TIME64, arrow.TIMESTAMP,
			arrow.DURATION, arrow.DECIMAL128, arrow.DECIMAL256:
			data, ok := buf(1, n*dt.BitWidth()/8)
			return [][]byte{validity, data}, ok
		}
	case *arrow.StringType, *arrow.BinaryType:
		offsets, ok := buf(1, (n+1)*4)
		if !ok {
			return nil, false
		}
		first := int32(binary.LittleEndian.Uint32(offsets))
		last := int32(binary.LittleEndian.Uint32(offsets[n*4:]))
		if first != 0 || last < 0 {
			return nil, false
		}
		data, ok := buf(2, int(last))
		return [][]byte{validity, offsets, data}, ok
	}
	return nil, false
}

// AppendRecordBatch appends one record batch message of rows rows made of
// cols, which must share compression, and its body, to dst (b is a
// scratch builder).
func AppendRecordBatch(dst []byte, b *flatbuffers.Builder, rows int64, compression int, cols []IPCColumn) ([]byte, error) {
	m := RecordBatchMessage{Length: rows, Compression: compression}
	var body int64
	for i, c := range cols {
		if c.Compression != compression {
			return nil, fmt.Errorf("batch: column %d has compression %d, the batch %d", i, c.Compression, compression)
		}
		m.Nodes = append(m.Nodes, c.Nodes...)
		for _, buf := range c.Buffers {
			m.Buffers = append(m.Buffers, BodySpan{Offset: body, Length: int64(len(buf))})
			body += int64(len(buf)+7) &^ 7
		}
	}
	m.BodyLength = body
	dst = AppendRecordBatchMessage(dst, b, &m)
	var pad [8]byte
	for _, c := range cols {
		for _, buf := range c.Buffers {
			dst = append(dst, buf...)
			dst = append(dst, pad[:(8-len(buf)%8)%8]...)
		}
	}
	return dst, nil
}

// SchemaMessage returns the encapsulated schema message of s, the first
// message of an IPC stream: arrow-go's own bytes.
func SchemaMessage(s *arrow.Schema) ([]byte, error) {
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(s))
	if err := w.Close(); err != nil {
		return nil, err
	}
	if buf.Len() < len(EOS) || !bytes.HasSuffix(buf.Bytes(), EOS[:]) {
		return nil, fmt.Errorf("batch: arrow/ipc wrote a %d-byte empty stream", buf.Len())
	}
	return buf.Bytes()[:buf.Len()-len(EOS)], nil
}

// EOS is the end-of-stream marker of an IPC stream: the continuation
// token and a zero length.
var EOS = [8]byte{0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0}
