package writer_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/services/batch"
	"github.com/strom-io/strom/services/kv"
	"github.com/strom-io/strom/services/objstore"
	"github.com/strom-io/strom/services/wal"
	"github.com/strom-io/strom/services/writer"
)

// truncLog is the real WAL with the highest LSN passed to TruncateBefore
// recorded.
type truncLog struct {
	*wal.WAL
	mu     sync.Mutex
	before uint64
}

func (l *truncLog) TruncateBefore(lsn uint64) error {
	l.mu.Lock()
	l.before = max(l.before, lsn)
	l.mu.Unlock()
	return l.WAL.TruncateBefore(lsn)
}

func (l *truncLog) truncatedBefore() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.before
}

// gatedObjects is the real object store whose uploads wait while the gate
// is held: flushes then stay pending.
type gatedObjects struct {
	objstore.Bucket
	gate atomic.Pointer[chan struct{}] // nil: open
}

func (g *gatedObjects) hold() {
	ch := make(chan struct{})
	g.gate.Store(&ch)
}

func (g *gatedObjects) release() {
	if ch := g.gate.Swap(nil); ch != nil {
		close(*ch)
	}
}

func (g *gatedObjects) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if ch := g.gate.Load(); ch != nil {
		select {
		case <-*ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return g.Bucket.Put(ctx, key, r, size)
}

// waitFor polls cond until it holds, failing the test after a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Dropping the database of a log and a primary-key table while this writer
// leads their buckets, with batches pending, unloads every bucket at the
// next lease renewal: the leases are gone, the pending batches fail with
// catalog.ErrNotFound, the KV directory is removed, and the WAL is
// truncated past their records. A table created again under the same name
// gets a new id and takes writes.
func TestDroppedTableUnloadsBuckets(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	pk, err := e.store.CreateTable(ctx, catalog.TableSpec{
		Database: "db", Name: "pk", Buckets: 1,
		Schema: catalog.Schema{Columns: []catalog.Column{
			{Name: "id", Type: catalog.MustParseType("BIGINT")},
			{Name: "s", Type: catalog.MustParseType("STRING"), Nullable: true},
		}, PrimaryKey: []string{"id"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var log *truncLog
	e.wrap = func(w *wal.WAL) writer.Log { log = &truncLog{WAL: w}; return log }
	objects := &gatedObjects{Bucket: e.objects}
	e.objects = objects
	t.Cleanup(objects.release)
	cfg := defaultConfig
	cfg.CommitTimeout = time.Minute
	f := e.start(t, "a", "wal-a", cfg)

	pkPart := func(ids ...int64) writer.Part {
		rows := make([]map[string]any, len(ids))
		for i, id := range ids {
			rows[i] = map[string]any{"id": float64(id), "s": fmt.Sprint("v", id)}
		}
		rec, err := batch.FromJSON(memory.DefaultAllocator, pk.Schema, rows)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(rec.Release)
		ops, err := kv.OpsFromRecord(pk.Schema, rec, kv.OpUpsert, nil)
		if err != nil {
			t.Fatal(err)
		}
		return writer.Part{Bucket: catalog.BucketID{TableID: pk.ID}, Record: rec, Ops: ops}
	}
	durable := func(req writer.Request) {
		t.Helper()
		req.Durability = writer.Durable
		if _, err := f.w.Append(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	durable(writer.Request{Table: e.table, Parts: []writer.Part{e.part(t, 0, 1, 2), e.part(t, 1, 3)}})
	durable(writer.Request{Table: pk, Parts: []writer.Part{pkPart(1, 2, 3)}})
	kvDir := filepath.Join(e.dir, "kv-a", fmt.Sprint(pk.ID))
	if _, err := os.Stat(kvDir); err != nil {
		t.Fatalf("KV directory of the primary-key table: %v", err)
	}

	// Pending: acknowledged from the WAL, and one waiting for its commit.
	objects.hold()
	for _, req := range []writer.Request{
		{Table: e.table, Parts: []writer.Part{e.part(t, 0, 4)}, Durability: writer.WAL},
		{Table: pk, Parts: []writer.Part{pkPart(4)}, Durability: writer.WAL},
	} {
		if _, err := f.w.Append(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	inWAL := f.log.LastLSN()
	waiting := make(chan error, 1)
	go func() {
		_, err := f.w.Append(ctx, writer.Request{Table: e.table, Parts: []writer.Part{e.part(t, 1, 5)}, Durability: writer.Durable})
		waiting <- err
	}()
	waitFor(t, "the durable append is in the WAL", func() bool { return f.log.LastLSN() > inWAL })
	last := f.log.LastLSN()
	if len(f.w.Led()) != 3 || f.keeper.Held() != 3 {
		t.Fatalf("leading %v with %d leases, want 3 buckets", f.w.Led(), f.keeper.Held())
	}

	if err := e.store.DropDatabase(ctx, "db", true); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-waiting:
		if !errors.Is(err, catalog.ErrNotFound) {
			t.Fatalf("durable append pending while its table was dropped: %v, want catalog.ErrNotFound", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("durable append pending while its table was dropped did not return")
	}
	waitFor(t, "every bucket is unloaded", func() bool { return len(f.w.Led()) == 0 && f.keeper.Held() == 0 })
	waitFor(t, "the KV directory is removed", func() bool {
		_, err := os.Stat(kvDir)
		return errors.Is(err, os.ErrNotExist)
	})
	waitFor(t, "the WAL is truncated past the dropped tables' records", func() bool { return log.truncatedBefore() > last })

	// The same names again: new ids, and writes go through.
	objects.release()
	if _, err := e.store.CreateDatabase(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	again, err := e.store.CreateTable(ctx, catalog.TableSpec{Database: "db", Name: "t", Buckets: 2, Schema: e.table.Schema})
	if err != nil {
		t.Fatal(err)
	}
	if again.ID == e.table.ID {
		t.Fatalf("re-created table has the dropped one's id %d", again.ID)
	}
	e.table = again
	durable(writer.Request{Table: e.table, Parts: []writer.Part{e.part(t, 0, 7, 8)}})
	if got := e.ids(t, f, 0); !equal(got, []int64{7, 8}) {
		t.Fatalf("re-created table holds %v, want [7 8]", got)
	}
}

// A table dropped while its leader is down leaves nothing behind once the
// leader starts again: its uncommitted WAL records are discarded (not
// replayed, and truncated with the next commit), and its KV directory is
// removed.
func TestRestartAfterDropWhileDown(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	pk, err := e.store.CreateTable(ctx, catalog.TableSpec{
		Database: "db", Name: "pk", Buckets: 1,
		Schema: catalog.Schema{Columns: []catalog.Column{
			{Name: "id", Type: catalog.MustParseType("BIGINT")},
		}, PrimaryKey: []string{"id"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var log *truncLog
	e.wrap = func(w *wal.WAL) writer.Log { log = &truncLog{WAL: w}; return log }
	objects := &gatedObjects{Bucket: e.objects}
	e.objects = objects
	t.Cleanup(objects.release)
	// Nothing is committed: the records stay in the WAL; the commit
	// timeout only bounds the shutdown that gives up on them.
	objects.hold()
	cfg := defaultConfig
	cfg.CommitTimeout = 500 * time.Millisecond
	f := e.start(t, "a", "wal-a", cfg)
	rec, err := batch.FromJSON(memory.DefaultAllocator, pk.Schema, []map[string]any{{"id": float64(1)}})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Release()
	ops, err := kv.OpsFromRecord(pk.Schema, rec, kv.OpUpsert, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, req := range []writer.Request{
		{Table: e.table, Parts: []writer.Part{e.part(t, 0, 1, 2)}, Durability: writer.WAL},
		{Table: pk, Parts: []writer.Part{{Bucket: catalog.BucketID{TableID: pk.ID}, Record: rec, Ops: ops}}, Durability: writer.WAL},
	} {
		if _, err := f.w.Append(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	last := f.log.LastLSN()
	kvDir := filepath.Join(e.dir, "kv-a", fmt.Sprint(pk.ID))
	if _, err := os.Stat(kvDir); err != nil {
		t.Fatalf("KV directory of the primary-key table: %v", err)
	}
	f.stop()

	if err := e.store.DropDatabase(ctx, "db", true); err != nil {
		t.Fatal(err)
	}
	objects.release()
	f = e.start(t, "a", "wal-a", defaultConfig) // Recover runs
	if _, err := os.Stat(kvDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("KV directory of the dropped table after the restart: %v", err)
	}
	if led, held := f.w.Led(), f.keeper.Held(); len(led) != 0 || held != 0 {
		t.Fatalf("leading %v with %d leases after recovering records of dropped tables only", led, held)
	}

	if _, err := e.store.CreateDatabase(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	if e.table, err = e.store.CreateTable(ctx, catalog.TableSpec{Database: "db", Name: "t", Buckets: 2, Schema: e.table.Schema}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.w.Append(ctx, writer.Request{Table: e.table, Parts: []writer.Part{e.part(t, 0, 7)}, Durability: writer.Durable}); err != nil {
		t.Fatal(err)
	}
	if got := e.ids(t, f, 0); !equal(got, []int64{7}) {
		t.Fatalf("re-created table holds %v, want [7]", got)
	}
	waitFor(t, "the WAL is truncated past the dropped tables' records", func() bool { return log.truncatedBefore() > last })
}
