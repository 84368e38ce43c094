package cluster_test

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/catalog/embedded"
	"github.com/strom-io/strom/services/cluster"
)

// heldHeartbeats is the embedded catalog with a barrier in Heartbeat:
// while holding, every heartbeat made by a Run whose context is marked
// with fromRun waits, after announcing itself on arrivals, until the test
// releases it, as a slow catalog makes it, and then signals that it
// landed. Other heartbeats (Start's, Leave's) pass.
type heldHeartbeats struct {
	*embedded.Store
	arrivals chan *heldHeartbeat
}

type fromRun struct{}

type heldHeartbeat struct {
	release, landed chan struct{}
}

func (s *heldHeartbeats) Heartbeat(ctx context.Context, m catalog.Member, ttl time.Duration) (catalog.Member, error) {
	if ctx.Value(fromRun{}) == nil {
		return s.Store.Heartbeat(ctx, m, ttl)
	}
	h := &heldHeartbeat{release: make(chan struct{}), landed: make(chan struct{})}
	select {
	case s.arrivals <- h:
	case <-ctx.Done():
		return catalog.Member{}, ctx.Err()
	}
	select {
	case <-h.release:
	case <-ctx.Done():
		return catalog.Member{}, ctx.Err()
	}
	defer close(h.landed)
	return s.Store.Heartbeat(ctx, m, ttl)
}

func openStore(t *testing.T) *heldHeartbeats {
	t.Helper()
	s, err := embedded.Open(filepath.Join(t.TempDir(), "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return &heldHeartbeats{Store: s, arrivals: make(chan *heldHeartbeat)}
}

// member starts the cluster membership of write member id (without a
// write path: it leads nothing itself), reachable at address.
func member(t *testing.T, store cluster.Store, id, address string) *cluster.Cluster {
	t.Helper()
	c := cluster.New(cluster.Config{
		Self: catalog.Member{ID: id, Roles: cluster.AllRoles}, TTL: time.Minute, Interval: 5 * time.Millisecond,
	}, store, nil, slog.New(slog.DiscardHandler))
	c.SetAddresses("", address)
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return c
}

// listed returns member id as c last read it.
func listed(c *cluster.Cluster, id string) (catalog.Member, bool) {
	i := slices.IndexFunc(c.Members(), func(m catalog.Member) bool { return m.ID == id })
	if i < 0 {
		return catalog.Member{}, false
	}
	return c.Members()[i], true
}

// TestLeavingMemberStaysReachable: a member that leaves (the first step of
// a drain) is assigned no bucket any more, but stays listed without roles
// at its internal address, so that the requests for a bucket whose lease
// it still holds reach it (and wait there for the bucket's handoff); once
// it departs, nobody forwards to it. Before, Leave removed it from the
// member list at once, and requests for its buckets failed with "no
// leader" until it had handed them over.
func TestLeavingMemberStaysReachable(t *testing.T) {
	ctx := context.Background()
	store := openStore(t)
	if _, err := store.CreateDatabase(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	tbl, err := store.CreateTable(ctx, catalog.TableSpec{Database: "d", Name: "t", Buckets: 4,
		Schema: catalog.Schema{Columns: []catalog.Column{{Name: "id", Type: catalog.Type{Kind: catalog.KindBigInt}}}}})
	if err != nil {
		t.Fatal(err)
	}
	held := catalog.BucketID{TableID: tbl.ID, Bucket: 0}
	if _, err := store.AcquireLease(ctx, held, "f1", time.Minute); err != nil {
		t.Fatal(err)
	}
	f1 := member(t, store, "f1", "127.0.0.1:1")
	f2 := member(t, store, "f2", "127.0.0.1:2")
	if err := f2.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	free := func() {
		t.Helper()
		for b := range int32(4) {
			if b == held.Bucket {
				continue
			}
			got, err := f2.Locate(catalog.BucketID{TableID: tbl.ID, Bucket: b})
			if err != nil || got.Member != "f2" {
				t.Fatalf("bucket %d goes to %+v, %v; want f2, the only member that takes buckets", b, got, err)
			}
		}
	}

	f1.Leave(ctx)
	if err := f2.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	m, ok := listed(f2, "f1")
	if !ok || len(m.Roles) != 0 || m.Address != "127.0.0.1:1" {
		t.Fatalf("after Leave, f1 is listed as %+v (listed: %v); want it without roles at 127.0.0.1:1", m, ok)
	}
	got, err := f2.Locate(held)
	if err != nil || got.Member != "f1" || got.Address != "127.0.0.1:1" {
		t.Fatalf("the bucket f1 still leads goes to %+v, %v; want f1 at 127.0.0.1:1", got, err)
	}
	free()

	f1.Depart(ctx)
	if err := f2.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if m, ok := listed(f2, "f1"); ok {
		t.Fatalf("after Depart, f1 is still listed: %+v", m)
	}
	if got, err := f2.Locate(held); !errors.Is(err, cluster.ErrNoLeader) {
		t.Fatalf("the bucket whose lease f1 still holds goes to %+v, %v; want ErrNoLeader", got, err)
	}
	free()
}

// TestLeaveAfterHeartbeatInFlight: a heartbeat that began before Leave
// (or Depart) cannot land after it and list the member as it was. The
// catalog holds each heartbeat of f1's Run until the test lets it through:
// one while Leave (then Depart) is called, and the next until the others'
// view is checked. Before, Leave removed f1 from the member list at once,
// and the late heartbeat put it back with all its roles, so that the
// others assigned it buckets again, and forwarded to it, for a member TTL.
func TestLeaveAfterHeartbeatInFlight(t *testing.T) {
	ctx := context.Background()
	store := openStore(t)
	f1 := member(t, store, "f1", "127.0.0.1:1")
	f2 := member(t, store, "f2", "127.0.0.1:2")
	runCtx, stop := context.WithCancel(context.WithValue(ctx, fromRun{}, true))
	ran := make(chan error, 1)
	go func() { ran <- f1.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-ran; err != nil {
			t.Error(err)
		}
	}()

	for _, step := range []struct {
		name string
		do   func(context.Context)
		want func(m catalog.Member, ok bool) bool
	}{
		{"leave", f1.Leave, func(m catalog.Member, ok bool) bool { return ok && len(m.Roles) == 0 && m.Address == "127.0.0.1:1" }},
		{"depart", f1.Depart, func(_ catalog.Member, ok bool) bool { return !ok }},
	} {
		h := <-store.arrivals // a round's heartbeat is under way
		done := make(chan struct{})
		go func() { defer close(done); step.do(ctx) }()
		// The step must wait for the heartbeat under way. Give one that
		// does not the time to finish first (the held heartbeat then
		// lands after it, as a slow catalog makes it); one that waits
		// passes either way, so the test's outcome does not depend on
		// this time, only its power to catch a step that does not wait.
		select {
		case <-done:
		case <-time.After(500 * time.Millisecond):
		}
		close(h.release)
		<-h.landed
		// Until the step is done, let the next rounds' heartbeats through
		// (they may take the lock before it); after, they wait.
	wait:
		for {
			select {
			case <-done:
				break wait
			default:
			}
			select {
			case <-done:
				break wait
			case h := <-store.arrivals:
				close(h.release)
				<-h.landed
			}
		}
		if err := f2.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		if m, ok := listed(f2, "f1"); !step.want(m, ok) {
			t.Fatalf("after %s, with a heartbeat under way: f1 listed %v as %+v", step.name, ok, m)
		}
	}
}
