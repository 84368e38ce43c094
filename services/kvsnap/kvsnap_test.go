package kvsnap_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/strom-io/strom/services/kvsnap"
	"github.com/strom-io/strom/services/objstore"
	"github.com/strom-io/strom/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// countingBucket records the keys of successful Puts.
type countingBucket struct {
	objstore.Bucket
	mu   sync.Mutex
	puts []string
}

func (c *countingBucket) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := c.Bucket.Put(ctx, key, r, size); err != nil {
		return err
	}
	c.mu.Lock()
	c.puts = append(c.puts, key)
	c.mu.Unlock()
	return nil
}

// take returns the keys Put since the last call.
func (c *countingBucket) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.puts
	c.puts = nil
	slices.Sort(p)
	return p
}

func newFS(t testing.TB) objstore.Bucket {
	b, err := objstore.NewFS(objstore.FSConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("NewFS: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func newS3(t testing.TB) objstore.Bucket {
	ep := testenv.S3(t)
	b, err := objstore.NewS3(context.Background(), objstore.S3Config{
		Endpoint:        ep.Endpoint,
		Region:          ep.Region,
		Bucket:          ep.Bucket,
		Prefix:          ep.Prefix,
		AccessKeyID:     ep.AccessKey,
		SecretAccessKey: ep.SecretKey,
	})
	if err != nil {
		t.Fatalf("NewS3: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

var stores = []struct {
	name string
	new  func(testing.TB) objstore.Bucket
}{
	{"fs", newFS},
	{"s3", newS3},
}

func openDB(t testing.TB, dir string) *pebble.DB {
	t.Helper()
	// No automatic compactions: the test decides which sstables exist.
	db, err := pebble.Open(dir, &pebble.Options{DisableAutomaticCompactions: true, Logger: quietLogger{}})
	if err != nil {
		t.Fatalf("pebble.Open(%s): %v", dir, err)
	}
	return db
}

// contents returns every key and value of db.
func contents(t testing.TB, db *pebble.DB) map[string]string {
	t.Helper()
	it, err := db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	m := make(map[string]string)
	for it.First(); it.Valid(); it.Next() {
		m[string(it.Key())] = string(it.Value())
	}
	if err := it.Error(); err != nil {
		t.Fatal(err)
	}
	return m
}

// put writes keys [from, to) with values tagged by gen into db and model.
func put(t testing.TB, db *pebble.DB, model map[string]string, from, to int, gen string) {
	t.Helper()
	b := db.NewBatch()
	for i := from; i < to; i++ {
		k, v := fmt.Sprintf("key-%06d", i), fmt.Sprintf("%s-%d-%s", gen, i, strings.Repeat("v", 100))
		if err := b.Set([]byte(k), []byte(v), nil); err != nil {
			t.Fatal(err)
		}
		model[k] = v
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
}

// quietLogger drops pebble's informational logs.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any)           {}
func (quietLogger) Errorf(format string, a ...any) { fmt.Fprintf(os.Stderr, format+"\n", a...) }
func (quietLogger) Fatalf(format string, a ...any) { panic(fmt.Sprintf(format, a...)) }

// restoreAndCheck restores the snapshot m into a new directory, opens it and
// compares its contents with want.
func restoreAndCheck(t *testing.T, objects objstore.Bucket, m *kvsnap.Manifest, want map[string]string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "restored")
	if err := kvsnap.Restore(t.Context(), objects, m.Key, dir); err != nil {
		t.Fatalf("Restore(%s): %v", m.Key, err)
	}
	if _, err := os.Stat(dir + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Restore left %s.tmp: %v", dir, err)
	}
	db := openDB(t, dir)
	defer db.Close()
	got := contents(t, db)
	if !maps.Equal(got, want) {
		t.Fatalf("restored %s: %d keys, want %d (equal=%v)", m.Key, len(got), len(want), maps.Equal(got, want))
	}
}

func sharedEntries(m *kvsnap.Manifest) map[string]kvsnap.File {
	out := make(map[string]kvsnap.File)
	for _, f := range m.Entries {
		if strings.HasSuffix(f.Name, ".sst") || strings.HasSuffix(f.Name, ".blob") {
			out[f.Name] = f
		}
	}
	return out
}

func listAll(t *testing.T, objects objstore.Bucket, prefix string) []string {
	t.Helper()
	var keys []string
	if err := objects.List(t.Context(), prefix, func(k string, _ int64) error {
		keys = append(keys, k)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return keys
}

func TestSnapshots(t *testing.T) {
	for _, s := range stores {
		t.Run(s.name, func(t *testing.T) { testSnapshots(t, s.new(t)) })
	}
}

func testSnapshots(t *testing.T, store objstore.Bucket) {
	ctx := t.Context()
	objects := &countingBucket{Bucket: store}
	const prefix = "kv/db1/t1/b0"
	scratch := t.TempDir()
	db := openDB(t, filepath.Join(t.TempDir(), "db"))
	defer db.Close()

	// Snapshot 1: the first Take uploads every file once.
	model := make(map[string]string)
	put(t, db, model, 0, 1000, "g1")
	s1, err := kvsnap.Take(ctx, db, scratch, objects, prefix, nil)
	if err != nil {
		t.Fatalf("Take 1: %v", err)
	}
	want1 := maps.Clone(model)
	if got, want := objects.take(), slices.Sorted(slices.Values(s1.Files())); !slices.Equal(got, want) {
		t.Fatalf("Take 1 put %v, want its files %v", got, want)
	}
	if len(sharedEntries(s1)) == 0 {
		t.Fatalf("Take 1: no sstables in %+v", s1.Entries)
	}
	if k, ok := kvsnap.ManifestKey(s1.Files()); !ok || k != s1.Key {
		t.Fatalf("ManifestKey(Files) = %q, %v; want %q", k, ok, s1.Key)
	}
	for _, k := range s1.Files() {
		if !strings.HasPrefix(k, prefix+"/") {
			t.Errorf("key %q not under %q", k, prefix)
		}
	}

	// Snapshot 2: more data, an overwrite and a delete, flushed. Only the
	// new sstables are uploaded.
	put(t, db, model, 1000, 2000, "g2")
	put(t, db, model, 0, 10, "g2")
	if err := db.Delete([]byte("key-000500"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	delete(model, "key-000500")
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	s2, err := kvsnap.Take(ctx, db, scratch, objects, prefix, s1)
	if err != nil {
		t.Fatalf("Take 2: %v", err)
	}
	want2 := maps.Clone(model)
	puts2 := objects.take()
	old, cur := sharedEntries(s1), sharedEntries(s2)
	var wantPuts []string
	reused := 0
	for name, f := range cur {
		if o, ok := old[name]; ok {
			reused++
			if f != o {
				t.Errorf("sstable %s: entry %+v, want the reused %+v", name, f, o)
			}
			if slices.Contains(puts2, o.Key) {
				t.Errorf("sstable %s uploaded again", name)
			}
		} else {
			wantPuts = append(wantPuts, f.Key)
		}
	}
	if reused != len(old) || len(wantPuts) == 0 {
		t.Fatalf("Take 2 reused %d of %d old sstables and has %d new ones; want all reused and some new", reused, len(old), len(wantPuts))
	}
	for _, f := range s2.Entries {
		if _, ok := cur[f.Name]; !ok {
			wantPuts = append(wantPuts, f.Key) // MANIFEST, OPTIONS, marker, WAL: fresh
		}
	}
	wantPuts = append(wantPuts, s2.Key)
	slices.Sort(wantPuts)
	if !slices.Equal(puts2, wantPuts) {
		t.Fatalf("Take 2 put %v, want %v", puts2, wantPuts)
	}
	t.Logf("snapshot 2: %d files, %d sstables reused, %d objects put", len(s2.Entries), reused, len(puts2))
	for _, f := range s2.Entries {
		t.Logf("  %-40s %8d bytes  %s", f.Name, f.Size, f.Key)
	}

	// Snapshot 3: unflushed writes (no Flush by the test) are included.
	put(t, db, model, 2000, 2100, "g3")
	s3, err := kvsnap.Take(ctx, db, scratch, objects, prefix, s2)
	if err != nil {
		t.Fatalf("Take 3: %v", err)
	}
	want3 := maps.Clone(model)
	objects.take()

	// The scratch directory is left empty.
	if ents, err := os.ReadDir(scratch); err != nil || len(ents) != 0 {
		t.Errorf("scratch dir holds %v, %v; want nothing", ents, err)
	}

	// Writes after a snapshot are not in it.
	put(t, db, model, 0, 2100, "g4")

	for i, c := range []struct {
		m    *kvsnap.Manifest
		want map[string]string
	}{{s1, want1}, {s2, want2}, {s3, want3}} {
		t.Run(fmt.Sprintf("restore%d", i+1), func(t *testing.T) { restoreAndCheck(t, objects, c.m, c.want) })
	}

	// Load returns what Take wrote.
	l2, err := kvsnap.Load(ctx, objects, s2.Key)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(l2.Entries, s2.Entries) || l2.Key != s2.Key || !l2.Created.Equal(s2.Created) {
		t.Fatalf("Load = %+v, want %+v", l2, s2)
	}

	// Keep the newest two: nothing of s2 that s3 shares is unreferenced.
	un := kvsnap.Unreferenced([]*kvsnap.Manifest{s2, s3}, []*kvsnap.Manifest{s1})
	if slices.Contains(un, s3.Key) || slices.Contains(un, s2.Key) || !slices.Contains(un, s1.Key) {
		t.Fatalf("Unreferenced(keep s2,s3; drop s1) = %v", un)
	}
	for name, f := range sharedEntries(s1) {
		if slices.Contains(un, f.Key) {
			t.Errorf("sstable %s of s1, still in s2, reported unreferenced", name)
		}
	}

	// Compact everything: snapshot 4 shares no sstable with the others.
	if err := db.Compact(ctx, []byte("a"), []byte("z"), false); err != nil {
		t.Fatal(err)
	}
	s4, err := kvsnap.Take(ctx, db, scratch, objects, prefix, s3)
	if err != nil {
		t.Fatalf("Take 4: %v", err)
	}
	want4 := maps.Clone(model)

	// Keep only the newest: delete the objects only s1..s3 name.
	drop := []*kvsnap.Manifest{s3, s2, s1}
	un = kvsnap.Unreferenced([]*kvsnap.Manifest{s4}, drop)
	wantUn := make(map[string]bool)
	for _, m := range drop {
		for _, k := range m.Files() {
			wantUn[k] = true
		}
	}
	for _, k := range s4.Files() {
		delete(wantUn, k)
	}
	if !slices.Equal(un, slices.Sorted(maps.Keys(wantUn))) {
		t.Fatalf("Unreferenced(keep s4; drop s1..s3) = %v, want %v", un, slices.Sorted(maps.Keys(wantUn)))
	}
	for _, k := range un {
		if err := objects.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := listAll(t, objects, prefix+"/"), slices.Sorted(slices.Values(s4.Files())); !slices.Equal(got, want) {
		t.Fatalf("after deleting the unreferenced objects, the store holds %v, want exactly s4's %v", got, want)
	}
	t.Run("restore4", func(t *testing.T) { restoreAndCheck(t, objects, s4, want4) })

	// A restored DB continues the lineage: its next snapshot reuses s4's
	// sstables.
	dir := filepath.Join(t.TempDir(), "db2")
	if err := kvsnap.Restore(ctx, objects, s4.Key, dir); err != nil {
		t.Fatal(err)
	}
	db2 := openDB(t, dir)
	defer db2.Close()
	put(t, db2, want4, 5000, 5010, "g5")
	objects.take()
	s5, err := kvsnap.Take(ctx, db2, t.TempDir(), objects, prefix, s4)
	if err != nil {
		t.Fatalf("Take after restore: %v", err)
	}
	for name, f := range sharedEntries(s4) {
		if g, ok := sharedEntries(s5)[name]; !ok || g != f {
			t.Errorf("Take after restore: sstable %s = %+v, want reused %+v", name, g, f)
		}
	}
	t.Run("restore5", func(t *testing.T) { restoreAndCheck(t, objects, s5, want4) })
}

func TestRestoreCorrupt(t *testing.T) {
	for _, s := range stores {
		t.Run(s.name, func(t *testing.T) { testRestoreCorrupt(t, s.new(t)) })
	}
}

func testRestoreCorrupt(t *testing.T, objects objstore.Bucket) {
	ctx := t.Context()
	db := openDB(t, filepath.Join(t.TempDir(), "db"))
	defer db.Close()
	put(t, db, map[string]string{}, 0, 500, "g1")
	m, err := kvsnap.Take(ctx, db, t.TempDir(), objects, "kv", nil)
	if err != nil {
		t.Fatal(err)
	}
	var sst kvsnap.File
	for _, f := range m.Entries {
		if strings.HasSuffix(f.Name, ".sst") {
			sst = f
		}
	}
	data := get(t, objects, sst.Key)

	restoreFails := func(t *testing.T, is error, msg ...string) {
		t.Helper()
		dir := filepath.Join(t.TempDir(), "restored")
		err := kvsnap.Restore(ctx, objects, m.Key, dir)
		if !errors.Is(err, is) {
			t.Fatalf("Restore = %v, want an error wrapping %v", err, is)
		}
		for _, s := range msg {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("Restore error %q does not mention %q", err, s)
			}
		}
		for _, d := range []string{dir, dir + ".tmp"} {
			if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("after a failed Restore, %s: %v; want it absent", d, err)
			}
		}
		t.Logf("Restore: %v", err)
	}

	t.Run("flipped byte", func(t *testing.T) {
		bad := slices.Clone(data)
		bad[len(bad)/2] ^= 0x40
		putBytes(t, objects, sst.Key, bad)
		restoreFails(t, kvsnap.ErrCorrupt, sst.Name, sst.Key, "CRC-32C")
	})
	t.Run("truncated", func(t *testing.T) {
		putBytes(t, objects, sst.Key, data[:len(data)-1])
		restoreFails(t, kvsnap.ErrCorrupt, sst.Name, "bytes")
	})
	t.Run("longer", func(t *testing.T) {
		putBytes(t, objects, sst.Key, append(slices.Clone(data), 0))
		restoreFails(t, kvsnap.ErrCorrupt, sst.Name, "more than")
	})
	t.Run("missing", func(t *testing.T) {
		if err := objects.Delete(ctx, sst.Key); err != nil {
			t.Fatal(err)
		}
		restoreFails(t, objstore.ErrNotExist, sst.Name)
	})
	t.Run("bad manifest", func(t *testing.T) {
		putBytes(t, objects, sst.Key, data)
		manifest := get(t, objects, m.Key)
		putBytes(t, objects, m.Key, manifest[:len(manifest)/2])
		restoreFails(t, kvsnap.ErrCorrupt, "manifest")
		putBytes(t, objects, m.Key, manifest)
	})
	t.Run("intact", func(t *testing.T) {
		// Restore replaces an empty dir and cleans a stale .tmp.
		dir := filepath.Join(t.TempDir(), "restored")
		if err := os.MkdirAll(dir+".tmp/junk", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := kvsnap.Restore(ctx, objects, m.Key, dir); err != nil {
			t.Fatal(err)
		}
		// A non-empty dir is refused.
		if err := kvsnap.Restore(ctx, objects, m.Key, dir); err == nil || !strings.Contains(err.Error(), "not empty") {
			t.Fatalf("Restore into a non-empty dir = %v, want an error", err)
		}
	})
}

func get(t *testing.T, objects objstore.Bucket, key string) []byte {
	t.Helper()
	r, err := objects.Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func putBytes(t *testing.T, objects objstore.Bucket, key string, b []byte) {
	t.Helper()
	if err := objects.Put(t.Context(), key, strings.NewReader(string(b)), int64(len(b))); err != nil {
		t.Fatal(err)
	}
}

func TestTakeBadPrefix(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "db"))
	defer db.Close()
	objects := &countingBucket{Bucket: newFS(t)}
	for _, p := range []string{"/kv", "kv/", ".kv", "kv//b"} {
		if _, err := kvsnap.Take(t.Context(), db, t.TempDir(), objects, p, nil); !errors.Is(err, objstore.ErrInvalidKey) {
			t.Errorf("Take(prefix %q) = %v, want ErrInvalidKey", p, err)
		}
	}
	if p := objects.take(); len(p) != 0 {
		t.Errorf("Take with bad prefixes put %v", p)
	}
}

func TestObjectTime(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "db"))
	defer db.Close()
	put(t, db, map[string]string{}, 0, 10, "g")
	before := time.Now().Add(-time.Millisecond)
	m, err := kvsnap.Take(t.Context(), db, t.TempDir(), newFS(t), "kv/x", nil)
	if err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	for _, k := range m.Files() {
		ts, ok := kvsnap.ObjectTime(k)
		if !ok || ts.Before(before) || ts.After(after) {
			t.Errorf("ObjectTime(%q) = %v, %v; want a time in [%v, %v]", k, ts, ok, before, after)
		}
	}
	for _, k := range []string{
		"segments/2026-01-01/1-x.seg", "kv/sst/000001.sst", "sst/1767225600000-0123456789abcdef",
		"snap-1767225600000-0123456789abcdeg/MANIFEST-000001", "snap-1767225600000-0123456789abcdef-x/kvsnap.json", "x",
	} {
		if ts, ok := kvsnap.ObjectTime(k); ok {
			t.Errorf("ObjectTime(%q) = %v, true; want false", k, ts)
		}
	}
	if ts, ok := kvsnap.ObjectTime("sst/1767225600000-0123456789abcdef-000004.sst"); !ok || !ts.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("ObjectTime(sst key) = %v, %v", ts, ok)
	}
}

func TestDecode(t *testing.T) {
	good := `{"version":1,"created":"2026-01-01T00:00:00Z","files":[
		{"name":"000004.sst","key":"kv/sst/x-000004.sst","size":10,"crc32c":1},
		{"name":"MANIFEST-000001","key":"kv/snap-x/MANIFEST-000001","size":0,"crc32c":0}]}`
	if _, err := kvsnap.Decode([]byte(good)); err != nil {
		t.Fatalf("Decode(good) = %v", err)
	}
	for name, bad := range map[string]string{
		"version":      `{"version":2,"files":[]}`,
		"unknown":      `{"version":1,"files":[],"extra":1}`,
		"trailing":     `{"version":1,"files":[]} {}`,
		"path":         `{"version":1,"files":[{"name":"../x","key":"k","size":1}]}`,
		"dot":          `{"version":1,"files":[{"name":"..","key":"k","size":1}]}`,
		"lock":         `{"version":1,"files":[{"name":"LOCK","key":"k","size":1}]}`,
		"dup name":     `{"version":1,"files":[{"name":"a","key":"k","size":1},{"name":"a","key":"l","size":1}]}`,
		"unsorted":     `{"version":1,"files":[{"name":"b","key":"k","size":1},{"name":"a","key":"l","size":1}]}`,
		"dup key":      `{"version":1,"files":[{"name":"a","key":"k","size":1},{"name":"b","key":"k","size":1}]}`,
		"bad key":      `{"version":1,"files":[{"name":"a","key":"k/.x","size":1}]}`,
		"negative":     `{"version":1,"files":[{"name":"a","key":"k","size":-1}]}`,
		"not json":     `version: 1`,
		"crc too big":  `{"version":1,"files":[{"name":"a","key":"k","size":1,"crc32c":4294967296}]}`,
		"empty object": `{}`,
	} {
		if m, err := kvsnap.Decode([]byte(bad)); !errors.Is(err, kvsnap.ErrCorrupt) {
			t.Errorf("Decode(%s) = %+v, %v; want ErrCorrupt", name, m, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"version":1,"created":"2026-01-01T00:00:00Z","files":[{"name":"000004.sst","key":"kv/sst/x-000004.sst","size":10,"crc32c":1}]}`))
	f.Add([]byte(`{"version":1,"files":null}`))
	f.Add([]byte(`{"version":1,"files":[{"name":"a","key":"k","size":1},{"name":"b","key":"k","size":1}]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := kvsnap.Decode(data)
		if err != nil {
			if !errors.Is(err, kvsnap.ErrCorrupt) {
				t.Fatalf("Decode error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		// A decoded manifest re-encodes to one that decodes the same.
		enc, err := m.Encode()
		if err != nil {
			t.Fatalf("Encode(Decode(%q)) = %v", data, err)
		}
		m2, err := kvsnap.Decode(enc)
		if err != nil {
			t.Fatalf("Decode(Encode(Decode(%q))) = %v", data, err)
		}
		if m2.Version != m.Version || !m2.Created.Equal(m.Created) || !slices.Equal(m2.Entries, m.Entries) {
			t.Fatalf("round trip changed %+v to %+v", m, m2)
		}
		if len(m.Files()) != len(m.Entries)+1 {
			t.Fatalf("Files() has %d keys for %d entries", len(m.Files()), len(m.Entries))
		}
	})
}
