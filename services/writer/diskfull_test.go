package writer_test

import (
	"context"
	"errors"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/services/wal"
	"github.com/strom-io/strom/services/writer"
)

// faultLog is a WAL whose disk can be made nearly full (CheckSpace fails)
// or full (appends fail with ENOSPC, rolled back as the WAL does).
type faultLog struct {
	*wal.WAL
	nearlyFull atomic.Bool
	full       atomic.Bool
}

func (l *faultLog) CheckSpace() error {
	if l.nearlyFull.Load() {
		return &wal.SpaceError{Dir: "wal", Free: 40 << 20, Min: 512 << 20, Flag: "-wal.min-free-bytes"}
	}
	return l.WAL.CheckSpace()
}

func (l *faultLog) AppendAsync(payload []byte, done func(uint64, error)) {
	if l.full.Load() {
		done(0, &wal.SpaceError{Dir: "wal", Free: 0, Err: &os.PathError{Op: "write", Path: "wal/1.wal", Err: syscall.ENOSPC}})
		return
	}
	l.WAL.AppendAsync(payload, done)
}

// TestNearlyFullDiskRefusesWrites: below the WAL's free-space watermark a
// write is refused before anything changes (no offset is used), an
// idempotent retry of a written request is still answered, and writes are
// accepted again once space returns.
func TestNearlyFullDiskRefusesWrites(t *testing.T) {
	e := newEnv(t)
	var fl *faultLog
	e.wrap = func(w *wal.WAL) writer.Log { fl = &faultLog{WAL: w}; return fl }
	f := e.start(t, "a", "wal-a", defaultConfig)
	ctx := context.Background()
	req := writer.Request{Table: e.table, Parts: []writer.Part{e.part(t, 0, 1)}, WriterID: "w", Sequence: 1}
	if _, err := f.w.Append(ctx, req); err != nil {
		t.Fatal(err)
	}
	fl.nearlyFull.Store(true)
	_, err := f.w.Append(ctx, writer.Request{Table: e.table, Parts: []writer.Part{e.part(t, 0, 2)}, Durability: writer.WAL})
	if !errors.Is(err, wal.ErrDiskFull) {
		t.Fatalf("append on a nearly full disk: %v, want wal.ErrDiskFull", err)
	}
	if res, err := f.w.Append(ctx, req); err != nil || !res[0].Duplicate {
		t.Fatalf("idempotent retry on a nearly full disk: %+v, %v", res, err)
	}
	fl.nearlyFull.Store(false)
	res, err := f.w.Append(ctx, writer.Request{Table: e.table, Parts: []writer.Part{e.part(t, 0, 3)}})
	if err != nil || res[0].BaseOffset != 1 {
		t.Fatalf("append after space returned: %+v, %v (the refused write must not use an offset)", res, err)
	}
	if got := e.ids(t, f, 0); !equal(got, []int64{1, 3}) {
		t.Fatalf("bucket 0 = %v", got)
	}
}

// TestWALHoleDelaysWALAcks: a batch whose WAL append failed (disk full)
// leaves a hole in the bucket's WAL records; recovery re-commits a bucket's
// records only without gaps, so a later batch with `wal` durability must
// not be acknowledged on its WAL sync alone — it waits for its commit. A
// crash before that commit loses only unacknowledged rows, and idempotent
// retries then write each row once.
func TestWALHoleDelaysWALAcks(t *testing.T) {
	e := newEnv(t)
	var fl *faultLog
	e.wrap = func(w *wal.WAL) writer.Log { fl = &faultLog{WAL: w}; return fl }
	slow := defaultConfig
	slow.FlushInterval = time.Hour // nothing commits before the crash
	slow.CommitTimeout = 200 * time.Millisecond
	f := e.start(t, "a", "wal-a", slow)
	ctx := context.Background()
	a := writer.Request{Table: e.table, Parts: []writer.Part{e.part(t, 1, 10)}, Durability: writer.WAL, WriterID: "w", Sequence: 1}
	b := writer.Request{Table: e.table, Parts: []writer.Part{e.part(t, 1, 11)}, Durability: writer.WAL, WriterID: "w", Sequence: 2}
	c := writer.Request{Table: e.table, Parts: []writer.Part{e.part(t, 1, 12)}, Durability: writer.WAL, WriterID: "w", Sequence: 3}
	if _, err := f.w.Append(ctx, a); err != nil {
		t.Fatal(err)
	}
	fl.full.Store(true)
	_, err := f.w.Append(ctx, b)
	if !errors.Is(err, writer.ErrWAL) || !errors.Is(err, wal.ErrDiskFull) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("append on a full disk: %v, want ErrWAL wrapping wal.ErrDiskFull", err)
	}
	fl.full.Store(false)
	// c's WAL record is synced, but b (before it) is in no WAL record.
	if _, err := f.w.Append(ctx, c); !errors.Is(err, writer.ErrCommitTimeout) {
		t.Fatalf("wal-durability append after a WAL hole: %v, want ErrCommitTimeout (not acknowledged before its commit)", err)
	}

	// Crash: the WAL holds a and c; recovery re-commits a and drops c.
	_ = f.log.Close()
	if err := e.store.ReleaseLease(ctx, catalog.Lease{Bucket: catalog.BucketID{TableID: e.table.ID, Bucket: 1}, Holder: "a", Epoch: 1}); err != nil {
		t.Fatal(err)
	}
	e.wrap = nil
	g := e.start(t, "a2", "wal-a", defaultConfig)
	if got := e.ids(t, g, 1); !equal(got, []int64{10}) {
		t.Fatalf("after restart bucket 1 = %v, want only the acknowledged row", got)
	}
	for _, r := range []writer.Request{a, b, c} {
		r.Durability = writer.Durable
		if _, err := g.w.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.ids(t, g, 1); !equal(got, []int64{10, 11, 12}) {
		t.Fatalf("after retries bucket 1 = %v", got)
	}
}

// TestWALHoleCommittedAcksAgain: once the batch missing from the WAL is
// committed, `wal` acknowledgements need only the WAL sync again.
func TestWALHoleCommittedAcksAgain(t *testing.T) {
	e := newEnv(t)
	var fl *faultLog
	e.wrap = func(w *wal.WAL) writer.Log { fl = &faultLog{WAL: w}; return fl }
	cfg := defaultConfig
	cfg.FlushInterval = time.Hour
	cfg.CommitTimeout = 5 * time.Second
	f := e.start(t, "a", "wal-a", cfg)
	ctx := context.Background()
	fl.full.Store(true)
	if _, err := f.w.Append(ctx, writer.Request{Table: e.table, Parts: []writer.Part{e.part(t, 0, 1)}, Durability: writer.WAL}); !errors.Is(err, wal.ErrDiskFull) {
		t.Fatalf("append on a full disk: %v", err)
	}
	fl.full.Store(false)
	// The batch stays pending (its offsets are assigned) and is committed
	// by the next flush.
	f.w.Kick()
	if got := e.ids(t, f, 0); !equal(got, []int64{1}) {
		t.Fatalf("bucket 0 = %v", got)
	}
	// No flush runs any more: an ack that waited for a commit would fail
	// with ErrCommitTimeout after 5s. It is acknowledged while its commit
	// is still to come.
	if _, err := f.w.Append(ctx, writer.Request{Table: e.table, Parts: []writer.Part{e.part(t, 0, 3)}, Durability: writer.WAL}); err != nil {
		t.Fatalf("wal ack after the hole was committed: %v (it waited for a commit)", err)
	}
	buckets, err := e.store.ListBuckets(ctx, e.table.ID)
	if err != nil {
		t.Fatal(err)
	}
	next := int64(-1)
	for _, b := range buckets {
		if b.Bucket == 0 {
			next = b.NextOffset
		}
	}
	if next != 1 {
		t.Fatalf("bucket 0 committed up to %d, want 1: the acknowledged batch is not committed yet", next)
	}
}
