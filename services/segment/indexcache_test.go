package segment_test

import (
	"testing"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/strom-io/strom/services/segment"
)

// TestIndexCache: a section read a second time through the cache skips
// the GETs of its index and returns the same batches; a cache too small
// for two indexes keeps the most recent one only.
func TestIndexCache(t *testing.T) {
	mem := memory.NewGoAllocator()
	secs := []segment.Section{
		makeSection(t, mem, allTypes, 1, "", 0, segment.CodecZstd, 0, 3, 500),
		makeSection(t, mem, allTypes, 1, "", 1, segment.CodecZstd, 0, 3, 500),
	}
	defer releaseSections(secs)
	obj, infos := encode(t, secs)
	r := &memReader{data: obj}
	read := func(c *segment.IndexCache, i int, cols []string) segment.ReadStats {
		t.Helper()
		in := infos[i]
		got, st, err := segment.ReadSection(ctx, r, "k", in.ByteOffset, in.ByteLength,
			segment.ReadOptions{Schema: allTypes, Columns: cols, TailSize: 1, IndexCache: c})
		if err != nil {
			t.Fatal(err)
		}
		for j, b := range got {
			want := projectRecord(secs[i].Batches[j].Record, cols...)
			if !array.RecordEqual(b.Record, want) {
				t.Errorf("section %d batch %d differs", i, j)
			}
			want.Release()
		}
		releaseBatches(got)
		return st
	}
	cols := []string{"id", "s"}
	c := segment.NewIndexCache(1 << 20)
	cold := read(c, 0, cols)
	warm := read(c, 0, cols)
	if cold.IndexBytes == 0 || warm.IndexBytes != 0 || warm.Gets != cold.Gets-2 || warm.ChunkBytes != cold.ChunkBytes {
		t.Fatalf("cold %+v, warm %+v: want the warm read without the index's 2 GETs", cold, warm)
	}
	if st := c.Stats(); st.Hits != 1 || st.Misses != 1 || st.Entries != 1 || st.Bytes <= 0 {
		t.Fatalf("stats %+v", st)
	}
	// What a projection will read, from the cached index alone.
	in := infos[0]
	if n, ok := c.ProjectedBytes("k", in.ByteOffset, in.ByteLength, cols, 0); !ok || n != warm.ChunkBytes {
		t.Fatalf("ProjectedBytes = %d, %v; the read decoded %d chunk bytes", n, ok, warm.ChunkBytes)
	}
	if _, ok := c.ProjectedBytes("k", infos[1].ByteOffset, infos[1].ByteLength, cols, 0); ok {
		t.Fatal("ProjectedBytes of a section not in the cache")
	}

	// Room for one index: reading the other section evicts the first.
	small := segment.NewIndexCache(c.Stats().Bytes + 1)
	read(small, 0, cols)
	read(small, 1, cols)
	if st := read(small, 0, cols); st.IndexBytes == 0 {
		t.Fatalf("section 0's index survived a cache with room for one")
	}
	if st := small.Stats(); st.Entries != 1 || st.Bytes > st.MaxBytes {
		t.Fatalf("small cache %+v", st)
	}
	// No cache: every read fetches the index.
	if st := read(nil, 0, cols); st.IndexBytes == 0 {
		t.Fatal("a read without a cache skipped the index")
	}
}
