package segment_test

import (
	"bytes"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/strom-io/strom/services/segment"
)

// TestChunkOverhead checks the cost of column chunks that docs/segment.md
// states: a one-column schema message of 120–136 bytes; ~280–320 bytes of
// framing per chunk (schema message, record batch metadata, padding,
// end-of-stream marker); ~30 bytes of section index per column per batch;
// so ~30 % of a 100-row batch of 15 columns and ~4 % of a 1000-row one.
// Its log has the measurements:
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
		n := buf.Len() - 8 // without the end-of-stream marker
		t.Logf("%-4s %-28s schema message %d bytes", f.Name, f.Type, n)
		if n < 120 || n > 136 {
			t.Errorf("%s: the schema message of a one-column schema is %d bytes, docs/segment.md says 120–136", f.Type, n)
		}
	}
	mem := memory.NewGoAllocator()
	for _, tc := range []struct {
		rows               int
		minShare, maxShare float64 // overhead as a share of the stored bytes, codec none
	}{
		{1, 0.90, 1},
		{100, 0.25, 0.35},
		{1000, 0.03, 0.05},
		{10000, 0, 0.01},
	} {
		for _, c := range []segment.Codec{segment.CodecNone, segment.CodecZstd} {
			secs := []segment.Section{makeSection(t, mem, allTypes, 1, "", 0, c, 0, 1, tc.rows)}
			obj, infos := encode(t, secs)
			in := infos[0]
			idx, err := segment.DecodeSectionIndex(obj[in.ByteOffset : in.ByteOffset+in.ByteLength])
			if err != nil {
				t.Fatal(err)
			}
			rec := secs[0].Batches[0].Record
			cols := idx.Batches[0].Columns
			n := int64(len(cols))
			index := in.ByteLength - idx.IndexOffset
			t.Logf("%s rows=%d: %d columns, chunks %d B, index %d B (%.0f B/column)", c, tc.rows, n, idx.IndexOffset, index, float64(index)/float64(n))
			if per := float64(index) / float64(n); per < 25 || per > 35 {
				t.Errorf("%s rows=%d: %.0f bytes of section index per column, docs/segment.md says ~30", c, tc.rows, per)
			}
			if c != segment.CodecNone {
				releaseSections(secs)
				continue // compressed chunks have no fixed framing to check
			}
			var framing int64
			for i, col := range cols {
				f := col.Length - dataBytes(t, rec.Column(i))
				framing += f
				if f < 270 || f > 330 {
					t.Errorf("rows=%d: column %s: %d bytes of framing, docs/segment.md says ~280–320", tc.rows, col.Name, f)
				}
			}
			share := float64(framing+index) / float64(in.ByteLength)
			t.Logf("none rows=%d: framing %.0f B per chunk, overhead %.1f %% of the section", tc.rows, float64(framing)/float64(n), 100*share)
			if share < tc.minShare || share > tc.maxShare {
				t.Errorf("rows=%d: framing and index are %.1f %% of the section, want %.0f–%.0f %%", tc.rows, 100*share, 100*tc.minShare, 100*tc.maxShare)
			}
			releaseSections(secs)
		}
	}
}

// dataBytes is the size of a column's values as Arrow lays them out,
// without padding: the validity bitmap (if it has nulls), then the values
// (bits for booleans, offsets and bytes for strings and binaries).
func dataBytes(t *testing.T, a arrow.Array) int64 {
	t.Helper()
	n := int64(a.Len())
	var b int64
	if a.NullN() > 0 {
		b += (n + 7) / 8
	}
	switch dt := a.DataType().(type) {
	case *arrow.BooleanType:
		b += (n + 7) / 8
	case arrow.FixedWidthDataType:
		b += n * int64(dt.BitWidth()) / 8
	case arrow.BinaryDataType:
		v := a.(interface{ ValueLen(int) int })
		b += (n + 1) * 4
		for i := range a.Len() {
			b += int64(v.ValueLen(i))
		}
	default:
		t.Fatalf("no data size for %s", dt)
	}
	return b
}
