package segment_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/strom-io/strom/services/segment"
)

// fuzzSeeds returns a valid object and its first section.
func fuzzSeeds(f *testing.F) (obj, sec []byte) {
	mem := memory.NewGoAllocator()
	secs := []segment.Section{
		makeSection(f, mem, allTypes, 1, "p", 3, segment.CodecZstd, 10, 2, 3),
		makeSection(f, mem, allTypes, 2, "", 0, segment.CodecNone, 0, 1, 2),
	}
	defer releaseSections(secs)
	obj, infos := encode(f, secs)
	in := infos[0]
	return obj, obj[in.ByteOffset : in.ByteOffset+in.ByteLength]
}

func corruptCopies(f *testing.F, b []byte) {
	f.Add([]byte{})
	f.Add(b)
	f.Add(b[:len(b)-1])
	f.Add(b[len(b)/2:])
	for _, pos := range []int{0, 9, len(b) / 3, len(b) - 20, len(b) - 9, len(b) - 5, len(b) - 1} {
		c := bytes.Clone(b)
		c[pos] ^= 0x55
		f.Add(c)
	}
}

// FuzzDecodeSectionIndex: go test ./segment/ -run '^$' -fuzz FuzzDecodeSectionIndex -fuzztime 30s
func FuzzDecodeSectionIndex(f *testing.F) {
	_, sec := fuzzSeeds(f)
	corruptCopies(f, sec)
	f.Fuzz(func(t *testing.T, data []byte) {
		checkSectionIndex(t, data)
		// Repair the CRC so that mutations reach the index decoder.
		if n := len(data); n >= 8 {
			l := int(binary.LittleEndian.Uint32(data[n-8:]))
			if l <= n-8 {
				c := bytes.Clone(data)
				binary.LittleEndian.PutUint32(c[n-4:], crc32.Checksum(c[n-8-l:n-8], crc32.MakeTable(crc32.Castagnoli)))
				checkSectionIndex(t, c)
			}
		}
	})
}

func checkSectionIndex(t *testing.T, data []byte) {
	{
		idx, err := segment.DecodeSectionIndex(data)
		if err != nil {
			if !errors.Is(err, segment.ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		// Every chunk lies before the index; decoding it must not panic.
		for _, b := range idx.Batches {
			for _, c := range b.Columns {
				if c.Offset < 0 || c.Offset+c.Length > idx.IndexOffset {
					t.Fatalf("chunk %+v outside [0, %d)", c, idx.IndexOffset)
				}
				col, _, err := segment.DecodeChunk(data[c.Offset:c.Offset+c.Length], c, b.RowCount, nil)
				if err == nil {
					col.Release()
				} else if !errors.Is(err, segment.ErrCorrupt) {
					t.Fatalf("chunk error does not wrap ErrCorrupt: %v", err)
				}
			}
		}
	}
}

// FuzzDecodeObjectFooter: go test ./segment/ -run '^$' -fuzz FuzzDecodeObjectFooter -fuzztime 30s
func FuzzDecodeObjectFooter(f *testing.F) {
	obj, _ := fuzzSeeds(f)
	corruptCopies(f, obj)
	f.Fuzz(func(t *testing.T, data []byte) {
		secs, err := segment.DecodeObjectFooter(data)
		if err != nil {
			if !errors.Is(err, segment.ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		for _, s := range secs {
			if s.ByteOffset < 10 || s.ByteOffset+s.ByteLength > int64(len(data)) {
				t.Fatalf("section %+v outside the object", s)
			}
		}
	})
}

// FuzzDecodeChunk feeds column chunks, valid and mutated, to DecodeChunk
// (with the index entry's CRC and length made to match, so that mutations
// reach the decoder): it must return an error wrapping ErrCorrupt or a valid
// array, and whenever stock arrow-go also reads the bytes, the same values.
//
//	go test ./segment/ -run '^$' -fuzz FuzzDecodeChunk -fuzztime 30s
func FuzzDecodeChunk(f *testing.F) {
	mem := memory.NewGoAllocator()
	for _, codec := range []segment.Codec{segment.CodecZstd, segment.CodecLZ4, segment.CodecNone} {
		secs := []segment.Section{makeSection(f, mem, allTypes, 1, "", 0, codec, 0, 1, 12)}
		obj, infos := encode(f, secs)
		idx, err := segment.DecodeSectionIndex(obj[infos[0].ByteOffset : infos[0].ByteOffset+infos[0].ByteLength])
		if err != nil {
			f.Fatal(err)
		}
		for _, c := range idx.Batches[0].Columns {
			chunk := obj[infos[0].ByteOffset+c.Offset : infos[0].ByteOffset+c.Offset+c.Length]
			f.Add(bytes.Clone(chunk), c.Name, int64(12), c.NullCount)
			for _, pos := range []int{len(chunk) / 2, len(chunk) - 12, len(chunk) - 40} {
				if pos > 0 {
					m := bytes.Clone(chunk)
					m[pos] ^= 0x21
					f.Add(m, c.Name, int64(12), c.NullCount)
				}
			}
		}
		releaseSections(secs)
	}
	f.Fuzz(func(t *testing.T, data []byte, name string, rows, nulls int64) {
		if rows <= 0 || rows > 1<<20 {
			return
		}
		meta := segment.ColumnMeta{Name: name, Length: int64(len(data)), CRC: crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli)), NullCount: nulls}
		col, f, err := segment.DecodeChunk(data, meta, rows, nil)
		if err != nil {
			if !errors.Is(err, segment.ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		defer col.Release()
		if f.Name != name || int64(col.Len()) != rows {
			t.Fatalf("decoded column %q of %d rows, want %q of %d", f.Name, col.Len(), name, rows)
		}
		if want, ok := readWithArrowGo(data); ok {
			defer want.Release()
			if !array.Equal(col, want) {
				t.Fatalf("DecodeChunk and arrow-go differ:\n got %v\nwant %v", col, want)
			}
		}
	})
}

// readWithArrowGo reads the one column of a chunk with stock arrow-go,
// reporting false where arrow-go fails (or panics, on hostile bytes).
func readWithArrowGo(data []byte) (col arrow.Array, ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	r, err := ipc.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, false
	}
	defer r.Release()
	if !r.Next() || r.RecordBatch().NumCols() != 1 {
		return nil, false
	}
	col = r.RecordBatch().Column(0)
	if array.ValidateFull(col) != nil {
		return nil, false
	}
	col.Retain() // the reader releases its record
	return col, true
}
