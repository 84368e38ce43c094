package catalogtest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strom-io/strom/catalog"
)

// sameMember reports whether two members are equal field by field, times
// by Equal and Roles including nil-ness.
func sameMember(a, b catalog.Member) bool {
	return a.ID == b.ID && a.Address == b.Address && a.APIAddress == b.APIAddress &&
		slices.Equal(a.Roles, b.Roles) && (a.Roles == nil) == (b.Roles == nil) &&
		a.Started.Equal(b.Started) && a.Expiry.Equal(b.Expiry)
}

func memberIDs(ms []catalog.Member) []string {
	return names(ms, func(m catalog.Member) string { return m.ID })
}

// testMembers: Heartbeat inserts and refreshes (Started kept, Expiry and
// the other fields replaced), ListMembers orders by id bytewise and returns
// every field as stored, and Roles without roles are nil.
func testMembers(t *testing.T, s catalog.Store) {
	ctx := ctxT(t)
	got, err := s.ListMembers(ctx)
	noErr(t, err, "ListMembers on empty store")
	if len(got) != 0 {
		t.Fatalf("ListMembers on empty store = %+v, want none", got)
	}

	b := catalog.Member{ID: "frontend-b", Address: "10.0.0.2:9124", APIAddress: "10.0.0.2:9123", Roles: []string{"write", "read"},
		Started: time.Unix(1, 0), Expiry: time.Unix(2, 0)} // ignored: the store sets both
	first, err := s.Heartbeat(ctx, b, time.Minute)
	noErr(t, err, "Heartbeat frontend-b")
	if first.ID != b.ID || first.Address != b.Address || first.APIAddress != b.APIAddress || !slices.Equal(first.Roles, b.Roles) {
		t.Fatalf("Heartbeat = %+v, want the fields of %+v", first, b)
	}
	if d := first.Expiry.Sub(first.Started); d != time.Minute {
		t.Fatalf("first Heartbeat: Expiry - Started = %v, want the ttl 1m0s", d)
	}
	if d := time.Since(first.Started); d < -30*time.Second || d > 30*time.Second {
		t.Fatalf("first Heartbeat: Started = %v, want about now", first.Started)
	}
	// Whatever the database collation, ids order bytewise: 'F' < 'f'.
	a, err := s.Heartbeat(ctx, catalog.Member{ID: "frontend-a"}, time.Minute)
	noErr(t, err, "Heartbeat frontend-a without roles")
	c, err := s.Heartbeat(ctx, catalog.Member{ID: "Frontend-c", Roles: []string{}}, time.Minute)
	noErr(t, err, "Heartbeat Frontend-c with empty roles")
	if a.Roles != nil || c.Roles != nil {
		t.Fatalf("Heartbeat without roles returned Roles %#v and %#v, want nil", a.Roles, c.Roles)
	}

	time.Sleep(20 * time.Millisecond)
	b.Address, b.APIAddress, b.Roles = "10.0.0.3:9124", "10.0.0.3:9123", []string{"tiering"}
	again, err := s.Heartbeat(ctx, b, 2*time.Minute)
	noErr(t, err, "Heartbeat frontend-b again")
	if !again.Started.Equal(first.Started) {
		t.Fatalf("second Heartbeat moved Started from %v to %v", first.Started, again.Started)
	}
	if d := again.Expiry.Sub(first.Expiry); d <= time.Minute {
		t.Fatalf("second Heartbeat (ttl 2m, 20ms later) moved Expiry by %v, want over 1m", d)
	}
	if again.Address != b.Address || again.APIAddress != b.APIAddress || !slices.Equal(again.Roles, b.Roles) {
		t.Fatalf("second Heartbeat = %+v, want the new fields of %+v", again, b)
	}

	got, err = s.ListMembers(ctx)
	noErr(t, err, "ListMembers")
	if ids := memberIDs(got); !slices.Equal(ids, []string{"Frontend-c", "frontend-a", "frontend-b"}) {
		t.Fatalf("ListMembers = %v, want [Frontend-c frontend-a frontend-b]", ids)
	}
	for i, want := range []catalog.Member{c, a, again} {
		if !sameMember(got[i], want) {
			t.Fatalf("ListMembers[%d] = %+v, want what Heartbeat returned: %+v", i, got[i], want)
		}
	}
	if got[0].Roles != nil || got[1].Roles != nil {
		t.Fatalf("ListMembers returned Roles %#v and %#v for members without roles, want nil", got[0].Roles, got[1].Roles)
	}
}

// testMemberExpiry: an expired member is not listed, and its next
// heartbeat is a new start.
func testMemberExpiry(t *testing.T, s catalog.Store) {
	ctx := ctxT(t)
	const ttl = 50 * time.Millisecond
	short, err := s.Heartbeat(ctx, catalog.Member{ID: "short", Roles: []string{"read"}}, ttl)
	noErr(t, err, "Heartbeat short")
	if d := short.Expiry.Sub(short.Started); d != ttl {
		t.Fatalf("Heartbeat short: Expiry - Started = %v, want %v", d, ttl)
	}
	long, err := s.Heartbeat(ctx, catalog.Member{ID: "long"}, time.Minute)
	noErr(t, err, "Heartbeat long")
	time.Sleep(ttl + 100*time.Millisecond)

	got, err := s.ListMembers(ctx)
	noErr(t, err, "ListMembers after expiry")
	if len(got) != 1 || !sameMember(got[0], long) {
		t.Fatalf("ListMembers after short expired = %+v, want only %+v", got, long)
	}
	back, err := s.Heartbeat(ctx, catalog.Member{ID: "short", Roles: []string{"read"}}, time.Minute)
	noErr(t, err, "Heartbeat after expiry")
	if back.Started.Before(short.Expiry) {
		t.Fatalf("Heartbeat after expiry: Started %v, want a new start at or after the old expiry %v", back.Started, short.Expiry)
	}
	if d := back.Expiry.Sub(back.Started); d != time.Minute {
		t.Fatalf("Heartbeat after expiry: Expiry - Started = %v, want 1m0s", d)
	}
	got, err = s.ListMembers(ctx)
	noErr(t, err, "ListMembers after the new start")
	if len(got) != 2 || !sameMember(got[0], long) || !sameMember(got[1], back) {
		t.Fatalf("ListMembers after the new start = %+v, want %+v and %+v", got, long, back)
	}
}

// testRemoveMember: a removed member is gone at once; removing an absent
// member is no error; a heartbeat after removal is a new start.
func testRemoveMember(t *testing.T, s catalog.Store) {
	ctx := ctxT(t)
	a, err := s.Heartbeat(ctx, catalog.Member{ID: "a", Roles: []string{"write"}}, time.Minute)
	noErr(t, err, "Heartbeat a")
	b, err := s.Heartbeat(ctx, catalog.Member{ID: "b"}, time.Minute)
	noErr(t, err, "Heartbeat b")
	noErr(t, s.RemoveMember(ctx, "a"), "RemoveMember a")
	got, err := s.ListMembers(ctx)
	noErr(t, err, "ListMembers after RemoveMember")
	if len(got) != 1 || !sameMember(got[0], b) {
		t.Fatalf("ListMembers after removing a = %+v, want only %+v", got, b)
	}
	noErr(t, s.RemoveMember(ctx, "a"), "RemoveMember a twice")
	noErr(t, s.RemoveMember(ctx, "never-there"), "RemoveMember of an absent member")
	noErr(t, s.RemoveMember(ctx, ""), "RemoveMember of the empty id")

	time.Sleep(10 * time.Millisecond)
	back, err := s.Heartbeat(ctx, catalog.Member{ID: "a"}, time.Minute)
	noErr(t, err, "Heartbeat after RemoveMember")
	if !back.Started.After(a.Started) || back.Roles != nil {
		t.Fatalf("Heartbeat after RemoveMember = %+v, want a new start after %v and no roles", back, a.Started)
	}
	got, err = s.ListMembers(ctx)
	noErr(t, err, "ListMembers")
	if ids := memberIDs(got); !slices.Equal(ids, []string{"a", "b"}) {
		t.Fatalf("ListMembers = %v, want [a b]", ids)
	}
}

// testMemberValidation: bad heartbeats are ErrInvalid naming the field,
// and store nothing; the limits themselves are allowed.
func testMemberValidation(t *testing.T, s catalog.Store) {
	ctx := ctxT(t)
	for _, tc := range []struct {
		name  string
		m     catalog.Member
		ttl   time.Duration
		field string
	}{
		{"empty id", catalog.Member{}, time.Minute, "member.id"},
		{"long id", catalog.Member{ID: strings.Repeat("x", catalog.MaxMemberIDLength+1)}, time.Minute, "member.id"},
		{"NUL in id", catalog.Member{ID: "a\x00b"}, time.Minute, "member.id"},
		{"id not UTF-8", catalog.Member{ID: "a\xffb"}, time.Minute, "member.id"},
		{"zero ttl", catalog.Member{ID: "x"}, 0, "ttl"},
		{"negative ttl", catalog.Member{ID: "x"}, -time.Second, "ttl"},
		{"ttl under 1ms", catalog.Member{ID: "x"}, time.Millisecond - time.Microsecond, "ttl"},
		{"too many roles", catalog.Member{ID: "x", Roles: slices.Repeat([]string{"read"}, catalog.MaxMemberRoles+1)}, time.Minute, "member.roles"},
		{"empty role", catalog.Member{ID: "x", Roles: []string{"write", ""}}, time.Minute, "member.roles[1]"},
		{"long address", catalog.Member{ID: "x", Address: strings.Repeat("a", catalog.MaxMemberAddressLength+1)}, time.Minute, "member.address"},
		{"NUL in api address", catalog.Member{ID: "x", APIAddress: "h:1\x00"}, time.Minute, "member.api_address"},
	} {
		_, err := s.Heartbeat(ctx, tc.m, tc.ttl)
		wantErr(t, err, catalog.ErrInvalid, "Heartbeat with "+tc.name)
		var ve *catalog.ValidationError
		if !errors.As(err, &ve) || ve.Field != tc.field {
			t.Fatalf("Heartbeat with %s: error %v, want a *catalog.ValidationError for field %q", tc.name, err, tc.field)
		}
	}
	got, err := s.ListMembers(ctx)
	noErr(t, err, "ListMembers after invalid heartbeats")
	if len(got) != 0 {
		t.Fatalf("invalid heartbeats stored members: %+v", got)
	}

	maxID := strings.Repeat("y", catalog.MaxMemberIDLength)
	roles := make([]string, catalog.MaxMemberRoles)
	for i := range roles {
		roles[i] = fmt.Sprintf("role-%d", i)
	}
	m, err := s.Heartbeat(ctx, catalog.Member{ID: maxID, Roles: roles}, time.Millisecond)
	noErr(t, err, "Heartbeat at the limits (200-byte id, 16 roles, ttl 1ms)")
	if m.ID != maxID || !slices.Equal(m.Roles, roles) || m.Expiry.Sub(m.Started) != time.Millisecond {
		t.Fatalf("Heartbeat at the limits = %+v", m)
	}
	m, err = s.Heartbeat(ctx, catalog.Member{ID: maxID, Roles: roles}, time.Minute)
	noErr(t, err, "Heartbeat at the limits, longer ttl")
	got, err = s.ListMembers(ctx)
	noErr(t, err, "ListMembers")
	if len(got) != 1 || !sameMember(got[0], m) {
		t.Fatalf("ListMembers = %+v, want %+v", got, m)
	}
}

// testHeartbeatConcurrently has several handles heartbeat one shared id
// and one own id each at once: no call fails, every process is listed,
// and the shared member's Started never moves.
func testHeartbeatConcurrently(t *testing.T, s catalog.Store, handles []catalog.Store) {
	ctx := ctxT(t)
	first, err := s.Heartbeat(ctx, catalog.Member{ID: "shared"}, time.Minute)
	noErr(t, err, "Heartbeat shared")
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for i, h := range handles {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fail := func(err error) {
				mu.Lock()
				defer mu.Unlock()
				errs = append(errs, err)
			}
			for n := range 20 {
				m, err := h.Heartbeat(ctx, catalog.Member{ID: "shared", Address: fmt.Sprintf("h%d:%d", i, n)}, time.Minute)
				if err != nil {
					fail(fmt.Errorf("handle %d: Heartbeat shared: %w", i, err))
					return
				}
				if !m.Started.Equal(first.Started) {
					fail(fmt.Errorf("handle %d: Heartbeat shared moved Started from %v to %v", i, first.Started, m.Started))
					return
				}
				if _, err := h.Heartbeat(ctx, catalog.Member{ID: fmt.Sprintf("own-%d", i)}, time.Minute); err != nil {
					fail(fmt.Errorf("handle %d: Heartbeat own: %w", i, err))
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	got, err := s.ListMembers(ctx)
	noErr(t, err, "ListMembers")
	var want []string
	for i := range handles {
		want = append(want, fmt.Sprintf("own-%d", i))
	}
	want = append(want, "shared")
	if ids := memberIDs(got); !slices.Equal(ids, want) {
		t.Fatalf("ListMembers = %v, want %v", ids, want)
	}
	if shared := got[len(got)-1]; !shared.Started.Equal(first.Started) || !strings.HasPrefix(shared.Address, "h") {
		t.Fatalf("shared member = %+v, want Started %v and an address from the last heartbeat", shared, first.Started)
	}
}

// testListAllBuckets: the bucket rows of every table and partition, in
// (table, partition, bucket) order, as ListBuckets returns them, including
// a partition's row that AcquireLease created.
func testListAllBuckets(t *testing.T, s catalog.Store) {
	ctx := ctxT(t)
	all, err := s.ListAllBuckets(ctx)
	noErr(t, err, "ListAllBuckets on empty store")
	if len(all) != 0 {
		t.Fatalf("ListAllBuckets on empty store = %+v, want none", all)
	}
	t1 := setup(t, s, logSpec("db", "t1")) // 4 buckets, partitioned by day
	t2 := setup(t, s, pkSpec("db", "t2"))  // 2 buckets
	if t2.ID <= t1.ID {
		t.Fatalf("table ids %d then %d: want increasing ids", t1.ID, t2.ID)
	}
	p := catalog.BucketID{TableID: t1.ID, Partition: "2024-05-01", Bucket: 1}
	lp, err := s.AcquireLease(ctx, p, "f1", time.Minute)
	noErr(t, err, "AcquireLease on a new partition")
	b := catalog.BucketID{TableID: t2.ID, Bucket: 0}
	lb, err := s.AcquireLease(ctx, b, "f2", time.Minute)
	noErr(t, err, "AcquireLease t2")
	now := time.Now()
	noErr(t, s.CommitSegment(ctx, catalog.Segment{ObjectKey: "all/1", Size: 10, Ranges: []catalog.SegmentRange{
		{Bucket: b, Epoch: lb.Epoch, BaseOffset: 0, EndOffset: 5, ByteLength: 10, RowCount: 5, MinTimestamp: now, MaxTimestamp: now},
	}}), "CommitSegment")

	all, err = s.ListAllBuckets(ctx)
	noErr(t, err, "ListAllBuckets")
	want := []catalog.BucketID{
		{TableID: t1.ID, Bucket: 0}, {TableID: t1.ID, Bucket: 1}, {TableID: t1.ID, Bucket: 2}, {TableID: t1.ID, Bucket: 3},
		p,
		{TableID: t2.ID, Bucket: 0}, {TableID: t2.ID, Bucket: 1},
	}
	ids := make([]catalog.BucketID, len(all))
	for i, st := range all {
		ids[i] = st.BucketID
	}
	if !slices.Equal(ids, want) {
		t.Fatalf("ListAllBuckets = %v, want %v", ids, want)
	}
	for _, st := range all {
		wantLeader, wantEpoch, wantExpiry, wantNext := "", int64(0), time.Time{}, int64(0)
		switch st.BucketID {
		case p:
			wantLeader, wantEpoch, wantExpiry = "f1", lp.Epoch, lp.Expiry
		case b:
			wantLeader, wantEpoch, wantExpiry, wantNext = "f2", lb.Epoch, lb.Expiry, 5
		}
		if st.Leader != wantLeader || st.Epoch != wantEpoch || !st.LeaseExpiry.Equal(wantExpiry) || st.NextOffset != wantNext || st.StartOffset != 0 {
			t.Fatalf("ListAllBuckets row %+v: want leader %q epoch %d expiry %v next offset %d", st, wantLeader, wantEpoch, wantExpiry, wantNext)
		}
	}
	if lp.Epoch != 1 {
		t.Fatalf("new partition's lease has epoch %d, want 1", lp.Epoch)
	}
	// The same rows as ListBuckets of each table, field by field.
	per, err := s.ListBuckets(ctx, t1.ID)
	noErr(t, err, "ListBuckets t1")
	more, err := s.ListBuckets(ctx, t2.ID)
	noErr(t, err, "ListBuckets t2")
	per = append(per, more...)
	if len(per) != len(all) {
		t.Fatalf("ListBuckets gives %d rows, ListAllBuckets %d", len(per), len(all))
	}
	for i := range per {
		a, w := all[i], per[i]
		if a.BucketID != w.BucketID || a.Leader != w.Leader || a.Epoch != w.Epoch || !a.LeaseExpiry.Equal(w.LeaseExpiry) ||
			a.NextOffset != w.NextOffset || a.StartOffset != w.StartOffset {
			t.Fatalf("ListAllBuckets[%d] = %+v, ListBuckets has %+v", i, a, w)
		}
	}

	noErr(t, s.DropTable(ctx, "db", "t1"), "DropTable t1")
	all, err = s.ListAllBuckets(ctx)
	noErr(t, err, "ListAllBuckets after DropTable")
	if len(all) != 2 || all[0].BucketID != b || all[0].NextOffset != 5 || all[1].BucketID != (catalog.BucketID{TableID: t2.ID, Bucket: 1}) {
		t.Fatalf("ListAllBuckets after dropping t1 = %+v, want t2's two rows", all)
	}
}
