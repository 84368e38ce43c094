package cache_test

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/strom-io/strom/services/cache"
	"github.com/strom-io/strom/services/objstore"
)

// BenchmarkGetRange reads 64 KiB ranges of a 16 MiB object in the
// filesystem object store: straight from the store, through a warm cache
// (every block cached) and through a cache that misses every time (default
// 1 MiB blocks, room for one block, so each read fetches and writes a
// block).
//
//	cd services && go test -run='^$' -bench=GetRange -benchmem ./cache/
func BenchmarkGetRange(b *testing.B) {
	const size, rangeLen = 16 << 20, 64 << 10
	r := rand.New(rand.NewPCG(1, 1))
	data := randBytes(r, size)
	fs, err := objstore.NewFS(objstore.FSConfig{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	if err := fs.Put(context.Background(), "seg", bytes.NewReader(data), size); err != nil {
		b.Fatal(err)
	}
	warm := newCache(b, fs, b.TempDir(), cache.DefaultBlockSize, cache.DefaultMaxBytes)
	read(b, warm, "seg", 0, size/2)
	read(b, warm, "seg", size/2, size/2)
	cold := newCache(b, fs, b.TempDir(), cache.DefaultBlockSize, 2*cache.DefaultBlockSize)
	read(b, cold, "seg", size-1, 1) // learn the extent: misses fetch whole blocks

	buf := make([]byte, rangeLen)
	for _, bc := range []struct {
		name string
		r    cache.RangeReader
		off  func(i int) int64
	}{
		{"inner", fs, func(int) int64 { return r.Int64N(size - rangeLen) }},
		{"hit", warm, func(int) int64 { return r.Int64N(size - rangeLen) }},
		// consecutive blocks: the one block cached is never the next
		{"miss", cold, func(i int) int64 { return int64(i%15) << 20 }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(rangeLen)
			i := 0
			for b.Loop() {
				rc, err := bc.r.GetRange(context.Background(), "seg", bc.off(i), rangeLen)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(rc, buf); err != nil {
					b.Fatal(err)
				}
				rc.Close()
				i++
			}
			b.StopTimer()
			if c, ok := bc.r.(*cache.Cache); ok {
				b.Logf("%+v", c.Stats())
			}
		})
	}
}
