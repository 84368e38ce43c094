package catalogtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/strom-io/strom/catalog"
)

// rangeW is rng with idempotent writers.
func rangeW(b catalog.BucketID, epoch, base, end int64, ws ...catalog.WriterSequence) catalog.SegmentRange {
	r := rng(b, epoch, base, end)
	r.Writers = ws
	return r
}

func ws(id string, seq, base, end int64) catalog.WriterSequence {
	return catalog.WriterSequence{WriterID: id, Sequence: seq, BaseOffset: base, EndOffset: end}
}

// checkWriters compares a bucket's writer sequences (ignoring UpdatedAt,
// which must be set) with want, in writer id order.
func checkWriters(t *testing.T, s catalog.Store, b catalog.BucketID, what string, want ...catalog.WriterSequence) []catalog.WriterSequence {
	t.Helper()
	got, err := s.WriterSequences(ctxT(t), b)
	noErr(t, err, what+": WriterSequences")
	if len(got) != len(want) {
		t.Fatalf("%s: WriterSequences(%v) = %+v, want %+v", what, b, got, want)
	}
	for i, g := range got {
		w := want[i]
		if g.WriterID != w.WriterID || g.Sequence != w.Sequence || g.BaseOffset != w.BaseOffset || g.EndOffset != w.EndOffset || g.UpdatedAt.IsZero() {
			t.Fatalf("%s: WriterSequences(%v) = %+v, want %+v", what, b, got, want)
		}
	}
	return got
}

func testWriterSequences(t *testing.T, s catalog.Store) {
	ctx := ctxT(t)
	tbl := setup(t, s, logSpec("db", "t"))
	b0 := catalog.BucketID{TableID: tbl.ID, Bucket: 0}
	b1 := catalog.BucketID{TableID: tbl.ID, Bucket: 1}
	b2 := catalog.BucketID{TableID: tbl.ID, Bucket: 2}
	l0, err := s.AcquireLease(ctx, b0, "a", time.Minute)
	noErr(t, err, "AcquireLease b0")
	l1, err := s.AcquireLease(ctx, b1, "a", time.Minute)
	noErr(t, err, "AcquireLease b1")

	checkWriters(t, s, b0, "new bucket")
	if got, err := s.WriterSequences(ctx, catalog.BucketID{TableID: tbl.ID, Partition: "none", Bucket: 0}); err != nil || len(got) != 0 {
		t.Fatalf("WriterSequences of a bucket without a row = %+v, %v; want none, no error", got, err)
	}

	// Recorded with the commit, per bucket: the same writer in two buckets
	// of one segment has a sequence in each.
	before := time.Now().Add(-time.Minute)
	noErr(t, s.CommitSegment(ctx, catalog.Segment{ObjectKey: "w/1", Ranges: []catalog.SegmentRange{
		rangeW(b1, l1.Epoch, 0, 4, ws("w1", 4, 0, 4)),
		rangeW(b0, l0.Epoch, 0, 5, ws("w2", 7, 3, 5), ws("w1", 1, 0, 3)),
	}}), "CommitSegment with writers")
	got := checkWriters(t, s, b0, "first commit", ws("w1", 1, 0, 3), ws("w2", 7, 3, 5))
	if got[0].UpdatedAt.Before(before) {
		t.Fatalf("UpdatedAt = %v, before the commit", got[0].UpdatedAt)
	}
	checkWriters(t, s, b1, "first commit, other bucket", ws("w1", 4, 0, 4))
	checkWriters(t, s, b2, "untouched bucket")
	// ListSegments does not return writers.
	rs, err := s.ListSegments(ctx, b0, 0, 0)
	noErr(t, err, "ListSegments")
	if len(rs) != 1 || rs[0].Writers != nil {
		t.Fatalf("ListSegments = %+v, want one range without writers", rs)
	}

	// A higher sequence replaces; equal and lower ones do not; a new writer
	// is added.
	noErr(t, s.CommitSegment(ctx, catalog.Segment{ObjectKey: "w/2", Ranges: []catalog.SegmentRange{
		rangeW(b0, l0.Epoch, 5, 9, ws("w1", 2, 5, 8), ws("w2", 7, 8, 9)),
	}}), "CommitSegment 2")
	checkWriters(t, s, b0, "higher replaces, equal does not", ws("w1", 2, 5, 8), ws("w2", 7, 3, 5))
	noErr(t, s.CommitSegment(ctx, catalog.Segment{ObjectKey: "w/3", Ranges: []catalog.SegmentRange{
		rangeW(b0, l0.Epoch, 9, 12, ws("w2", 3, 9, 10), ws("w0", 0, 10, 12)),
	}}), "CommitSegment 3")
	checkWriters(t, s, b0, "lower does not replace", ws("w0", 0, 10, 12), ws("w1", 2, 5, 8), ws("w2", 7, 3, 5))
	// A range without writers leaves them alone.
	noErr(t, s.CommitSegment(ctx, catalog.Segment{ObjectKey: "w/4", Ranges: []catalog.SegmentRange{rng(b0, l0.Epoch, 12, 13)}}), "CommitSegment 4")
	checkWriters(t, s, b0, "commit without writers", ws("w0", 0, 10, 12), ws("w1", 2, 5, 8), ws("w2", 7, 3, 5))

	// Failed commits record nothing: a gap, an invalid writer, and a fenced
	// multi-bucket commit whose other range is fine.
	err = s.CommitSegment(ctx, catalog.Segment{ObjectKey: "w/gap", Ranges: []catalog.SegmentRange{rangeW(b0, l0.Epoch, 14, 15, ws("w1", 100, 14, 15))}})
	wantErr(t, err, catalog.ErrOffsetGap, "CommitSegment with a gap")
	err = s.CommitSegment(ctx, catalog.Segment{ObjectKey: "w/bad", Ranges: []catalog.SegmentRange{rangeW(b0, l0.Epoch, 13, 14, ws("", 100, 13, 14))}})
	wantErr(t, err, catalog.ErrInvalid, "CommitSegment with an empty writer id")
	err = s.CommitSegment(ctx, catalog.Segment{ObjectKey: "w/out", Ranges: []catalog.SegmentRange{rangeW(b0, l0.Epoch, 13, 14, ws("w1", 100, 12, 14))}})
	wantErr(t, err, catalog.ErrInvalid, "CommitSegment with a writer outside its range")
	ln, err := s.AcquireLease(ctx, b1, "b", time.Minute)
	if errors.Is(err, catalog.ErrLeaseHeld) {
		noErr(t, s.ReleaseLease(ctx, l1), "ReleaseLease b1")
		ln, err = s.AcquireLease(ctx, b1, "b", time.Minute)
	}
	noErr(t, err, "take over b1")
	err = s.CommitSegment(ctx, catalog.Segment{ObjectKey: "w/fenced", Ranges: []catalog.SegmentRange{
		rangeW(b0, l0.Epoch, 13, 14, ws("w1", 100, 13, 14)),
		rangeW(b1, l1.Epoch, 4, 6, ws("w1", 100, 4, 6)),
	}})
	wantErr(t, err, catalog.ErrFenced, "CommitSegment fenced")
	checkWriters(t, s, b0, "after failed commits", ws("w0", 0, 10, 12), ws("w1", 2, 5, 8), ws("w2", 7, 3, 5))
	checkWriters(t, s, b1, "after failed commits, other bucket", ws("w1", 4, 0, 4))

	// The new leader's commits keep updating the sequences it inherited.
	noErr(t, s.CommitSegment(ctx, catalog.Segment{ObjectKey: "w/5", Ranges: []catalog.SegmentRange{rangeW(b1, ln.Epoch, 4, 6, ws("w1", 5, 4, 6))}}), "CommitSegment by new leader")
	checkWriters(t, s, b1, "new leader", ws("w1", 5, 4, 6))

	// Retention keeps the sequences; dropping the table removes them.
	_, err = s.DeleteRangesBefore(ctx, b0, 100)
	noErr(t, err, "DeleteRangesBefore")
	checkWriters(t, s, b0, "after retention", ws("w0", 0, 10, 12), ws("w1", 2, 5, 8), ws("w2", 7, 3, 5))
	noErr(t, s.DropTable(ctx, "db", "t"), "DropTable")
	checkWriters(t, s, b0, "after DropTable")
}

func testOffsetForTimestamp(t *testing.T, s catalog.Store) {
	ctx := ctxT(t)
	tbl := setup(t, s, logSpec("db", "t"))
	b := catalog.BucketID{TableID: tbl.ID, Bucket: 0}
	empty := catalog.BucketID{TableID: tbl.ID, Bucket: 1}
	l, err := s.AcquireLease(ctx, b, "a", time.Minute)
	noErr(t, err, "AcquireLease")
	t0 := rng(b, 0, 0, 0).MinTimestamp // rng's ranges have MaxTimestamp t0 + end seconds
	at := func(ts time.Time, want int64, what string) {
		t.Helper()
		got, err := s.OffsetForTimestamp(ctx, b, ts)
		noErr(t, err, "OffsetForTimestamp "+what)
		if got != want {
			t.Fatalf("OffsetForTimestamp(%s: %v) = %d, want %d", what, ts, got, want)
		}
	}
	at(t0, 0, "no ranges")
	if got, err := s.OffsetForTimestamp(ctx, empty, t0); err != nil || got != 0 {
		t.Fatalf("OffsetForTimestamp of an empty bucket = %d, %v; want 0", got, err)
	}
	_, err = s.OffsetForTimestamp(ctx, catalog.BucketID{TableID: tbl.ID, Partition: "none", Bucket: 0}, t0)
	wantErr(t, err, catalog.ErrNotFound, "OffsetForTimestamp of a bucket without a row")

	for i, r := range [][2]int64{{0, 10}, {10, 12}, {12, 20}} {
		noErr(t, s.CommitSegment(ctx, catalog.Segment{ObjectKey: fmt.Sprintf("ts/%d", i), Ranges: []catalog.SegmentRange{rng(b, l.Epoch, r[0], r[1])}}), "CommitSegment")
	}
	// Max timestamps need not grow with offsets: this range's records are
	// older than the previous range's newest.
	late := rng(b, l.Epoch, 20, 25)
	late.MinTimestamp, late.MaxTimestamp = t0.Add(14*time.Second), t0.Add(15*time.Second)
	noErr(t, s.CommitSegment(ctx, catalog.Segment{ObjectKey: "ts/late", Ranges: []catalog.SegmentRange{late}}), "CommitSegment late")

	sec := func(f float64) time.Time { return t0.Add(time.Duration(f * float64(time.Second))) }
	at(t0.Add(-time.Hour), 0, "before all")
	at(sec(0), 0, "first min timestamp")
	at(sec(10), 0, "equal to the first max")
	at(sec(10.001), 10, "just after the first max")
	at(sec(12), 10, "equal to the second max")
	at(sec(14.5), 12, "inside the third")
	at(sec(15.5), 12, "after the late range's max")
	at(sec(20), 12, "equal to the newest max")
	at(sec(20.001), 25, "after all")
	at(t0.Add(24*time.Hour), 25, "far after all")
	// Another time zone is the same instant.
	at(sec(10.001).In(time.FixedZone("x", -7*3600)), 10, "other zone")

	// After retention the earliest answer is the first remaining range.
	_, err = s.DeleteRangesBefore(ctx, b, 12)
	noErr(t, err, "DeleteRangesBefore")
	at(t0.Add(-time.Hour), 12, "before all, after retention")
	at(sec(20.001), 25, "after all, after retention")
	_, err = s.DeleteRangesBefore(ctx, b, 25)
	noErr(t, err, "DeleteRangesBefore all")
	at(t0.Add(-time.Hour), 25, "everything deleted")
}

func startOffsets(t *testing.T, s catalog.Store, tableID int64) map[catalog.BucketID][2]int64 {
	t.Helper()
	bs, err := s.ListBuckets(ctxT(t), tableID)
	noErr(t, err, "ListBuckets")
	out := map[catalog.BucketID][2]int64{}
	for _, b := range bs {
		out[b.BucketID] = [2]int64{b.StartOffset, b.NextOffset}
	}
	return out
}

func testDeleteRangesBefore(t *testing.T, s catalog.Store) {
	ctx := ctxT(t)
	tbl := setup(t, s, logSpec("db", "t"))
	other := setup(t, s, pkSpec("db", "other"))
	b0 := catalog.BucketID{TableID: tbl.ID, Bucket: 0}
	b1 := catalog.BucketID{TableID: tbl.ID, Bucket: 1}
	b2 := catalog.BucketID{TableID: tbl.ID, Bucket: 2}
	o0 := catalog.BucketID{TableID: other.ID, Bucket: 0}
	epochs := map[catalog.BucketID]int64{}
	for _, b := range []catalog.BucketID{b0, b1, o0} {
		l, err := s.AcquireLease(ctx, b, "a", time.Minute)
		noErr(t, err, "AcquireLease")
		epochs[b] = l.Epoch
	}
	r := func(b catalog.BucketID, base, end int64) catalog.SegmentRange { return rng(b, epochs[b], base, end) }
	for _, seg := range []catalog.Segment{
		{ObjectKey: "d/a", Ranges: []catalog.SegmentRange{r(b0, 0, 10), r(b1, 0, 5)}},
		{ObjectKey: "d/b", Ranges: []catalog.SegmentRange{r(b0, 10, 20)}},
		{ObjectKey: "d/c", Ranges: []catalog.SegmentRange{r(b0, 20, 30), r(b1, 5, 8), r(o0, 0, 3)}},
	} {
		noErr(t, s.CommitSegment(ctx, seg), "CommitSegment "+seg.ObjectKey)
	}
	bases := func(b catalog.BucketID) []int64 {
		t.Helper()
		rs, err := s.ListSegments(ctx, b, 0, 0)
		noErr(t, err, "ListSegments")
		var out []int64
		for _, r := range rs {
			out = append(out, r.BaseOffset)
		}
		return out
	}
	del := func(b catalog.BucketID, offset int64, wantOrphans []string, wantStart, wantNext int64, wantBases []int64) {
		t.Helper()
		orphans, err := s.DeleteRangesBefore(ctx, b, offset)
		noErr(t, err, fmt.Sprintf("DeleteRangesBefore(%v, %d)", b, offset))
		if len(orphans) != len(wantOrphans) || (len(orphans) > 0 && !slices.Equal(orphans, wantOrphans)) {
			t.Fatalf("DeleteRangesBefore(%v, %d) orphans = %q, want %q", b, offset, orphans, wantOrphans)
		}
		if so := startOffsets(t, s, b.TableID)[b]; so != [2]int64{wantStart, wantNext} {
			t.Fatalf("after DeleteRangesBefore(%v, %d): start, next = %v, want [%d %d]", b, offset, so, wantStart, wantNext)
		}
		if got := bases(b); !slices.Equal(got, wantBases) {
			t.Fatalf("after DeleteRangesBefore(%v, %d): ListSegments bases = %v, want %v", b, offset, got, wantBases)
		}
	}
	if so := startOffsets(t, s, tbl.ID); so[b0] != [2]int64{0, 30} || so[b2] != [2]int64{0, 0} {
		t.Fatalf("start, next before retention = %v", so)
	}

	del(b0, 0, nil, 0, 30, []int64{0, 10, 20})
	del(b0, 9, nil, 0, 30, []int64{0, 10, 20}) // [0,10) does not end by 9: whole ranges only
	// d/a still holds b1's range: no orphan yet. [10,20) holds 15: kept.
	del(b0, 15, nil, 10, 30, []int64{10, 20})
	del(b0, 15, nil, 10, 30, []int64{10, 20}) // idempotent
	unknown, err := s.UnknownObjects(ctx, []string{"d/a", "d/b", "d/c"})
	noErr(t, err, "UnknownObjects")
	if len(unknown) != 0 {
		t.Fatalf("UnknownObjects while every object holds ranges = %q", unknown)
	}
	// b1's last range in d/a goes: d/a is an orphan now.
	del(b1, 5, []string{"d/a"}, 5, 8, []int64{5})
	del(b1, 5, nil, 5, 8, []int64{5})
	// Everything of b0: d/b is an orphan, d/c still holds b1 and o0.
	del(b0, 30, []string{"d/b"}, 30, 30, nil)
	del(b0, 100, nil, 30, 30, nil) // clamped to next offset, idempotent
	del(b1, 100, nil, 8, 8, nil)   // d/c still holds o0's range
	del(b1, 3, nil, 8, 8, nil)     // never backwards
	unknown, err = s.UnknownObjects(ctx, []string{"d/a", "d/b", "d/c"})
	noErr(t, err, "UnknownObjects")
	if !slices.Equal(unknown, []string{"d/a", "d/b"}) {
		t.Fatalf("UnknownObjects after retention = %q, want [d/a d/b]", unknown)
	}
	del(o0, 3, []string{"d/c"}, 3, 3, nil)
	// A bucket that never had ranges: start clamped to its next offset (0).
	del(b2, 10, nil, 0, 0, nil)

	// Commits continue at the next offset; the freed keys may be reused.
	noErr(t, s.CommitSegment(ctx, catalog.Segment{ObjectKey: "d/a", Ranges: []catalog.SegmentRange{r(b0, 30, 35), r(b1, 8, 9)}}), "CommitSegment after retention")
	if got := bases(b0); !slices.Equal(got, []int64{30}) {
		t.Fatalf("ListSegments after a new commit = %v", got)
	}
	del(b0, 35, nil, 35, 35, nil)
	del(b1, 9, []string{"d/a"}, 9, 9, nil)

	// Several objects orphaned at once come back sorted.
	for i, key := range []string{"d/z", "d/y", "d/x"} {
		base := 35 + int64(i)*2
		noErr(t, s.CommitSegment(ctx, catalog.Segment{ObjectKey: key, Ranges: []catalog.SegmentRange{r(b0, base, base+2)}}), "CommitSegment "+key)
	}
	del(b0, 40, []string{"d/y", "d/z"}, 39, 41, []int64{39})

	_, err = s.DeleteRangesBefore(ctx, catalog.BucketID{TableID: tbl.ID, Partition: "none", Bucket: 0}, 10)
	wantErr(t, err, catalog.ErrNotFound, "DeleteRangesBefore of a bucket without a row")
	_, err = s.DeleteRangesBefore(ctx, catalog.BucketID{TableID: tbl.ID + 1000, Bucket: 0}, 10)
	wantErr(t, err, catalog.ErrNotFound, "DeleteRangesBefore of a missing table")
}

// testDeleteRangesConcurrently removes, concurrently and each through its
// own handle, the last ranges of different buckets of shared objects: every
// object must come back as an orphan exactly once.
func testDeleteRangesConcurrently(t *testing.T, s catalog.Store, handles []catalog.Store) {
	ctx := ctxT(t)
	tbl := setup(t, s, logSpec("db", "t"))
	var bs []catalog.BucketID
	epochs := map[catalog.BucketID]int64{}
	for i := range tbl.Buckets {
		b := catalog.BucketID{TableID: tbl.ID, Bucket: i}
		l, err := s.AcquireLease(ctx, b, "a", time.Minute)
		noErr(t, err, "AcquireLease")
		bs, epochs[b] = append(bs, b), l.Epoch
	}
	const objects = 20
	for i := range objects {
		var rs []catalog.SegmentRange
		for _, b := range bs {
			rs = append(rs, rng(b, epochs[b], int64(i), int64(i+1)))
		}
		noErr(t, s.CommitSegment(ctx, catalog.Segment{ObjectKey: fmt.Sprintf("c/%02d", i), Ranges: rs}), "CommitSegment")
	}
	var (
		mu   sync.Mutex
		seen = map[string]int{}
		wg   sync.WaitGroup
	)
	for i, b := range bs {
		h := handles[i%len(handles)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for off := int64(1); off <= objects; off++ {
				orphans, err := h.DeleteRangesBefore(ctx, b, off)
				if err != nil {
					if errors.Is(err, catalog.ErrUnavailable) { // a serialization failure: retry
						off--
						continue
					}
					t.Errorf("DeleteRangesBefore(%v, %d): %v", b, off, err)
					return
				}
				mu.Lock()
				for _, o := range orphans {
					seen[o]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for i := range objects {
		key := fmt.Sprintf("c/%02d", i)
		if seen[key] != 1 {
			t.Errorf("object %s reported as orphan %d times, want once", key, seen[key])
		}
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range seen {
			if !yield(k) {
				return
			}
		}
	})
	unknown, err := s.UnknownObjects(ctx, keys)
	noErr(t, err, "UnknownObjects")
	if len(unknown) != len(keys) {
		t.Fatalf("UnknownObjects = %q, want all of %q", unknown, keys)
	}
}

func testUnknownObjects(t *testing.T, s catalog.Store) {
	ctx := ctxT(t)
	tbl := setup(t, s, pkSpec("db", "t"))
	b := catalog.BucketID{TableID: tbl.ID, Bucket: 0}
	l, err := s.AcquireLease(ctx, b, "a", time.Minute)
	noErr(t, err, "AcquireLease")
	for _, keys := range [][]string{nil, {}} {
		got, err := s.UnknownObjects(ctx, keys)
		noErr(t, err, "UnknownObjects of no keys")
		if len(got) != 0 {
			t.Fatalf("UnknownObjects(%q) = %q, want none", keys, got)
		}
	}
	got, err := s.UnknownObjects(ctx, []string{"x", "y"})
	noErr(t, err, "UnknownObjects on an empty catalog")
	if !slices.Equal(got, []string{"x", "y"}) {
		t.Fatalf("UnknownObjects on an empty catalog = %q", got)
	}
	noErr(t, s.CommitSegment(ctx, catalog.Segment{ObjectKey: "seg/1", Ranges: []catalog.SegmentRange{rng(b, l.Epoch, 0, 2)}}), "CommitSegment")
	noErr(t, s.CommitSegment(ctx, catalog.Segment{ObjectKey: "seg/2", Ranges: []catalog.SegmentRange{rng(b, l.Epoch, 2, 4)}}), "CommitSegment")
	s1, err := s.PutKVSnapshot(ctx, catalog.KVSnapshot{Bucket: b, Epoch: l.Epoch, LogOffset: 2, Files: []string{"kv/1.sst", "kv/MANIFEST-1"}})
	noErr(t, err, "PutKVSnapshot")
	_, err = s.PutKVSnapshot(ctx, catalog.KVSnapshot{Bucket: b, Epoch: l.Epoch, LogOffset: 4, Files: []string{"kv/1.sst", "kv/2.sst", "kv/MANIFEST-2"}})
	noErr(t, err, "PutKVSnapshot")

	check := func(what string, keys, want []string) {
		t.Helper()
		got, err := s.UnknownObjects(ctx, keys)
		noErr(t, err, "UnknownObjects "+what)
		if len(got) != len(want) || (len(got) > 0 && !slices.Equal(got, want)) {
			t.Fatalf("UnknownObjects %s = %q, want %q", what, got, want)
		}
	}
	all := []string{"junk/1", "seg/1", "kv/1.sst", "seg/3", "kv/MANIFEST-1", "kv/2.sst", "seg", "seg/1/", "kv/3.sst", "junk/1", "SEG/2", "seg/2"}
	check("mixed", all, []string{"junk/1", "seg/3", "seg", "seg/1/", "kv/3.sst", "SEG/2"})
	check("all known", []string{"seg/2", "kv/MANIFEST-2", "seg/1"}, nil)
	// A file stays known while any snapshot names it.
	noErr(t, s.DeleteKVSnapshot(ctx, b, s1.ID), "DeleteKVSnapshot")
	check("after DeleteKVSnapshot", []string{"kv/1.sst", "kv/MANIFEST-1", "kv/2.sst"}, []string{"kv/MANIFEST-1"})
	// Dropping the table forgets its segments and snapshots.
	noErr(t, s.DropTable(ctx, "db", "t"), "DropTable")
	check("after DropTable", []string{"seg/1", "kv/1.sst", "kv/2.sst"}, []string{"seg/1", "kv/1.sst", "kv/2.sst"})
}

type watchCall struct {
	b    catalog.BucketID
	next int64
}

// watchRecorder runs Watch in a goroutine and records its commit calls.
type watchRecorder struct {
	mu     sync.Mutex
	calls  []watchCall
	signal chan struct{}
	done   chan error
	cancel context.CancelFunc
}

// startWatch starts a watch of commits and waits until it listens.
func startWatch(t *testing.T, s catalog.Store) *watchRecorder {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &watchRecorder{signal: make(chan struct{}, 1), done: make(chan error, 1), cancel: cancel}
	listening := make(chan struct{})
	go func() {
		w.done <- s.Watch(ctx, catalog.Events{
			Listening: func() { close(listening) },
			Commit: func(b catalog.BucketID, next int64) {
				w.mu.Lock()
				w.calls = append(w.calls, watchCall{b, next})
				w.mu.Unlock()
				select {
				case w.signal <- struct{}{}:
				default:
				}
			},
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-w.done:
			_ = err // the watch's own result is checked by the test
		case <-time.After(5 * time.Second):
			t.Errorf("Watch did not return within 5s of the end of its test")
		}
	})
	select {
	case <-listening:
	case err := <-w.done:
		t.Fatalf("Watch ended before it listened: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatalf("Watch did not call Listening within 10s")
	}
	return w
}

// waitFor waits up to 5s for a call reporting next for b.
func (w *watchRecorder) waitFor(b catalog.BucketID, next int64) bool {
	return w.waitForWithin(b, next, 5*time.Second)
}

func (w *watchRecorder) snapshot() []watchCall {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.calls)
}

// testWatchCommits watches through one handle and commits through another
// (with WithHandles; else the same), as a reader and a leader would in
// different processes.
func testWatchCommits(t *testing.T, s catalog.Store, writer catalog.Store) {
	ctx := ctxT(t)
	tbl := setup(t, s, logSpec("db", "t"))
	b0 := catalog.BucketID{TableID: tbl.ID, Bucket: 0}
	b1 := catalog.BucketID{TableID: tbl.ID, Bucket: 1}
	p3 := catalog.BucketID{TableID: tbl.ID, Partition: "2024-05-01", Bucket: 3}
	epochs := map[catalog.BucketID]int64{}
	for _, b := range []catalog.BucketID{b0, b1, p3} {
		l, err := writer.AcquireLease(ctx, b, "w", time.Minute)
		noErr(t, err, "AcquireLease")
		epochs[b] = l.Epoch
	}
	w := startWatch(t, s)

	// The watch listens: a commit is reported.
	next := int64(1)
	committed := map[watchCall]bool{{b0, next}: true}
	noErr(t, writer.CommitSegment(ctx, catalog.Segment{ObjectKey: "first", Ranges: []catalog.SegmentRange{rng(b0, epochs[b0], 0, next)}}), "CommitSegment")
	if !w.waitFor(b0, next) {
		t.Fatalf("Watch did not report the first commit within 5s; calls: %v", w.snapshot())
	}

	// One segment over three buckets (one in a partition): each reported
	// with its new next offset.
	noErr(t, writer.CommitSegment(ctx, catalog.Segment{ObjectKey: "multi", Ranges: []catalog.SegmentRange{
		rng(p3, epochs[p3], 0, 7), rng(b1, epochs[b1], 0, 4), rng(b0, epochs[b0], next, next+3),
	}}), "CommitSegment multi")
	next += 3
	for _, c := range []watchCall{{b0, next}, {b1, 4}, {p3, 7}} {
		committed[c] = true
		if !w.waitFor(c.b, c.next) {
			t.Fatalf("Watch did not report %v within 5s; calls: %v", c, w.snapshot())
		}
	}

	// Failed commits are not reported: after a gap and a fenced commit, a
	// good one is reported and nothing else ever was.
	err := writer.CommitSegment(ctx, catalog.Segment{ObjectKey: "gap", Ranges: []catalog.SegmentRange{rng(b1, epochs[b1], 5, 50)}})
	wantErr(t, err, catalog.ErrOffsetGap, "CommitSegment gap")
	err = writer.CommitSegment(ctx, catalog.Segment{ObjectKey: "fenced", Ranges: []catalog.SegmentRange{rng(b1, epochs[b1]+1, 4, 60)}})
	wantErr(t, err, catalog.ErrFenced, "CommitSegment fenced")
	for range 3 {
		noErr(t, writer.CommitSegment(ctx, catalog.Segment{ObjectKey: fmt.Sprintf("after/%d", next), Ranges: []catalog.SegmentRange{rng(b0, epochs[b0], next, next+2)}}), "CommitSegment after")
		next += 2
		committed[watchCall{b0, next}] = true
	}
	if !w.waitFor(b0, next) {
		t.Fatalf("Watch did not report %v within 5s; calls: %v", watchCall{b0, next}, w.snapshot())
	}
	calls := w.snapshot()
	last := map[catalog.BucketID]int64{}
	for _, c := range calls {
		if !committed[c] {
			t.Fatalf("Watch reported %v, which no commit produced; calls: %v", c, calls)
		}
		if c.next < last[c.b] {
			t.Fatalf("Watch reported %v after next offset %d; calls: %v", c, last[c.b], calls)
		}
		last[c.b] = c.next
	}

	// Two watches at once both hear a commit.
	w2 := startWatch(t, s)
	for i := 0; ; i++ {
		noErr(t, writer.CommitSegment(ctx, catalog.Segment{ObjectKey: fmt.Sprintf("two/%d", i), Ranges: []catalog.SegmentRange{rng(b1, epochs[b1], 4+int64(i), 5+int64(i))}}), "CommitSegment two")
		if w2.waitForWithin(b1, 5+int64(i), 100*time.Millisecond) {
			if !w.waitFor(b1, 5+int64(i)) {
				t.Fatalf("first watch missed a commit the second saw")
			}
			break
		}
		if i > 50 {
			t.Fatalf("second watch reported nothing; calls: %v", w2.snapshot())
		}
	}

	// Cancelling ctx returns promptly with ctx.Err().
	w.cancel()
	select {
	case err := <-w.done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Watch after cancel = %v, want context.Canceled", err)
		}
		w.done <- err // for the cleanup
	case <-time.After(5 * time.Second):
		t.Fatalf("Watch did not return within 5s of cancel")
	}
	// A deadline is reported as such.
	dctx, dcancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer dcancel()
	errc := make(chan error, 1)
	go func() { errc <- s.Watch(dctx, catalog.Events{}) }()
	select {
	case err := <-errc:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Watch past its deadline = %v, want context.DeadlineExceeded", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("Watch did not return within 5s of its deadline")
	}
}

// waitForWithin is waitFor with a shorter bound.
func (w *watchRecorder) waitForWithin(b catalog.BucketID, next int64, d time.Duration) bool {
	deadline := time.After(d)
	for {
		w.mu.Lock()
		found := slices.Contains(w.calls, watchCall{b, next})
		w.mu.Unlock()
		if found {
			return true
		}
		select {
		case <-w.signal:
		case <-deadline:
			return false
		}
	}
}

// testWatchClosed checks that closing the store ends a watch with
// ErrUnavailable.
func testWatchClosed(t *testing.T, s catalog.Store) {
	errc := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() { errc <- s.Watch(ctx, catalog.Events{Commit: func(catalog.BucketID, int64) {}}) }()
	time.Sleep(200 * time.Millisecond) // let it start listening (a close before is fine too)
	noErr(t, s.Close(), "Close")
	select {
	case err := <-errc:
		if !errors.Is(err, catalog.ErrUnavailable) {
			t.Fatalf("Watch on a closed store = %v, want ErrUnavailable", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("Watch did not return within 5s of Close")
	}
}
