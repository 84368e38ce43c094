// Package objstoretest is the acceptance suite that every objstore.Bucket
// implementation passes:
//
//	func TestFS(t *testing.T) {
//		objstoretest.Run(t, func(t *testing.T) objstore.Bucket { ... })
//	}
package objstoretest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/strom-io/strom/services/objstore"
)

// Run runs the acceptance suite as parallel subtests of t. newBucket must
// return an empty Bucket of its own for each call (each subtest calls it
// once with its own t); Run closes it when the subtest ends.
func Run(t *testing.T, newBucket func(t *testing.T) objstore.Bucket) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b objstore.Bucket)
	}{
		{"PutGet", testPutGet},
		{"Overwrite", testOverwrite},
		{"GetRange", testGetRange},
		{"NotExist", testNotExist},
		{"List", testList},
		{"ListStop", testListStop},
		{"Delete", testDelete},
		{"InvalidKeys", testInvalidKeys},
		{"UnusualKeys", testUnusualKeys},
		{"SizeMismatch", testSizeMismatch},
		{"FailedPutKeepsOld", testFailedPutKeepsOld},
		{"ReaderPosition", testReaderPosition},
		{"Large", testLarge},
		{"Concurrent", testConcurrent},
		{"ConcurrentOverwrite", testConcurrentOverwrite},
		{"ReaderSnapshot", testReaderSnapshot},
		{"ContextCanceled", testContextCanceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newBucket(t)
			t.Cleanup(func() {
				if err := b.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, b)
		})
	}
}

// onlyReader hides every method of r but Read, so Put cannot seek it.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func randomBytes(seed uint64, n int) []byte {
	rng := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16)})
	b := make([]byte, n)
	_, _ = rng.Read(b)
	return b
}

func put(t *testing.T, b objstore.Bucket, key string, data []byte) {
	t.Helper()
	if err := b.Put(t.Context(), key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Put(%q, %d bytes): %v", key, len(data), err)
	}
}

func get(t *testing.T, b objstore.Bucket, key string) []byte {
	t.Helper()
	rc, err := b.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("Get(%q): read: %v", key, err)
	}
	return data
}

func getRange(ctx context.Context, b objstore.Bucket, key string, off, length int64) ([]byte, error) {
	rc, err := b.GetRange(ctx, key, off, length)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func wantContent(t *testing.T, b objstore.Bucket, key string, want []byte) {
	t.Helper()
	if got := get(t, b, key); !bytes.Equal(got, want) {
		t.Fatalf("Get(%q) = %d bytes %.16q..., want %d bytes %.16q...", key, len(got), got, len(want), want)
	}
	size, err := b.Size(t.Context(), key)
	if err != nil {
		t.Fatalf("Size(%q): %v", key, err)
	}
	if size != int64(len(want)) {
		t.Fatalf("Size(%q) = %d, want %d", key, size, len(want))
	}
}

func wantNotExist(t *testing.T, b objstore.Bucket, key string) {
	t.Helper()
	ctx := t.Context()
	if rc, err := b.Get(ctx, key); !objstore.IsNotExist(err) {
		if err == nil {
			rc.Close()
		}
		t.Errorf("Get(%q) error = %v, want ErrNotExist", key, err)
	}
	if rc, err := b.GetRange(ctx, key, 0, 1); !errors.Is(err, objstore.ErrNotExist) {
		if err == nil {
			rc.Close()
		}
		t.Errorf("GetRange(%q, 0, 1) error = %v, want ErrNotExist", key, err)
	}
	if rc, err := b.GetRange(ctx, key, 0, 0); !errors.Is(err, objstore.ErrNotExist) {
		if err == nil {
			rc.Close()
		}
		t.Errorf("GetRange(%q, 0, 0) error = %v, want ErrNotExist", key, err)
	}
	if size, err := b.Size(ctx, key); !errors.Is(err, objstore.ErrNotExist) {
		t.Errorf("Size(%q) = %d, %v, want ErrNotExist", key, size, err)
	}
}

type listed struct {
	Key  string
	Size int64
}

func list(t *testing.T, b objstore.Bucket, prefix string) []listed {
	t.Helper()
	var got []listed
	err := b.List(t.Context(), prefix, func(key string, size int64) error {
		got = append(got, listed{key, size})
		return nil
	})
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return got
}

func testPutGet(t *testing.T, b objstore.Bucket) {
	data := []byte("hello, strom")
	put(t, b, "a/b/c", data)
	wantContent(t, b, "a/b/c", data)

	put(t, b, "empty", nil)
	wantContent(t, b, "empty", []byte{})

	// A reader that cannot seek takes the buffered path.
	other := randomBytes(1, 70_000)
	if err := b.Put(t.Context(), "stream", onlyReader{bytes.NewReader(other)}, int64(len(other))); err != nil {
		t.Fatalf("Put(stream) from a plain io.Reader: %v", err)
	}
	wantContent(t, b, "stream", other)
}

func testOverwrite(t *testing.T, b objstore.Bucket) {
	put(t, b, "k", []byte("first version, the longer one"))
	put(t, b, "k", []byte("second"))
	wantContent(t, b, "k", []byte("second"))
	put(t, b, "k", nil)
	wantContent(t, b, "k", []byte{})
	// Putting the same object again is idempotent.
	put(t, b, "k", []byte("third"))
	put(t, b, "k", []byte("third"))
	wantContent(t, b, "k", []byte("third"))
	if got := list(t, b, ""); !slices.Equal(got, []listed{{"k", 5}}) {
		t.Fatalf("List after overwrites = %v, want [{k 5}]", got)
	}
}

func testGetRange(t *testing.T, b objstore.Bucket) {
	const size = 1000
	data := randomBytes(2, size)
	put(t, b, "obj", data)
	put(t, b, "zero", nil)

	ok := []struct {
		name        string
		key         string
		off, length int64
	}{
		{"start", "obj", 0, 10},
		{"middle", "obj", 100, 200},
		{"end", "obj", 990, 10},
		{"last byte", "obj", size - 1, 1},
		{"whole", "obj", 0, size},
		{"empty at start", "obj", 0, 0},
		{"empty in middle", "obj", 500, 0},
		{"empty at end", "obj", size, 0},
		{"empty of empty object", "zero", 0, 0},
	}
	for _, tc := range ok {
		got, err := getRange(t.Context(), b, tc.key, tc.off, tc.length)
		if err != nil {
			t.Errorf("%s: GetRange(%q, %d, %d): %v", tc.name, tc.key, tc.off, tc.length, err)
			continue
		}
		var want []byte
		if tc.key == "obj" {
			want = data[tc.off : tc.off+tc.length]
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: GetRange(%q, %d, %d) = %d bytes, want %d bytes %s",
				tc.name, tc.key, tc.off, tc.length, len(got), len(want), diffHint(got, want))
		}
	}

	bad := []struct {
		name        string
		key         string
		off, length int64
	}{
		{"runs past end", "obj", 995, 10},
		{"starts at end", "obj", size, 1},
		{"starts past end", "obj", size + 1, 0},
		{"far past end", "obj", 2 * size, 5},
		{"longer than object", "obj", 0, size + 1},
		{"negative offset", "obj", -1, 5},
		{"negative length", "obj", 0, -1},
		{"past end of empty object", "zero", 0, 1},
	}
	for _, tc := range bad {
		got, err := getRange(t.Context(), b, tc.key, tc.off, tc.length)
		if !errors.Is(err, objstore.ErrOutOfRange) {
			t.Errorf("%s: GetRange(%q, %d, %d) = %d bytes, %v; want ErrOutOfRange",
				tc.name, tc.key, tc.off, tc.length, len(got), err)
		}
	}
}

func diffHint(got, want []byte) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("(first difference at byte %d)", i)
		}
	}
	return ""
}

func testNotExist(t *testing.T, b objstore.Bucket) {
	wantNotExist(t, b, "missing")
	wantNotExist(t, b, "missing/deeper/key")

	put(t, b, "dir/object", []byte("x"))
	// A prefix of an existing key is not an object.
	wantNotExist(t, b, "dir")
	wantNotExist(t, b, "dir/obj")
	// Neither is a key below an object.
	wantNotExist(t, b, "dir/object/below")
}

func testList(t *testing.T, b objstore.Bucket) {
	objects := map[string]int{
		"seg/000/a":     1,
		"seg/000/b":     22,
		"seg/001":       3,
		"seg/01":        4,
		"seg-x":         5,
		"segz":          6,
		"kv/snap/1.sst": 7,
		"top":           0,
		"a-b/c":         8,
		"a/b":           9,
		"a0":            10,
	}
	for k, n := range objects {
		put(t, b, k, randomBytes(uint64(n), n))
	}
	want := func(keys ...string) []listed {
		out := []listed{}
		for _, k := range keys {
			out = append(out, listed{k, int64(objects[k])})
		}
		return out
	}
	all := slices.Sorted(func(yield func(string) bool) {
		for k := range objects {
			if !yield(k) {
				return
			}
		}
	})
	cases := []struct {
		prefix string
		want   []listed
	}{
		// Byte-wise order: '-' < '/' < '0' < 'z'.
		{"", want(all...)},
		{"a", want("a-b/c", "a/b", "a0")},
		{"seg", want("seg-x", "seg/000/a", "seg/000/b", "seg/001", "seg/01", "segz")},
		{"seg/", want("seg/000/a", "seg/000/b", "seg/001", "seg/01")},
		{"seg/00", want("seg/000/a", "seg/000/b", "seg/001")},
		{"seg/000/", want("seg/000/a", "seg/000/b")},
		{"seg/000/a", want("seg/000/a")},
		{"kv/", want("kv/snap/1.sst")},
		{"top", want("top")},
		{"nothing", want()},
		{"nothing/", want()},
		{"seg/000/a/", want()},
		{"/seg", want()},
		{"seg//", want()},
		{"../", want()},
		{"seg/.", want()},
	}
	for _, tc := range cases {
		got := list(t, b, tc.prefix)
		if got == nil {
			got = []listed{}
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("List(%q) =\n\t%v\nwant\n\t%v", tc.prefix, got, tc.want)
		}
	}
}

func testListStop(t *testing.T, b objstore.Bucket) {
	for i := range 5 {
		put(t, b, fmt.Sprintf("k/%d", i), []byte("x"))
	}
	stop := errors.New("stop")
	var seen []string
	err := b.List(t.Context(), "k/", func(key string, _ int64) error {
		seen = append(seen, key)
		if len(seen) == 2 {
			return stop
		}
		return nil
	})
	if err != stop {
		t.Fatalf("List whose callback fails = %v, want the callback's error unwrapped", err)
	}
	if !slices.Equal(seen, []string{"k/0", "k/1"}) {
		t.Fatalf("List called back with %v before stopping, want [k/0 k/1]", seen)
	}
}

func testDelete(t *testing.T, b objstore.Bucket) {
	ctx := t.Context()
	put(t, b, "d/x/1", []byte("one"))
	put(t, b, "d/x/2", []byte("two"))
	put(t, b, "d/y", []byte("y"))

	if err := b.Delete(ctx, "d/x/1"); err != nil {
		t.Fatalf("Delete(d/x/1): %v", err)
	}
	wantNotExist(t, b, "d/x/1")
	wantContent(t, b, "d/x/2", []byte("two"))
	if got, want := list(t, b, "d/"), []listed{{"d/x/2", 3}, {"d/y", 1}}; !slices.Equal(got, want) {
		t.Fatalf("List(d/) after Delete = %v, want %v", got, want)
	}

	// Deleting again, or deleting what never existed, is not an error.
	for _, k := range []string{"d/x/1", "never", "never/deep/key", "d"} {
		if err := b.Delete(ctx, k); err != nil {
			t.Errorf("Delete(%q) of a missing key = %v, want nil", k, err)
		}
	}
	wantContent(t, b, "d/y", []byte("y"))

	// Emptying a "directory" and writing into it again works.
	for _, k := range []string{"d/x/2", "d/y"} {
		if err := b.Delete(ctx, k); err != nil {
			t.Fatalf("Delete(%q): %v", k, err)
		}
	}
	if got := list(t, b, ""); len(got) != 0 {
		t.Fatalf("List after deleting everything = %v, want nothing", got)
	}
	put(t, b, "d/x/3", []byte("three"))
	wantContent(t, b, "d/x/3", []byte("three"))
	// A former directory can become an object once it is empty.
	if err := b.Delete(ctx, "d/x/3"); err != nil {
		t.Fatalf("Delete(d/x/3): %v", err)
	}
	put(t, b, "d/x", []byte("file now"))
	wantContent(t, b, "d/x", []byte("file now"))
}

// InvalidKeys lists keys that every Bucket rejects.
var InvalidKeys = []string{
	"",
	"/leading",
	"trailing/",
	"/",
	"double//slash",
	".",
	"..",
	"a/./b",
	"a/../b",
	"../escape",
	"a/..",
	".hidden",
	"a/.tmp-123",
	"nul\x00byte",
	"new\nline",
	"bad\xffutf8",
	strings.Repeat("k", objstore.MaxKeyLen+1),
	strings.Repeat("s", objstore.MaxSegmentLen+1) + "/x",
}

func testInvalidKeys(t *testing.T, b objstore.Bucket) {
	ctx := t.Context()
	for _, key := range InvalidKeys {
		if err := objstore.ValidateKey(key); !errors.Is(err, objstore.ErrInvalidKey) {
			t.Errorf("ValidateKey(%.40q) = %v, want ErrInvalidKey", key, err)
		}
		if err := b.Put(ctx, key, strings.NewReader("x"), 1); !errors.Is(err, objstore.ErrInvalidKey) {
			t.Errorf("Put(%.40q) = %v, want ErrInvalidKey", key, err)
		}
		if rc, err := b.Get(ctx, key); !errors.Is(err, objstore.ErrInvalidKey) {
			if err == nil {
				rc.Close()
			}
			t.Errorf("Get(%.40q) = %v, want ErrInvalidKey", key, err)
		}
		if rc, err := b.GetRange(ctx, key, 0, 1); !errors.Is(err, objstore.ErrInvalidKey) {
			if err == nil {
				rc.Close()
			}
			t.Errorf("GetRange(%.40q) = %v, want ErrInvalidKey", key, err)
		}
		if _, err := b.Size(ctx, key); !errors.Is(err, objstore.ErrInvalidKey) {
			t.Errorf("Size(%.40q) = %v, want ErrInvalidKey", key, err)
		}
		if err := b.Delete(ctx, key); !errors.Is(err, objstore.ErrInvalidKey) {
			t.Errorf("Delete(%.40q) = %v, want ErrInvalidKey", key, err)
		}
	}
	if got := list(t, b, ""); len(got) != 0 {
		t.Fatalf("List after rejected Puts = %v, want nothing", got)
	}
}

func testUnusualKeys(t *testing.T, b objstore.Bucket) {
	keys := []string{
		"with space/and more",
		"ünïcödé/ключ/键",
		"query?a=b&c=d",
		"plus+percent%20hash#",
		"tilde~star*quote'\"",
		"a.b/c..d/e.",
		"x/" + strings.Repeat("s", objstore.MaxSegmentLen),
	}
	for i, k := range keys {
		if err := objstore.ValidateKey(k); err != nil {
			t.Fatalf("ValidateKey(%q): %v", k, err)
		}
		put(t, b, k, []byte(fmt.Sprint(i)))
	}
	for i, k := range keys {
		wantContent(t, b, k, []byte(fmt.Sprint(i)))
	}
	got := list(t, b, "")
	var gotKeys []string
	for _, l := range got {
		gotKeys = append(gotKeys, l.Key)
	}
	if want := slices.Sorted(slices.Values(keys)); !slices.Equal(gotKeys, want) {
		t.Fatalf("List = %q, want %q", gotKeys, want)
	}
}

func testSizeMismatch(t *testing.T, b objstore.Bucket) {
	ctx := t.Context()
	data := []byte("0123456789")
	for _, tc := range []struct {
		name string
		r    func() io.Reader
		size int64
	}{
		{"seekable, too short", func() io.Reader { return bytes.NewReader(data) }, 11},
		{"seekable, too long", func() io.Reader { return bytes.NewReader(data) }, 9},
		{"stream, too short", func() io.Reader { return onlyReader{bytes.NewReader(data)} }, 11},
		{"stream, too long", func() io.Reader { return onlyReader{bytes.NewReader(data)} }, 9},
	} {
		err := b.Put(ctx, "mismatch", tc.r(), tc.size)
		if !errors.Is(err, objstore.ErrSizeMismatch) {
			t.Errorf("%s: Put(10 bytes, size %d) = %v, want ErrSizeMismatch", tc.name, tc.size, err)
		}
	}
	wantNotExist(t, b, "mismatch")
	if err := b.Put(ctx, "negative", bytes.NewReader(nil), -1); err == nil {
		t.Errorf("Put(size -1) succeeded, want an error")
	}
	wantNotExist(t, b, "negative")
}

// failingReader yields n bytes, then fails.
type failingReader struct {
	n   int
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, f.err
	}
	k := min(len(p), f.n)
	for i := range k {
		p[i] = 'z'
	}
	f.n -= k
	return k, nil
}

func testFailedPutKeepsOld(t *testing.T, b objstore.Bucket) {
	old := []byte("the old object")
	put(t, b, "k", old)
	boom := errors.New("disk on fire")
	err := b.Put(t.Context(), "k", &failingReader{n: 100_000, err: boom}, 200_000)
	if !errors.Is(err, boom) {
		t.Fatalf("Put from a reader that fails = %v, want the reader's error wrapped", err)
	}
	wantContent(t, b, "k", old)

	err = b.Put(t.Context(), "new", &failingReader{n: 10, err: boom}, 20)
	if !errors.Is(err, boom) {
		t.Fatalf("Put from a reader that fails = %v, want the reader's error wrapped", err)
	}
	wantNotExist(t, b, "new")
	if got, want := list(t, b, ""), []listed{{"k", int64(len(old))}}; !slices.Equal(got, want) {
		t.Fatalf("List after failed Puts = %v, want %v", got, want)
	}
}

func testReaderPosition(t *testing.T, b objstore.Bucket) {
	r := bytes.NewReader([]byte("skip:payload"))
	if _, err := r.Seek(5, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if err := b.Put(t.Context(), "k", r, 7); err != nil {
		t.Fatalf("Put from a reader at offset 5: %v", err)
	}
	wantContent(t, b, "k", []byte("payload"))
}

func testLarge(t *testing.T, b objstore.Bucket) {
	const size = 8 << 20
	data := randomBytes(3, size)
	sum := sha256.Sum256(data)
	put(t, b, "large/object", data)

	rc, err := b.Get(t.Context(), "large/object")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	h := sha256.New()
	n, err := io.Copy(h, rc)
	rc.Close()
	if err != nil {
		t.Fatalf("Get: read: %v", err)
	}
	if n != size || !bytes.Equal(h.Sum(nil), sum[:]) {
		t.Fatalf("Get: %d bytes, sha256 %x; want %d bytes, sha256 %x", n, h.Sum(nil), size, sum)
	}
	off, length := int64(3<<20+17), int64(1<<20+5)
	got, err := getRange(t.Context(), b, "large/object", off, length)
	if err != nil {
		t.Fatalf("GetRange: %v", err)
	}
	if !bytes.Equal(got, data[off:off+length]) {
		t.Fatalf("GetRange(%d, %d): %d bytes differ from the object %s", off, length, len(got), diffHint(got, data[off:off+length]))
	}
	if s, err := b.Size(t.Context(), "large/object"); err != nil || s != size {
		t.Fatalf("Size = %d, %v; want %d", s, err, size)
	}
	// The same through a reader Put must buffer.
	if err := b.Put(t.Context(), "large/stream", onlyReader{bytes.NewReader(data)}, size); err != nil {
		t.Fatalf("Put(large/stream) from a plain io.Reader: %v", err)
	}
	if got := get(t, b, "large/stream"); sha256.Sum256(got) != sum {
		t.Fatalf("Get(large/stream): %d bytes with the wrong checksum", len(got))
	}
}

func testConcurrent(t *testing.T, b objstore.Bucket) {
	const workers, perWorker = 8, 12
	var wg sync.WaitGroup
	errs := make(chan error, workers*perWorker)
	for w := range workers {
		wg.Go(func() {
			ctx := t.Context()
			for i := range perWorker {
				key := fmt.Sprintf("c/%02d/%03d", w, i)
				data := randomBytes(uint64(w*1000+i), 1000+w*100+i)
				if err := b.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
					errs <- fmt.Errorf("Put(%q): %w", key, err)
					return
				}
				got, err := getRange(ctx, b, key, 0, int64(len(data)))
				if err != nil {
					errs <- fmt.Errorf("GetRange(%q): %w", key, err)
					return
				}
				if !bytes.Equal(got, data) {
					errs <- fmt.Errorf("GetRange(%q): got %d bytes, want %d %s", key, len(got), len(data), diffHint(got, data))
				}
				if i%3 == 2 { // delete some, concurrently with other workers' puts
					if err := b.Delete(ctx, key); err != nil {
						errs <- fmt.Errorf("Delete(%q): %w", key, err)
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got := list(t, b, "c/")
	if want := workers * perWorker * 2 / 3; len(got) != want {
		t.Fatalf("List(c/) after concurrent puts = %d keys, want %d", len(got), want)
	}
	for _, l := range got {
		var w, i int
		if _, err := fmt.Sscanf(l.Key, "c/%02d/%03d", &w, &i); err != nil {
			t.Fatalf("List(c/) returned unexpected key %q", l.Key)
		}
		if i%3 == 2 || l.Size != int64(1000+w*100+i) {
			t.Errorf("List(c/) returned %v: deleted, or the wrong size", l)
		}
	}
}

// testConcurrentOverwrite checks atomicity: while writers replace one key,
// readers see one whole version every time.
func testConcurrentOverwrite(t *testing.T, b objstore.Bucket) {
	const writers, rounds, size = 4, 8, 256 << 10
	versions := make([][]byte, writers)
	for w := range versions {
		versions[w] = bytes.Repeat([]byte{byte('a' + w)}, size)
	}
	put(t, b, "shared", versions[0])
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	done := make(chan struct{})
	for w := range writers {
		wg.Go(func() {
			for range rounds {
				if err := b.Put(t.Context(), "shared", bytes.NewReader(versions[w]), size); err != nil {
					errs <- fmt.Errorf("put: %w", err)
					return
				}
			}
		})
	}
	var readers sync.WaitGroup
	for range 3 {
		readers.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				rc, err := b.Get(t.Context(), "shared")
				if err != nil {
					errs <- fmt.Errorf("get during overwrites: %w", err)
					return
				}
				got, err := io.ReadAll(rc)
				rc.Close()
				if err != nil {
					errs <- fmt.Errorf("get during overwrites: read: %w", err)
					return
				}
				if len(got) != size || !bytes.Equal(got, bytes.Repeat(got[:1], size)) {
					errs <- fmt.Errorf("get during overwrites returned a torn object of %d bytes", len(got))
					return
				}
			}
		})
	}
	wg.Wait()
	close(done)
	readers.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got := get(t, b, "shared")
	if len(got) != size || !slices.ContainsFunc(versions, func(v []byte) bool { return bytes.Equal(v, got) }) {
		t.Fatalf("after concurrent overwrites the object is none of the versions written")
	}
}

func testReaderSnapshot(t *testing.T, b objstore.Bucket) {
	old := randomBytes(4, 1<<20)
	put(t, b, "k", old)
	rc, err := b.Get(t.Context(), "k")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	defer rc.Close()
	first := make([]byte, 1)
	if _, err := io.ReadFull(rc, first); err != nil {
		t.Fatalf("Get: read: %v", err)
	}
	put(t, b, "k", []byte("new"))
	rest, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("Get: read after overwrite: %v", err)
	}
	if got := append(first, rest...); !bytes.Equal(got, old) {
		t.Fatalf("reader opened before an overwrite returned %d bytes, not the old object %s", len(got), diffHint(got, old))
	}
	wantContent(t, b, "k", []byte("new"))
}

// cancelingReader cancels its context after the first read.
type cancelingReader struct {
	r      io.Reader
	cancel context.CancelFunc
}

func (c *cancelingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.cancel()
	return n, err
}

func testContextCanceled(t *testing.T, b objstore.Bucket) {
	put(t, b, "k", []byte("value"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()

	check := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a canceled context = %v, want context.Canceled", op, err)
		}
	}
	check("Put", b.Put(ctx, "new", strings.NewReader("x"), 1))
	rc, err := b.Get(ctx, "k")
	if err == nil {
		rc.Close()
	}
	check("Get", err)
	rc, err = b.GetRange(ctx, "k", 0, 2)
	if err == nil {
		rc.Close()
	}
	check("GetRange", err)
	_, err = b.Size(ctx, "k")
	check("Size", err)
	check("List", b.List(ctx, "", func(string, int64) error { return nil }))
	check("Delete", b.Delete(ctx, "k"))

	wantNotExist(t, b, "new")
	wantContent(t, b, "k", []byte("value"))

	// Cancelled while Put reads its input.
	ctx, cancel = context.WithCancel(t.Context())
	defer cancel()
	data := randomBytes(5, 1<<20)
	r := &cancelingReader{r: onlyReader{bytes.NewReader(data)}, cancel: cancel}
	check("Put canceled while reading", b.Put(ctx, "midway", r, int64(len(data))))
	wantNotExist(t, b, "midway")
}
