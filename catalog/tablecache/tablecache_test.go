package tablecache_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/catalog/embedded"
	"github.com/strom-io/strom/catalog/postgres"
	"github.com/strom-io/strom/catalog/tablecache"
	"github.com/strom-io/strom/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// counting counts the table reads that reach the catalog; block, if set,
// holds GetTable until it is closed.
type counting struct {
	catalog.Store
	reads atomic.Int64
	block atomic.Pointer[chan struct{}]
}

func (c *counting) GetTable(ctx context.Context, db, name string) (catalog.Table, error) {
	c.reads.Add(1)
	t, err := c.Store.GetTable(ctx, db, name)
	if b := c.block.Load(); b != nil {
		<-*b
	}
	return t, err
}

func (c *counting) GetTableByID(ctx context.Context, id int64) (catalog.Table, error) {
	c.reads.Add(1)
	return c.Store.GetTableByID(ctx, id)
}

// results counts OnLookup's reports.
type results struct {
	mu sync.Mutex
	n  map[string]int
}

func (r *results) record(result string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == nil {
		r.n = map[string]int{}
	}
	r.n[result]++
}

func (r *results) get(result string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[result]
}

func openEmbedded(t *testing.T) catalog.Store {
	t.Helper()
	s, err := embedded.Open(filepath.Join(t.TempDir(), "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func openPostgres(t *testing.T, dsn string) catalog.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// watch runs store's watch with ev until the test ends, restarting it
// when it fails, as notify.Hub.Follow does.
func watch(t *testing.T, store catalog.Store, ev catalog.Events) context.CancelFunc {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			_ = store.Watch(ctx, ev)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return cancel
}

func spec(name string) catalog.TableSpec {
	return catalog.TableSpec{Database: "db", Name: name, Buckets: 2,
		Schema: catalog.Schema{Columns: []catalog.Column{{Name: "id", Type: catalog.BigInt}}}}
}

func column(i int) []catalog.Column {
	return []catalog.Column{{Name: fmt.Sprintf("c%d", i), Type: catalog.Int, Nullable: true}}
}

// waitHit reads db.name until the cache serves it (its watch confirmed
// it), for at most 10s.
func waitHit(t *testing.T, c *tablecache.Store, r *results, name string) catalog.Table {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		before := r.get(tablecache.Hit)
		tbl, err := c.GetTable(context.Background(), "db", name)
		if err != nil {
			t.Fatal(err)
		}
		if r.get(tablecache.Hit) > before {
			return tbl
		}
		if time.Now().After(deadline) {
			t.Fatalf("table %s not served from the cache within 10s", name)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestEmbedded: with the embedded store (one process), a read is served
// from memory from the second on, and AddColumns and DropTable take
// effect on the cache before they return, without waiting.
func TestEmbedded(t *testing.T) {
	ctx := context.Background()
	inner := &counting{Store: openEmbedded(t)}
	var r results
	c := tablecache.New(inner, tablecache.Config{MaxStaleness: time.Minute, OnLookup: r.record})
	if c.SettleTime() != 0 {
		t.Fatalf("SettleTime of an unshared cache = %v, want 0", c.SettleTime())
	}
	// The watch reports this process's own changes too (a second, harmless
	// invalidation): wait for it before counting.
	ev := c.Events()
	changes := make(chan catalog.TableChange, 16)
	table := ev.Table
	ev.Table = func(ch catalog.TableChange) { table(ch); changes <- ch }
	listening := make(chan struct{})
	ev.Listening = func() { close(listening) }
	watch(t, inner, ev)
	<-listening
	if _, err := c.CreateDatabase(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	created, err := c.CreateTable(ctx, spec("t"))
	if err != nil {
		t.Fatal(err)
	}
	if ch := <-changes; ch.ID != created.ID {
		t.Fatalf("watch reported %+v, want the creation of table %d", ch, created.ID)
	}
	for range 3 {
		if _, err := c.GetTable(ctx, "db", "t"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.GetTableByID(ctx, created.ID); err != nil {
			t.Fatal(err)
		}
	}
	if n := inner.reads.Load(); n != 1 {
		t.Fatalf("catalog reads for 6 lookups = %d, want 1", n)
	}
	if r.get(tablecache.Hit) != 5 || r.get(tablecache.Miss) != 1 {
		t.Fatalf("lookups = %v, want 5 hits and 1 miss", r.n)
	}
	for i := 2; i <= 4; i++ {
		start := time.Now()
		if _, err := c.AddColumns(ctx, "db", "t", column(i)); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took > 30*time.Second {
			t.Fatalf("AddColumns took %v", took)
		}
		got, err := c.GetTable(ctx, "db", "t")
		if err != nil || got.SchemaVersion != int32(i) || len(got.Schema.Columns) != i {
			t.Fatalf("GetTable after AddColumns = v%d %v, %v; want version %d", got.SchemaVersion, got.Schema.Columns, err, i)
		}
		if byID, err := c.GetTableByIDAtLeast(ctx, created.ID, int32(i)); err != nil || byID.SchemaVersion != int32(i) {
			t.Fatalf("GetTableByIDAtLeast(%d) = v%d, %v", i, byID.SchemaVersion, err)
		}
	}
	if err := c.DropTable(ctx, "db", "t"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetTable(ctx, "db", "t"); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("GetTable after DropTable = %v, want ErrNotFound", err)
	}
	if _, err := c.GetTableByID(ctx, created.ID); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("GetTableByID after DropTable = %v, want ErrNotFound", err)
	}
	// A table of the same name is a new table.
	again, err := c.CreateTable(ctx, spec("t"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := c.GetTable(ctx, "db", "t"); err != nil || got.ID != again.ID || got.SchemaVersion != 1 {
		t.Fatalf("GetTable of the new table = %+v, %v; want id %d at version 1", got, err, again.ID)
	}
	if _, err := c.GetTable(ctx, "db", "t"); err != nil {
		t.Fatal(err)
	}
	if err := c.DropDatabase(ctx, "db", true); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetTable(ctx, "db", "t"); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("GetTable after DropDatabase = %v, want ErrNotFound", err)
	}
}

// TestReadRacingChange: a catalog read that started before a change and
// ends after it is not cached, so the old definition is not served after
// the change.
func TestReadRacingChange(t *testing.T) {
	ctx := context.Background()
	inner := &counting{Store: openEmbedded(t)}
	c := tablecache.New(inner, tablecache.Config{MaxStaleness: time.Minute})
	if _, err := c.CreateDatabase(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateTable(ctx, spec("t")); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	inner.block.Store(&release)
	old := make(chan catalog.Table)
	go func() {
		tbl, err := c.GetTable(ctx, "db", "t")
		if err != nil {
			t.Error(err)
		}
		old <- tbl
	}()
	for inner.reads.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	// The read has the old definition and is held; the change happens.
	inner.block.Store(nil)
	if _, err := c.AddColumns(ctx, "db", "t", column(2)); err != nil {
		t.Fatal(err)
	}
	close(release)
	if tbl := <-old; tbl.SchemaVersion != 1 {
		t.Fatalf("the racing read got version %d, want the old 1", tbl.SchemaVersion)
	}
	if got, err := c.GetTable(ctx, "db", "t"); err != nil || got.SchemaVersion != 2 {
		t.Fatalf("GetTable after the change = v%d, %v; want version 2 (the racing read must not be cached)", got.SchemaVersion, err)
	}
}

// TestDisabled: MaxStaleness 0 reads every table from the catalog.
func TestDisabled(t *testing.T) {
	ctx := context.Background()
	inner := &counting{Store: openEmbedded(t)}
	c := tablecache.New(inner, tablecache.Config{})
	if _, err := c.CreateDatabase(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateTable(ctx, spec("t")); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := c.GetTable(ctx, "db", "t"); err != nil {
			t.Fatal(err)
		}
	}
	if n := inner.reads.Load(); n != 3 {
		t.Fatalf("catalog reads = %d, want 3", n)
	}
}

// sharedPair opens two caches on one PostgreSQL catalog, as two frontends
// would, each fed by its own store's watch (wrapped by wrap, if not nil).
func sharedPair(t *testing.T, staleness time.Duration, wrap func(catalog.Events) catalog.Events) (c1, c2 *tablecache.Store, r2 *results) {
	dsn := testenv.Postgres(t)
	r2 = &results{}
	h1, h2 := openPostgres(t, dsn), openPostgres(t, dsn)
	c1 = tablecache.New(h1, tablecache.Config{MaxStaleness: staleness, Shared: true})
	c2 = tablecache.New(h2, tablecache.Config{MaxStaleness: staleness, Shared: true, OnLookup: r2.record})
	watch(t, h1, c1.Events())
	ev := c2.Events()
	if wrap != nil {
		ev = wrap(ev)
	}
	watch(t, h2, ev)
	return c1, c2, r2
}

// TestSharedChangeSeenOnceReturned: with two processes on one PostgreSQL
// catalog, once AddColumns (DropTable) has returned in one, the other —
// which served the table from its cache just before — reads the new
// definition (not found) at once, with no sleep in between.
func TestSharedChangeSeenOnceReturned(t *testing.T) {
	ctx := context.Background()
	c1, c2, r2 := sharedPair(t, 300*time.Millisecond, nil)
	if d := c1.SettleTime(); d != 330*time.Millisecond {
		t.Fatalf("SettleTime = %v, want 330ms", d)
	}
	if _, err := c1.CreateDatabase(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	created, err := c1.CreateTable(ctx, spec("t"))
	if err != nil {
		t.Fatal(err)
	}
	for v := 2; v <= 6; v++ {
		if got := waitHit(t, c2, r2, "t"); got.SchemaVersion != int32(v-1) {
			t.Fatalf("cached version %d, want %d", got.SchemaVersion, v-1)
		}
		if _, err := c1.AddColumns(ctx, "db", "t", column(v)); err != nil {
			t.Fatal(err)
		}
		got, err := c2.GetTable(ctx, "db", "t")
		if err != nil || got.SchemaVersion != int32(v) || len(got.Schema.Columns) != v {
			t.Fatalf("other process, right after AddColumns returned: v%d, %v; want version %d", got.SchemaVersion, err, v)
		}
		byID, err := c2.GetTableByID(ctx, created.ID)
		if err != nil || byID.SchemaVersion != int32(v) {
			t.Fatalf("other process by id, right after AddColumns returned: v%d, %v; want version %d", byID.SchemaVersion, err, v)
		}
	}
	waitHit(t, c2, r2, "t")
	if err := c1.DropTable(ctx, "db", "t"); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.GetTable(ctx, "db", "t"); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("other process, right after DropTable returned: %v, want ErrNotFound", err)
	}
	if _, err := c2.GetTableByID(ctx, created.ID); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("other process by id, right after DropTable returned: %v, want ErrNotFound", err)
	}
}

// TestSharedLaggingWatch: while the other process's watch is stuck (its
// table-change callback does not return), its syncs stop, so once its
// last confirmation is older than MaxStaleness it reads the catalog
// instead of serving its stale entry: AddColumns's wait covers a lagging
// notification too.
func TestSharedLaggingWatch(t *testing.T) {
	ctx := context.Background()
	stuck := make(chan struct{})
	var once sync.Once
	unstick := func() { once.Do(func() { close(stuck) }) }
	var hold atomic.Bool
	c1, c2, r2 := sharedPair(t, 300*time.Millisecond, func(ev catalog.Events) catalog.Events {
		table := ev.Table
		ev.Table = func(c catalog.TableChange) {
			if hold.Load() {
				<-stuck
			}
			table(c)
		}
		return ev
	})
	t.Cleanup(unstick) // before the watch's cleanup waits for it
	if _, err := c1.CreateDatabase(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	if _, err := c1.CreateTable(ctx, spec("t")); err != nil {
		t.Fatal(err)
	}
	waitHit(t, c2, r2, "t")
	hold.Store(true)
	if _, err := c1.AddColumns(ctx, "db", "t", column(2)); err != nil {
		t.Fatal(err)
	}
	unconfirmed := r2.get(tablecache.Unconfirmed)
	got, err := c2.GetTable(ctx, "db", "t")
	if err != nil || got.SchemaVersion != 2 {
		t.Fatalf("GetTable with a stuck watch = v%d, %v; want version 2 from the catalog", got.SchemaVersion, err)
	}
	if r2.get(tablecache.Unconfirmed) != unconfirmed+1 {
		t.Fatalf("lookups %v: want the stale entry reported unconfirmed", r2.n)
	}
	hold.Store(false)
	unstick()
	waitHit(t, c2, r2, "t")
}

// TestSharedWatchRestart: a restarted watch (a lost connection) drops
// every entry, since changes made meanwhile were not reported.
func TestSharedWatchRestart(t *testing.T) {
	ctx := context.Background()
	dsn := testenv.Postgres(t)
	inner := &counting{Store: openPostgres(t, dsn)}
	var r results
	c := tablecache.New(inner, tablecache.Config{MaxStaleness: time.Minute, Shared: true, OnLookup: r.record})
	listening := make(chan struct{}, 2)
	ev := c.Events()
	l := ev.Listening
	ev.Listening = func() { l(); listening <- struct{}{} }
	stop := watch(t, inner, ev)
	<-listening
	if _, err := c.CreateDatabase(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateTable(ctx, spec("t")); err != nil {
		t.Fatal(err)
	}
	waitHit(t, c, &r, "t")
	stop()
	watch(t, inner, ev)
	<-listening
	misses := r.get(tablecache.Miss)
	if _, err := c.GetTable(ctx, "db", "t"); err != nil {
		t.Fatal(err)
	}
	if r.get(tablecache.Miss) != misses+1 {
		t.Fatalf("lookups after the watch restarted: %v; want a miss", r.n)
	}
}
