package catalogtest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/strom-io/strom/catalog"
)

func rng(b catalog.BucketID, epoch, base, end int64) catalog.SegmentRange {
	ts := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	return catalog.SegmentRange{
		Bucket: b, Epoch: epoch, BaseOffset: base, EndOffset: end,
		ByteOffset: base * 100, ByteLength: (end - base) * 100, RowCount: end - base,
		MinTimestamp: ts.Add(time.Duration(base) * time.Second), MaxTimestamp: ts.Add(time.Duration(end) * time.Second),
	}
}

func nextOffsets(t *testing.T, s catalog.Store, tableID int64) map[catalog.BucketID]int64 {
	t.Helper()
	bs, err := s.ListBuckets(ctxT(t), tableID)
	noErr(t, err, "ListBuckets")
	out := map[catalog.BucketID]int64{}
	for _, b := range bs {
		out[b.BucketID] = b.NextOffset
	}
	return out
}

func testSegments(t *testing.T, s catalog.Store) {
	ctx := ctxT(t)
	t1 := setup(t, s, logSpec("db", "t1"))
	t2 := setup(t, s, pkSpec("db", "t2"))
	b0 := catalog.BucketID{TableID: t1.ID, Bucket: 0}
	b1 := catalog.BucketID{TableID: t1.ID, Bucket: 1}
	c0 := catalog.BucketID{TableID: t2.ID, Bucket: 0}
	var epochs = map[catalog.BucketID]int64{}
	for _, b := range []catalog.BucketID{b0, b1, c0} {
		l, err := s.AcquireLease(ctx, b, "w", time.Minute)
		noErr(t, err, "AcquireLease")
		epochs[b] = l.Epoch
	}
	seg1 := catalog.Segment{ObjectKey: "seg/1", Size: 4096, Ranges: []catalog.SegmentRange{
		rng(c0, epochs[c0], 0, 5), rng(b1, epochs[b1], 0, 3), rng(b0, epochs[b0], 0, 10),
	}}
	before := time.Now().Add(-time.Minute)
	noErr(t, s.CommitSegment(ctx, seg1), "CommitSegment over two tables")
	if n := nextOffsets(t, s, t1.ID); n[b0] != 10 || n[b1] != 3 {
		t.Fatalf("next offsets after commit = %v", n)
	}
	if n := nextOffsets(t, s, t2.ID); n[c0] != 5 {
		t.Fatalf("next offsets of t2 after commit = %v", n)
	}
	noErr(t, s.CommitSegment(ctx, catalog.Segment{ObjectKey: "seg/2", Size: 10, Ranges: []catalog.SegmentRange{rng(b0, epochs[b0], 10, 12)}}), "CommitSegment 2")
	noErr(t, s.CommitSegment(ctx, catalog.Segment{ObjectKey: "seg/3", Size: 10, Ranges: []catalog.SegmentRange{rng(b0, epochs[b0], 12, 20), rng(b1, epochs[b1], 3, 4)}}), "CommitSegment 3")

	all, err := s.ListSegments(ctx, b0, 0, 0)
	noErr(t, err, "ListSegments")
	if len(all) != 3 {
		t.Fatalf("ListSegments = %d ranges, want 3", len(all))
	}
	wantKeys := []string{"seg/1", "seg/2", "seg/3"}
	for i, r := range all {
		w := rng(b0, epochs[b0], []int64{0, 10, 12}[i], []int64{10, 12, 20}[i])
		w.ObjectKey = wantKeys[i]
		w.CommittedAt = r.CommittedAt
		if r.CommittedAt.Before(before) {
			t.Fatalf("range %d CommittedAt = %v", i, r.CommittedAt)
		}
		if r.Bucket != w.Bucket || r.Epoch != w.Epoch || r.ObjectKey != w.ObjectKey || r.BaseOffset != w.BaseOffset ||
			r.EndOffset != w.EndOffset || r.ByteOffset != w.ByteOffset || r.ByteLength != w.ByteLength || r.RowCount != w.RowCount ||
			!r.MinTimestamp.Equal(w.MinTimestamp) || !r.MaxTimestamp.Equal(w.MaxTimestamp) {
			t.Fatalf("range %d = %+v, want %+v", i, r, w)
		}
	}
	for _, tc := range []struct {
		from  int64
		limit int
		bases []int64
	}{
		{0, 0, []int64{0, 10, 12}},
		{9, 0, []int64{0, 10, 12}},
		{10, 0, []int64{10, 12}},
		{11, 1, []int64{10}},
		{12, 5, []int64{12}},
		{19, 0, []int64{12}},
		{20, 0, nil},
		{0, 2, []int64{0, 10}},
	} {
		rs, err := s.ListSegments(ctx, b0, tc.from, tc.limit)
		noErr(t, err, "ListSegments")
		var bases []int64
		for _, r := range rs {
			bases = append(bases, r.BaseOffset)
		}
		if !slices.Equal(bases, tc.bases) {
			t.Errorf("ListSegments(from %d, limit %d) bases = %v, want %v", tc.from, tc.limit, bases, tc.bases)
		}
	}
	rs, err := s.ListSegments(ctx, c0, 0, 0)
	noErr(t, err, "ListSegments t2")
	if len(rs) != 1 || rs[0].ObjectKey != "seg/1" || rs[0].EndOffset != 5 {
		t.Fatalf("ListSegments t2 = %+v", rs)
	}
	rs, err = s.ListSegments(ctx, catalog.BucketID{TableID: t1.ID, Bucket: 3}, 0, 0)
	noErr(t, err, "ListSegments of an empty bucket")
	if len(rs) != 0 {
		t.Fatalf("ListSegments of an empty bucket = %v", rs)
	}

	// Gaps and overlaps.
	err = s.CommitSegment(ctx, catalog.Segment{ObjectKey: "seg/gap", Ranges: []catalog.SegmentRange{rng(b0, epochs[b0], 21, 25)}})
	wantErr(t, err, catalog.ErrOffsetGap, "CommitSegment with a gap")
	err = s.CommitSegment(ctx, catalog.Segment{ObjectKey: "seg/overlap", Ranges: []catalog.SegmentRange{rng(b1, epochs[b1], 4, 6), rng(b0, epochs[b0], 19, 25)}})
	wantErr(t, err, catalog.ErrOffsetGap, "CommitSegment with an overlap")
	if n := nextOffsets(t, s, t1.ID); n[b0] != 20 || n[b1] != 4 {
		t.Fatalf("next offsets after failed commits = %v, want b0 20, b1 4", n)
	}
	if rs, _ := s.ListSegments(ctx, b1, 0, 0); len(rs) != 2 {
		t.Fatalf("failed commit registered ranges: %+v", rs)
	}
	// Duplicate object key.
	err = s.CommitSegment(ctx, catalog.Segment{ObjectKey: "seg/1", Ranges: []catalog.SegmentRange{rng(b1, epochs[b1], 4, 5)}})
	wantErr(t, err, catalog.ErrAlreadyExists, "CommitSegment with a committed object key")
	// Malformed segments.
	for name, seg := range map[string]catalog.Segment{
		"no object key":   {Ranges: []catalog.SegmentRange{rng(b1, epochs[b1], 4, 5)}},
		"no ranges":       {ObjectKey: "seg/x"},
		"empty range":     {ObjectKey: "seg/x", Ranges: []catalog.SegmentRange{rng(b1, epochs[b1], 4, 4)}},
		"bucket twice":    {ObjectKey: "seg/x", Ranges: []catalog.SegmentRange{rng(b1, epochs[b1], 4, 5), rng(b1, epochs[b1], 5, 6)}},
		"other objectkey": {ObjectKey: "seg/x", Ranges: []catalog.SegmentRange{func() catalog.SegmentRange { r := rng(b1, epochs[b1], 4, 5); r.ObjectKey = "seg/y"; return r }()}},
	} {
		wantErr(t, s.CommitSegment(ctx, seg), catalog.ErrInvalid, "CommitSegment "+name)
	}
	if n := nextOffsets(t, s, t1.ID); n[b1] != 4 {
		t.Fatalf("next offset of b1 = %d after rejected commits, want 4", n[b1])
	}
}

func testSegmentFencing(t *testing.T, s catalog.Store) {
	ctx := ctxT(t)
	tbl := setup(t, s, logSpec("db", "t"))
	b0 := catalog.BucketID{TableID: tbl.ID, Bucket: 0}
	b1 := catalog.BucketID{TableID: tbl.ID, Bucket: 1}
	const ttl = 200 * time.Millisecond
	l0, err := s.AcquireLease(ctx, b0, "old", ttl)
	noErr(t, err, "AcquireLease b0")
	l1, err := s.AcquireLease(ctx, b1, "old", time.Minute)
	noErr(t, err, "AcquireLease b1")
	noErr(t, s.CommitSegment(ctx, catalog.Segment{ObjectKey: "s1", Ranges: []catalog.SegmentRange{rng(b0, l0.Epoch, 0, 5), rng(b1, l1.Epoch, 0, 5)}}), "CommitSegment")

	time.Sleep(ttl + 100*time.Millisecond)
	// Expired but nobody took over: the epoch is still current.
	noErr(t, s.CommitSegment(ctx, catalog.Segment{ObjectKey: "s2", Ranges: []catalog.SegmentRange{rng(b0, l0.Epoch, 5, 6)}}), "CommitSegment by expired, unreplaced leader")
	ln, err := s.AcquireLease(ctx, b0, "new", time.Minute)
	noErr(t, err, "steal b0")

	// The old leader's multi-bucket commit fails as a whole: b1's range,
	// though its epoch is current, is not registered either.
	err = s.CommitSegment(ctx, catalog.Segment{ObjectKey: "s3", Ranges: []catalog.SegmentRange{rng(b1, l1.Epoch, 5, 8), rng(b0, l0.Epoch, 6, 9)}})
	wantErr(t, err, catalog.ErrFenced, "CommitSegment with a stale epoch")
	if errors.Is(err, catalog.ErrOffsetGap) {
		t.Fatalf("fenced commit also reports a gap: %v", err)
	}
	if n := nextOffsets(t, s, tbl.ID); n[b0] != 6 || n[b1] != 5 {
		t.Fatalf("next offsets after fenced commit = %v, want b0 6, b1 5", n)
	}
	if rs, _ := s.ListSegments(ctx, b1, 0, 0); len(rs) != 1 {
		t.Fatalf("fenced commit registered b1's range: %+v", rs)
	}
	// The object key of the failed commit is still free.
	noErr(t, s.CommitSegment(ctx, catalog.Segment{ObjectKey: "s3", Ranges: []catalog.SegmentRange{rng(b0, ln.Epoch, 6, 9), rng(b1, l1.Epoch, 5, 8)}}), "CommitSegment by new leader")
	if n := nextOffsets(t, s, tbl.ID); n[b0] != 9 || n[b1] != 8 {
		t.Fatalf("next offsets = %v, want b0 9, b1 8", n)
	}
	// A released lease fences its holder too.
	noErr(t, s.ReleaseLease(ctx, ln), "ReleaseLease")
	err = s.CommitSegment(ctx, catalog.Segment{ObjectKey: "s4", Ranges: []catalog.SegmentRange{rng(b0, ln.Epoch, 9, 10)}})
	wantErr(t, err, catalog.ErrFenced, "CommitSegment after release")
	// A future epoch is fenced as well.
	err = s.CommitSegment(ctx, catalog.Segment{ObjectKey: "s4", Ranges: []catalog.SegmentRange{rng(b1, l1.Epoch+1, 8, 10)}})
	wantErr(t, err, catalog.ErrFenced, "CommitSegment with a future epoch")
	// A bucket that has no row.
	err = s.CommitSegment(ctx, catalog.Segment{ObjectKey: "s4", Ranges: []catalog.SegmentRange{rng(catalog.BucketID{TableID: tbl.ID, Partition: "p", Bucket: 0}, 1, 0, 1)}})
	wantErr(t, err, catalog.ErrNotFound, "CommitSegment to a bucket without a row")
}

func testKVSnapshots(t *testing.T, s catalog.Store) {
	ctx := ctxT(t)
	tbl := setup(t, s, pkSpec("db", "t"))
	b := catalog.BucketID{TableID: tbl.ID, Bucket: 1}
	other := catalog.BucketID{TableID: tbl.ID, Bucket: 0}
	l, err := s.AcquireLease(ctx, b, "a", time.Minute)
	noErr(t, err, "AcquireLease")
	lo, err := s.AcquireLease(ctx, other, "a", time.Minute)
	noErr(t, err, "AcquireLease other")

	var put []catalog.KVSnapshot
	for i := range 3 {
		snap, err := s.PutKVSnapshot(ctx, catalog.KVSnapshot{Bucket: b, Epoch: l.Epoch, LogOffset: int64(10 * (i + 1)), Files: []string{"kv/a.sst", "kv/MANIFEST"}})
		noErr(t, err, "PutKVSnapshot")
		if snap.ID == 0 || snap.CreatedAt.IsZero() || snap.LogOffset != int64(10*(i+1)) {
			t.Fatalf("PutKVSnapshot = %+v", snap)
		}
		if i > 0 && snap.ID <= put[i-1].ID {
			t.Fatalf("snapshot ids not increasing: %d after %d", snap.ID, put[i-1].ID)
		}
		put = append(put, snap)
	}
	_, err = s.PutKVSnapshot(ctx, catalog.KVSnapshot{Bucket: other, Epoch: lo.Epoch, LogOffset: 1})
	noErr(t, err, "PutKVSnapshot other bucket")

	list, err := s.ListKVSnapshots(ctx, b)
	noErr(t, err, "ListKVSnapshots")
	if len(list) != 3 {
		t.Fatalf("ListKVSnapshots = %d, want 3", len(list))
	}
	for i, snap := range list {
		want := put[2-i]
		if snap.ID != want.ID || snap.LogOffset != want.LogOffset || snap.Epoch != want.Epoch || snap.Bucket != b ||
			!slices.Equal(snap.Files, want.Files) || !snap.CreatedAt.Equal(want.CreatedAt) {
			t.Fatalf("ListKVSnapshots[%d] = %+v, want %+v (newest first)", i, snap, want)
		}
	}
	noErr(t, s.DeleteKVSnapshot(ctx, b, put[0].ID), "DeleteKVSnapshot")
	wantErr(t, s.DeleteKVSnapshot(ctx, b, put[0].ID), catalog.ErrNotFound, "DeleteKVSnapshot twice")
	wantErr(t, s.DeleteKVSnapshot(ctx, other, put[1].ID), catalog.ErrNotFound, "DeleteKVSnapshot of another bucket")
	list, err = s.ListKVSnapshots(ctx, b)
	noErr(t, err, "ListKVSnapshots")
	if len(list) != 2 || list[0].ID != put[2].ID || list[1].ID != put[1].ID {
		t.Fatalf("ListKVSnapshots after delete = %+v", list)
	}

	noErr(t, s.ReleaseLease(ctx, l), "ReleaseLease")
	l2, err := s.AcquireLease(ctx, b, "b", time.Minute)
	noErr(t, err, "AcquireLease b")
	_, err = s.PutKVSnapshot(ctx, catalog.KVSnapshot{Bucket: b, Epoch: l.Epoch, LogOffset: 40})
	wantErr(t, err, catalog.ErrFenced, "PutKVSnapshot with a stale epoch")
	if list, _ := s.ListKVSnapshots(ctx, b); len(list) != 2 {
		t.Fatalf("fenced PutKVSnapshot was recorded: %+v", list)
	}
	_, err = s.PutKVSnapshot(ctx, catalog.KVSnapshot{Bucket: b, Epoch: l2.Epoch, LogOffset: 40})
	noErr(t, err, "PutKVSnapshot by the new leader")
}

func testTieredOffsets(t *testing.T, s catalog.Store) {
	ctx := ctxT(t)
	tbl := setup(t, s, logSpec("db", "t"))
	b0 := catalog.BucketID{TableID: tbl.ID, Bucket: 0}
	b2 := catalog.BucketID{TableID: tbl.ID, Bucket: 2}
	got, err := s.TieredOffsets(ctx, tbl.ID)
	noErr(t, err, "TieredOffsets")
	if len(got) != 0 {
		t.Fatalf("TieredOffsets of a new table = %+v", got)
	}
	noErr(t, s.SetTieredOffsets(ctx, []catalog.TieredOffset{{Bucket: b2, Offset: 100, LakeSnapshotID: 7}, {Bucket: b0, Offset: 50, LakeSnapshotID: 7}}), "SetTieredOffsets")
	check := func(what string, want map[catalog.BucketID][2]int64) {
		t.Helper()
		got, err := s.TieredOffsets(ctx, tbl.ID)
		noErr(t, err, "TieredOffsets")
		if len(got) != len(want) {
			t.Fatalf("%s: TieredOffsets = %+v, want %v", what, got, want)
		}
		for i, o := range got {
			w, ok := want[o.Bucket]
			if !ok || o.Offset != w[0] || o.LakeSnapshotID != w[1] || o.UpdatedAt.IsZero() {
				t.Fatalf("%s: TieredOffsets = %+v, want %v", what, got, want)
			}
			if i > 0 && got[i-1].Bucket.Compare(o.Bucket) >= 0 {
				t.Fatalf("%s: TieredOffsets not ordered by bucket: %+v", what, got)
			}
		}
	}
	check("first", map[catalog.BucketID][2]int64{b0: {50, 7}, b2: {100, 7}})
	noErr(t, s.SetTieredOffsets(ctx, []catalog.TieredOffset{{Bucket: b2, Offset: 90, LakeSnapshotID: 8}, {Bucket: b0, Offset: 60, LakeSnapshotID: 8}}), "SetTieredOffsets")
	check("never backwards", map[catalog.BucketID][2]int64{b0: {60, 8}, b2: {100, 7}})
	err = s.SetTieredOffsets(ctx, []catalog.TieredOffset{{Bucket: b0, Offset: 70, LakeSnapshotID: 9}, {Bucket: b0, Offset: -1}})
	wantErr(t, err, catalog.ErrInvalid, "SetTieredOffsets negative offset")
	err = s.SetTieredOffsets(ctx, []catalog.TieredOffset{{Bucket: b0, Offset: 70, LakeSnapshotID: 9}, {Bucket: catalog.BucketID{TableID: tbl.ID + 1000}, Offset: 1}})
	wantErr(t, err, catalog.ErrNotFound, "SetTieredOffsets on a missing table")
	check("atomic", map[catalog.BucketID][2]int64{b0: {60, 8}, b2: {100, 7}})
}

func testDropTableRemovesAll(t *testing.T, s catalog.Store) {
	ctx := ctxT(t)
	tbl := setup(t, s, pkSpec("db", "t"))
	keep := setup(t, s, pkSpec("db", "keep"))
	b := catalog.BucketID{TableID: tbl.ID, Bucket: 0}
	k := catalog.BucketID{TableID: keep.ID, Bucket: 0}
	l, err := s.AcquireLease(ctx, b, "a", time.Minute)
	noErr(t, err, "AcquireLease")
	lk, err := s.AcquireLease(ctx, k, "a", time.Minute)
	noErr(t, err, "AcquireLease keep")
	noErr(t, s.CommitSegment(ctx, catalog.Segment{ObjectKey: "shared", Ranges: []catalog.SegmentRange{rng(b, l.Epoch, 0, 4), rng(k, lk.Epoch, 0, 2)}}), "CommitSegment")
	noErr(t, s.CommitSegment(ctx, catalog.Segment{ObjectKey: "own", Ranges: []catalog.SegmentRange{rng(b, l.Epoch, 4, 8)}}), "CommitSegment")
	_, err = s.PutKVSnapshot(ctx, catalog.KVSnapshot{Bucket: b, Epoch: l.Epoch, LogOffset: 8})
	noErr(t, err, "PutKVSnapshot")
	noErr(t, s.SetTieredOffsets(ctx, []catalog.TieredOffset{{Bucket: b, Offset: 4, LakeSnapshotID: 1}}), "SetTieredOffsets")

	noErr(t, s.DropTable(ctx, "db", "t"), "DropTable")
	_, err = s.ListBuckets(ctx, tbl.ID)
	wantErr(t, err, catalog.ErrNotFound, "ListBuckets after DropTable")
	_, err = s.SchemaVersions(ctx, tbl.ID)
	wantErr(t, err, catalog.ErrNotFound, "SchemaVersions after DropTable")
	if rs, err := s.ListSegments(ctx, b, 0, 0); err != nil || len(rs) != 0 {
		t.Fatalf("ListSegments after DropTable = %v, %v", rs, err)
	}
	if ss, err := s.ListKVSnapshots(ctx, b); err != nil || len(ss) != 0 {
		t.Fatalf("ListKVSnapshots after DropTable = %v, %v", ss, err)
	}
	if os, err := s.TieredOffsets(ctx, tbl.ID); err != nil || len(os) != 0 {
		t.Fatalf("TieredOffsets after DropTable = %v, %v", os, err)
	}
	_, err = s.AcquireLease(ctx, b, "a", time.Minute)
	wantErr(t, err, catalog.ErrNotFound, "AcquireLease after DropTable")
	// The other table's range in the shared object survives.
	rs, err := s.ListSegments(ctx, k, 0, 0)
	noErr(t, err, "ListSegments of the kept table")
	if len(rs) != 1 || rs[0].ObjectKey != "shared" {
		t.Fatalf("kept table's segments = %+v", rs)
	}
	// A recreated table of the same name starts empty.
	again := setup(t, s, pkSpec("db", "t"))
	nb := catalog.BucketID{TableID: again.ID, Bucket: 0}
	if rs, _ := s.ListSegments(ctx, nb, 0, 0); len(rs) != 0 {
		t.Fatalf("recreated table has segments: %+v", rs)
	}
	ln, err := s.AcquireLease(ctx, nb, "a", time.Minute)
	noErr(t, err, "AcquireLease on recreated table")
	if ln.Epoch != 1 {
		t.Fatalf("recreated table epoch = %d, want 1", ln.Epoch)
	}
	// Its own object key was freed with the dropped table's last range.
	noErr(t, s.CommitSegment(ctx, catalog.Segment{ObjectKey: "own", Ranges: []catalog.SegmentRange{rng(nb, ln.Epoch, 0, 1)}}), "CommitSegment reusing a dropped table's object key")
}
