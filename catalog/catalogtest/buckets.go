package catalogtest

import (
	"testing"
	"time"

	"github.com/strom-io/strom/catalog"
)

// testGetBucket checks that GetBucket returns exactly the row ListBuckets
// has for a bucket — lease, next and start offset — for buckets of the
// default partition and of a partition, and ErrNotFound for a bucket
// without a row.
func testGetBucket(t *testing.T, s catalog.Store) {
	ctx := ctxT(t)
	tbl := setup(t, s, logSpec("db", "t")) // 4 buckets, partitioned by day
	other := setup(t, s, pkSpec("db", "other"))
	b0 := catalog.BucketID{TableID: tbl.ID, Bucket: 0}
	p := catalog.BucketID{TableID: tbl.ID, Partition: "2024-05-01", Bucket: 2}

	st, err := s.GetBucket(ctx, b0)
	noErr(t, err, "GetBucket of a new table's bucket")
	if st.BucketID != b0 || st.Leader != "" || st.Epoch != 0 || !st.LeaseExpiry.IsZero() || st.NextOffset != 0 || st.StartOffset != 0 {
		t.Fatalf("GetBucket of a new bucket = %+v, want an empty row", st)
	}
	_, err = s.GetBucket(ctx, p)
	wantErr(t, err, catalog.ErrNotFound, "GetBucket of a partition never led")

	l0, err := s.AcquireLease(ctx, b0, "f1", time.Minute)
	noErr(t, err, "AcquireLease")
	lp, err := s.AcquireLease(ctx, p, "f2", time.Minute)
	noErr(t, err, "AcquireLease on a partition")
	noErr(t, s.CommitSegment(ctx, catalog.Segment{ObjectKey: "gb/1", Size: 10, Ranges: []catalog.SegmentRange{
		rng(b0, l0.Epoch, 0, 7), rng(p, lp.Epoch, 0, 3),
	}}), "CommitSegment")
	noErr(t, s.CommitSegment(ctx, catalog.Segment{ObjectKey: "gb/2", Size: 10, Ranges: []catalog.SegmentRange{
		rng(b0, l0.Epoch, 7, 12),
	}}), "CommitSegment 2")
	_, err = s.DeleteRangesBefore(ctx, b0, 7)
	noErr(t, err, "DeleteRangesBefore")

	want := map[catalog.BucketID]catalog.BucketState{}
	rows, err := s.ListBuckets(ctx, tbl.ID)
	noErr(t, err, "ListBuckets")
	for _, r := range rows {
		want[r.BucketID] = r
	}
	if len(want) != 5 {
		t.Fatalf("ListBuckets = %+v, want 4 buckets and one partition bucket", rows)
	}
	for id, w := range want {
		got, err := s.GetBucket(ctx, id)
		noErr(t, err, "GetBucket "+id.String())
		if got.BucketID != w.BucketID || got.Leader != w.Leader || got.Epoch != w.Epoch || !got.LeaseExpiry.Equal(w.LeaseExpiry) ||
			got.NextOffset != w.NextOffset || got.StartOffset != w.StartOffset {
			t.Fatalf("GetBucket(%v) = %+v, ListBuckets has %+v", id, got, w)
		}
	}
	if got := want[b0]; got.Leader != "f1" || got.Epoch != l0.Epoch || got.NextOffset != 12 || got.StartOffset != 7 {
		t.Fatalf("bucket 0 = %+v, want leader f1 at epoch %d, offsets [7, 12)", got, l0.Epoch)
	}
	if got := want[p]; got.Leader != "f2" || got.NextOffset != 3 || got.StartOffset != 0 {
		t.Fatalf("partition bucket = %+v, want leader f2, offsets [0, 3)", got)
	}

	for what, id := range map[string]catalog.BucketID{
		"a bucket number beyond the table's": {TableID: tbl.ID, Bucket: 4},
		"another partition":                  {TableID: tbl.ID, Partition: "2024-05-02", Bucket: 2},
		"an unknown table":                   {TableID: other.ID + 1000, Bucket: 0},
	} {
		_, err := s.GetBucket(ctx, id)
		wantErr(t, err, catalog.ErrNotFound, "GetBucket of "+what)
	}
	noErr(t, s.DropTable(ctx, "db", "t"), "DropTable")
	for _, id := range []catalog.BucketID{b0, p} {
		_, err := s.GetBucket(ctx, id)
		wantErr(t, err, catalog.ErrNotFound, "GetBucket after DropTable")
	}
	if _, err := s.GetBucket(ctx, catalog.BucketID{TableID: other.ID, Bucket: 1}); err != nil {
		t.Fatalf("GetBucket of another table after DropTable: %v", err)
	}
}
