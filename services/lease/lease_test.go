package lease_test

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/catalog/embedded"
	"github.com/strom-io/strom/services/lease"
)

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

// A leadership whose renewals stop (a paused process) expires locally no
// later than in the catalog; the next renewal restores it as long as nobody
// took the bucket.
func TestLeadershipExpiresLocallyAndRecovers(t *testing.T) {
	s, b := newStore(t)
	var ch changes
	k := lease.NewKeeper(s, "a", lease.Config{TTL: 200 * time.Millisecond, RenewInterval: 50 * time.Millisecond, OnChange: ch.add}, slog.Default())
	l, err := k.Acquire(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	if l.Expired() {
		t.Fatal("a fresh leadership is expired")
	}
	time.Sleep(250 * time.Millisecond) // no Run: no renewals
	if !l.Expired() {
		t.Fatal("leadership not expired locally after its TTL without renewals")
	}
	if l.IsFenced() {
		t.Fatal("expiry alone fenced the leadership")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = k.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
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
	time.Sleep(150 * time.Millisecond)
	taken, err := s.AcquireLease(context.Background(), b, "b", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if taken.Epoch != l.Lease.Epoch+1 {
		t.Fatalf("takeover epoch %d after %d", taken.Epoch, l.Lease.Epoch)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = k.Run(ctx) }()
	select {
	case <-l.Fenced():
	case <-time.After(5 * time.Second):
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
