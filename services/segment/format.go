package segment

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"slices"
	"strings"
	"time"
)

// Magic opens and closes every segment object.
const Magic = "STROMSEG"

// FormatVersion is the object format version written after the leading
// [Magic]. Readers reject other versions.
const FormatVersion uint16 = 1

// Versions of the section index and of the object footer encodings; each
// encoding starts with its version byte, because a reader of one bucket reads
// the section index without the object header.
const (
	// sectionIndexVersion 2 stores the chunks column by column (every
	// chunk of the section's first column, batch by batch, then the next
	// column's); version 1, which readers still accept, batch by batch.
	sectionIndexVersion byte = 2
	objectFooterVersion byte = 1
)

const (
	headerLen         = len(Magic) + 2         // magic + u16 version
	sectionTrailerLen = 8                      // u32 index length + u32 crc32c
	objectTrailerLen  = 8 + len(Magic)         // u32 length + u32 crc32c + magic
	maxStatLen        = 64                     // string min/max are truncated to this many bytes
	maxMetaLen        = math.MaxUint32         // index and footer lengths are u32
	minSectionLen     = sectionTrailerLen + 12 // the smallest encodable index
)

// Sentinel errors. Errors from this package wrap one of them with %w and add
// what was wrong; classify with [errors.Is].
var (
	// ErrCorrupt reports bytes that are not a valid segment object, section,
	// section index, footer or column chunk: bad magic or version, a CRC
	// mismatch, a truncated or out-of-bounds field, a chunk that does not
	// decode to the array the index describes.
	ErrCorrupt = errors.New("segment: corrupt")

	// ErrInvalidSection reports input to [Encode] that cannot be written:
	// no batches, non-contiguous offsets, an unknown codec, a nil or empty
	// record, duplicate column names, duplicate sections.
	ErrInvalidSection = errors.New("segment: invalid section")

	// ErrUnknownColumn reports a projected column that the output schema
	// (or, without one, the stored batch) does not have.
	ErrUnknownColumn = errors.New("segment: unknown column")

	// ErrSchemaMismatch reports a stored column whose type differs from the
	// output schema's, a NOT NULL output column with nulls, or one missing
	// from an older batch (only nullable columns may be added later).
	ErrSchemaMismatch = errors.New("segment: stored column does not match the schema")

	// ErrInvalidOptions reports bad [ReadOptions] or a bad byte range.
	ErrInvalidOptions = errors.New("segment: invalid read options")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc32c(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// Codec is a section's compression codec, applied by Arrow IPC buffer
// compression inside every column chunk. The zero value is [CodecZstd].
type Codec uint8

// The codecs. Their numeric values are stored in section indexes.
const (
	CodecZstd Codec = 0 // ZSTD (Arrow IPC BodyCompression ZSTD); the default
	CodecLZ4  Codec = 1 // LZ4 frame (Arrow IPC BodyCompression LZ4_FRAME)
	CodecNone Codec = 2 // no compression
)

// String returns "zstd", "lz4" or "none" (or "codec(N)" for an unknown one).
func (c Codec) String() string {
	switch c {
	case CodecZstd:
		return "zstd"
	case CodecLZ4:
		return "lz4"
	case CodecNone:
		return "none"
	}
	return fmt.Sprintf("codec(%d)", uint8(c))
}

func (c Codec) valid() bool { return c <= CodecNone }

// ParseCodec returns the codec named s ("zstd", "lz4" or "none", any case;
// "" is zstd).
func ParseCodec(s string) (Codec, error) {
	switch strings.ToLower(s) {
	case "", "zstd":
		return CodecZstd, nil
	case "lz4", "lz4_frame":
		return CodecLZ4, nil
	case "none", "uncompressed":
		return CodecNone, nil
	}
	return 0, fmt.Errorf("segment: unknown codec %q: want zstd, lz4 or none", s)
}

// SectionIndex is the decoded index of one section. Byte offsets are
// relative to the section's first byte.
type SectionIndex struct {
	TableID      int64
	Partition    string
	Bucket       int32
	Codec        Codec
	BaseOffset   int64 // offset of the section's first row
	EndOffset    int64 // exclusive: BaseOffset + RowCount
	RowCount     int64
	MinTimestamp time.Time // smallest batch Timestamp (UTC, microseconds)
	MaxTimestamp time.Time // largest batch Timestamp (UTC, microseconds)
	Batches      []BatchMeta
	// IndexOffset is where the index starts in the section: the column
	// chunks occupy [0, IndexOffset), the index and its 8-byte trailer the
	// rest.
	IndexOffset int64
}

// BatchMeta describes one stored batch. Its rows have offsets BaseOffset,
// BaseOffset+1, ... and all share Timestamp.
type BatchMeta struct {
	BaseOffset    int64
	RowCount      int64
	Timestamp     time.Time // append time, UTC, microsecond precision
	SchemaVersion int32
	Columns       []ColumnMeta // in the batch's column order
}

// Column returns the batch's column named name and whether it has one.
func (b *BatchMeta) Column(name string) (ColumnMeta, bool) {
	for _, c := range b.Columns {
		if c.Name == name {
			return c, true
		}
	}
	return ColumnMeta{}, false
}

// ColumnMeta describes one column chunk: a standalone Arrow IPC stream with
// one single-column record batch.
type ColumnMeta struct {
	Name      string
	Offset    int64  // chunk start, relative to the section
	Length    int64  // chunk length in bytes
	CRC       uint32 // CRC-32C (Castagnoli) of the chunk's bytes
	NullCount int64
	// HasStats reports whether Min and Max are set: false for BINARY and
	// other types without stats, for all-null chunks, and for floating point
	// chunks holding NaN.
	HasStats bool
	// Min and Max bound the chunk's non-null values (Min <= v <= Max) in the
	// encoding of docs/segment.md: little-endian fixed width for numbers,
	// dates, times, timestamps and decimals; one byte 0/1 for booleans; the
	// bytes for strings, truncated to 64 bytes (Max then rounded up), so
	// for strings they are bounds, not necessarily values.
	Min, Max []byte
}

// SectionMeta is one section as listed in the object footer.
type SectionMeta struct {
	TableID      int64
	Partition    string
	Bucket       int32
	ByteOffset   int64 // section start in the object
	ByteLength   int64
	BaseOffset   int64
	EndOffset    int64 // exclusive
	RowCount     int64
	MinTimestamp time.Time
	MaxTimestamp time.Time
}

func sectionLess(at int64, ap string, ab int32, bt int64, bp string, bb int32) bool {
	if at != bt {
		return at < bt
	}
	if ap != bp {
		return ap < bp
	}
	return ab < bb
}

// ---- encoding helpers ----

type enc struct{ b []byte }

func (e *enc) byte1(v byte)       { e.b = append(e.b, v) }
func (e *enc) uvarint(v uint64)   { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) varint(v int64)     { e.b = binary.AppendVarint(e.b, v) }
func (e *enc) u32(v uint32)       { e.b = binary.LittleEndian.AppendUint32(e.b, v) }
func (e *enc) bytes(v []byte)     { e.uvarint(uint64(len(v))); e.b = append(e.b, v...) }
func (e *enc) str(v string)       { e.uvarint(uint64(len(v))); e.b = append(e.b, v...) }
func (e *enc) count(n int)        { e.uvarint(uint64(n)) }
func (e *enc) nonneg(v int64)     { e.uvarint(uint64(v)) }
func (e *enc) micros(t time.Time) { e.varint(t.UnixMicro()) }
func (e *enc) sectionKey(t int64, p string, b int32) {
	e.varint(t)
	e.str(p)
	e.varint(int64(b))
}

// dec reads from b, recording the first error; every read after an error
// returns zero values. what names the structure for error messages.
type dec struct {
	b    []byte
	off  int
	what string
	err  error
}

func (d *dec) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w %s: %s (at byte %d)", ErrCorrupt, d.what, fmt.Sprintf(format, args...), d.off)
	}
}

func (d *dec) remaining() int { return len(d.b) - d.off }

func (d *dec) byte1(field string) byte {
	if d.err != nil {
		return 0
	}
	if d.remaining() < 1 {
		d.fail("truncated %s", field)
		return 0
	}
	v := d.b[d.off]
	d.off++
	return v
}

func (d *dec) u32(field string) uint32 {
	if d.err != nil {
		return 0
	}
	if d.remaining() < 4 {
		d.fail("truncated %s", field)
		return 0
	}
	v := binary.LittleEndian.Uint32(d.b[d.off:])
	d.off += 4
	return v
}

func (d *dec) uvarint(field string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.fail("bad varint %s", field)
		return 0
	}
	d.off += n
	return v
}

func (d *dec) varint(field string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b[d.off:])
	if n <= 0 {
		d.fail("bad varint %s", field)
		return 0
	}
	d.off += n
	return v
}

// nonneg reads a uvarint that must fit an int64.
func (d *dec) nonneg(field string) int64 {
	v := d.uvarint(field)
	if v > math.MaxInt64 {
		d.fail("%s %d out of range", field, v)
		return 0
	}
	return int64(v)
}

// count reads an element count; each element takes at least minSize bytes,
// which bounds the count by the bytes left (so hostile counts cannot make
// the decoder allocate more than the input's size).
func (d *dec) count(field string, minSize int) int {
	v := d.uvarint(field)
	if d.err != nil {
		return 0
	}
	if v > uint64(d.remaining()/minSize) {
		d.fail("%s %d exceeds the remaining %d bytes", field, v, d.remaining())
		return 0
	}
	return int(v)
}

func (d *dec) bytes(field string) []byte {
	n := d.uvarint(field + " length")
	if d.err != nil {
		return nil
	}
	if n > uint64(d.remaining()) {
		d.fail("%s length %d exceeds the remaining %d bytes", field, n, d.remaining())
		return nil
	}
	v := d.b[d.off : d.off+int(n) : d.off+int(n)]
	d.off += int(n)
	return v
}

func (d *dec) str(field string) string { return string(d.bytes(field)) }

func (d *dec) int32v(field string) int32 {
	v := d.varint(field)
	if v < math.MinInt32 || v > math.MaxInt32 {
		d.fail("%s %d out of int32 range", field, v)
		return 0
	}
	return int32(v)
}

func (d *dec) micros(field string) time.Time {
	v := d.varint(field)
	// time.UnixMicro is defined for every int64.
	return time.UnixMicro(v).UTC()
}

func (d *dec) done() {
	if d.err == nil && d.remaining() != 0 {
		d.fail("%d unexpected trailing bytes", d.remaining())
	}
}

// ---- section index ----

// encodeSectionIndex appends the index of s (whose Batches and their
// Columns are complete, chunks stored in columnOrder) to dst.
func encodeSectionIndex(dst []byte, s *SectionIndex) []byte {
	e := enc{b: dst}
	e.byte1(sectionIndexVersion)
	e.byte1(byte(s.Codec))
	e.sectionKey(s.TableID, s.Partition, s.Bucket)
	e.varint(s.BaseOffset)
	e.nonneg(s.RowCount)
	e.micros(s.MinTimestamp)
	e.micros(s.MaxTimestamp)
	e.count(len(s.Batches))
	for i := range s.Batches {
		b := &s.Batches[i]
		e.nonneg(b.RowCount)
		e.micros(b.Timestamp)
		e.varint(int64(b.SchemaVersion))
		e.count(len(b.Columns))
		for j := range b.Columns {
			c := &b.Columns[j]
			e.str(c.Name)
			e.nonneg(c.Length)
			e.u32(c.CRC)
			e.nonneg(c.NullCount)
			if c.HasStats {
				e.byte1(1)
				e.bytes(c.Min)
				e.bytes(c.Max)
			} else {
				e.byte1(0)
			}
		}
	}
	return e.b
}

// DecodeSectionIndex decodes the index of a section. section is the whole
// section as stored: its column chunks, index and 8-byte trailer (the bytes
// [SectionInfo.ByteOffset, +ByteLength) of the object). A reader that holds
// only the end of the section uses [DecodeSectionIndexTail].
//
// DecodeSectionIndex verifies the trailer, the CRC-32C, every bound and
// count, contiguous offsets, row and timestamp totals, and that the chunk
// lengths add up to exactly the bytes before the index. It never panics; on
// bad input it returns an error wrapping [ErrCorrupt]. It does not decode the
// column chunks (see [ReadSection]).
func DecodeSectionIndex(section []byte) (SectionIndex, error) {
	return DecodeSectionIndexTail(section, int64(len(section)))
}

// DecodeSectionIndexTail is [DecodeSectionIndex] for a suffix tail of a
// section sectionLen bytes long, as a reader that fetched only the end of the
// section has it. tail must hold at least the index and its trailer; the
// returned index's offsets are relative to the section start, as always.
func DecodeSectionIndexTail(tail []byte, sectionLen int64) (SectionIndex, error) {
	if sectionLen < int64(len(tail)) {
		return SectionIndex{}, fmt.Errorf("%w section: tail of %d bytes is longer than the section (%d bytes)", ErrCorrupt, len(tail), sectionLen)
	}
	if len(tail) < sectionTrailerLen {
		return SectionIndex{}, fmt.Errorf("%w section: %d bytes is too short for the 8-byte trailer", ErrCorrupt, len(tail))
	}
	t := tail[len(tail)-sectionTrailerLen:]
	idxLen := int64(binary.LittleEndian.Uint32(t))
	sum := binary.LittleEndian.Uint32(t[4:])
	if idxLen > int64(len(tail)-sectionTrailerLen) {
		return SectionIndex{}, fmt.Errorf("%w section: index length %d exceeds the %d bytes before the trailer", ErrCorrupt, idxLen, len(tail)-sectionTrailerLen)
	}
	idx := tail[len(tail)-sectionTrailerLen-int(idxLen) : len(tail)-sectionTrailerLen]
	if got := crc32c(idx); got != sum {
		return SectionIndex{}, fmt.Errorf("%w section index: crc32c %08x, trailer says %08x", ErrCorrupt, got, sum)
	}
	return decodeSectionIndexBody(idx, sectionLen-sectionTrailerLen-idxLen)
}

// decodeSectionIndexBody decodes the index bytes (CRC already verified);
// chunkArea is the number of section bytes before the index.
func decodeSectionIndexBody(idx []byte, chunkArea int64) (SectionIndex, error) {
	d := dec{b: idx, what: "section index"}
	var s SectionIndex
	version := d.byte1("version")
	if d.err == nil && version != 1 && version != 2 {
		d.fail("unsupported version %d (want 1 or %d)", version, sectionIndexVersion)
	}
	s.Codec = Codec(d.byte1("codec"))
	if d.err == nil && !s.Codec.valid() {
		d.fail("unknown codec %d", s.Codec)
	}
	s.TableID = d.varint("table id")
	s.Partition = d.str("partition")
	s.Bucket = d.int32v("bucket")
	s.BaseOffset = d.varint("base offset")
	s.RowCount = d.nonneg("row count")
	s.MinTimestamp = d.micros("min timestamp")
	s.MaxTimestamp = d.micros("max timestamp")
	// A batch takes at least 4 bytes (rows, timestamp, version, column count).
	n := d.count("batch count", 4)
	if d.err != nil {
		return SectionIndex{}, d.err
	}
	if n == 0 {
		d.fail("no batches")
	}
	if s.BaseOffset < 0 || s.RowCount > math.MaxInt64-s.BaseOffset {
		d.fail("offsets %d+%d out of range", s.BaseOffset, s.RowCount)
	}
	s.EndOffset = s.BaseOffset + s.RowCount
	s.Batches = make([]BatchMeta, 0, n)
	next, pos := s.BaseOffset, int64(0)
	var minTS, maxTS int64
	for i := 0; i < n && d.err == nil; i++ {
		b := BatchMeta{BaseOffset: next}
		b.RowCount = d.nonneg("batch row count")
		ts := d.varint("batch timestamp")
		b.Timestamp = time.UnixMicro(ts).UTC()
		b.SchemaVersion = d.int32v("schema version")
		// A column takes at least 8 bytes (name, length, crc, nulls, flag).
		nc := d.count("column count", 8)
		if d.err != nil {
			break
		}
		if b.RowCount <= 0 || b.RowCount > s.EndOffset-next {
			d.fail("batch %d: row count %d does not fit the section's remaining %d rows", i, b.RowCount, s.EndOffset-next)
			break
		}
		if nc == 0 {
			d.fail("batch %d: no columns", i)
			break
		}
		if i == 0 || ts < minTS {
			minTS = ts
		}
		if i == 0 || ts > maxTS {
			maxTS = ts
		}
		b.Columns = make([]ColumnMeta, 0, nc)
		for j := 0; j < nc && d.err == nil; j++ {
			c := ColumnMeta{Offset: pos}
			c.Name = d.str("column name")
			c.Length = d.nonneg("chunk length")
			c.CRC = d.u32("chunk crc")
			c.NullCount = d.nonneg("null count")
			switch f := d.byte1("stats flag"); f {
			case 0:
			case 1:
				c.HasStats = true
				c.Min = d.bytes("min")
				c.Max = d.bytes("max")
			default:
				d.fail("batch %d column %d: bad stats flag %d", i, j, f)
			}
			if d.err != nil {
				break
			}
			switch {
			case c.Name == "":
				d.fail("batch %d column %d: empty name", i, j)
			case c.Length <= 0 || c.Length > chunkArea-pos:
				// pos is the sum of the lengths so far, in either order.
				d.fail("batch %d column %q: chunk [%d, +%d) outside the %d chunk bytes", i, c.Name, pos, c.Length, chunkArea)
			case c.NullCount > b.RowCount:
				d.fail("batch %d column %q: null count %d exceeds row count %d", i, c.Name, c.NullCount, b.RowCount)
			case c.HasStats && c.NullCount == b.RowCount:
				d.fail("batch %d column %q: min/max on an all-null chunk", i, c.Name)
			}
			for k := range b.Columns {
				if b.Columns[k].Name == c.Name && d.err == nil {
					d.fail("batch %d: duplicate column %q", i, c.Name)
				}
			}
			pos += c.Length
			b.Columns = append(b.Columns, c)
		}
		next += b.RowCount
		s.Batches = append(s.Batches, b)
	}
	d.done()
	if d.err == nil && version == 2 {
		columnMajorOffsets(s.Batches)
	}
	if d.err == nil {
		switch {
		case next != s.EndOffset:
			d.fail("batch rows add up to %d, section says %d", next-s.BaseOffset, s.RowCount)
		case pos != chunkArea:
			d.fail("chunk lengths add up to %d, the section has %d chunk bytes", pos, chunkArea)
		case minTS != s.MinTimestamp.UnixMicro() || maxTS != s.MaxTimestamp.UnixMicro():
			d.fail("min/max timestamp %d/%d, batches say %d/%d", s.MinTimestamp.UnixMicro(), s.MaxTimestamp.UnixMicro(), minTS, maxTS)
		}
	}
	if d.err != nil {
		return SectionIndex{}, d.err
	}
	s.IndexOffset = chunkArea
	return s, nil
}

// columnOrder returns the names of the columns of batches in the order a
// version 2 section stores them: by first appearance, batch by batch.
func columnOrder(batches []BatchMeta) []string {
	var names []string
	seen := map[string]bool{}
	for i := range batches {
		for _, c := range batches[i].Columns {
			if !seen[c.Name] {
				seen[c.Name] = true
				names = append(names, c.Name)
			}
		}
	}
	return names
}

// columnMajorOffsets sets the chunk offsets of a version 2 section: the
// chunks of the first column of columnOrder, batch by batch, then those of
// the next.
func columnMajorOffsets(batches []BatchMeta) {
	rank := map[string]int{}
	for _, name := range columnOrder(batches) {
		rank[name] = len(rank)
	}
	type ref struct{ rank, batch, col int }
	var refs []ref
	for i := range batches {
		for j, c := range batches[i].Columns {
			refs = append(refs, ref{rank[c.Name], i, j})
		}
	}
	slices.SortFunc(refs, func(a, b ref) int {
		if a.rank != b.rank {
			return cmp.Compare(a.rank, b.rank)
		}
		return cmp.Compare(a.batch, b.batch)
	})
	pos := int64(0)
	for _, r := range refs {
		c := &batches[r.batch].Columns[r.col]
		c.Offset = pos
		pos += c.Length
	}
}

// ---- object footer ----

func encodeObjectFooter(dst []byte, secs []SectionMeta) []byte {
	e := enc{b: dst}
	e.byte1(objectFooterVersion)
	e.count(len(secs))
	for _, s := range secs {
		e.sectionKey(s.TableID, s.Partition, s.Bucket)
		e.nonneg(s.ByteOffset)
		e.nonneg(s.ByteLength)
		e.varint(s.BaseOffset)
		e.nonneg(s.RowCount)
		e.micros(s.MinTimestamp)
		e.micros(s.MaxTimestamp)
	}
	return e.b
}

// DecodeObjectFooter decodes the footer of a whole segment object and returns
// its sections in object order. It verifies the leading and trailing magic,
// the format version, the footer CRC-32C, every bound, and that the sections
// are ordered by (table id, partition, bucket) without duplicates and tile
// the object between header and footer exactly. It never panics; on bad input
// it returns an error wrapping [ErrCorrupt]. It does not read the sections'
// indexes (see [DecodeSectionIndex]).
func DecodeObjectFooter(object []byte) ([]SectionMeta, error) {
	if len(object) < headerLen+objectTrailerLen {
		return nil, fmt.Errorf("%w object: %d bytes is too short for header and trailer", ErrCorrupt, len(object))
	}
	if string(object[:len(Magic)]) != Magic {
		return nil, fmt.Errorf("%w object: bad leading magic %q", ErrCorrupt, object[:len(Magic)])
	}
	if v := binary.LittleEndian.Uint16(object[len(Magic):]); v != FormatVersion {
		return nil, fmt.Errorf("%w object: unsupported format version %d (want %d)", ErrCorrupt, v, FormatVersion)
	}
	t := object[len(object)-objectTrailerLen:]
	if string(t[8:]) != Magic {
		return nil, fmt.Errorf("%w object: bad trailing magic %q", ErrCorrupt, t[8:])
	}
	flen := int64(binary.LittleEndian.Uint32(t))
	sum := binary.LittleEndian.Uint32(t[4:])
	footerStart := int64(len(object)-objectTrailerLen) - flen
	if footerStart < int64(headerLen) {
		return nil, fmt.Errorf("%w object footer: length %d exceeds the %d bytes after the header", ErrCorrupt, flen, len(object)-objectTrailerLen-headerLen)
	}
	footer := object[footerStart : len(object)-objectTrailerLen]
	if got := crc32c(footer); got != sum {
		return nil, fmt.Errorf("%w object footer: crc32c %08x, trailer says %08x", ErrCorrupt, got, sum)
	}
	return decodeObjectFooterBody(footer, footerStart)
}

// decodeObjectFooterBody decodes footer bytes (CRC verified) of an object
// whose footer starts at footerStart.
func decodeObjectFooterBody(footer []byte, footerStart int64) ([]SectionMeta, error) {
	d := dec{b: footer, what: "object footer"}
	if v := d.byte1("version"); d.err == nil && v != objectFooterVersion {
		d.fail("unsupported version %d (want %d)", v, objectFooterVersion)
	}
	// A section entry takes at least 10 bytes.
	n := d.count("section count", 10)
	if d.err != nil {
		return nil, d.err
	}
	secs := make([]SectionMeta, 0, n)
	pos := int64(headerLen)
	for i := 0; i < n && d.err == nil; i++ {
		var s SectionMeta
		s.TableID = d.varint("table id")
		s.Partition = d.str("partition")
		s.Bucket = d.int32v("bucket")
		s.ByteOffset = d.nonneg("byte offset")
		s.ByteLength = d.nonneg("byte length")
		s.BaseOffset = d.varint("base offset")
		s.RowCount = d.nonneg("row count")
		s.MinTimestamp = d.micros("min timestamp")
		s.MaxTimestamp = d.micros("max timestamp")
		if d.err != nil {
			break
		}
		switch {
		case s.ByteOffset != pos:
			d.fail("section %d starts at %d, want %d (sections must tile the object)", i, s.ByteOffset, pos)
		case s.ByteLength < minSectionLen || s.ByteLength > footerStart-pos:
			d.fail("section %d: length %d out of range", i, s.ByteLength)
		case s.BaseOffset < 0 || s.RowCount <= 0 || s.RowCount > math.MaxInt64-s.BaseOffset:
			d.fail("section %d: offsets %d+%d out of range", i, s.BaseOffset, s.RowCount)
		case s.MinTimestamp.After(s.MaxTimestamp):
			d.fail("section %d: min timestamp after max timestamp", i)
		case i > 0 && !sectionLess(secs[i-1].TableID, secs[i-1].Partition, secs[i-1].Bucket, s.TableID, s.Partition, s.Bucket):
			d.fail("section %d (table %d partition %q bucket %d) out of order or duplicate", i, s.TableID, s.Partition, s.Bucket)
		}
		s.EndOffset = s.BaseOffset + s.RowCount
		pos += s.ByteLength
		secs = append(secs, s)
	}
	d.done()
	if d.err == nil && pos != footerStart {
		d.fail("sections end at %d, footer starts at %d", pos, footerStart)
	}
	if d.err != nil {
		return nil, d.err
	}
	return secs, nil
}
