package batch

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
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
