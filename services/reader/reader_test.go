package reader_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/catalog/embedded"
	"github.com/strom-io/strom/services/batch"
	"github.com/strom-io/strom/services/notify"
	"github.com/strom-io/strom/services/objstore"
	"github.com/strom-io/strom/services/reader"
	"github.com/strom-io/strom/services/segment"
)

// counting counts the reader's catalog reads.
type counting struct {
	*embedded.Store
	segments, buckets atomic.Int64
	// after, if set, runs once after the next ListSegments.
	after atomic.Pointer[func()]
}

func (c *counting) ListSegments(ctx context.Context, b catalog.BucketID, from int64, limit int) ([]catalog.SegmentRange, error) {
	c.segments.Add(1)
	rs, err := c.Store.ListSegments(ctx, b, from, limit)
	if fn := c.after.Swap(nil); fn != nil {
		(*fn)()
	}
	return rs, err
}

func (c *counting) GetBucket(ctx context.Context, b catalog.BucketID) (catalog.BucketState, error) {
	c.buckets.Add(1)
	return c.Store.GetBucket(ctx, b)
}

// calls returns and resets the counts.
func (c *counting) calls() (segments, buckets int64) {
	return c.segments.Swap(0), c.buckets.Swap(0)
}

type env struct {
	store   *counting
	objects objstore.Bucket
	table   catalog.Table
	epoch   int64
	next    int64
	b       catalog.BucketID
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	s, err := embedded.Open(filepath.Join(dir, "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	objects, err := objstore.NewFS(objstore.FSConfig{Dir: filepath.Join(dir, "objects")})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := s.CreateDatabase(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	tbl, err := s.CreateTable(ctx, catalog.TableSpec{
		Database: "db", Name: "t", Buckets: 2, PartitionKey: "p",
		Schema: catalog.Schema{Columns: []catalog.Column{
			{Name: "id", Type: catalog.BigInt},
			{Name: "p", Type: catalog.String},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	b := catalog.BucketID{TableID: tbl.ID, Partition: "x", Bucket: 1}
	l, err := s.AcquireLease(ctx, b, "w", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return &env{store: &counting{Store: s}, objects: objects, table: tbl, epoch: l.Epoch, b: b}
}

// commit writes and commits a segment of n rows (ids next, next+1, ...)
// to the env's bucket.
func (e *env) commit(t *testing.T, n int) {
	t.Helper()
	rows := make([]map[string]any, n)
	for i := range rows {
		rows[i] = map[string]any{"id": float64(e.next + int64(i)), "p": "x"}
	}
	rec, err := batch.FromJSON(memory.DefaultAllocator, e.table.Schema, rows)
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Release()
	data, infos, err := segment.Encode([]segment.Section{{TableID: e.b.TableID, Partition: e.b.Partition, Bucket: e.b.Bucket, Codec: segment.CodecZstd,
		Batches: []segment.Batch{{BaseOffset: e.next, Timestamp: time.Now(), SchemaVersion: 1, Record: rec}}}})
	if err != nil {
		t.Fatal(err)
	}
	key := fmt.Sprintf("segments/%d", e.next)
	ctx := context.Background()
	if err := e.objects.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if err := e.store.Store.CommitSegment(ctx, catalog.Segment{ObjectKey: key, Size: int64(len(data)), Ranges: []catalog.SegmentRange{infos[0].SegmentRange(key, e.epoch)}}); err != nil {
		t.Fatal(err)
	}
	e.next += int64(n)
}

// ids returns the ids of a fetch's rows.
func ids(t *testing.T, res reader.FetchResult) []int64 {
	t.Helper()
	var out []int64
	for _, b := range res.Batches {
		col := b.Record.Column(0).(*array.Int64)
		for i := range col.Len() {
			if off := b.BaseOffset + int64(i); col.Value(i) != off {
				t.Fatalf("row at offset %d has id %d", off, col.Value(i))
			}
			out = append(out, col.Value(i))
		}
	}
	return out
}

func (e *env) fetch(t *testing.T, r *reader.Reader, offset int64, wait time.Duration) (reader.FetchResult, error) {
	t.Helper()
	res, err := r.Fetch(context.Background(), reader.FetchRequest{Table: e.table, Bucket: e.b, Offset: offset, MaxBytes: 1 << 20, MaxWait: wait})
	t.Cleanup(res.Release)
	return res, err
}

// TestFetchReadsOneBucket: a Fetch of committed data reads the bucket's
// segment index once and no bucket row; one at the end of the log reads
// the bucket's row once, and not again once the hub knows its next offset.
func TestFetchReadsOneBucket(t *testing.T) {
	e := newEnv(t)
	for range 3 {
		e.commit(t, 10)
	}
	r := reader.New(e.store, e.objects, notify.NewHub())
	for _, from := range []int64{0, 15, 29} {
		res, err := e.fetch(t, r, from, 0)
		if err != nil {
			t.Fatal(err)
		}
		got := ids(t, res)
		if len(got) != int(30-from) || got[0] != from || res.NextOffset != 30 || res.HighWatermark != 30 {
			t.Fatalf("Fetch(%d) = %d rows from %v, next %d, high watermark %d; want [%d, 30)", from, len(got), got[:min(1, len(got))], res.NextOffset, res.HighWatermark, from)
		}
		if segs, buckets := e.store.calls(); segs != 1 || buckets != 0 {
			t.Fatalf("Fetch(%d): %d segment reads, %d bucket reads; want 1 and 0", from, segs, buckets)
		}
	}

	// At the end, with a hub that knows nothing yet: one bucket read.
	fresh := reader.New(e.store, e.objects, notify.NewHub())
	for i, wantBuckets := range []int64{1, 0, 0} {
		res, err := e.fetch(t, fresh, 30, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Batches) != 0 || res.NextOffset != 30 || res.HighWatermark != 30 {
			t.Fatalf("Fetch at the end = %d batches, next %d, high watermark %d; want none, 30, 30", len(res.Batches), res.NextOffset, res.HighWatermark)
		}
		if segs, buckets := e.store.calls(); segs != 1 || buckets != wantBuckets {
			t.Fatalf("Fetch at the end #%d: %d segment reads, %d bucket reads; want 1 and %d", i, segs, buckets, wantBuckets)
		}
	}
}

// TestFetchLaggingHub: data committed while the hub still knows an older
// next offset (its notification lost or late) is returned all the same.
func TestFetchLaggingHub(t *testing.T) {
	e := newEnv(t)
	e.commit(t, 10)
	hub := notify.NewHub()
	r := reader.New(e.store, e.objects, hub)
	if res, err := e.fetch(t, r, 10, 0); err != nil || len(res.Batches) != 0 {
		t.Fatalf("Fetch at the end = %v, %v", res, err)
	}
	if next, ok := hub.Next(e.b); !ok || next != 10 {
		t.Fatalf("hub knows %d, %v; want 10", next, ok)
	}
	e.commit(t, 5) // not published to the hub
	res, err := e.fetch(t, r, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(t, res); len(got) != 5 || got[0] != 10 || res.HighWatermark != 15 {
		t.Fatalf("Fetch after an unpublished commit = %v, high watermark %d; want [10, 15)", got, res.HighWatermark)
	}
	// A long poll whose commit the hub is never told about still reads the
	// catalog again before it gives up: the commit lands right after its
	// first look.
	after := func() { e.commit(t, 1) }
	e.store.after.Store(&after)
	res, err = e.fetch(t, r, 15, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(t, res); len(got) != 1 || got[0] != 15 {
		t.Fatalf("long poll after an unpublished commit = %v, want [15]", got)
	}
}

// TestFetchLongPoll: a Fetch at the end waits for the next commit the hub
// is told about.
func TestFetchLongPoll(t *testing.T) {
	e := newEnv(t)
	e.commit(t, 3)
	hub := notify.NewHub()
	r := reader.New(e.store, e.objects, hub)
	type result struct {
		res reader.FetchResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := r.Fetch(context.Background(), reader.FetchRequest{Table: e.table, Bucket: e.b, Offset: 3, MaxBytes: 1 << 20, MaxWait: 30 * time.Second})
		done <- result{res, err}
	}()
	// Wait until the fetch found the end (it told the hub the next offset).
	for {
		if next, ok := hub.Next(e.b); ok && next == 3 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	e.commit(t, 4)
	hub.Publish(e.b, 7)
	select {
	case got := <-done:
		if got.err != nil {
			t.Fatal(got.err)
		}
		defer got.res.Release()
		if ids := ids(t, got.res); len(ids) != 4 || ids[0] != 3 || got.res.HighWatermark != 7 {
			t.Fatalf("long poll = %v, high watermark %d; want [3, 7)", ids, got.res.HighWatermark)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("long poll not woken by the commit within 20s")
	}
}

// TestFetchOutOfRange: offsets beyond the next offset and before the first
// retained one are refused, naming the bucket's range; a partition's
// bucket without a row is empty.
func TestFetchOutOfRange(t *testing.T) {
	e := newEnv(t)
	e.commit(t, 10)
	e.commit(t, 10)
	r := reader.New(e.store, e.objects, notify.NewHub())
	for _, off := range []int64{21, 100, -1} {
		_, err := e.fetch(t, r, off, 0)
		if !errors.Is(err, reader.ErrOffsetOutOfRange) || !strings.Contains(err.Error(), "[0, 20)") {
			t.Fatalf("Fetch(%d) = %v, want ErrOffsetOutOfRange naming [0, 20)", off, err)
		}
	}
	if _, err := e.store.DeleteRangesBefore(context.Background(), e.b, 10); err != nil {
		t.Fatal(err)
	}
	_, err := e.fetch(t, r, 5, 0)
	if !errors.Is(err, reader.ErrOffsetOutOfRange) || !strings.Contains(err.Error(), "[10, 20)") {
		t.Fatalf("Fetch(5) after retention = %v, want ErrOffsetOutOfRange naming [10, 20)", err)
	}
	if res, err := e.fetch(t, r, 10, 0); err != nil || len(ids(t, res)) != 10 {
		t.Fatalf("Fetch(10) after retention = %v, %v; want 10 rows", res, err)
	}
	empty := catalog.BucketID{TableID: e.table.ID, Partition: "never-written", Bucket: 0}
	res, err := r.Fetch(context.Background(), reader.FetchRequest{Table: e.table, Bucket: empty, Offset: 0})
	if err != nil || len(res.Batches) != 0 || res.HighWatermark != 0 {
		t.Fatalf("Fetch of a partition never written = %+v, %v; want empty", res, err)
	}
	if off, err := r.BucketOffsets(context.Background(), empty); err != nil || off != (reader.Offsets{}) {
		t.Fatalf("BucketOffsets of a partition never written = %+v, %v", off, err)
	}
	if _, err := r.BucketOffsets(context.Background(), catalog.BucketID{TableID: e.table.ID + 100}); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("BucketOffsets of an unknown table = %v, want ErrNotFound", err)
	}
}
