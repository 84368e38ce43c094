package segment_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/strom-io/strom/services/segment"
)

// benchObject builds a ~8 MiB (uncompressed) single-section object of 20
// columns (10 int64, 10 string) in 8 batches, with codec c.
func benchObject(b *testing.B, c segment.Codec) ([]byte, segment.SectionInfo, []string) {
	mem := memory.NewGoAllocator()
	sec := segment.Section{TableID: 1, Codec: c}
	const batches, rows = 8, 4000
	for i := 0; i < batches; i++ {
		rec := wideRecord(b, mem, rows, 10, 10, i)
		sec.Batches = append(sec.Batches, segment.Batch{BaseOffset: int64(i * rows), Timestamp: time.Now(), Record: rec})
	}
	defer releaseSections([]segment.Section{sec})
	obj, infos, err := segment.Encode([]segment.Section{sec})
	if err != nil {
		b.Fatal(err)
	}
	var names []string
	for _, f := range sec.Batches[0].Record.Schema().Fields() {
		names = append(names, f.Name)
	}
	return obj, infos[0], names
}

// BenchmarkReadProjection reads 1, 2, 5, 10 and 20 of 20 columns (int64 and
// string alternately) of an ~8 MiB object through an in-memory RangeReader.
// bytes/op is what was fetched; MB/s is the decoded (uncompressed) rate.
//
//	cd services && go test ./segment/ -run '^$' -bench BenchmarkReadProjection -benchtime 20x
func BenchmarkReadProjection(b *testing.B) {
	for _, c := range []segment.Codec{segment.CodecZstd, segment.CodecLZ4, segment.CodecNone} {
		obj, in, names := benchObject(b, c)
		// Interleave int64 and string columns: i00 s00 i01 s01 ...
		var order []string
		for i := 0; i < 10; i++ {
			order = append(order, names[i], names[10+i])
		}
		for _, n := range []int{1, 2, 5, 10, 20} {
			b.Run(fmt.Sprintf("%s/cols=%d", c, n), func(b *testing.B) {
				b.ReportAllocs()
				r := &memReader{data: obj}
				opts := segment.ReadOptions{Columns: order[:n]}
				var st segment.ReadStats
				var decoded int64
				for b.Loop() {
					got, s, err := segment.ReadSection(ctx, r, "k", in.ByteOffset, in.ByteLength, opts)
					if err != nil {
						b.Fatal(err)
					}
					st = s
					decoded = 0
					for _, rb := range got {
						decoded += recordBytes(rb.Record)
						rb.Record.Release()
					}
				}
				b.SetBytes(decoded)
				b.ReportMetric(float64(st.BytesFetched), "fetched-B/op")
				b.ReportMetric(float64(st.Gets), "GETs/op")
				b.ReportMetric(float64(in.ByteLength), "object-B")
			})
		}
	}
}

// BenchmarkEncode encodes the ~8 MiB benchmark section.
//
//	cd services && go test ./segment/ -run '^$' -bench BenchmarkEncode -benchtime 10x
func BenchmarkEncode(b *testing.B) {
	for _, c := range []segment.Codec{segment.CodecZstd, segment.CodecLZ4, segment.CodecNone} {
		b.Run(c.String(), func(b *testing.B) {
			mem := memory.NewGoAllocator()
			sec := segment.Section{TableID: 1, Codec: c}
			for i := 0; i < 8; i++ {
				rec := wideRecord(b, mem, 6000, 10, 10, i)
				sec.Batches = append(sec.Batches, segment.Batch{BaseOffset: int64(i * 6000), Timestamp: time.Now(), Record: rec})
			}
			defer releaseSections([]segment.Section{sec})
			var raw int64
			for _, bt := range sec.Batches {
				raw += recordBytes(bt.Record)
			}
			b.SetBytes(raw)
			b.ReportAllocs()
			var n int
			for b.Loop() {
				obj, _, err := segment.Encode([]segment.Section{sec})
				if err != nil {
					b.Fatal(err)
				}
				n = len(obj)
			}
			b.ReportMetric(float64(n), "object-B")
		})
	}
}

func recordBytes(r arrow.RecordBatch) int64 {
	var n int64
	for _, c := range r.Columns() {
		for _, buf := range c.Data().Buffers() {
			if buf != nil {
				n += int64(buf.Len())
			}
		}
	}
	return n
}

// BenchmarkEncodeSmall encodes what a 50 ms flush of a lightly loaded
// frontend holds: one batch of 100 rows × 20 columns. The cost here is per
// chunk, not per byte.
//
//	cd services && go test ./segment/ -run '^$' -bench BenchmarkEncodeSmall
func BenchmarkEncodeSmall(b *testing.B) {
	for _, c := range []segment.Codec{segment.CodecZstd, segment.CodecLZ4, segment.CodecNone} {
		b.Run(c.String(), func(b *testing.B) {
			mem := memory.NewGoAllocator()
			sec := segment.Section{TableID: 1, Codec: c}
			sec.Batches = append(sec.Batches, segment.Batch{Timestamp: time.Now(), Record: wideRecord(b, mem, 100, 10, 10, 0)})
			defer releaseSections([]segment.Section{sec})
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := segment.Encode([]segment.Section{sec}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
