package segment_test

import (
	"bytes"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/strom-io/strom/services/segment"
)

// TestChunkOverhead measures the framing of a column chunk (schema message,
// record batch metadata, padding, end-of-stream marker) against its data,
// for docs/segment.md:
//
//	cd services && go test ./segment/ -run TestChunkOverhead -v
func TestChunkOverhead(t *testing.T) {
	for _, f := range allTypes.Fields() {
		s := arrow.NewSchema([]arrow.Field{f}, nil)
		var buf bytes.Buffer
		w := ipc.NewWriter(&buf, ipc.WithSchema(s))
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("%-4s %-28s schema message %d bytes", f.Name, f.Type, buf.Len()-8)
	}
	mem := memory.NewGoAllocator()
	for _, rows := range []int{100, 1000, 10000} {
		for _, c := range []segment.Codec{segment.CodecNone, segment.CodecZstd} {
			secs := []segment.Section{makeSection(t, mem, allTypes, 1, "", 0, c, 0, 1, rows)}
			obj, infos := encode(t, secs)
			in := infos[0]
			idx, err := segment.DecodeSectionIndex(obj[in.ByteOffset : in.ByteOffset+in.ByteLength])
			if err != nil {
				t.Fatal(err)
			}
			raw := recordBytes(secs[0].Batches[0].Record)
			chunks := idx.IndexOffset
			n := len(idx.Batches[0].Columns)
			t.Logf("%s rows=%d: %d columns, raw buffers %d B, chunks %d B, index %d B (%.0f B/column); framing+schema per chunk (none) %.0f B",
				c, rows, n, raw, chunks, in.ByteLength-chunks, float64(in.ByteLength-chunks)/float64(n), float64(chunks-raw)/float64(n))
			releaseSections(secs)
		}
	}
}
