// Package catalogtest is the acceptance suite every catalog.Store
// implementation runs:
//
//	func TestStore(t *testing.T) {
//		catalogtest.Run(t, func(t *testing.T) catalog.Store {
//			s, err := embedded.Open(filepath.Join(t.TempDir(), "catalog.db"))
//			if err != nil {
//				t.Fatal(err)
//			}
//			return s
//		})
//	}
package catalogtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/strom-io/strom/catalog"
)

// Option configures Run.
type Option func(*config)

type config struct {
	handle func(t *testing.T, s catalog.Store) catalog.Store
}

// WithHandles lets the suite open further handles onto the backing store of
// a store that newStore returned, as separate processes would: the race,
// concurrent retention and concurrent heartbeat tests then give each
// contender its own handle. Without it, contenders share the one handle.
// Run closes the handles it opens.
func WithHandles(open func(t *testing.T, s catalog.Store) catalog.Store) Option {
	return func(c *config) { c.handle = open }
}

// Run runs the acceptance suite against the stores newStore returns. Each
// subtest calls newStore once and expects a fresh, empty store; Run closes
// it when the subtest ends. The subtests do not run in parallel with each
// other.
func Run(t *testing.T, newStore func(t *testing.T) catalog.Store, opts ...Option) {
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	open := func(t *testing.T) catalog.Store {
		t.Helper()
		s := newStore(t)
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return s
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, s catalog.Store)
	}{
		{"Databases", testDatabases},
		{"DropDatabaseCascade", testDropDatabaseCascade},
		{"TableValidation", testTableValidation},
		{"Tables", testTables},
		{"AddColumns", testAddColumns},
		{"Buckets", testBuckets},
		{"Leases", testLeases},
		{"LeaseExpiry", testLeaseExpiry},
		{"LeasePartitions", testLeasePartitions},
		{"Segments", testSegments},
		{"SegmentFencing", testSegmentFencing},
		{"KVSnapshots", testKVSnapshots},
		{"TieredOffsets", testTieredOffsets},
		{"DropTableRemovesAll", testDropTableRemovesAll},
		{"WriterSequences", testWriterSequences},
		{"OffsetForTimestamp", testOffsetForTimestamp},
		{"DeleteRangesBefore", testDeleteRangesBefore},
		{"UnknownObjects", testUnknownObjects},
		{"Members", testMembers},
		{"MemberExpiry", testMemberExpiry},
		{"RemoveMember", testRemoveMember},
		{"MemberValidation", testMemberValidation},
		{"ListAllBuckets", testListAllBuckets},
		{"GetBucket", testGetBucket},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
	// handles returns n handles onto s's backing store: separate ones with
	// WithHandles, else s itself n times.
	handles := func(t *testing.T, s catalog.Store, n int) []catalog.Store {
		hs := make([]catalog.Store, n)
		for i := range hs {
			hs[i] = s
			if cfg.handle != nil {
				h := cfg.handle(t, s)
				t.Cleanup(func() { _ = h.Close() })
				hs[i] = h
			}
		}
		return hs
	}
	t.Run("RaceLeaders", func(t *testing.T) {
		s := open(t)
		testRaceLeaders(t, s, handles(t, s, raceContenders))
	})
	t.Run("DeleteRangesConcurrently", func(t *testing.T) {
		s := open(t)
		testDeleteRangesConcurrently(t, s, handles(t, s, 4))
	})
	t.Run("HeartbeatConcurrently", func(t *testing.T) {
		s := open(t)
		testHeartbeatConcurrently(t, s, handles(t, s, 4))
	})
	t.Run("WatchCommits", func(t *testing.T) {
		s := open(t)
		testWatchCommits(t, s, handles(t, s, 1)[0])
	})
	t.Run("WatchTables", func(t *testing.T) {
		s := open(t)
		testWatchTables(t, s, handles(t, s, 1)[0])
	})
	t.Run("WatchClosed", func(t *testing.T) {
		s := newStore(t)
		t.Cleanup(func() { _ = s.Close() }) // a second Close; its error is not the point
		testWatchClosed(t, s)
	})
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func wantErr(t *testing.T, err, target error, what string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}

func noErr(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// logSpec is a valid log table spec with 4 buckets.
func logSpec(db, name string) catalog.TableSpec {
	return catalog.TableSpec{
		Database: db,
		Name:     name,
		Schema: catalog.Schema{Columns: []catalog.Column{
			{Name: "id", Type: catalog.BigInt},
			{Name: "day", Type: catalog.Date},
			{Name: "msg", Type: catalog.String, Nullable: true},
			{Name: "price", Type: catalog.Decimal(10, 2), Nullable: true},
			{Name: "ts", Type: catalog.Timestamp(3), Nullable: true},
		}},
		Buckets:      4,
		BucketKey:    []string{"id"},
		PartitionKey: "day",
		Properties:   map[string]string{catalog.PropLogTTL: "7d", "owner": "team-a"},
	}
}

// pkSpec is a valid primary-key table spec with 2 buckets.
func pkSpec(db, name string) catalog.TableSpec {
	return catalog.TableSpec{
		Database: db,
		Name:     name,
		Schema: catalog.Schema{
			Columns: []catalog.Column{
				{Name: "id", Type: catalog.BigInt},
				{Name: "v", Type: catalog.Int},
				{Name: "name", Type: catalog.String, Nullable: true},
			},
			PrimaryKey: []string{"id"},
		},
		Buckets:    2,
		Properties: map[string]string{catalog.PropMergeEngine: "versioned", catalog.PropMergeEngineVersionColumn: "v"},
	}
}

func setup(t *testing.T, s catalog.Store, spec catalog.TableSpec) catalog.Table {
	t.Helper()
	ctx := ctxT(t)
	if _, err := s.GetDatabase(ctx, spec.Database); errors.Is(err, catalog.ErrNotFound) {
		_, err = s.CreateDatabase(ctx, spec.Database)
		noErr(t, err, "CreateDatabase")
	}
	tbl, err := s.CreateTable(ctx, spec)
	noErr(t, err, "CreateTable")
	return tbl
}

func testDatabases(t *testing.T, s catalog.Store) {
	ctx := ctxT(t)
	dbs, err := s.ListDatabases(ctx)
	noErr(t, err, "ListDatabases on empty store")
	if len(dbs) != 0 {
		t.Fatalf("ListDatabases on empty store = %v, want none", dbs)
	}
	before := time.Now().Add(-time.Minute)
	for _, name := range []string{"sales", "ads", "m-2_x"} {
		db, err := s.CreateDatabase(ctx, name)
		noErr(t, err, "CreateDatabase "+name)
		if db.Name != name || db.CreatedAt.Before(before) {
			t.Fatalf("CreateDatabase(%q) = %+v", name, db)
		}
	}
	_, err = s.CreateDatabase(ctx, "ads")
	wantErr(t, err, catalog.ErrAlreadyExists, "CreateDatabase duplicate")
	for _, bad := range []string{"", "_sys", "a b", "x.y", string(make([]byte, 129))} {
		_, err = s.CreateDatabase(ctx, bad)
		wantErr(t, err, catalog.ErrInvalid, fmt.Sprintf("CreateDatabase(%q)", bad))
	}
	db, err := s.GetDatabase(ctx, "sales")
	noErr(t, err, "GetDatabase")
	if db.Name != "sales" {
		t.Fatalf("GetDatabase = %+v", db)
	}
	_, err = s.GetDatabase(ctx, "nope")
	wantErr(t, err, catalog.ErrNotFound, "GetDatabase missing")
	dbs, err = s.ListDatabases(ctx)
	noErr(t, err, "ListDatabases")
	if got := names(dbs, func(d catalog.Database) string { return d.Name }); !slices.Equal(got, []string{"ads", "m-2_x", "sales"}) {
		t.Fatalf("ListDatabases = %v, want [ads m-2_x sales]", got)
	}
	noErr(t, s.DropDatabase(ctx, "ads", false), "DropDatabase")
	_, err = s.GetDatabase(ctx, "ads")
	wantErr(t, err, catalog.ErrNotFound, "GetDatabase after drop")
	wantErr(t, s.DropDatabase(ctx, "ads", false), catalog.ErrNotFound, "DropDatabase missing")
	_, err = s.CreateDatabase(ctx, "ads")
	noErr(t, err, "CreateDatabase after drop")
}

func names[T any](xs []T, f func(T) string) []string {
	out := []string{}
	for _, x := range xs {
		out = append(out, f(x))
	}
	return out
}

func testDropDatabaseCascade(t *testing.T, s catalog.Store) {
	ctx := ctxT(t)
	a := setup(t, s, logSpec("db", "a"))
	setup(t, s, pkSpec("db", "b"))
	other := setup(t, s, logSpec("other", "a"))
	wantErr(t, s.DropDatabase(ctx, "db", false), catalog.ErrNotEmpty, "DropDatabase non-empty")
	if _, err := s.GetTable(ctx, "db", "a"); err != nil {
		t.Fatalf("table gone after failed DropDatabase: %v", err)
	}
	noErr(t, s.DropDatabase(ctx, "db", true), "DropDatabase cascade")
	_, err := s.GetTableByID(ctx, a.ID)
	wantErr(t, err, catalog.ErrNotFound, "GetTableByID after cascade")
	_, err = s.ListTables(ctx, "db")
	wantErr(t, err, catalog.ErrNotFound, "ListTables of dropped database")
	if _, err := s.GetTableByID(ctx, other.ID); err != nil {
		t.Fatalf("table of another database gone: %v", err)
	}
	wantErr(t, s.DropDatabase(ctx, "missing", true), catalog.ErrNotFound, "DropDatabase cascade of missing database")
}
