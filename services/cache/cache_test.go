package cache_test

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strom-io/strom/services/cache"
	"github.com/strom-io/strom/services/objstore"
)

func TestConfig(t *testing.T) {
	var c cache.Config
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	c.RegisterFlags("cache.", fs)
	if err := fs.Parse([]string{"-cache.dir=/x"}); err != nil {
		t.Fatal(err)
	}
	if c.MaxBytes != cache.DefaultMaxBytes || c.BlockSize != cache.DefaultBlockSize || c.Dir != "/x" {
		t.Fatalf("flag defaults: %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		cfg  cache.Config
		want string // substring of the error; "" for valid
	}{
		{cache.Config{Dir: "d", MaxBytes: 128, BlockSize: 64}, ""},
		{cache.Config{MaxBytes: 128, BlockSize: 64}, "dir"},
		{cache.Config{Dir: "d", MaxBytes: 128, BlockSize: 0}, "block_size"},
		{cache.Config{Dir: "d", MaxBytes: 1 << 30, BlockSize: cache.MaxBlockSize + 1}, "block_size"},
		{cache.Config{Dir: "d", MaxBytes: 127, BlockSize: 64}, "max_bytes"},
	} {
		err := tc.cfg.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("Validate(%+v) = %v, want error naming %q", tc.cfg, err, tc.want)
		}
	}
	// New fills zero sizes with the defaults.
	if _, err := cache.New(cache.Config{Dir: t.TempDir()}, newMemStore(), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := cache.New(cache.Config{Dir: t.TempDir()}, nil, nil); err == nil {
		t.Fatal("New with a nil inner reader succeeded")
	}
}

// source is a set of objects behind a cache, and a way to check reads.
type source struct {
	inner cache.RangeReader
	objs  map[string][]byte
}

func memSource(t *testing.T, objs map[string][]byte) source {
	m := newMemStore()
	for k, v := range objs {
		m.put(k, v)
	}
	return source{m, objs}
}

func fsSource(t *testing.T, objs map[string][]byte) source {
	b, err := objstore.NewFS(objstore.FSConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range objs {
		if err := b.Put(context.Background(), k, bytes.NewReader(v), int64(len(v))); err != nil {
			t.Fatal(err)
		}
	}
	return source{b, objs}
}

// TestRandomRanges compares random ranges read through caches of several
// sizes with the source, over an in-memory store and the filesystem store.
func TestRandomRanges(t *testing.T) {
	for _, src := range []struct {
		name string
		make func(*testing.T, map[string][]byte) source
	}{{"mem", memSource}, {"fs", fsSource}} {
		for _, maxBytes := range []int64{1 << 20, 1000} {
			t.Run(fmt.Sprintf("%s/max=%d", src.name, maxBytes), func(t *testing.T) {
				seed := uint64(time.Now().UnixNano())
				t.Logf("seed %d", seed)
				r := rand.New(rand.NewPCG(seed, 1))
				objs := make(map[string][]byte)
				var keys []string
				for i, size := range []int{1, 63, 64, 65, 200, 1000, 4096 + 17} {
					k := "seg/" + string(rune('a'+i))
					objs[k] = randBytes(r, size)
					keys = append(keys, k)
				}
				s := src.make(t, objs)
				const bs = 64
				dir := t.TempDir()
				c := newCache(t, s.inner, dir, bs, maxBytes)
				for range 600 {
					k := keys[r.IntN(len(keys))]
					data := objs[k]
					off := r.Int64N(int64(len(data)) + 1)
					length := r.Int64N(int64(len(data)) - off + 1)
					if r.IntN(4) == 0 { // short ranges are the common case
						length = min(length, r.Int64N(80))
					}
					got := read(t, c, k, off, length)
					if want := data[off : off+length]; !bytes.Equal(got, want) {
						t.Fatalf("GetRange(%q, %d, %d): wrong bytes", k, off, length)
					}
				}
				st := c.Stats()
				if st.Bytes > maxBytes || diskBytes(t, dir) > maxBytes {
					t.Fatalf("cache holds %d bytes, max %d", st.Bytes, maxBytes)
				}
				if st.Hits == 0 || st.Misses == 0 {
					t.Fatalf("stats %+v: want hits and misses", st)
				}
				t.Logf("%+v", st)
			})
		}
	}
}

// TestConcurrentRandom reads random ranges from several goroutines through
// a small cache (so blocks are evicted while read) and checks every byte.
func TestConcurrentRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	objs := map[string][]byte{"a": randBytes(r, 3000), "b": randBytes(r, 777)}
	s := memSource(t, objs)
	dir := t.TempDir()
	const maxBytes = 600
	c := newCache(t, s.inner, dir, 64, maxBytes)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 3))
			for range 300 {
				k := []string{"a", "b"}[r.IntN(2)]
				data := objs[k]
				off := r.Int64N(int64(len(data)))
				length := min(r.Int64N(200)+1, int64(len(data))-off)
				got, err := tryRead(c, k, off, length)
				if err != nil {
					t.Errorf("GetRange(%q, %d, %d): %v", k, off, length, err)
					return
				}
				if !bytes.Equal(got, data[off:off+length]) {
					t.Errorf("GetRange(%q, %d, %d): wrong bytes", k, off, length)
					return
				}
			}
		})
	}
	wg.Wait()
	if st := c.Stats(); st.Bytes > maxBytes || diskBytes(t, dir) > maxBytes || st.Evictions == 0 {
		t.Fatalf("stats %+v, %d bytes on disk: want evictions and at most %d bytes", st, diskBytes(t, dir), maxBytes)
	}
}

func TestSecondReadServedFromCache(t *testing.T) {
	m := newMemStore()
	data := randBytes(rand.New(rand.NewPCG(1, 1)), 1000)
	m.put("k", data)
	c := newCache(t, m, t.TempDir(), 64, 1<<20)
	read(t, c, "k", 10, 200)
	if n := m.NumCalls(); n != 1 {
		t.Fatalf("first read: %d inner calls, want 1 (coalesced)", n)
	}
	for _, rg := range [][2]int64{{10, 200}, {20, 30}, {64, 64}, {199, 11}} {
		if got := read(t, c, "k", rg[0], rg[1]); !bytes.Equal(got, data[rg[0]:rg[0]+rg[1]]) {
			t.Fatalf("range %v: wrong bytes", rg)
		}
	}
	if n := m.NumCalls(); n != 1 {
		t.Fatalf("cached reads made %d more inner calls", n-1)
	}
	st := c.Stats()
	if st.InnerGets != 1 || st.InnerBytes != 210 || st.ServedBytes != 200+200+30+64+11 {
		t.Fatalf("stats %+v", st)
	}
}

func TestCoalescesMissingBlocks(t *testing.T) {
	m := newMemStore()
	m.put("k", make([]byte, 1000))
	c := newCache(t, m, t.TempDir(), 64, 1<<20)
	read(t, c, "k", 0, 64)
	read(t, c, "k", 128, 64)
	read(t, c, "k", 0, 320) // blocks 0 and 2 cached: fetch 1, then 3-4
	want := []call{{"k", 0, 64}, {"k", 128, 64}, {"k", 64, 64}, {"k", 192, 128}}
	got := m.Calls()
	slices.SortFunc(got, func(a, b call) int { return cmp.Compare(a.off, b.off) })
	slices.SortFunc(want, func(a, b call) int { return cmp.Compare(a.off, b.off) })
	if !equalCalls(got, want) {
		t.Fatalf("inner calls %v, want %v", got, want)
	}
}

// TestShortBlocks checks that fetches stop at the requested end unless more
// of the object is known to exist, and that short blocks are extended.
func TestShortBlocks(t *testing.T) {
	m := newMemStore()
	m.put("small", make([]byte, 100))
	m.put("big", make([]byte, 300))
	c := newCache(t, m, t.TempDir(), 64, 1<<20)
	read(t, c, "small", 70, 30) // the object's last, short block
	read(t, c, "small", 0, 10)  // extent 100 is known: whole block 0
	read(t, c, "small", 0, 100) // all cached
	read(t, c, "big", 0, 10)    // nothing known: clamp to the range
	read(t, c, "big", 0, 20)    // the cached prefix is too short
	read(t, c, "big", 200, 10)  // extent becomes 210
	read(t, c, "big", 0, 30)    // block 0 now fetched whole
	read(t, c, "big", 60, 150)  // blocks 1, 2 whole, 3 cached up to 210
	want := []call{
		{"small", 64, 36}, {"small", 0, 64},
		{"big", 0, 10}, {"big", 0, 20}, {"big", 192, 18}, {"big", 0, 64}, {"big", 64, 128},
	}
	if got := m.Calls(); !equalCalls(got, want) {
		t.Fatalf("inner calls %v, want %v", got, want)
	}
}

func equalCalls(a, b []call) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestEvictionKeepsSizeBounded(t *testing.T) {
	m := newMemStore()
	m.put("k", make([]byte, 64*100))
	dir := t.TempDir()
	const maxBytes = 10 * (64 + 8)
	c := newCache(t, m, dir, 64, maxBytes)
	for i := range int64(100) {
		read(t, c, "k", 0, 1)     // block 0 stays the most recently used
		read(t, c, "k", i*64, 64) // a new block each time
		if got := diskBytes(t, dir); got > maxBytes {
			t.Fatalf("after %d blocks: %d bytes on disk, max %d", i, got, maxBytes)
		}
	}
	st := c.Stats()
	if st.Bytes > maxBytes || st.Evictions < 90 || st.Blocks != 10 {
		t.Fatalf("stats %+v", st)
	}
	n := m.NumCalls()
	read(t, c, "k", 0, 64)
	if m.NumCalls() != n {
		t.Fatal("the most recently used block was evicted")
	}
}

func TestRestartReusesBlocks(t *testing.T) {
	m := newMemStore()
	data := randBytes(rand.New(rand.NewPCG(2, 2)), 1000)
	m.put("k", data)
	dir := t.TempDir()
	c1 := newCache(t, m, dir, 64, 1<<20)
	read(t, c1, "k", 0, 1000)

	m2 := newMemStore()
	m2.put("k", data)
	c2 := newCache(t, m2, dir, 64, 1<<20)
	if st := c2.Stats(); st.Blocks != 16 || st.Bytes != 1000+16*8 {
		t.Fatalf("restart indexed %+v", st)
	}
	if got := read(t, c2, "k", 5, 990); !bytes.Equal(got, data[5:995]) {
		t.Fatal("wrong bytes after restart")
	}
	if n := m2.NumCalls(); n != 0 {
		t.Fatalf("after restart: %d inner calls, want 0", n)
	}

	// Another block size discards the blocks.
	c3 := newCache(t, m2, dir, 128, 1<<20)
	if st := c3.Stats(); st.Blocks != 0 || len(blockFiles(t, dir)) != 0 {
		t.Fatalf("new block size kept %+v", st)
	}
}

func TestRestartEvictsOldestFirst(t *testing.T) {
	m := newMemStore()
	m.put("k", make([]byte, 64*5))
	dir := t.TempDir()
	c1 := newCache(t, m, dir, 64, 1<<20)
	for i := range int64(5) {
		read(t, c1, "k", i*64, 64)
	}
	// Recency is the file mtime: block i was used i seconds after block 0.
	base := time.Now().Add(-time.Hour)
	files := blockFiles(t, dir)
	if len(files) != 5 {
		t.Fatalf("%d block files, want 5", len(files))
	}
	for _, f := range files {
		i, err := strconv.Atoi(f[strings.LastIndexByte(f, '-')+1:])
		if err != nil {
			t.Fatalf("block file %s: %v", f, err)
		}
		mtime := base.Add(time.Duration(i) * time.Second)
		if err := os.Chtimes(f, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	c2 := newCache(t, m, dir, 64, 2*(64+8)) // room for the newest two
	if st := c2.Stats(); st.Blocks != 2 || st.Evictions != 3 {
		t.Fatalf("stats %+v", st)
	}
	n := m.NumCalls()
	read(t, c2, "k", 3*64, 64)
	read(t, c2, "k", 4*64, 64)
	if m.NumCalls() != n {
		t.Fatal("restart evicted the newest blocks")
	}
}

func TestCorruptBlockRefetched(t *testing.T) {
	data := randBytes(rand.New(rand.NewPCG(3, 3)), 100)
	for _, tc := range []struct {
		name    string
		restart bool
		damage  func(path string) error
	}{
		{"truncated", false, func(p string) error { return os.Truncate(p, 30) }},
		{"removed", false, os.Remove},
		{"truncated-restart", true, func(p string) error { return os.Truncate(p, 30) }},
		{"empty-restart", true, func(p string) error { return os.Truncate(p, 0) }},
		{"flipped-restart", true, func(p string) error {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			b[7] ^= 1
			return os.WriteFile(p, b, 0o644)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMemStore()
			m.put("k", data)
			dir := t.TempDir()
			c := newCache(t, m, dir, 64, 1<<20)
			read(t, c, "k", 0, 50)
			files := blockFiles(t, dir)
			if len(files) != 1 {
				t.Fatalf("%d block files, want 1", len(files))
			}
			if err := tc.damage(files[0]); err != nil {
				t.Fatal(err)
			}
			if tc.restart {
				c = newCache(t, m, dir, 64, 1<<20)
			}
			if got := read(t, c, "k", 0, 20); !bytes.Equal(got, data[:20]) {
				t.Fatal("served a damaged block")
			}
			if n := m.NumCalls(); n != 2 {
				t.Fatalf("%d inner calls, want 2 (the refetch)", n)
			}
			if st := c.Stats(); st.Dropped != 1 {
				t.Fatalf("stats %+v, want one dropped block", st)
			}
			read(t, c, "k", 0, 20) // the refetched block is cached again
			if n := m.NumCalls(); n != 2 {
				t.Fatalf("%d inner calls, want 2", n)
			}
		})
	}
}

// TestConcurrentReadersShareFetch starts many readers of one block while
// the inner fetch is held back: exactly one inner call is made.
func TestConcurrentReadersShareFetch(t *testing.T) {
	m := newMemStore()
	data := randBytes(rand.New(rand.NewPCG(4, 4)), 1000)
	m.put("k", data)
	m.release = make(chan struct{})
	c := newCache(t, m, t.TempDir(), 64, 1<<20)
	const readers = 16
	var wg sync.WaitGroup
	for range readers {
		wg.Go(func() {
			got, err := tryRead(c, "k", 70, 50)
			if err != nil || !bytes.Equal(got, data[70:120]) {
				t.Errorf("read: %v", err)
			}
		})
	}
	waitFor(t, "the other readers to wait for the first one's fetch", func() bool { return c.Waiting() == readers-1 })
	close(m.release)
	wg.Wait()
	if n := m.NumCalls(); n != 1 {
		t.Fatalf("%d inner calls, want 1", n)
	}
	if st := c.Stats(); st.Misses != 1 || st.Shared != readers-1 || st.Hits != 0 {
		t.Fatalf("stats %+v, want 1 miss and %d shared", st, readers-1)
	}
}

// TestSharedFetchCancelled: a reader waiting on another's fetch retries
// when the leader's context ends, instead of failing with it.
func TestSharedFetchCancelled(t *testing.T) {
	m := newMemStore()
	data := randBytes(rand.New(rand.NewPCG(5, 5)), 1000)
	m.put("k", data)
	m.holdFirst = true
	c := newCache(t, m, t.TempDir(), 64, 1<<20)
	ctx, cancel := context.WithCancel(context.Background())
	leaderErr := make(chan error, 1)
	go func() {
		_, err := c.GetRange(ctx, "k", 0, 64)
		leaderErr <- err
	}()
	waitFor(t, "the leader's fetch", func() bool { return m.NumCalls() == 1 })
	done := make(chan []byte, 1)
	go func() {
		got, err := tryRead(c, "k", 0, 64)
		if err != nil {
			t.Error(err)
		}
		done <- got
	}()
	waitFor(t, "the second reader to wait for the leader's fetch", func() bool { return c.Waiting() == 1 })
	cancel()
	if err := <-leaderErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("leader: %v, want context.Canceled", err)
	}
	if got := <-done; !bytes.Equal(got, data[:64]) {
		t.Fatal("waiter: wrong bytes")
	}
	if n := m.NumCalls(); n != 2 {
		t.Fatalf("%d inner calls, want 2: the cancelled one and the waiter's own", n)
	}
}

func TestInnerErrorsPropagate(t *testing.T) {
	m := newMemStore()
	m.put("k", make([]byte, 100))
	c := newCache(t, m, t.TempDir(), 64, 1<<20)
	ctx := context.Background()

	if _, err := c.GetRange(ctx, "missing", 0, 10); !objstore.IsNotExist(err) {
		t.Fatalf("missing key: %v, want ErrNotExist", err)
	}
	if _, err := c.GetRange(ctx, "k", 90, 20); !errors.Is(err, objstore.ErrOutOfRange) {
		t.Fatalf("range past the end: %v, want ErrOutOfRange", err)
	}
	if _, err := c.GetRange(ctx, "k", -1, 5); !errors.Is(err, objstore.ErrOutOfRange) {
		t.Fatalf("negative offset: %v, want ErrOutOfRange", err)
	}
	rc, err := c.GetRange(ctx, "k", 100, 0)
	if err != nil {
		t.Fatalf("empty range at the end: %v", err)
	}
	rc.Close()

	boom := errors.New("boom")
	m.fail = boom
	if _, err := c.GetRange(ctx, "k", 0, 10); err != boom {
		t.Fatalf("inner error %v came back as %v", boom, err)
	}
	if st := c.Stats(); st.Blocks != 0 {
		t.Fatalf("failed reads cached %+v", st)
	}
	m.fail = nil
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.GetRange(cctx, "k", 0, 10); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: %v", err)
	}
	read(t, c, "k", 0, 10) // a failure leaves nothing behind
}

// TestFSStore runs the main behaviours over the filesystem object store.
func TestFSStore(t *testing.T) {
	data := randBytes(rand.New(rand.NewPCG(6, 6)), 5000)
	s := fsSource(t, map[string][]byte{"seg/1": data})
	inner := &countingReader{RangeReader: s.inner}
	dir := t.TempDir()
	c := newCache(t, inner, dir, 1024, 1<<20)
	if got := read(t, c, "seg/1", 1000, 4000); !bytes.Equal(got, data[1000:]) {
		t.Fatal("wrong bytes")
	}
	if got := read(t, c, "seg/1", 0, 5000); !bytes.Equal(got, data) {
		t.Fatal("wrong bytes")
	}
	if n := inner.NumCalls(); n != 1 {
		t.Fatalf("%d inner calls, want 1", n)
	}
	if _, err := c.GetRange(context.Background(), "seg/2", 0, 1); !objstore.IsNotExist(err) {
		t.Fatalf("missing object: %v", err)
	}
	if _, err := c.GetRange(context.Background(), "seg/1", 4990, 11); !errors.Is(err, objstore.ErrOutOfRange) {
		t.Fatalf("past the end: %v", err)
	}
	c2 := newCache(t, inner, dir, 1024, 1<<20)
	n := inner.NumCalls()
	if got := read(t, c2, "seg/1", 0, 5000); !bytes.Equal(got, data) || inner.NumCalls() != n {
		t.Fatal("restart did not serve the cached blocks")
	}
}

func TestLargeRangeBypasses(t *testing.T) {
	m := newMemStore()
	m.put("k", make([]byte, 1000))
	c := newCache(t, m, t.TempDir(), 64, 300) // caches ranges of up to 2 blocks
	read(t, c, "k", 0, 500)
	if st := c.Stats(); st.Bypassed != 1 || st.Blocks != 0 {
		t.Fatalf("stats %+v", st)
	}
}
