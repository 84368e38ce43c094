package wal

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
)

// On-disk format (see docs/wal.md).
//
// File header, 24 bytes:
//
//	[0:8)   magic "STROMWAL"
//	[8:12)  version uint32 (1)
//	[12:16) crc32c over [0:12) and [16:24)
//	[16:24) first LSN of the file uint64 (equals the number in the file name)
//
// Record, 24-byte header then payload:
//
//	[0:4)   payload length uint32
//	[4:8)   crc32c over [0:4), [8:24) and the payload
//	[8:16)  lsn uint64
//	[16:24) batch: LSN of the first record of the write (group commit) this
//	        record was written in
//	[24:24+length) payload
//
// All integers are little-endian.
const (
	fileMagic      = "STROMWAL"
	fileVersion    = 1
	fileHeaderSize = 24
	recHeaderSize  = 24
	fileExt        = ".wal"
	fileNameDigits = 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// fileName returns the name of the file whose first record has LSN first.
func fileName(first uint64) string {
	return fmt.Sprintf("%0*d%s", fileNameDigits, first, fileExt)
}

// parseFileName returns the first LSN encoded in a WAL file name; ok is false
// for any other name.
func parseFileName(name string) (first uint64, ok bool) {
	digits, found := strings.CutSuffix(name, fileExt)
	if !found || len(digits) != fileNameDigits {
		return 0, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || n == 0 {
		return 0, false
	}
	return n, true
}

func appendFileHeader(dst []byte, first uint64) []byte {
	var h [fileHeaderSize]byte
	copy(h[0:8], fileMagic)
	binary.LittleEndian.PutUint32(h[8:12], fileVersion)
	binary.LittleEndian.PutUint64(h[16:24], first)
	binary.LittleEndian.PutUint32(h[12:16], fileHeaderCRC(h[:]))
	return append(dst, h[:]...)
}

func fileHeaderCRC(h []byte) uint32 {
	c := crc32.Update(0, castagnoli, h[0:12])
	return crc32.Update(c, castagnoli, h[16:24])
}

// decodeFileHeader validates a file header and returns the first LSN it
// records.
func decodeFileHeader(b []byte) (uint64, error) {
	if len(b) < fileHeaderSize {
		return 0, fmt.Errorf("short file header (%d bytes)", len(b))
	}
	if string(b[0:8]) != fileMagic {
		return 0, fmt.Errorf("bad magic %q", b[0:8])
	}
	if v := binary.LittleEndian.Uint32(b[8:12]); v != fileVersion {
		return 0, fmt.Errorf("unsupported version %d", v)
	}
	if got, want := binary.LittleEndian.Uint32(b[12:16]), fileHeaderCRC(b); got != want {
		return 0, fmt.Errorf("file header crc mismatch (stored %08x, computed %08x)", got, want)
	}
	return binary.LittleEndian.Uint64(b[16:24]), nil
}

// appendRecord appends the encoding of one record to dst.
func appendRecord(dst []byte, lsn, batch uint64, payload []byte) []byte {
	off := len(dst)
	dst = append(dst, make([]byte, recHeaderSize)...)
	h := dst[off : off+recHeaderSize]
	binary.LittleEndian.PutUint32(h[0:4], uint32(len(payload)))
	binary.LittleEndian.PutUint64(h[8:16], lsn)
	binary.LittleEndian.PutUint64(h[16:24], batch)
	dst = append(dst, payload...)
	binary.LittleEndian.PutUint32(dst[off+4:off+8], recordCRC(dst[off:off+recHeaderSize], payload))
	return dst
}

func recordCRC(h, payload []byte) uint32 {
	c := crc32.Update(0, castagnoli, h[0:4])
	c = crc32.Update(c, castagnoli, h[8:24])
	return crc32.Update(c, castagnoli, payload)
}

// record is one decoded record. payload aliases the decoded buffer.
type record struct {
	lsn     uint64
	batch   uint64
	payload []byte
}

// decodeError says why the bytes at some offset are not a valid record.
// short is true when the input ended inside the record (a torn write looks
// like this); otherwise the bytes are there but wrong.
type decodeError struct {
	short  bool
	reason string
}

func (e *decodeError) Error() string { return e.reason }

// decodeRecord decodes the record at the start of b and returns it with its
// encoded size. It never returns a record whose CRC does not match.
func decodeRecord(b []byte) (record, int, error) {
	if len(b) < recHeaderSize {
		return record{}, 0, &decodeError{short: true, reason: fmt.Sprintf("short record header (%d of %d bytes)", len(b), recHeaderSize)}
	}
	h := b[:recHeaderSize]
	n := binary.LittleEndian.Uint32(h[0:4])
	if n > MaxPayloadSize {
		return record{}, 0, &decodeError{reason: fmt.Sprintf("record length %d exceeds limit %d", n, MaxPayloadSize)}
	}
	size := recHeaderSize + int(n)
	if len(b) < size {
		return record{}, 0, &decodeError{short: true, reason: fmt.Sprintf("short record (%d of %d bytes)", len(b), size)}
	}
	payload := b[recHeaderSize:size:size]
	if got, want := binary.LittleEndian.Uint32(h[4:8]), recordCRC(h, payload); got != want {
		return record{}, 0, &decodeError{reason: fmt.Sprintf("record crc mismatch (stored %08x, computed %08x)", got, want)}
	}
	r := record{
		lsn:     binary.LittleEndian.Uint64(h[8:16]),
		batch:   binary.LittleEndian.Uint64(h[16:24]),
		payload: payload,
	}
	if r.batch > r.lsn || r.batch == 0 {
		return record{}, 0, &decodeError{reason: fmt.Sprintf("record batch %d inconsistent with lsn %d", r.batch, r.lsn)}
	}
	return r, size, nil
}
