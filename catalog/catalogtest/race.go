package catalogtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strom-io/strom/catalog"
)

const (
	raceContenders = 8
	raceDuration   = 2 * time.Second
	raceTTL        = 100 * time.Millisecond
)

type raceCommit struct {
	holder     string
	epoch      int64
	base, end  int64
	newerSeen  bool // a newer epoch had been granted before the commit began
	err        error
	finishedAt time.Time
}

// testRaceLeaders has contenders fight over one bucket's lease with a short
// TTL. Each leader commits segments under its epoch while it believes it
// leads, deliberately for longer than its lease lasts, so that stale leaders
// keep committing after they were replaced. The committed log must stay
// contiguous, epochs must never decrease along it, every epoch must belong to
// one holder, and every commit begun after a newer epoch was granted must
// fail with ErrFenced.
func testRaceLeaders(t *testing.T, s catalog.Store, handles []catalog.Store) {
	ctx, cancel := context.WithTimeout(context.Background(), raceDuration+30*time.Second)
	defer cancel()
	tbl := setup(t, s, logSpec("db", "race"))
	b := catalog.BucketID{TableID: tbl.ID, Bucket: 2}

	var (
		maxGranted atomic.Int64
		mu         sync.Mutex
		commits    []raceCommit
		grants     = map[int64]string{}
		failures   []string
		seq        atomic.Int64
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		failures = append(failures, fmt.Sprintf(format, args...))
	}
	deadline := time.Now().Add(raceDuration)
	var wg sync.WaitGroup
	for i, h := range handles {
		holder := fmt.Sprintf("holder-%d", i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for attempt := 0; attempt < 10000 && time.Now().Before(deadline); attempt++ {
				l, err := h.AcquireLease(ctx, b, holder, raceTTL)
				if errors.Is(err, catalog.ErrLeaseHeld) {
					time.Sleep(time.Duration(2+i) * time.Millisecond)
					continue
				}
				if err != nil {
					fail("%s: AcquireLease: %v", holder, err)
					return
				}
				for {
					cur := maxGranted.Load()
					if l.Epoch <= cur || maxGranted.CompareAndSwap(cur, l.Epoch) {
						break
					}
				}
				mu.Lock()
				if prev, ok := grants[l.Epoch]; ok && prev != holder {
					failures = append(failures, fmt.Sprintf("epoch %d granted to %s and %s", l.Epoch, prev, holder))
				}
				grants[l.Epoch] = holder
				mu.Unlock()

				// The new leader learns where the log ends.
				bs, err := h.ListBuckets(ctx, b.TableID)
				if err != nil {
					fail("%s: ListBuckets: %v", holder, err)
					return
				}
				next := bs[b.Bucket].NextOffset
				// Lead for three TTLs without renewing: well past expiry.
				leadUntil := time.Now().Add(3 * raceTTL)
				for n := 0; n < 1000 && time.Now().Before(leadUntil) && time.Now().Before(deadline); n++ {
					size := int64(1 + n%3)
					newer := maxGranted.Load() > l.Epoch
					key := fmt.Sprintf("race/%s/%d", holder, seq.Add(1))
					err := h.CommitSegment(ctx, catalog.Segment{ObjectKey: key, Size: size, Ranges: []catalog.SegmentRange{
						{Bucket: b, Epoch: l.Epoch, BaseOffset: next, EndOffset: next + size, RowCount: size},
					}})
					mu.Lock()
					commits = append(commits, raceCommit{holder: holder, epoch: l.Epoch, base: next, end: next + size, newerSeen: newer, err: err, finishedAt: time.Now()})
					mu.Unlock()
					if err != nil {
						if !errors.Is(err, catalog.ErrFenced) {
							fail("%s epoch %d: CommitSegment [%d,%d): %v (want success or ErrFenced)", holder, l.Epoch, next, next+size, err)
						}
						break
					}
					next += size
					time.Sleep(time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	for _, f := range failures {
		t.Error(f)
	}

	var ok []raceCommit
	fenced := 0
	for _, c := range commits {
		if c.err == nil {
			ok = append(ok, c)
			if c.newerSeen {
				t.Errorf("%s's commit [%d,%d) at epoch %d succeeded although a newer epoch had been granted before it began", c.holder, c.base, c.end, c.epoch)
			}
		} else {
			fenced++
		}
	}
	slices.SortFunc(ok, func(a, b raceCommit) int { return int(a.base - b.base) })
	var next, epoch int64
	for _, c := range ok {
		if c.base != next {
			t.Fatalf("committed log not contiguous: range [%d,%d) by %s epoch %d follows offset %d", c.base, c.end, c.holder, c.epoch, next)
		}
		if c.epoch < epoch {
			t.Fatalf("epoch went backwards along the log: [%d,%d) at epoch %d after epoch %d", c.base, c.end, c.epoch, epoch)
		}
		next, epoch = c.end, c.epoch
	}
	// The store agrees with what the contenders saw.
	rs, err := s.ListSegments(ctx, b, 0, 0)
	noErr(t, err, "ListSegments")
	if len(rs) != len(ok) {
		t.Fatalf("store holds %d ranges, contenders committed %d", len(rs), len(ok))
	}
	for i, r := range rs {
		if r.BaseOffset != ok[i].base || r.EndOffset != ok[i].end || r.Epoch != ok[i].epoch {
			t.Fatalf("store range %d = [%d,%d)@%d, committed [%d,%d)@%d", i, r.BaseOffset, r.EndOffset, r.Epoch, ok[i].base, ok[i].end, ok[i].epoch)
		}
	}
	bs, err := s.ListBuckets(ctx, tbl.ID)
	noErr(t, err, "ListBuckets")
	if bs[b.Bucket].NextOffset != next {
		t.Fatalf("bucket next offset = %d, log ends at %d", bs[b.Bucket].NextOffset, next)
	}
	if len(grants) < 2 || len(ok) == 0 {
		t.Fatalf("no contention: %d epochs granted, %d commits", len(grants), len(ok))
	}
	t.Logf("%d epochs granted, %d commits, %d fenced, log ends at %d", len(grants), len(ok), fenced, next)
}
