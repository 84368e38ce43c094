package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/api/gen/strom/v1/stromv1connect"
)

// keyedColumns: the key has a TINYINT, which the lake widens to int, and
// TIMESTAMP(3) is microseconds in the lake: union reads merge the two
// layers by key after converting back.
var keyedColumns = []*stromv1.Column{
	{Name: "region", Type: "TINYINT"},
	{Name: "id", Type: "BIGINT"},
	{Name: "note", Type: "STRING", Nullable: true},
	{Name: "at", Type: "TIMESTAMP(3)", Nullable: true},
}

// keyedRow is a row of a primary-key table as the tests compare it: its
// columns as JSON and the offset of the change that wrote it.
type keyedRow struct {
	values string
	offset int64
}

// keyedState is one bucket's rows by key.
type keyedState map[string]keyedRow

// keyedKey and keyedValues render a JSON row of the table.
func keyedKey(f map[string]any) string { return fmt.Sprintf("%v/%v", f["region"], f["id"]) }

func keyedValues(t *testing.T, f map[string]any) string {
	t.Helper()
	cols := map[string]any{}
	for _, c := range keyedColumns {
		if v, ok := f[c.Name]; ok && v != nil {
			cols[c.Name] = v
		}
	}
	b, err := json.Marshal(cols)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// keyedChange is a changelog row.
type keyedChange struct {
	offset      int64
	kind        string
	key, values string
}

// changelogs holds every bucket's changelog as subscriptions from offset
// 0 deliver it.
type changelogs struct {
	mu      sync.Mutex
	changes map[int32][]keyedChange
}

func (c *changelogs) subscribe(t *testing.T, ctx context.Context, read stromv1connect.ReadServiceClient, db, tbl string, bucket int32) {
	st, err := read.Subscribe(ctx, connect.NewRequest(&stromv1.SubscribeRequest{Fetch: &stromv1.FetchRequest{Database: db, Table: tbl, Bucket: bucket}}))
	if err != nil {
		t.Error(err)
		return
	}
	defer st.Close()
	next := int64(0)
	for st.Receive() {
		for _, r := range st.Msg().GetRecords().GetRows() {
			f := r.AsMap()
			ch := keyedChange{offset: int64(f["_offset"].(float64)), kind: f["_change_type"].(string), key: keyedKey(f), values: keyedValues(t, f)}
			if ch.offset != next {
				t.Errorf("bucket %d changelog: offset %d, want %d", bucket, ch.offset, next)
				return
			}
			next++
			c.mu.Lock()
			c.changes[bucket] = append(c.changes[bucket], ch)
			c.mu.Unlock()
		}
	}
	if ctx.Err() == nil {
		t.Errorf("bucket %d changelog subscription ended: %v", bucket, st.Err())
	}
}

// apply applies a change to s.
func (s keyedState) apply(ch keyedChange) {
	switch ch.kind {
	case "+I", "+U":
		s[ch.key] = keyedRow{values: ch.values, offset: ch.offset}
	case "-D":
		delete(s, ch.key)
	}
}

// matchAt returns the offset E in [lo, hi] at which bucket's state
// (its changelog replayed up to E) equals got, or -1.
func (c *changelogs) matchAt(bucket int32, lo, hi int64, got keyedState) int64 {
	c.mu.Lock()
	changes := c.changes[bucket]
	c.mu.Unlock()
	state := keyedState{}
	for e := int64(0); e <= hi && e <= int64(len(changes)); e++ {
		if e >= lo && maps.Equal(state, got) {
			return e
		}
		if e < int64(len(changes)) {
			state.apply(changes[e])
		}
	}
	return -1
}

// scanKeyed returns a union scan of a primary-key table by bucket, read
// as how says.
func scanKeyed(t *testing.T, ctx context.Context, read stromv1connect.ReadServiceClient, db, tbl string, how scanHow) map[int32]keyedState {
	t.Helper()
	var rows []*structpb.Struct
	for _, page := range readScan(t, ctx, read, &stromv1.ScanRequest{Database: db, Table: tbl, Union: true, PageSize: how.pageSize}, how.mode) {
		rows = append(rows, page.GetRows()...)
	}
	out := map[int32]keyedState{}
	for _, r := range rows {
		f := r.AsMap()
		b := int32(f["_bucket"].(float64))
		if out[b] == nil {
			out[b] = keyedState{}
		}
		k := keyedKey(f)
		if _, dup := out[b][k]; dup {
			t.Fatalf("union scan: key %s twice in bucket %d", k, b)
		}
		out[b][k] = keyedRow{values: keyedValues(t, f), offset: int64(f["_offset"].(float64))}
	}
	return out
}

// TestUnionScanPrimaryKey: union scans of a primary-key table, taken
// while upserts and deletes go on, tiering commits and retention deletes
// the changelog behind the lake, each equal the table replayed from its
// changelog at an offset between the bucket's next offsets before and
// after the scan. Once writes stop and the lake caught up, the union
// equals the table's current rows, and a full subscribe (the lake's rows,
// then the changelog) rebuilds it.
func TestUnionScanPrimaryKey(t *testing.T) {
	flags := backends(t)["postgres+s3"](t)
	base := startServer(t, append(flags, "-lake.tiering.interval", "100ms", "-retention.interval", "100ms",
		"-frontend.flush-interval", "20ms", "-frontend.kv-snapshot-interval", "1s")...)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	admin := stromv1connect.NewAdminServiceClient(http.DefaultClient, base)
	if _, err := admin.CreateDatabase(ctx, connect.NewRequest(&stromv1.CreateDatabaseRequest{Name: "u"})); err != nil {
		t.Fatal(err)
	}
	const buckets = 2
	nb := int32(buckets)
	if _, err := admin.CreateTable(ctx, connect.NewRequest(&stromv1.CreateTableRequest{
		Database: "u", Name: "kv", Buckets: &nb,
		Schema: &stromv1.Schema{Columns: keyedColumns, PrimaryKey: []string{"region", "id"}},
		Properties: map[string]string{
			"table.datalake.enabled": "true", "table.datalake.freshness": "1s", "table.log.ttl": "500ms",
		},
	})); err != nil {
		t.Fatal(err)
	}
	write := stromv1connect.NewWriteServiceClient(http.DefaultClient, base)
	read := stromv1connect.NewReadServiceClient(http.DefaultClient, base)

	logs := &changelogs{changes: map[int32][]keyedChange{}}
	subCtx, stopSubs := context.WithCancel(ctx)
	var subs sync.WaitGroup
	for b := range nb {
		subs.Go(func() { logs.subscribe(t, subCtx, read, "u", "kv", b) })
	}
	defer func() { stopSubs(); subs.Wait() }()

	// One writer: upserts of 8 random keys (new ones and updates) or
	// deletes of 4, of 4×60 keys.
	stop := make(chan struct{})
	writerDone := make(chan error, 1)
	go func() {
		rng := rand.New(rand.NewPCG(1, 2))
		key := func() map[string]any { return map[string]any{"region": rng.IntN(4), "id": rng.IntN(60)} }
		for i := 0; ; i++ {
			select {
			case <-stop:
				writerDone <- nil
				return
			default:
			}
			var err error
			if rng.IntN(10) < 7 {
				req := &stromv1.UpsertRequest{Database: "u", Table: "kv"}
				for range 8 {
					row := key()
					if rng.IntN(4) > 0 {
						row["note"] = fmt.Sprintf("v%d", i)
					}
					if rng.IntN(4) > 0 {
						row["at"] = unionEpoch.Add(time.Duration(rng.IntN(1e6)) * time.Millisecond).Format("2006-01-02T15:04:05.000")
					}
					st, _ := structpb.NewStruct(row)
					req.Rows = append(req.Rows, st)
				}
				_, err = write.Upsert(ctx, connect.NewRequest(req))
			} else {
				req := &stromv1.DeleteRequest{Database: "u", Table: "kv"}
				for range 4 {
					st, _ := structpb.NewStruct(key())
					req.Keys = append(req.Keys, st)
				}
				_, err = write.Delete(ctx, connect.NewRequest(req))
			}
			if err != nil {
				writerDone <- err
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()

	// Scans until several of them needed the lake: the changelog's first
	// retained offset was past 0 in some bucket.
	type scan struct {
		lo, hi map[int32]int64
		rows   map[int32]keyedState
	}
	var scans []scan
	withLake := 0
	for len(scans) < 8 || withLake < 3 {
		if ctx.Err() != nil {
			t.Fatalf("after %d union scans, %d of them past retention: %v", len(scans), withLake, ctx.Err())
		}
		time.Sleep(150 * time.Millisecond)
		lo := nextOffsets(t, ctx, read, "u", "kv", stromv1.OffsetSpec_OFFSET_SPEC_LATEST)
		// One Scan, or ScanStream in pages. (Pages of Scan calls continue
		// from the lake snapshot the scan started with and the changelog
		// after it, which retention deletes here within a second:
		// TestScanPages pages through a primary-key union.)
		how := []scanHow{{mode: scanUnary}, {mode: scanStream, pageSize: 5}, {mode: scanStream, pageSize: 1}}[len(scans)%3]
		rows := scanKeyed(t, ctx, read, "u", "kv", how)
		hi := nextOffsets(t, ctx, read, "u", "kv", stromv1.OffsetSpec_OFFSET_SPEC_LATEST)
		for _, o := range nextOffsets(t, ctx, read, "u", "kv", stromv1.OffsetSpec_OFFSET_SPEC_EARLIEST) {
			if o > 0 {
				withLake++
				break
			}
		}
		scans = append(scans, scan{lo: lo, hi: hi, rows: rows})
	}
	close(stop)
	if err := <-writerDone; err != nil {
		t.Fatal(err)
	}
	final := nextOffsets(t, ctx, read, "u", "kv", stromv1.OffsetSpec_OFFSET_SPEC_LATEST)
	waitChangelogs(t, ctx, logs, final)
	for i, s := range scans {
		for b := range nb {
			if s.rows[b] == nil {
				s.rows[b] = keyedState{}
			}
			if e := logs.matchAt(b, s.lo[b], s.hi[b], s.rows[b]); e < 0 {
				t.Fatalf("union scan %d, bucket %d: %d rows equal the table at no offset in [%d, %d]", i, b, len(s.rows[b]), s.lo[b], s.hi[b])
			}
		}
	}
	t.Logf("%d union scans, %d with the changelog's start past 0; final offsets %v", len(scans), withLake, final)

	// Caught up: the union is the current table.
	waitLakeCaughtUp(t, ctx, admin, "u", "kv")
	union := scanKeyed(t, ctx, read, "u", "kv", scanHow{mode: scanStream, pageSize: 17})
	resp, err := read.Scan(ctx, connect.NewRequest(&stromv1.ScanRequest{Database: "u", Table: "kv"}))
	if err != nil {
		t.Fatal(err)
	}
	current := map[string]string{}
	for _, r := range resp.Msg.GetRows() {
		current[keyedKey(r.AsMap())] = keyedValues(t, r.AsMap())
	}
	unionRows := map[string]string{}
	for b := range nb {
		if e := logs.matchAt(b, final[b], final[b], union[b]); e < 0 {
			t.Fatalf("final union scan, bucket %d: not the table at offset %d", b, final[b])
		}
		for k, r := range union[b] {
			unionRows[k] = r.values
		}
	}
	if !maps.Equal(current, unionRows) {
		t.Fatalf("union scan (%d rows) differs from the scan of the current table (%d rows)", len(unionRows), len(current))
	}
	if limited := scanLimit(t, ctx, read, 5); limited != min(5, len(current)) {
		t.Fatalf("union scan with limit 5: %d rows", limited)
	}

	// A full subscribe rebuilds each bucket: the lake's rows as inserts
	// in offset order, then the changelog.
	earliest := nextOffsets(t, ctx, read, "u", "kv", stromv1.OffsetSpec_OFFSET_SPEC_EARLIEST)
	for b := range nb {
		state, lakeRows := subscribeFullKeyed(t, ctx, read, b, final[b], earliest[b])
		if e := logs.matchAt(b, final[b], final[b], state); e < 0 {
			t.Fatalf("full subscribe of bucket %d: not the table at offset %d", b, final[b])
		}
		t.Logf("bucket %d: full subscribe rebuilt %d rows, %d of them from the lake below the changelog's start %d", b, len(state), lakeRows, earliest[b])
	}
}

// subscribeFullKeyed subscribes to bucket b of u.kv with full from offset
// 0 until end and applies what it gets. It checks that offsets ascend and
// counts the rows below start (the changelog's first retained offset),
// which only the lake holds.
func subscribeFullKeyed(t *testing.T, ctx context.Context, read stromv1connect.ReadServiceClient, b int32, end, start int64) (keyedState, int) {
	t.Helper()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := read.Subscribe(sctx, connect.NewRequest(&stromv1.SubscribeRequest{Full: true, Fetch: &stromv1.FetchRequest{Database: "u", Table: "kv", Bucket: b}}))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	state := keyedState{}
	last, below := int64(-1), 0
	for next := int64(0); next < end; {
		if !st.Receive() {
			t.Fatalf("full subscribe of bucket %d ended at %d: %v", b, next, st.Err())
		}
		for _, r := range st.Msg().GetRecords().GetRows() {
			f := r.AsMap()
			ch := keyedChange{offset: int64(f["_offset"].(float64)), kind: f["_change_type"].(string), key: keyedKey(f), values: keyedValues(t, f)}
			if ch.offset <= last {
				t.Fatalf("full subscribe of bucket %d: offset %d after %d", b, ch.offset, last)
			}
			if ch.offset < start {
				below++
			}
			last = ch.offset
			state.apply(ch)
		}
		next = st.Msg().GetRecords().GetNextOffset()
	}
	return state, below
}

func scanLimit(t *testing.T, ctx context.Context, read stromv1connect.ReadServiceClient, limit int64) int {
	t.Helper()
	resp, err := read.Scan(ctx, connect.NewRequest(&stromv1.ScanRequest{Database: "u", Table: "kv", Union: true, Limit: limit}))
	if err != nil {
		t.Fatal(err)
	}
	return len(resp.Msg.GetRows())
}

// waitChangelogs waits until the subscriptions delivered every bucket's
// changelog up to offsets.
func waitChangelogs(t *testing.T, ctx context.Context, logs *changelogs, offsets map[int32]int64) {
	t.Helper()
	for {
		logs.mu.Lock()
		done := true
		for b, o := range offsets {
			done = done && int64(len(logs.changes[b])) >= o
		}
		logs.mu.Unlock()
		if done {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("changelog subscriptions did not reach %v", offsets)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
