package batch

import (
	"encoding/binary"
	"fmt"

	flatbuffers "github.com/google/flatbuffers/go"
)

// This file checks an Arrow IPC stream's framing and flatbuffer metadata
// before arrow-go reads it. arrow-go trusts the metadata: it sizes slices
// from vector lengths taken straight from the client's bytes (a forged
// Schema.fields length made it allocate ~280 GB, an out-of-memory crash no
// recover() catches), follows offsets that wrap around the 32-bit offset
// space (cycles: unbounded recursion), and walks shared subtrees once per
// reference (exponential work). checkIPC walks every message the way
// arrow-go will and rejects all of that up front.
//
// The layouts are those of Arrow's format/Message.fbs and format/Schema.fbs
// (as generated into arrow-go v18's internal/flatbuf): a table's field i is
// found through vtable offset 4+2*i.

const (
	// ipcContinuation precedes the metadata length of every message of the
	// current (≥ 0.15) stream format; older streams start with the length.
	ipcContinuation = 0xFFFFFFFF
	// maxFieldDepth bounds the nesting of fields in a schema (arrow-go's
	// reader also stops at 64 levels).
	maxFieldDepth = 64
)

// MessageHeader union (Message.fbs).
const (
	headerSchema          = 1
	headerDictionaryBatch = 2
	headerRecordBatch     = 3
)

var headerNames = [...]string{"NONE", "Schema", "DictionaryBatch", "RecordBatch", "Tensor", "SparseTensor"}

func headerName(h byte) string {
	if int(h) < len(headerNames) {
		return headerNames[h]
	}
	return fmt.Sprintf("unknown header type %d", h)
}

// Slots (vtable index i at offset 4+2*i) of the tables read.
const (
	// table Message
	slotMessageVersion        = 0 // MetadataVersion (short)
	slotMessageHeaderType     = 1 // MessageHeader union type (ubyte)
	slotMessageHeader         = 2 // MessageHeader union value (table)
	slotMessageBodyLength     = 3 // long
	slotMessageCustomMetadata = 4 // [KeyValue]

	// table Schema
	slotSchemaEndianness     = 0 // Endianness (short)
	slotSchemaFields         = 1 // [Field]
	slotSchemaCustomMetadata = 2 // [KeyValue]
	slotSchemaFeatures       = 3 // [Feature (long)]

	// table Field
	slotFieldName           = 0 // string
	slotFieldNullable       = 1 // bool
	slotFieldTypeType       = 2 // Type union type (ubyte)
	slotFieldType           = 3 // Type union value (table)
	slotFieldDictionary     = 4 // DictionaryEncoding
	slotFieldChildren       = 5 // [Field]
	slotFieldCustomMetadata = 6 // [KeyValue]

	// table DictionaryEncoding
	slotDictEncodingID        = 0 // long
	slotDictEncodingIndexType = 1 // Int
	slotDictEncodingIsOrdered = 2 // bool
	slotDictEncodingKind      = 3 // DictionaryKind (short)

	// table KeyValue
	slotKeyValueKey   = 0 // string
	slotKeyValueValue = 1 // string

	// table RecordBatch
	slotRecordBatchLength      = 0 // long
	slotRecordBatchNodes       = 1 // [FieldNode] (struct of two longs)
	slotRecordBatchBuffers     = 2 // [Buffer] (struct of two longs)
	slotRecordBatchCompression = 3 // BodyCompression
	slotRecordBatchVariadic    = 4 // [long]

	// table BodyCompression
	slotCompressionCodec  = 0 // CompressionType (byte): LZ4_FRAME, ZSTD
	slotCompressionMethod = 1 // BodyCompressionMethod (byte): BUFFER

	// table DictionaryBatch
	slotDictBatchID      = 0 // long
	slotDictBatchData    = 1 // RecordBatch
	slotDictBatchIsDelta = 2 // bool
)

// Sizes of the inline and vector elements read.
const (
	sizeBool   = 1
	sizeByte   = 1
	sizeShort  = 2
	sizeInt    = 4
	sizeLong   = 8
	sizeOffset = flatbuffers.SizeUOffsetT
	sizeStruct = 16 // FieldNode{length, null_count}, Buffer{offset, length}
)

// fbValue describes a field of one of the Type union's tables: an inline
// scalar of size bytes, a string, or a vector of size-byte scalars.
type fbValue struct {
	name   string
	size   int64
	str    bool
	vector bool
}

// arrowTypes lists the members of Schema.fbs's Type union by union type,
// with the fields of each member's table in slot order.
var arrowTypes = [...]struct {
	name   string
	fields []fbValue
}{
	1:  {"Null", nil},
	2:  {"Int", []fbValue{{name: "bitWidth", size: sizeInt}, {name: "is_signed", size: sizeBool}}},
	3:  {"FloatingPoint", []fbValue{{name: "precision", size: sizeShort}}},
	4:  {"Binary", nil},
	5:  {"Utf8", nil},
	6:  {"Bool", nil},
	7:  {"Decimal", []fbValue{{name: "precision", size: sizeInt}, {name: "scale", size: sizeInt}, {name: "bitWidth", size: sizeInt}}},
	8:  {"Date", []fbValue{{name: "unit", size: sizeShort}}},
	9:  {"Time", []fbValue{{name: "unit", size: sizeShort}, {name: "bitWidth", size: sizeInt}}},
	10: {"Timestamp", []fbValue{{name: "unit", size: sizeShort}, {name: "timezone", size: 1, str: true}}},
	11: {"Interval", []fbValue{{name: "unit", size: sizeShort}}},
	12: {"List", nil},
	13: {"Struct_", nil},
	14: {"Union", []fbValue{{name: "mode", size: sizeShort}, {name: "typeIds", size: sizeInt, vector: true}}},
	15: {"FixedSizeBinary", []fbValue{{name: "byteWidth", size: sizeInt}}},
	16: {"FixedSizeList", []fbValue{{name: "listSize", size: sizeInt}}},
	17: {"Map", []fbValue{{name: "keysSorted", size: sizeBool}}},
	18: {"Duration", []fbValue{{name: "unit", size: sizeShort}}},
	19: {"LargeBinary", nil},
	20: {"LargeUtf8", nil},
	21: {"LargeList", nil},
	22: {"RunEndEncoded", nil},
	23: {"BinaryView", nil},
	24: {"Utf8View", nil},
	25: {"ListView", nil},
	26: {"LargeListView", nil},
}

// checkIPC verifies the framing of the Arrow IPC stream data and the
// flatbuffer metadata of each of its messages (see the file comment),
// failing with ErrMalformed (wrapped) naming the first problem. It accepts
// the current framing (0xFFFFFFFF, int32 metadata length, metadata, body)
// and the pre-0.15 one without the marker, as arrow-go does, and a stream
// that ends after a message without an end-of-stream marker (arrow-go
// reads that as the end). The first message must be a Schema, the others
// DictionaryBatch or RecordBatch messages.
func checkIPC(data []byte, maxBytes int64) error {
	pos := int64(0)
	n := int64(len(data))
	for i := 0; ; i++ {
		start := pos
		fail := func(format string, args ...any) error {
			return fmt.Errorf("%w: message %d (at byte %d): %s", ErrMalformed, i, start, fmt.Sprintf(format, args...))
		}
		if pos == n {
			return nil // no end-of-stream marker; arrow-go takes the end of the input as one
		}
		if n-pos < 4 {
			return fail("%d bytes where a message length was expected", n-pos)
		}
		word := binary.LittleEndian.Uint32(data[pos:])
		pos += 4
		var metaLen int64
		switch word {
		case 0: // pre-0.15 end-of-stream marker
		case ipcContinuation:
			if n-pos < 4 {
				return fail("truncated after the continuation marker: %d bytes where the metadata length was expected", n-pos)
			}
			metaLen = int64(int32(binary.LittleEndian.Uint32(data[pos:])))
			pos += 4
		default: // pre-0.15 framing: the length without the marker
			metaLen = int64(int32(word))
		}
		if metaLen == 0 { // end-of-stream marker
			if pos < n {
				return fmt.Errorf("%w: %d bytes after the end-of-stream marker", ErrMalformed, n-pos)
			}
			return nil
		}
		if metaLen < 8 {
			return fail("invalid metadata length %d", metaLen)
		}
		if metaLen > n-pos {
			return fail("metadata length %d, but only %d bytes follow", metaLen, n-pos)
		}
		c := &fbChecker{buf: data[pos : pos+metaLen], maxTables: int(metaLen/sizeOffset) + 1}
		pos += metaLen
		bodyLen, err := c.message(i == 0, data[pos:], maxBytes)
		if err != nil {
			return fail("%v", err)
		}
		pos += bodyLen
	}
}

// fbChecker verifies one message's flatbuffer metadata, buf, by hand: every
// offset and vector it follows must stay inside buf.
type fbChecker struct {
	buf       []byte
	tables    int // tables visited so far
	maxTables int // at most one per 4-byte offset in buf: more means shared subtrees

	body       []byte // the message body, once known
	compressed bool
}

// fbTable is a verified table: its vtable lies inside the buffer.
type fbTable struct {
	flatbuffers.Table
	name   string
	vtable int64 // position of the vtable
}

func (c *fbChecker) size() int64 { return int64(len(c.buf)) }

// table verifies the table at pos, named name in errors.
func (c *fbChecker) table(pos int64, name string) (fbTable, error) {
	n := c.size()
	if pos < 0 || pos > n-flatbuffers.SizeSOffsetT {
		return fbTable{}, fmt.Errorf("%s: table at metadata byte %d lies outside the %d-byte metadata", name, pos, n)
	}
	c.tables++
	if c.tables > c.maxTables {
		return fbTable{}, fmt.Errorf("%s: more than %d tables in %d bytes of metadata (tables shared between references)", name, c.maxTables, n)
	}
	vt := pos - int64(flatbuffers.GetSOffsetT(c.buf[pos:]))
	if vt < 0 || vt > n-2*flatbuffers.SizeVOffsetT {
		return fbTable{}, fmt.Errorf("%s: vtable at metadata byte %d lies outside the %d-byte metadata", name, vt, n)
	}
	vtLen := int64(flatbuffers.GetVOffsetT(c.buf[vt:]))
	if vtLen < 2*flatbuffers.SizeVOffsetT || vtLen%flatbuffers.SizeVOffsetT != 0 || vtLen > n-vt {
		return fbTable{}, fmt.Errorf("%s: vtable of %d bytes at metadata byte %d does not fit the %d-byte metadata", name, vtLen, vt, n)
	}
	return fbTable{Table: flatbuffers.Table{Bytes: c.buf, Pos: flatbuffers.UOffsetT(pos)}, name: name, vtable: vt}, nil
}

// field returns the position of the inline value of size bytes in t's
// slot, or 0 when the field is absent (has its default).
func (c *fbChecker) field(t fbTable, slot int, size int64, name string) (int64, error) {
	o := int64(t.Offset(flatbuffers.VOffsetT(4 + 2*slot)))
	if o == 0 {
		return 0, nil
	}
	p := int64(t.Pos) + o
	if p > c.size()-size {
		return 0, fmt.Errorf("%s.%s: %d-byte value at metadata byte %d overruns the %d-byte metadata", t.name, name, size, p, c.size())
	}
	return p, nil
}

// ref returns the position an offset field of t points to, or 0 when the
// field is absent. Whatever it points to starts with 4 bytes (a table's
// vtable offset, a vector's length).
func (c *fbChecker) ref(t fbTable, slot int, name string) (int64, error) {
	p, err := c.field(t, slot, sizeOffset, name)
	if p == 0 || err != nil {
		return 0, err
	}
	target := p + int64(flatbuffers.GetUOffsetT(c.buf[p:])) // no uint32 wrap-around, unlike the runtime
	if target > c.size()-sizeOffset {
		return 0, fmt.Errorf("%s.%s: offset at metadata byte %d points to byte %d, outside the %d-byte metadata", t.name, name, p, target, c.size())
	}
	return target, nil
}

// vector returns the position of the first element and the length of the
// vector of elemSize-byte elements in t's slot; an absent vector is empty.
func (c *fbChecker) vector(t fbTable, slot int, elemSize int64, name string) (int64, int64, error) {
	p, err := c.ref(t, slot, name)
	if p == 0 || err != nil {
		return 0, 0, err
	}
	count := int64(flatbuffers.GetUOffsetT(c.buf[p:]))
	start := p + sizeOffset
	if room := (c.size() - start) / elemSize; count > room {
		return 0, 0, fmt.Errorf("%s.%s: vector of %d elements of %d bytes at metadata byte %d, but the %d-byte metadata has room for %d",
			t.name, name, count, elemSize, p, c.size(), room)
	}
	return start, count, nil
}

// tables verifies the vector of tables in t's slot, calling each for every
// element with its position and index.
func (c *fbChecker) tableVector(t fbTable, slot int, name string, each func(pos int64, i int) error) error {
	start, count, err := c.vector(t, slot, sizeOffset, name)
	if err != nil {
		return err
	}
	for i := range int(count) {
		e := start + int64(i)*sizeOffset
		target := e + int64(flatbuffers.GetUOffsetT(c.buf[e:]))
		if target > c.size()-sizeOffset {
			return fmt.Errorf("%s.%s[%d]: offset at metadata byte %d points to byte %d, outside the %d-byte metadata", t.name, name, i, e, target, c.size())
		}
		if err := each(target, i); err != nil {
			return err
		}
	}
	return nil
}

// keyValues verifies the [KeyValue] vector in t's slot.
func (c *fbChecker) keyValues(t fbTable, slot int) error {
	return c.tableVector(t, slot, "custom_metadata", func(pos int64, i int) error {
		kv, err := c.table(pos, fmt.Sprintf("%s.custom_metadata[%d]", t.name, i))
		if err != nil {
			return err
		}
		if _, _, err := c.vector(kv, slotKeyValueKey, 1, "key"); err != nil {
			return err
		}
		_, _, err = c.vector(kv, slotKeyValueValue, 1, "value")
		return err
	})
}

// int64Field reads the long in t's slot (def when absent).
func (c *fbChecker) int64Field(t fbTable, slot int, name string, def int64) (int64, error) {
	p, err := c.field(t, slot, sizeLong, name)
	if p == 0 || err != nil {
		return def, err
	}
	return flatbuffers.GetInt64(c.buf[p:]), nil
}

// enumField reads the short or byte enum in t's slot (def when absent) and
// checks it is at most max.
func (c *fbChecker) enumField(t fbTable, slot int, size int64, name string, def, max int) (int, error) {
	p, err := c.field(t, slot, size, name)
	if err != nil {
		return 0, err
	}
	v := def
	if p != 0 {
		if size == sizeShort {
			v = int(flatbuffers.GetInt16(c.buf[p:]))
		} else {
			v = int(c.buf[p])
		}
	}
	if v < 0 || v > max {
		return 0, fmt.Errorf("%s.%s: invalid value %d", t.name, name, v)
	}
	return v, nil
}

// message verifies the Message at the root of c.buf, first telling whether
// it is the stream's first message, tail holding the input after the
// metadata. It returns the length of the body, which starts tail.
func (c *fbChecker) message(first bool, tail []byte, maxBytes int64) (int64, error) {
	m, err := c.table(int64(flatbuffers.GetUOffsetT(c.buf)), "Message")
	if err != nil {
		return 0, err
	}
	if _, err := c.enumField(m, slotMessageVersion, sizeShort, "version", 0, 4); err != nil { // V1 .. V5
		return 0, err
	}
	htype, err := c.enumField(m, slotMessageHeaderType, sizeByte, "header_type", 0, 255)
	if err != nil {
		return 0, err
	}
	switch {
	case first && htype != headerSchema:
		return 0, fmt.Errorf("the stream starts with a %s message, not a Schema", headerName(byte(htype)))
	case !first && htype != headerDictionaryBatch && htype != headerRecordBatch:
		return 0, fmt.Errorf("a %s message after the schema; want DictionaryBatch or RecordBatch", headerName(byte(htype)))
	}
	bodyLen, err := c.int64Field(m, slotMessageBodyLength, "bodyLength", 0)
	if err != nil {
		return 0, err
	}
	switch {
	case bodyLen < 0:
		return 0, fmt.Errorf("Message.bodyLength: negative (%d)", bodyLen)
	case bodyLen > maxBytes:
		return 0, fmt.Errorf("Message.bodyLength: %d bytes, more than the limit of %d", bodyLen, maxBytes)
	case bodyLen > int64(len(tail)):
		return 0, fmt.Errorf("Message.bodyLength: %d bytes, but only %d follow the metadata", bodyLen, len(tail))
	}
	c.body = tail[:bodyLen]
	if err := c.keyValues(m, slotMessageCustomMetadata); err != nil {
		return 0, err
	}
	hpos, err := c.ref(m, slotMessageHeader, "header")
	if err != nil {
		return 0, err
	}
	if hpos == 0 {
		return 0, fmt.Errorf("message header: missing %s", headerName(byte(htype)))
	}
	h, err := c.table(hpos, headerName(byte(htype)))
	if err != nil {
		return 0, err
	}
	switch htype {
	case headerSchema:
		err = c.schema(h)
	case headerDictionaryBatch:
		err = c.dictionaryBatch(h)
	case headerRecordBatch:
		err = c.recordBatch(h)
	}
	return bodyLen, err
}

// schema verifies a Schema table.
func (c *fbChecker) schema(s fbTable) error {
	if _, err := c.enumField(s, slotSchemaEndianness, sizeShort, "endianness", 0, 1); err != nil { // Little, Big
		return err
	}
	err := c.tableVector(s, slotSchemaFields, "fields", func(pos int64, i int) error {
		return c.fieldTable(pos, fmt.Sprintf("Schema.fields[%d]", i), 1)
	})
	if err != nil {
		return err
	}
	if err := c.keyValues(s, slotSchemaCustomMetadata); err != nil {
		return err
	}
	_, _, err = c.vector(s, slotSchemaFeatures, sizeLong, "features")
	return err
}

// fieldTable verifies the Field table at pos, named name, at nesting depth
// depth (1 for the schema's fields), with its children.
func (c *fbChecker) fieldTable(pos int64, name string, depth int) error {
	if depth > maxFieldDepth {
		return fmt.Errorf("%s: fields nested more than %d deep", name, maxFieldDepth)
	}
	f, err := c.table(pos, name)
	if err != nil {
		return err
	}
	if _, _, err := c.vector(f, slotFieldName, 1, "name"); err != nil {
		return err
	}
	if _, err := c.field(f, slotFieldNullable, sizeBool, "nullable"); err != nil {
		return err
	}
	tt, err := c.enumField(f, slotFieldTypeType, sizeByte, "type_type", 0, len(arrowTypes)-1)
	if err != nil {
		return err
	}
	if tt == 0 {
		return fmt.Errorf("%s: no type", name)
	}
	tpos, err := c.ref(f, slotFieldType, "type")
	if err != nil {
		return err
	}
	if tpos == 0 {
		return fmt.Errorf("%s.type: missing %s table", name, arrowTypes[tt].name)
	}
	typ, err := c.table(tpos, name+".type "+arrowTypes[tt].name)
	if err != nil {
		return err
	}
	for slot, v := range arrowTypes[tt].fields {
		if v.str || v.vector {
			_, _, err = c.vector(typ, slot, v.size, v.name)
		} else {
			_, err = c.field(typ, slot, v.size, v.name)
		}
		if err != nil {
			return err
		}
	}
	dpos, err := c.ref(f, slotFieldDictionary, "dictionary")
	if err != nil {
		return err
	}
	if dpos != 0 {
		d, err := c.table(dpos, name+".dictionary")
		if err != nil {
			return err
		}
		if _, err := c.int64Field(d, slotDictEncodingID, "id", 0); err != nil {
			return err
		}
		ipos, err := c.ref(d, slotDictEncodingIndexType, "indexType")
		if err != nil {
			return err
		}
		if ipos != 0 {
			it, err := c.table(ipos, name+".dictionary.indexType")
			if err != nil {
				return err
			}
			for slot, v := range arrowTypes[2].fields { // Int
				if _, err := c.field(it, slot, v.size, v.name); err != nil {
					return err
				}
			}
		}
		if _, err := c.field(d, slotDictEncodingIsOrdered, sizeBool, "isOrdered"); err != nil {
			return err
		}
		if _, err := c.enumField(d, slotDictEncodingKind, sizeShort, "dictionaryKind", 0, 0); err != nil { // DenseArray
			return err
		}
	}
	err = c.tableVector(f, slotFieldChildren, "children", func(pos int64, i int) error {
		return c.fieldTable(pos, fmt.Sprintf("%s.children[%d]", name, i), depth+1)
	})
	if err != nil {
		return err
	}
	return c.keyValues(f, slotFieldCustomMetadata)
}

// dictionaryBatch verifies a DictionaryBatch table.
func (c *fbChecker) dictionaryBatch(d fbTable) error {
	if _, err := c.int64Field(d, slotDictBatchID, "id", 0); err != nil {
		return err
	}
	if _, err := c.field(d, slotDictBatchIsDelta, sizeBool, "isDelta"); err != nil {
		return err
	}
	pos, err := c.ref(d, slotDictBatchData, "data")
	if err != nil {
		return err
	}
	if pos == 0 {
		return fmt.Errorf("DictionaryBatch.data: missing")
	}
	rb, err := c.table(pos, "DictionaryBatch.data")
	if err != nil {
		return err
	}
	return c.recordBatch(rb)
}

// recordBatch verifies a RecordBatch table against the message body.
func (c *fbChecker) recordBatch(rb fbTable) error {
	if n, err := c.int64Field(rb, slotRecordBatchLength, "length", 0); err != nil {
		return err
	} else if n < 0 {
		return fmt.Errorf("%s.length: negative (%d)", rb.name, n)
	}
	cpos, err := c.ref(rb, slotRecordBatchCompression, "compression")
	if err != nil {
		return err
	}
	if cpos != 0 {
		comp, err := c.table(cpos, rb.name+".compression")
		if err != nil {
			return err
		}
		if _, err := c.enumField(comp, slotCompressionCodec, sizeByte, "codec", 0, 1); err != nil { // LZ4_FRAME, ZSTD
			return err
		}
		if _, err := c.enumField(comp, slotCompressionMethod, sizeByte, "method", 0, 0); err != nil { // BUFFER
			return err
		}
		c.compressed = true
	}
	start, count, err := c.vector(rb, slotRecordBatchNodes, sizeStruct, "nodes")
	if err != nil {
		return err
	}
	for i := range count {
		p := start + i*sizeStruct
		length, nulls := flatbuffers.GetInt64(c.buf[p:]), flatbuffers.GetInt64(c.buf[p+sizeLong:])
		if length < 0 || nulls < 0 || nulls > length {
			return fmt.Errorf("%s.nodes[%d]: length %d, null_count %d", rb.name, i, length, nulls)
		}
	}
	start, nbufs, err := c.vector(rb, slotRecordBatchBuffers, sizeStruct, "buffers")
	if err != nil {
		return err
	}
	bodyLen := int64(len(c.body))
	for i := range nbufs {
		p := start + i*sizeStruct
		off, length := flatbuffers.GetInt64(c.buf[p:]), flatbuffers.GetInt64(c.buf[p+sizeLong:])
		if off < 0 || length < 0 || off > bodyLen || length > bodyLen-off {
			return fmt.Errorf("%s.buffers[%d]: %d bytes at offset %d, outside the %d-byte body", rb.name, i, length, off, bodyLen)
		}
		if c.compressed && length > 0 {
			// The uncompressed length leads, -1 for a buffer left uncompressed.
			if length < sizeLong {
				return fmt.Errorf("%s.buffers[%d]: compressed buffer of %d bytes, shorter than its length prefix", rb.name, i, length)
			}
			if n := int64(binary.LittleEndian.Uint64(c.body[off:])); n < -1 {
				return fmt.Errorf("%s.buffers[%d]: uncompressed length %d", rb.name, i, n)
			}
		}
	}
	start, count, err = c.vector(rb, slotRecordBatchVariadic, sizeLong, "variadicBufferCounts")
	if err != nil {
		return err
	}
	var total int64
	for i := range count {
		v := flatbuffers.GetInt64(c.buf[start+i*sizeLong:])
		if v < 0 || v > nbufs-total {
			return fmt.Errorf("%s.variadicBufferCounts[%d]: %d buffers, but the batch has %d in all", rb.name, i, v, nbufs)
		}
		total += v
	}
	return nil
}
