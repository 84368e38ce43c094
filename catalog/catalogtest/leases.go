package catalogtest

import (
	"testing"
	"time"

	"github.com/strom-io/strom/catalog"
)

func testLeases(t *testing.T, s catalog.Store) {
	ctx := ctxT(t)
	tbl := setup(t, s, logSpec("db", "t"))
	b := catalog.BucketID{TableID: tbl.ID, Bucket: 1}

	l1, err := s.AcquireLease(ctx, b, "a", time.Minute)
	noErr(t, err, "AcquireLease")
	if l1.Bucket != b || l1.Holder != "a" || l1.Epoch != 1 || time.Until(l1.Expiry) < 30*time.Second {
		t.Fatalf("AcquireLease = %+v", l1)
	}
	again, err := s.AcquireLease(ctx, b, "a", time.Minute)
	noErr(t, err, "AcquireLease by holder")
	if again.Epoch != l1.Epoch {
		t.Fatalf("re-acquisition by holder changed epoch %d -> %d", l1.Epoch, again.Epoch)
	}
	_, err = s.AcquireLease(ctx, b, "b", time.Minute)
	wantErr(t, err, catalog.ErrLeaseHeld, "AcquireLease by another holder")

	renewed, err := s.RenewLease(ctx, l1, 2*time.Minute)
	noErr(t, err, "RenewLease")
	if renewed.Epoch != l1.Epoch || !renewed.Expiry.After(l1.Expiry) {
		t.Fatalf("RenewLease = %+v after %+v", renewed, l1)
	}
	bs, err := s.ListBuckets(ctx, tbl.ID)
	noErr(t, err, "ListBuckets")
	if st := bs[1]; st.Leader != "a" || st.Epoch != 1 || !st.LeaseExpiry.Equal(renewed.Expiry) {
		t.Fatalf("bucket row = %+v, want leader a epoch 1 expiry %v", st, renewed.Expiry)
	}

	_, err = s.RenewLease(ctx, catalog.Lease{Bucket: b, Holder: "b", Epoch: 1}, time.Minute)
	wantErr(t, err, catalog.ErrFenced, "RenewLease by a non-holder")
	wantErr(t, s.ReleaseLease(ctx, catalog.Lease{Bucket: b, Holder: "a", Epoch: 0}), catalog.ErrFenced, "ReleaseLease stale epoch")

	noErr(t, s.ReleaseLease(ctx, renewed), "ReleaseLease")
	l2, err := s.AcquireLease(ctx, b, "b", time.Minute)
	noErr(t, err, "AcquireLease after release")
	if l2.Epoch != 2 || l2.Holder != "b" {
		t.Fatalf("AcquireLease after release = %+v, want epoch 2", l2)
	}
	_, err = s.RenewLease(ctx, renewed, time.Minute)
	wantErr(t, err, catalog.ErrFenced, "RenewLease after release and takeover")
	wantErr(t, s.ReleaseLease(ctx, renewed), catalog.ErrFenced, "ReleaseLease twice")

	// Other buckets are independent.
	l0, err := s.AcquireLease(ctx, catalog.BucketID{TableID: tbl.ID, Bucket: 0}, "b", time.Minute)
	noErr(t, err, "AcquireLease bucket 0")
	if l0.Epoch != 1 {
		t.Fatalf("bucket 0 epoch = %d, want 1", l0.Epoch)
	}

	_, err = s.AcquireLease(ctx, b, "", time.Minute)
	wantErr(t, err, catalog.ErrInvalid, "AcquireLease with empty holder")
	_, err = s.AcquireLease(ctx, b, "c", 0)
	wantErr(t, err, catalog.ErrInvalid, "AcquireLease with zero ttl")
	_, err = s.AcquireLease(ctx, catalog.BucketID{TableID: tbl.ID + 1000}, "c", time.Minute)
	wantErr(t, err, catalog.ErrNotFound, "AcquireLease on missing table")

	// Once the table is dropped its leases are gone, not fenced: the
	// holder stops renewing them.
	noErr(t, s.DropTable(ctx, "db", "t"), "DropTable")
	_, err = s.RenewLease(ctx, l2, time.Minute)
	wantErr(t, err, catalog.ErrNotFound, "RenewLease after DropTable")
	wantErr(t, s.ReleaseLease(ctx, l0), catalog.ErrNotFound, "ReleaseLease after DropTable")
	_, err = s.AcquireLease(ctx, b, "b", time.Minute)
	wantErr(t, err, catalog.ErrNotFound, "AcquireLease after DropTable")
}

func testLeaseExpiry(t *testing.T, s catalog.Store) {
	ctx := ctxT(t)
	tbl := setup(t, s, logSpec("db", "t"))
	b := catalog.BucketID{TableID: tbl.ID, Bucket: 0}
	const ttl = 200 * time.Millisecond
	la, err := s.AcquireLease(ctx, b, "a", ttl)
	noErr(t, err, "AcquireLease")
	_, err = s.AcquireLease(ctx, b, "b", ttl)
	wantErr(t, err, catalog.ErrLeaseHeld, "AcquireLease before expiry")
	time.Sleep(ttl + 100*time.Millisecond)

	// Expired but untaken: the holder may still renew.
	la, err = s.RenewLease(ctx, la, ttl)
	noErr(t, err, "RenewLease after expiry, nobody took over")
	time.Sleep(ttl + 100*time.Millisecond)

	lb, err := s.AcquireLease(ctx, b, "b", time.Minute)
	noErr(t, err, "AcquireLease after expiry")
	if lb.Epoch != la.Epoch+1 {
		t.Fatalf("steal: epoch %d, want %d", lb.Epoch, la.Epoch+1)
	}
	_, err = s.RenewLease(ctx, la, ttl)
	wantErr(t, err, catalog.ErrFenced, "RenewLease after steal")
	wantErr(t, s.ReleaseLease(ctx, la), catalog.ErrFenced, "ReleaseLease after steal")
	_, err = s.AcquireLease(ctx, b, "a", ttl)
	wantErr(t, err, catalog.ErrLeaseHeld, "old holder re-acquires")

	// An expired holder that acquires again gets a new epoch.
	lc, err := s.AcquireLease(ctx, catalog.BucketID{TableID: tbl.ID, Bucket: 1}, "c", ttl)
	noErr(t, err, "AcquireLease bucket 1")
	time.Sleep(ttl + 100*time.Millisecond)
	lc2, err := s.AcquireLease(ctx, lc.Bucket, "c", ttl)
	noErr(t, err, "AcquireLease by expired holder")
	if lc2.Epoch != lc.Epoch+1 {
		t.Fatalf("expired holder re-acquired at epoch %d, want %d", lc2.Epoch, lc.Epoch+1)
	}
}

func testLeasePartitions(t *testing.T, s catalog.Store) {
	ctx := ctxT(t)
	tbl := setup(t, s, logSpec("db", "t"))
	p := catalog.BucketID{TableID: tbl.ID, Partition: "2024-05-01", Bucket: 3}
	l, err := s.AcquireLease(ctx, p, "a", time.Minute)
	noErr(t, err, "AcquireLease new partition")
	if l.Epoch != 1 {
		t.Fatalf("new partition epoch = %d, want 1", l.Epoch)
	}
	_, err = s.AcquireLease(ctx, catalog.BucketID{TableID: tbl.ID, Partition: "2024-04-30", Bucket: 0}, "a", time.Minute)
	noErr(t, err, "AcquireLease second partition")
	bs, err := s.ListBuckets(ctx, tbl.ID)
	noErr(t, err, "ListBuckets")
	var ids []catalog.BucketID
	for _, b := range bs {
		ids = append(ids, b.BucketID)
	}
	want := []catalog.BucketID{
		{TableID: tbl.ID, Bucket: 0}, {TableID: tbl.ID, Bucket: 1}, {TableID: tbl.ID, Bucket: 2}, {TableID: tbl.ID, Bucket: 3},
		{TableID: tbl.ID, Partition: "2024-04-30", Bucket: 0},
		{TableID: tbl.ID, Partition: "2024-05-01", Bucket: 3},
	}
	if len(ids) != len(want) {
		t.Fatalf("ListBuckets = %v, want %v", ids, want)
	}
	for i := range want {
		if ids[i] != want[i] {
			t.Fatalf("ListBuckets = %v, want %v", ids, want)
		}
	}
	_, err = s.AcquireLease(ctx, catalog.BucketID{TableID: tbl.ID, Partition: "2024-05-01", Bucket: tbl.Buckets}, "a", time.Minute)
	wantErr(t, err, catalog.ErrInvalid, "AcquireLease bucket index >= buckets")
	_, err = s.AcquireLease(ctx, catalog.BucketID{TableID: tbl.ID, Bucket: -1}, "a", time.Minute)
	wantErr(t, err, catalog.ErrInvalid, "AcquireLease negative bucket")
	bs2, err := s.ListBuckets(ctx, tbl.ID)
	noErr(t, err, "ListBuckets")
	if len(bs2) != len(bs) {
		t.Fatalf("invalid AcquireLease created bucket rows: %d -> %d", len(bs), len(bs2))
	}
}
