package retention_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/catalog/embedded"
	"github.com/strom-io/strom/catalog/postgres"
	"github.com/strom-io/strom/services/objstore"
	"github.com/strom-io/strom/services/retention"
	"github.com/strom-io/strom/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// stores opens a catalog and an object store for one test.
type stores func(t *testing.T) (catalog.Store, objstore.Bucket)

func embeddedFS(t *testing.T) (catalog.Store, objstore.Bucket) {
	s, err := embedded.Open(filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatalf("embedded.Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	b, err := objstore.NewFS(objstore.FSConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("NewFS: %v", err)
	}
	return s, b
}

func postgresS3(t *testing.T) (catalog.Store, objstore.Bucket) {
	s, err := postgres.Open(t.Context(), testenv.Postgres(t))
	if err != nil {
		t.Fatalf("postgres.Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	ep := testenv.S3(t)
	b, err := objstore.NewS3(t.Context(), objstore.S3Config{
		Endpoint: ep.Endpoint, Region: ep.Region, Bucket: ep.Bucket, Prefix: ep.Prefix,
		AccessKeyID: ep.AccessKey, SecretAccessKey: ep.SecretKey,
	})
	if err != nil {
		t.Fatalf("NewS3: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return s, b
}

func TestEmbeddedFS(t *testing.T) { run(t, embeddedFS) }

func TestPostgresS3(t *testing.T) { run(t, postgresS3) }

// run is the behaviour every catalog and object store pair must show.
func run(t *testing.T, open stores) {
	t.Run("Sweep", func(t *testing.T) { testSweep(t, newFixture(t, open)) })
	t.Run("TieredGuard", func(t *testing.T) { testTieredGuard(t, newFixture(t, open)) })
	t.Run("KVSnapshotGuard", func(t *testing.T) { testKVSnapshotGuard(t, newFixture(t, open)) })
	t.Run("Janitor", func(t *testing.T) { testJanitor(t, newFixture(t, open)) })
	t.Run("CrashBetweenCatalogAndObjects", func(t *testing.T) { testCrash(t, newFixture(t, open)) })
}

// fixture builds tables and committed segments with chosen timestamps.
type fixture struct {
	t       *testing.T
	store   catalog.Store
	objects objstore.Bucket
	now     time.Time // the retention clock
	leases  map[catalog.BucketID]catalog.Lease
	next    map[catalog.BucketID]int64
}

func newFixture(t *testing.T, open stores) *fixture {
	s, b := open(t)
	if _, err := s.CreateDatabase(t.Context(), "db"); err != nil {
		t.Fatalf("CreateDatabase: %v", err)
	}
	return &fixture{
		t: t, store: s, objects: b,
		now:    time.Now().UTC().Truncate(time.Second),
		leases: map[catalog.BucketID]catalog.Lease{},
		next:   map[catalog.BucketID]int64{},
	}
}

// retention returns a Retention on the fixture's clock with two ranges or
// keys per page, so that paging is exercised.
func (f *fixture) retention() *retention.Retention {
	logger := slog.New(slog.NewTextHandler(f.t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	return retention.New(retention.Config{PageSize: 2}, f.store, f.objects, logger,
		retention.WithClock(func() time.Time { return f.now }))
}

// table creates a log table (or, with pk, a primary-key table) in "db".
func (f *fixture) table(name string, buckets int32, pk bool, props map[string]string) catalog.Table {
	f.t.Helper()
	spec := catalog.TableSpec{
		Database: "db", Name: name, Buckets: buckets, Properties: props,
		Schema: catalog.Schema{Columns: []catalog.Column{{Name: "id", Type: catalog.BigInt}, {Name: "v", Type: catalog.String, Nullable: true}}},
	}
	if pk {
		spec.Schema.PrimaryKey = []string{"id"}
	}
	tbl, err := f.store.CreateTable(f.t.Context(), spec)
	if err != nil {
		f.t.Fatalf("CreateTable %s: %v", name, err)
	}
	return tbl
}

func bucket(t catalog.Table, n int32) catalog.BucketID {
	return catalog.BucketID{TableID: t.ID, Bucket: n}
}

// rng is one range of a segment to commit: rows records of bucket whose
// newest record is age old (by the fixture's clock).
type rng struct {
	bucket catalog.BucketID
	rows   int64
	age    time.Duration
}

// objectKey is a writer-style segment key created at the given time.
func objectKey(created time.Time) string {
	created = created.UTC()
	return fmt.Sprintf("segments/%s/%d-%s.seg", created.Format("2006-01-02"), created.UnixMilli(), uuid.NewString())
}

// put uploads an object with some bytes per range under a key created age
// ago and returns the key.
func (f *fixture) put(age time.Duration, size int) string {
	f.t.Helper()
	key := objectKey(f.now.Add(-age))
	if err := f.objects.Put(f.t.Context(), key, strings.NewReader(strings.Repeat("x", size)), int64(size)); err != nil {
		f.t.Fatalf("Put %s: %v", key, err)
	}
	return key
}

// lease returns the test's lease of b, acquiring it first.
func (f *fixture) lease(b catalog.BucketID) catalog.Lease {
	f.t.Helper()
	l, ok := f.leases[b]
	if !ok {
		var err error
		if l, err = f.store.AcquireLease(f.t.Context(), b, "test", time.Hour); err != nil {
			f.t.Fatalf("AcquireLease %v: %v", b, err)
		}
		f.leases[b] = l
	}
	return l
}

// commit uploads a segment object holding ranges and commits it at the
// buckets' next offsets, as a writer would. It returns the object key.
func (f *fixture) commit(ranges ...rng) string {
	f.t.Helper()
	ctx := f.t.Context()
	const perRange = 100
	key := f.put(time.Hour*24, perRange*len(ranges))
	seg := catalog.Segment{ObjectKey: key, Size: int64(perRange * len(ranges))}
	for i, r := range ranges {
		l := f.lease(r.bucket)
		base := f.next[r.bucket]
		f.next[r.bucket] = base + r.rows
		ts := f.now.Add(-r.age)
		seg.Ranges = append(seg.Ranges, catalog.SegmentRange{
			Bucket: r.bucket, Epoch: l.Epoch, ObjectKey: key, BaseOffset: base, EndOffset: base + r.rows,
			ByteOffset: int64(i * perRange), ByteLength: perRange, RowCount: r.rows,
			MinTimestamp: ts.Add(-time.Minute), MaxTimestamp: ts,
		})
	}
	if err := f.store.CommitSegment(ctx, seg); err != nil {
		f.t.Fatalf("CommitSegment %s: %v", key, err)
	}
	return key
}

// offsets returns the bucket's StartOffset and NextOffset.
func (f *fixture) offsets(b catalog.BucketID) (start, next int64) {
	f.t.Helper()
	states, err := f.store.ListBuckets(f.t.Context(), b.TableID)
	if err != nil {
		f.t.Fatalf("ListBuckets: %v", err)
	}
	for _, s := range states {
		if s.BucketID == b {
			return s.StartOffset, s.NextOffset
		}
	}
	f.t.Fatalf("bucket %v has no row", b)
	return 0, 0
}

// wantStart checks the bucket's StartOffset and that its first listed
// range starts there.
func (f *fixture) wantStart(b catalog.BucketID, want int64) {
	f.t.Helper()
	start, next := f.offsets(b)
	if start != want {
		f.t.Errorf("bucket %v: StartOffset = %d, want %d", b, start, want)
	}
	ranges, err := f.store.ListSegments(f.t.Context(), b, 0, 1)
	if err != nil {
		f.t.Fatalf("ListSegments: %v", err)
	}
	switch {
	case want == next && len(ranges) != 0:
		f.t.Errorf("bucket %v: ranges left from %d, want none", b, ranges[0].BaseOffset)
	case want < next && (len(ranges) == 0 || ranges[0].BaseOffset != want):
		f.t.Errorf("bucket %v: first range = %+v, want one from %d", b, ranges, want)
	}
}

// wantObjects checks which of keys exist in the object store.
func (f *fixture) wantObjects(exist bool, keys ...string) {
	f.t.Helper()
	for _, k := range keys {
		_, err := f.objects.Size(f.t.Context(), k)
		switch {
		case err == nil && !exist:
			f.t.Errorf("object %s exists, want it deleted", k)
		case objstore.IsNotExist(err) && exist:
			f.t.Errorf("object %s was deleted, want it kept", k)
		case err != nil && !objstore.IsNotExist(err):
			f.t.Fatalf("Size %s: %v", k, err)
		}
	}
}

func sweep(t *testing.T, r *retention.Retention) retention.SweepResult {
	t.Helper()
	res, err := r.Sweep(t.Context())
	if err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	return res
}

func janitor(t *testing.T, r *retention.Retention) retention.JanitorResult {
	t.Helper()
	res, err := r.Janitor(t.Context())
	if err != nil {
		t.Fatalf("Janitor: %v", err)
	}
	return res
}

func wantSweep(t *testing.T, got retention.SweepResult, ranges, objects int) {
	t.Helper()
	if got.Ranges != ranges || got.Objects != objects || got.RangeBytes != int64(100*ranges) || got.ObjectBytes < int64(100*objects) {
		t.Errorf("Sweep = %+v, want %d ranges (%d bytes) and %d objects", got, ranges, 100*ranges, objects)
	}
}

func testSweep(t *testing.T, f *fixture) {
	logs := f.table("logs", 2, false, map[string]string{catalog.PropLogTTL: "1h"})
	keep := f.table("keep", 1, false, nil) // no TTL: never swept
	l0, l1, k0 := bucket(logs, 0), bucket(logs, 1), bucket(keep, 0)

	a := f.commit(rng{l0, 10, 3 * time.Hour}, rng{l1, 5, 3 * time.Hour}) // all expired
	b := f.commit(rng{l0, 10, 2 * time.Hour}, rng{l1, 3, 10 * time.Minute})
	e := f.commit(rng{l0, 2, 2 * time.Hour}, rng{k0, 4, 5 * time.Hour}) // shared with a table without TTL
	c := f.commit(rng{l0, 10, 30 * time.Minute})                        // not expired
	d := f.commit(rng{l0, 10, 5 * time.Hour})                           // expired, but behind c
	r := f.retention()

	res := sweep(t, r)
	wantSweep(t, res, 4, 1) // a/l0, a/l1, b/l0, e/l0; object a
	if res.Tables != 1 {
		t.Errorf("Sweep swept %d tables, want 1 (only logs has a TTL)", res.Tables)
	}
	f.wantObjects(false, a)
	f.wantObjects(true, b, c, d, e)
	f.wantStart(l0, 22)
	f.wantStart(l1, 5)
	f.wantStart(k0, 0)

	// An hour later b's last range, c and d have expired too.
	f.now = f.now.Add(time.Hour)
	wantSweep(t, sweep(t, r), 3, 3)
	f.wantObjects(false, b, c, d)
	f.wantObjects(true, e) // keep's range still names it
	f.wantStart(l0, 42)
	f.wantStart(l1, 8)
	f.wantStart(k0, 0)

	// Nothing is left to do.
	wantSweep(t, sweep(t, r), 0, 0)
	if res := janitor(t, r); res.Objects != 0 {
		t.Errorf("Janitor after Sweep deleted %d objects, want 0", res.Objects)
	}
	f.wantObjects(true, e)
}

func testTieredGuard(t *testing.T, f *fixture) {
	ctx := t.Context()
	lake := f.table("lake", 2, false, map[string]string{catalog.PropLogTTL: "1h", catalog.PropDatalakeEnabled: "true"})
	off := f.table("off", 1, false, map[string]string{catalog.PropLogTTL: "1h", catalog.PropDatalakeEnabled: "false"})
	b0, b1, o0 := bucket(lake, 0), bucket(lake, 1), bucket(off, 0)
	r1 := f.commit(rng{b0, 10, 3 * time.Hour})
	r2 := f.commit(rng{b0, 10, 3 * time.Hour}, rng{b1, 10, 3 * time.Hour})
	r3 := f.commit(rng{b0, 10, 3 * time.Hour})
	o := f.commit(rng{o0, 10, 3 * time.Hour})
	r := f.retention()

	// Nothing tiered yet: only the table without tiering loses its range.
	wantSweep(t, sweep(t, r), 1, 1)
	f.wantObjects(false, o)
	f.wantObjects(true, r1, r2, r3)
	f.wantStart(b0, 0)
	f.wantStart(b1, 0)

	// Tiered into the middle of r2: only r1 may go.
	if err := f.store.SetTieredOffsets(ctx, []catalog.TieredOffset{{Bucket: b0, Offset: 15, LakeSnapshotID: 1}}); err != nil {
		t.Fatalf("SetTieredOffsets: %v", err)
	}
	wantSweep(t, sweep(t, r), 1, 1)
	f.wantObjects(false, r1)
	f.wantObjects(true, r2, r3)
	f.wantStart(b0, 10)
	f.wantStart(b1, 0)

	// Everything tiered: all goes.
	if err := f.store.SetTieredOffsets(ctx, []catalog.TieredOffset{{Bucket: b0, Offset: 30, LakeSnapshotID: 2}, {Bucket: b1, Offset: 10, LakeSnapshotID: 2}}); err != nil {
		t.Fatalf("SetTieredOffsets: %v", err)
	}
	wantSweep(t, sweep(t, r), 3, 2)
	f.wantObjects(false, r2, r3)
	f.wantStart(b0, 30)
	f.wantStart(b1, 10)
	wantSweep(t, sweep(t, r), 0, 0)
}

func testKVSnapshotGuard(t *testing.T, f *fixture) {
	pk := f.table("pk", 1, true, map[string]string{catalog.PropLogTTL: "1h"})
	b := bucket(pk, 0)
	s1 := f.commit(rng{b, 10, 3 * time.Hour})
	s2 := f.commit(rng{b, 10, 3 * time.Hour})
	r := f.retention()

	// Without a KV snapshot the changelog is the only copy of the state.
	wantSweep(t, sweep(t, r), 0, 0)
	f.wantObjects(true, s1, s2)

	snap := catalog.KVSnapshot{Bucket: b, Epoch: f.leases[b].Epoch, LogOffset: 12, Files: []string{"kv/1.sst"}}
	if _, err := f.store.PutKVSnapshot(t.Context(), snap); err != nil {
		t.Fatalf("PutKVSnapshot: %v", err)
	}
	wantSweep(t, sweep(t, r), 1, 1)
	f.wantObjects(false, s1)
	f.wantObjects(true, s2)
	f.wantStart(b, 10)
}

func testJanitor(t *testing.T, f *fixture) {
	ctx := t.Context()
	tbl := f.table("t", 1, false, nil)
	known := f.commit(rng{bucket(tbl, 0), 5, 0}) // created a day ago, committed
	old := []string{f.put(2*time.Hour, 10), f.put(3*time.Hour, 20), f.put(25*time.Hour, 30)}
	young := f.put(10*time.Minute, 40)
	// KV snapshot files: one left by an old snapshot no catalog row names
	// (deleted), one referenced by a recorded snapshot (kept).
	take := func(age time.Duration) string {
		return fmt.Sprintf("%d-0123456789abcdef", f.now.Add(-age).UnixMilli())
	}
	orphanSST := "kv/9/_/0/sst/" + take(5*time.Hour) + "-000007.sst"
	knownSST := "kv/9/_/0/sst/" + take(5*time.Hour) + "-000008.sst"
	const junk, outside = "segments/not-a-segment.seg", "other/1.sst"
	for _, k := range []string{junk, outside, orphanSST, knownSST} {
		if err := f.objects.Put(ctx, k, strings.NewReader("x"), 1); err != nil {
			t.Fatalf("Put %s: %v", k, err)
		}
	}
	pk := f.table("kvowner", 1, true, nil)
	if _, err := f.store.PutKVSnapshot(ctx, catalog.KVSnapshot{Bucket: bucket(pk, 0), Epoch: f.lease(bucket(pk, 0)).Epoch, Files: []string{knownSST}}); err != nil {
		t.Fatalf("PutKVSnapshot: %v", err)
	}
	r := f.retention()

	res := janitor(t, r)
	want := retention.JanitorResult{Listed: 8, Young: 1, Unparsed: 1, Objects: 4, Bytes: 61}
	if res != want {
		t.Errorf("Janitor = %+v, want %+v", res, want)
	}
	f.wantObjects(false, append(old, orphanSST)...)
	f.wantObjects(true, known, young, junk, outside, knownSST)

	// Idempotent: a second run deletes nothing.
	want = retention.JanitorResult{Listed: 4, Young: 1, Unparsed: 1}
	if res := janitor(t, r); res != want {
		t.Errorf("second Janitor = %+v, want %+v", res, want)
	}

	// Once past the grace the young object goes too.
	f.now = f.now.Add(time.Hour)
	if res := janitor(t, r); res.Objects != 1 || res.Bytes != 40 {
		t.Errorf("Janitor after the grace = %+v, want the young object deleted", res)
	}
	f.wantObjects(false, young)
	f.wantObjects(true, known, junk, outside)
}

// testCrash stops a sweep between its catalog delete and its object
// deletes: the janitor removes what was left.
func testCrash(t *testing.T, f *fixture) {
	tbl := f.table("t", 1, false, map[string]string{catalog.PropLogTTL: "1h"})
	b := bucket(tbl, 0)
	key := f.commit(rng{b, 10, 3 * time.Hour})
	orphans, err := f.store.DeleteRangesBefore(t.Context(), b, 10)
	if err != nil || len(orphans) != 1 || orphans[0] != key {
		t.Fatalf("DeleteRangesBefore = %v, %v; want [%s]", orphans, err, key)
	}
	// The crashed process never deleted the object.
	r := f.retention()
	wantSweep(t, sweep(t, r), 0, 0)
	f.wantObjects(true, key)
	if res := janitor(t, r); res.Objects != 1 {
		t.Errorf("Janitor = %+v, want the orphan deleted", res)
	}
	f.wantObjects(false, key)
}

// TestRun checks that Run sweeps at once and keeps going until cancelled.
func TestRun(t *testing.T) {
	f := newFixture(t, embeddedFS)
	tbl := f.table("t", 1, false, map[string]string{catalog.PropLogTTL: "1h"})
	key := f.commit(rng{bucket(tbl, 0), 10, 3 * time.Hour})
	stray := f.put(2*time.Hour, 5)
	logger := slog.New(slog.NewTextHandler(t.Output(), nil))
	r := retention.New(retention.Config{Interval: 10 * time.Millisecond}, f.store, f.objects, logger)

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err1 := f.objects.Size(t.Context(), key)
		_, err2 := f.objects.Size(t.Context(), stray)
		if objstore.IsNotExist(err1) && objstore.IsNotExist(err2) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Run did not delete the expired segment and the stray object: %v, %v", err1, err2)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v, want nil after cancel", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  retention.Config
		want string // substring of the error; "" for valid
	}{
		{retention.Config{}, ""},
		{retention.Config{Interval: time.Second, JanitorGrace: time.Minute, PageSize: 10}, ""},
		{retention.Config{Interval: -1}, "interval"},
		{retention.Config{JanitorGrace: -time.Second}, "janitor_grace"},
		{retention.Config{PageSize: -1}, "page_size"},
	} {
		err := tc.cfg.Validate()
		if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want an error naming %q", tc.cfg, err, tc.want)
		}
	}
	r := retention.New(retention.Config{Interval: -1}, nil, nil, slog.New(slog.DiscardHandler))
	if err := r.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "interval") {
		t.Errorf("Run with a negative interval = %v, want an error naming interval", err)
	}
}

// errStore fails every call, to check that Sweep and Janitor report it.
type errStore struct{ retention.Store }

var errDown = errors.New("catalog down")

func (errStore) ListDatabases(context.Context) ([]catalog.Database, error) { return nil, errDown }
func (errStore) UnknownObjects(context.Context, []string) ([]string, error) {
	return nil, errDown
}

func TestErrors(t *testing.T) {
	f := newFixture(t, embeddedFS)
	old := f.put(2*time.Hour, 5)
	r := retention.New(retention.Config{}, errStore{}, f.objects, slog.New(slog.DiscardHandler))
	if _, err := r.Sweep(t.Context()); !errors.Is(err, errDown) {
		t.Errorf("Sweep = %v, want %v", err, errDown)
	}
	if _, err := r.Janitor(t.Context()); !errors.Is(err, errDown) {
		t.Errorf("Janitor = %v, want %v", err, errDown)
	}
	f.wantObjects(true, old) // nothing is deleted without the catalog's word
}
