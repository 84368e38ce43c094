package writer_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/catalog/embedded"
	"github.com/strom-io/strom/services/batch"
	"github.com/strom-io/strom/services/lease"
	"github.com/strom-io/strom/services/notify"
	"github.com/strom-io/strom/services/objstore"
	"github.com/strom-io/strom/services/reader"
	"github.com/strom-io/strom/services/wal"
	"github.com/strom-io/strom/services/writer"
)

// env is one frontend's write and read path over a real embedded catalog,
// filesystem object store and WAL in temp dirs.
type env struct {
	store   *embedded.Store
	objects objstore.Bucket
	table   catalog.Table
	dir     string
	// wrap, if set, wraps the WAL of frontends started next.
	wrap func(*wal.WAL) writer.Log
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	store, err := embedded.Open(filepath.Join(dir, "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	objects, err := objstore.NewFS(objstore.FSConfig{Dir: filepath.Join(dir, "objects")})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := store.CreateDatabase(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	tbl, err := store.CreateTable(ctx, catalog.TableSpec{
		Database: "db", Name: "t", Buckets: 2,
		Schema: catalog.Schema{Columns: []catalog.Column{
			{Name: "id", Type: catalog.MustParseType("BIGINT")},
			{Name: "s", Type: catalog.MustParseType("STRING"), Nullable: true},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return &env{store: store, objects: objects, table: tbl, dir: dir}
}

// frontend is a running writer with its reader.
type frontend struct {
	w      *writer.Writer
	r      *reader.Reader
	keeper *lease.Keeper
	log    *wal.WAL
	stop   func()
}

// start runs a frontend as holder with the WAL in walDir (under the env's
// directory; a restarted frontend reuses its predecessor's).
func (e *env) start(t *testing.T, holder, walDir string, cfg writer.Config) *frontend {
	t.Helper()
	log, err := wal.Open(wal.Options{Dir: filepath.Join(e.dir, walDir), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	hub := notify.NewHub()
	keeper := lease.NewKeeper(e.store, holder, lease.Config{TTL: 5 * time.Second, RenewInterval: time.Second}, slog.New(slog.DiscardHandler))
	r := reader.New(e.store, e.objects, hub)
	cfg.KVDir = filepath.Join(e.dir, "kv-"+holder)
	var wl writer.Log = log
	if e.wrap != nil {
		wl = e.wrap(log)
	}
	w := writer.New(cfg, e.store, e.objects, wl, keeper, hub, r, slog.New(slog.DiscardHandler))
	if err := w.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = w.Run(ctx); close(done) }()
	keeperCtx, stopKeeper := context.WithCancel(context.Background())
	keeperDone := make(chan struct{})
	go func() { _ = keeper.Run(keeperCtx); close(keeperDone) }()
	f := &frontend{w: w, r: r, keeper: keeper, log: log}
	stopped := false
	f.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		<-done
		stopKeeper() // releases the leases, as a graceful shutdown does
		<-keeperDone
		_ = log.Close()
	}
	t.Cleanup(f.stop)
	return f
}

var defaultConfig = writer.Config{FlushInterval: 5 * time.Millisecond, FlushBytes: 1 << 20, MaxPendingBytes: 8 << 20, CommitTimeout: 5 * time.Second}

func (e *env) part(t *testing.T, bucket int32, ids ...int64) writer.Part {
	t.Helper()
	rows := make([]map[string]any, len(ids))
	for i, id := range ids {
		rows[i] = map[string]any{"id": float64(id)}
	}
	rec, err := batch.FromJSON(memory.DefaultAllocator, e.table.Schema, rows)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rec.Release)
	return writer.Part{Bucket: catalog.BucketID{TableID: e.table.ID, Bucket: bucket}, Record: rec}
}

// ids reads a bucket from offset 0 and returns the ids in offset order.
func (e *env) ids(t *testing.T, f *frontend, bucket int32) []int64 {
	t.Helper()
	res, err := f.r.Fetch(context.Background(), reader.FetchRequest{
		Table: e.table, Bucket: catalog.BucketID{TableID: e.table.ID, Bucket: bucket}, MaxBytes: 1 << 20,
		MaxWait: 5 * time.Second, // a recovered frontend commits asynchronously
	})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Release()
	var out []int64
	next := int64(0)
	for _, b := range res.Batches {
		if b.BaseOffset != next {
			t.Fatalf("batch at %d, want %d", b.BaseOffset, next)
		}
		col := b.Record.Column(0).(interface{ Value(int) int64 })
		for i := 0; i < int(b.Record.NumRows()); i++ {
			out = append(out, col.Value(i))
		}
		next += b.Record.NumRows()
	}
	return out
}

func TestAppendIsReadableAfterDurableAck(t *testing.T) {
	e := newEnv(t)
	f := e.start(t, "a", "wal-a", defaultConfig)
	ctx := context.Background()
	res, err := f.w.Append(ctx, writer.Request{Table: e.table, Parts: []writer.Part{e.part(t, 0, 1, 2), e.part(t, 1, 3)}})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].BaseOffset != 0 || res[0].Count != 2 || res[1].BaseOffset != 0 || res[1].Count != 1 {
		t.Fatalf("results = %+v", res)
	}
	res, err = f.w.Append(ctx, writer.Request{Table: e.table, Parts: []writer.Part{e.part(t, 0, 4)}})
	if err != nil || res[0].BaseOffset != 2 {
		t.Fatalf("second append: %+v, %v", res, err)
	}
	if got := e.ids(t, f, 0); !equal(got, []int64{1, 2, 4}) {
		t.Fatalf("bucket 0 = %v", got)
	}
	if got := e.ids(t, f, 1); !equal(got, []int64{3}) {
		t.Fatalf("bucket 1 = %v", got)
	}
}

func TestIdempotentWriter(t *testing.T) {
	e := newEnv(t)
	f := e.start(t, "a", "wal-a", defaultConfig)
	ctx := context.Background()
	req := writer.Request{Table: e.table, Parts: []writer.Part{e.part(t, 0, 1, 2)}, WriterID: "w", Sequence: 7}
	first, err := f.w.Append(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	again, err := f.w.Append(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if !again[0].Duplicate || again[0].BaseOffset != first[0].BaseOffset || again[0].Count != 2 {
		t.Fatalf("retry = %+v, first = %+v", again, first)
	}
	req.Sequence = 6
	if _, err := f.w.Append(ctx, req); !errors.Is(err, writer.ErrSequence) {
		t.Fatalf("older sequence: %v", err)
	}
	// Across a restart the sequence comes from the catalog.
	f.stop()
	f = e.start(t, "b", "wal-a", defaultConfig)
	req.Sequence = 7
	again, err = f.w.Append(ctx, req)
	if err != nil || !again[0].Duplicate || again[0].BaseOffset != 0 {
		t.Fatalf("retry after restart = %+v, %v", again, err)
	}
	if got := e.ids(t, f, 0); !equal(got, []int64{1, 2}) {
		t.Fatalf("bucket 0 = %v", got)
	}
}

func TestWALAckedRecordsSurviveRestart(t *testing.T) {
	e := newEnv(t)
	// A flush interval longer than the test: nothing is committed before
	// the restart unless recovery commits it.
	slow := defaultConfig
	slow.FlushInterval = time.Hour
	slow.CommitTimeout = 100 * time.Millisecond
	f := e.start(t, "a", "wal-a", slow)
	ctx := context.Background()
	for i := int64(0); i < 3; i++ {
		if _, err := f.w.Append(ctx, writer.Request{Table: e.table, Parts: []writer.Part{e.part(t, 1, 10+i)}, Durability: writer.WAL, WriterID: "w", Sequence: i + 1}); err != nil {
			t.Fatal(err)
		}
	}
	// Simulate a crash: the WAL is closed without a flush, and the lease
	// is never released.
	_ = f.log.Close()
	states, _ := e.store.ListBuckets(ctx, e.table.ID)
	for _, s := range states {
		if s.NextOffset != 0 {
			t.Fatalf("bucket %d committed before the restart", s.Bucket)
		}
	}
	// The same frontend restarts with its disk: a new process acquires the
	// lease as the old holder's epoch-successor once the old lease expires.
	if err := e.store.ReleaseLease(ctx, catalog.Lease{Bucket: catalog.BucketID{TableID: e.table.ID, Bucket: 1}, Holder: "a", Epoch: 1}); err != nil {
		t.Fatal(err)
	}
	g := e.start(t, "a2", "wal-a", defaultConfig)
	if got := e.ids(t, g, 1); !equal(got, []int64{10, 11, 12}) {
		t.Fatalf("after restart bucket 1 = %v", got)
	}
	// The writer's sequences came back with the records.
	res, err := g.w.Append(ctx, writer.Request{Table: e.table, Parts: []writer.Part{e.part(t, 1, 12)}, WriterID: "w", Sequence: 3})
	if err != nil || !res[0].Duplicate || res[0].BaseOffset != 2 {
		t.Fatalf("retry of the last WAL-acked request = %+v, %v", res, err)
	}
}

func TestFencedWriterCannotCommit(t *testing.T) {
	e := newEnv(t)
	f := e.start(t, "a", "wal-a", defaultConfig)
	ctx := context.Background()
	if _, err := f.w.Append(ctx, writer.Request{Table: e.table, Parts: []writer.Part{e.part(t, 0, 1)}}); err != nil {
		t.Fatal(err)
	}
	// Another frontend takes the bucket over (as after a lease expiry).
	b := catalog.BucketID{TableID: e.table.ID, Bucket: 0}
	if err := e.store.ReleaseLease(ctx, catalog.Lease{Bucket: b, Holder: "a", Epoch: 1}); err != nil {
		t.Fatal(err)
	}
	other := e.start(t, "b", "wal-b", defaultConfig)
	if _, err := other.w.Append(ctx, writer.Request{Table: e.table, Parts: []writer.Part{e.part(t, 0, 2)}}); err != nil {
		t.Fatal(err)
	}
	// The old leader's next write must not commit.
	_, err := f.w.Append(ctx, writer.Request{Table: e.table, Parts: []writer.Part{e.part(t, 0, 3)}})
	if !errors.Is(err, writer.ErrNotLeader) {
		t.Fatalf("fenced append: %v", err)
	}
	if got := e.ids(t, other, 0); !equal(got, []int64{1, 2}) {
		t.Fatalf("bucket 0 = %v", got)
	}
}

func TestBackpressure(t *testing.T) {
	e := newEnv(t)
	cfg := defaultConfig
	cfg.FlushInterval = time.Hour
	cfg.FlushBytes = 1 << 30
	cfg.MaxPendingBytes = 64
	cfg.CommitTimeout = 100 * time.Millisecond
	f := e.start(t, "a", "wal-a", cfg)
	ctx := context.Background()
	_, err := f.w.Append(ctx, writer.Request{Table: e.table, Parts: []writer.Part{e.part(t, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)}, Durability: writer.WAL})
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.w.Append(ctx, writer.Request{Table: e.table, Parts: []writer.Part{e.part(t, 0, 11)}, Durability: writer.WAL})
	if !errors.Is(err, writer.ErrBackpressure) {
		t.Fatalf("over the pending limit: %v", err)
	}
}

func equal(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// captureLog records the payloads appended to the WAL.
type captureLog struct {
	*wal.WAL
	mu       sync.Mutex
	payloads [][]byte
}

func (l *captureLog) AppendAsync(payload []byte, done func(uint64, error)) {
	l.mu.Lock()
	l.payloads = append(l.payloads, bytes.Clone(payload))
	l.mu.Unlock()
	l.WAL.AppendAsync(payload, done)
}

// TestWALTakesTheClientsBytes: a part that carries the client's checked
// IPC bytes (Part.IPC) is logged with exactly those bytes, not encoded
// again, and a restart recovers the batch from them.
func TestWALTakesTheClientsBytes(t *testing.T) {
	e := newEnv(t)
	var cl *captureLog
	e.wrap = func(w *wal.WAL) writer.Log { cl = &captureLog{WAL: w}; return cl }
	slow := defaultConfig
	slow.FlushInterval = time.Hour // nothing commits before the restart
	slow.CommitTimeout = 100 * time.Millisecond
	f := e.start(t, "a", "wal-a", slow)
	p := e.part(t, 1, 7, 8, 9)
	data, err := batch.EncodeIPC(p.Record.Schema(), []arrow.RecordBatch{p.Record})
	if err != nil {
		t.Fatal(err)
	}
	recs, verbatim, err := batch.DecodeIPCVerbatim(memory.DefaultAllocator, e.table.Schema, data, 1<<20)
	if err != nil || !verbatim {
		t.Fatalf("DecodeIPCVerbatim = %v, %v", verbatim, err)
	}
	defer recs[0].Release()
	client := writer.Part{Bucket: p.Bucket, Record: recs[0], IPC: data}
	ctx := context.Background()
	if _, err := f.w.Append(ctx, writer.Request{Table: e.table, Parts: []writer.Part{client}, Durability: writer.WAL}); err != nil {
		t.Fatal(err)
	}
	cl.mu.Lock()
	if len(cl.payloads) != 1 || !bytes.HasSuffix(cl.payloads[0], data) {
		t.Fatalf("WAL payloads %d; the record does not end with the client's %d bytes", len(cl.payloads), len(data))
	}
	cl.mu.Unlock()
	_ = f.log.Close() // a crash: nothing committed, the lease held
	if err := e.store.ReleaseLease(ctx, catalog.Lease{Bucket: p.Bucket, Holder: "a", Epoch: 1}); err != nil {
		t.Fatal(err)
	}
	e.wrap = nil
	g := e.start(t, "a2", "wal-a", defaultConfig)
	if got := e.ids(t, g, 1); !equal(got, []int64{7, 8, 9}) {
		t.Fatalf("after restart bucket 1 = %v", got)
	}
}

// TestFlushLinger: with FlushLinger, durable writes are committed without
// waiting for the flush interval (an hour here): new data a linger after
// it arrives, data that arrived during a flush when that flush ends.
func TestFlushLinger(t *testing.T) {
	e := newEnv(t)
	cfg := defaultConfig
	cfg.FlushInterval = time.Hour
	cfg.FlushLinger = time.Millisecond
	f := e.start(t, "a", "wal-a", cfg)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for w := range 4 { // concurrent durable writers: flushes overlap arrivals
		wg.Go(func() {
			for i := range 10 {
				if _, err := f.w.Append(ctx, writer.Request{Table: e.table, Parts: []writer.Part{e.part(t, int32(w%2), int64(w*100+i))}}); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("durable append without a flush tick: %v", err)
	}
	if got := len(e.ids(t, f, 0)) + len(e.ids(t, f, 1)); got != 40 {
		t.Fatalf("%d rows committed, want 40", got)
	}
}

// TestFlushLingerWaitsForExpectedWrites: a write announced with Expect
// keeps the lingering flush open (up to the flush interval), so a burst
// of concurrent requests lands in one segment object; a settled
// expectation does not hold it.
func TestFlushLingerWaitsForExpectedWrites(t *testing.T) {
	e := newEnv(t)
	cfg := defaultConfig
	cfg.FlushInterval = time.Minute
	cfg.FlushLinger = time.Millisecond
	f := e.start(t, "a", "wal-a", cfg)
	ctx := context.Background()
	// The second request is "being decoded" while the first arrives.
	ctx2, settle2 := f.w.Expect(ctx)
	defer settle2()
	first := make(chan error, 1)
	go func() {
		_, err := f.w.Append(ctx, writer.Request{Table: e.table, Parts: []writer.Part{e.part(t, 0, 1)}})
		first <- err
	}()
	// Well past the linger: the flush still waits for the expected write.
	select {
	case err := <-first:
		t.Fatalf("first write committed before the expected one arrived: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	if _, err := f.w.Append(ctx2, writer.Request{Table: e.table, Parts: []writer.Part{e.part(t, 1, 2)}}); err != nil {
		t.Fatal(err)
	}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	for b := range int32(2) {
		ranges, err := e.store.ListSegments(ctx, catalog.BucketID{TableID: e.table.ID, Bucket: b}, 0, 10)
		if err != nil || len(ranges) != 1 {
			t.Fatalf("bucket %d: %v, %v", b, ranges, err)
		}
		keys[ranges[0].ObjectKey] = true
	}
	if len(keys) != 1 {
		t.Fatalf("the two writes went into %d objects, want one", len(keys))
	}
	// Nothing expected: a write commits a linger after it arrives.
	if _, err := f.w.Append(ctx, writer.Request{Table: e.table, Parts: []writer.Part{e.part(t, 0, 3)}}); err != nil {
		t.Fatal(err)
	}
}
