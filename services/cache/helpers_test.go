package cache_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strom-io/strom/services/cache"
	"github.com/strom-io/strom/services/objstore"
	"github.com/strom-io/strom/services/segment"
)

var (
	_ segment.RangeReader = (*cache.Cache)(nil)
	_ cache.RangeReader   = objstore.BucketReader(nil)
)

// call is one GetRange seen by an inner store.
type call struct {
	key         string
	off, length int64
}

// memStore is an in-memory inner reader with objstore's GetRange contract
// that records its calls. With holdFirst, the first call blocks until its
// context ends; with fail set, every call returns fail.
type memStore struct {
	mu        sync.Mutex
	objs      map[string][]byte
	calls     []call
	fail      error
	holdFirst bool
	release   chan struct{} // when non-nil, calls wait for it to close
}

func newMemStore() *memStore { return &memStore{objs: make(map[string][]byte)} }

func (m *memStore) put(key string, data []byte) { m.mu.Lock(); m.objs[key] = data; m.mu.Unlock() }

func (m *memStore) GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	m.mu.Lock()
	data, ok := m.objs[key]
	m.calls = append(m.calls, call{key, off, length})
	hold := m.holdFirst && len(m.calls) == 1
	fail, release := m.fail, m.release
	m.mu.Unlock()
	if hold {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if release != nil {
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	switch {
	case fail != nil:
		return nil, fail
	case !ok:
		return nil, fmt.Errorf("mem: get %q: %w", key, objstore.ErrNotExist)
	case off < 0 || length < 0 || off > int64(len(data)) || length > int64(len(data))-off:
		return nil, fmt.Errorf("mem: get %q [%d, +%d) of %d bytes: %w", key, off, length, len(data), objstore.ErrOutOfRange)
	}
	return io.NopCloser(bytes.NewReader(data[off : off+length])), nil
}

func (m *memStore) Calls() []call {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]call(nil), m.calls...)
}

func (m *memStore) NumCalls() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.calls)
}

// countingReader counts the GetRange calls to a real store.
type countingReader struct {
	cache.RangeReader
	mu    sync.Mutex
	calls int
}

func (r *countingReader) GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	r.mu.Lock()
	r.calls++
	r.mu.Unlock()
	return r.RangeReader.GetRange(ctx, key, off, length)
}

func (r *countingReader) NumCalls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

func newCache(t testing.TB, inner cache.RangeReader, dir string, blockSize, maxBytes int64) *cache.Cache {
	t.Helper()
	c, err := cache.New(cache.Config{Dir: dir, BlockSize: blockSize, MaxBytes: maxBytes}, inner, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// read reads [off, off+length) of key through r, failing the test on error
// or on a reader that yields other than length bytes.
func read(t testing.TB, r cache.RangeReader, key string, off, length int64) []byte {
	t.Helper()
	b, err := tryRead(r, key, off, length)
	if err != nil {
		t.Fatalf("GetRange(%q, %d, %d): %v", key, off, length, err)
	}
	return b
}

func tryRead(r cache.RangeReader, key string, off, length int64) ([]byte, error) {
	rc, err := r.GetRange(context.Background(), key, off, length)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, err
	}
	if int64(len(b)) != length {
		return nil, fmt.Errorf("read %d bytes, want %d", len(b), length)
	}
	return b, rc.Close()
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// blockFiles returns the block files under dir (temporary files excluded).
func blockFiles(t testing.TB, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && !strings.HasPrefix(d.Name(), ".tmp-") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// diskBytes sums the sizes of the files under dir.
func diskBytes(t testing.TB, dir string) int64 {
	t.Helper()
	var n int64
	for _, f := range blockFiles(t, dir) {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}

// waitFor waits until cond holds, failing the test after a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting for %s after a minute", what)
		}
		time.Sleep(time.Millisecond)
	}
}
