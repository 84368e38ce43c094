package segment_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"testing"

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
