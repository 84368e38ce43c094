package lease_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/catalog/embedded"
	"github.com/strom-io/strom/catalog/postgres"
	"github.com/strom-io/strom/services/lease"
	"github.com/strom-io/strom/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

func newStore(t *testing.T) (catalog.Store, catalog.BucketID) {
	t.Helper()
	s, err := embedded.Open(filepath.Join(t.TempDir(), "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ctx := context.Background()
	if _, err := s.CreateDatabase(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	tbl, err := s.CreateTable(ctx, catalog.TableSpec{Database: "db", Name: "t", Buckets: 1,
		Schema: catalog.Schema{Columns: []catalog.Column{{Name: "id", Type: catalog.Type{Kind: catalog.KindBigInt}}}}})
	if err != nil {
		t.Fatal(err)
	}
	return s, catalog.BucketID{TableID: tbl.ID}
}

type changes struct {
	mu  sync.Mutex
	got []lease.Change
}

func (c *changes) add(ch lease.Change) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, ch)
}

func (c *changes) list() []lease.Change {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]lease.Change(nil), c.got...)
}

// fakeClock stands still until advanced.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// slowStore takes the given time, on the clock, for every acquire and
// renewal.
type slowStore struct {
	catalog.Store
	clock *fakeClock
	takes time.Duration
}

func (s slowStore) AcquireLease(ctx context.Context, b catalog.BucketID, holder string, ttl time.Duration) (catalog.Lease, error) {
	s.clock.advance(s.takes)
	return s.Store.AcquireLease(ctx, b, holder, ttl)
}

func (s slowStore) RenewLease(ctx context.Context, l catalog.Lease, ttl time.Duration) (catalog.Lease, error) {
	s.clock.advance(s.takes)
	return s.Store.RenewLease(ctx, l, ttl)
}

// A leadership whose renewals stop (a paused process) expires locally no
// later than in the catalog — a TTL after the acquire was sent, however
// long the answer took — and the next renewal restores it as long as
// nobody took the bucket. The keeper's clock is a fake one that moves only
// when told (and by a second during each catalog call).
func TestLeadershipExpiresLocallyAndRecovers(t *testing.T) {
	s, b := newStore(t)
	clock := &fakeClock{now: time.Now()}
	var ch changes
	const ttl = 10 * time.Second
	k := lease.NewKeeper(slowStore{s, clock, time.Second}, "a", lease.Config{TTL: ttl, RenewInterval: 10 * time.Millisecond, OnChange: ch.add}, slog.Default())
	k.SetClock(clock.Now)
	l, err := k.Acquire(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	if l.Expired() {
		t.Fatal("a fresh leadership is expired")
	}
	clock.advance(ttl - time.Second - time.Nanosecond) // no Run: no renewals
	if l.Expired() {
		t.Fatal("leadership expired locally before its TTL since the acquire was sent")
	}
	clock.advance(time.Nanosecond)
	if !l.Expired() {
		t.Fatal("leadership not expired locally a TTL after the acquire was sent, without renewals")
	}
	if l.IsFenced() {
		t.Fatal("expiry alone fenced the leadership")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = k.Run(ctx) }()
	deadline := time.Now().Add(time.Minute)
	for l.Expired() {
		if time.Now().After(deadline) {
			t.Fatal("renewal did not restore the leadership")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done // Run releases the lease on exit
	if !l.IsFenced() {
		t.Fatal("leadership not ended by the release at shutdown")
	}
	if got := ch.list(); len(got) != 2 || got[0] != lease.ChangeAcquired || got[1] != lease.ChangeReleased {
		t.Fatalf("changes = %v, want [acquired released]", got)
	}
}

// Another holder that took the bucket after the expiry fences the old one
// at its next renewal.
func TestRenewalAfterTakeoverFences(t *testing.T) {
	s, b := newStore(t)
	var ch changes
	k := lease.NewKeeper(s, "a", lease.Config{TTL: 100 * time.Millisecond, RenewInterval: 20 * time.Millisecond, OnChange: ch.add}, slog.Default())
	l, err := k.Acquire(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	// Nothing renews the lease: another holder takes it once it expired
	// in the catalog.
	var taken catalog.Lease
	deadline := time.Now().Add(time.Minute)
	for {
		taken, err = s.AcquireLease(context.Background(), b, "b", time.Minute)
		if err == nil {
			break
		}
		if !errors.Is(err, catalog.ErrLeaseHeld) || time.Now().After(deadline) {
			t.Fatalf("takeover of an unrenewed lease: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if taken.Epoch != l.Lease.Epoch+1 {
		t.Fatalf("takeover epoch %d after %d", taken.Epoch, l.Lease.Epoch)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = k.Run(ctx) }()
	select {
	case <-l.Fenced():
	case <-time.After(time.Minute):
		t.Fatal("old leader not fenced after a takeover")
	}
	if k.Held() != 0 {
		t.Fatalf("keeper still holds %d leases", k.Held())
	}
	if got := ch.list(); len(got) < 2 || got[1] != lease.ChangeFenced {
		t.Fatalf("changes = %v, want acquired then fenced", got)
	}
}

// Release lets another holder take the bucket at once.
func TestReleaseHandsOver(t *testing.T) {
	s, b := newStore(t)
	k := lease.NewKeeper(s, "a", lease.Config{TTL: time.Minute, RenewInterval: time.Second}, slog.Default())
	l, err := k.Acquire(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AcquireLease(context.Background(), b, "b", time.Minute); !errors.Is(err, catalog.ErrLeaseHeld) {
		t.Fatalf("acquire while held = %v, want ErrLeaseHeld", err)
	}
	k.Release(context.Background(), l)
	if !l.IsFenced() || k.Held() != 0 {
		t.Fatal("released leadership still held")
	}
	if _, err := s.AcquireLease(context.Background(), b, "b", time.Minute); err != nil {
		t.Fatalf("acquire after release: %v", err)
	}
}

// counting is the real catalog with its renewal attempts counted per
// bucket.
type counting struct {
	lease.Store
	mu       sync.Mutex
	renewals map[catalog.BucketID]int
}

func (c *counting) RenewLease(ctx context.Context, l catalog.Lease, ttl time.Duration) (catalog.Lease, error) {
	c.mu.Lock()
	c.renewals[l.Bucket]++
	c.mu.Unlock()
	return c.Store.RenewLease(ctx, l, ttl)
}

func (c *counting) count(b catalog.BucketID) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.renewals[b]
}

// catalogs opens each real catalog backend, empty.
var catalogs = map[string]func(t *testing.T) catalog.Store{
	"embedded": func(t *testing.T) catalog.Store {
		s, err := embedded.Open(filepath.Join(t.TempDir(), "catalog.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	},
	"postgres": func(t *testing.T) catalog.Store {
		s, err := postgres.Open(context.Background(), testenv.Postgres(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	},
}

// waitUntil polls cond until it holds, failing the test after a minute.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A lease whose bucket's table is dropped (by DropTable or DropDatabase
// with cascade) ends at its first renewal, with an error wrapping
// catalog.ErrNotFound, and is never renewed again, while the leases of
// other tables go on being renewed.
func TestDroppedBucketLeaseEnds(t *testing.T) {
	for name, open := range catalogs {
		for _, drop := range []string{"DropTable", "DropDatabase"} {
			t.Run(name+"/"+drop, func(t *testing.T) {
				ctx := context.Background()
				s := open(t)
				schema := catalog.Schema{Columns: []catalog.Column{{Name: "id", Type: catalog.Type{Kind: catalog.KindBigInt}}}}
				var tables []catalog.Table
				for _, db := range []string{"keep", "gone"} {
					if _, err := s.CreateDatabase(ctx, db); err != nil {
						t.Fatal(err)
					}
					tbl, err := s.CreateTable(ctx, catalog.TableSpec{Database: db, Name: "t", Buckets: 2, Schema: schema})
					if err != nil {
						t.Fatal(err)
					}
					tables = append(tables, tbl)
				}
				live := catalog.BucketID{TableID: tables[0].ID}
				gone := []catalog.BucketID{{TableID: tables[1].ID}, {TableID: tables[1].ID, Bucket: 1}}

				cs := &counting{Store: s, renewals: map[catalog.BucketID]int{}}
				var ch changes
				k := lease.NewKeeper(cs, "a", lease.Config{TTL: time.Minute, RenewInterval: 10 * time.Millisecond, OnChange: ch.add}, slog.Default())
				if _, err := k.Acquire(ctx, live); err != nil {
					t.Fatal(err)
				}
				var ended []*lease.Leadership
				for _, b := range gone {
					l, err := k.Acquire(ctx, b)
					if err != nil {
						t.Fatal(err)
					}
					ended = append(ended, l)
				}
				switch drop {
				case "DropTable":
					if err := s.DropTable(ctx, "gone", "t"); err != nil {
						t.Fatal(err)
					}
				case "DropDatabase":
					if err := s.DropDatabase(ctx, "gone", true); err != nil {
						t.Fatal(err)
					}
				}

				runCtx, cancel := context.WithCancel(ctx)
				done := make(chan struct{})
				go func() { defer close(done); _ = k.Run(runCtx) }()
				defer func() { cancel(); <-done }()
				for i, l := range ended {
					select {
					case <-l.Fenced():
					case <-time.After(time.Minute):
						t.Fatalf("leadership of dropped bucket %s not ended", gone[i])
					}
					if err := l.Err(); !errors.Is(err, catalog.ErrNotFound) {
						t.Fatalf("leadership of dropped bucket %s ended with %v, want catalog.ErrNotFound", gone[i], err)
					}
				}
				if n := k.Held(); n != 1 {
					t.Fatalf("keeper holds %d leases, want 1 (the live table's)", n)
				}
				// Renewed a few more times meanwhile: the dropped leases
				// were tried once and never again.
				after := cs.count(live)
				waitUntil(t, "the live lease is renewed 3 more times", func() bool { return cs.count(live) >= after+3 })
				for _, b := range gone {
					if n := cs.count(b); n != 1 {
						t.Errorf("bucket %s of the dropped table: %d renewal attempts, want 1", b, n)
					}
				}
				dropped := 0
				for _, c := range ch.list() {
					if c == lease.ChangeDropped {
						dropped++
					}
				}
				if dropped != 2 {
					t.Errorf("changes %v: want 2 %q", ch.list(), lease.ChangeDropped)
				}
				if _, err := k.Acquire(ctx, gone[0]); !errors.Is(err, catalog.ErrNotFound) {
					t.Errorf("acquire a dropped bucket: %v, want catalog.ErrNotFound", err)
				}
			})
		}
	}
}
