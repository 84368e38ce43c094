package e2e

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"

	"github.com/strom-io/strom/api/client"
	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
)

// TestGoClient: the Go client's Producer sends 10,000 rows in small
// batches; a StopAtEnd Subscription from earliest sees each exactly once,
// per bucket in offset and send order. Then the end-to-end latency of
// single-row sends seen by a following subscription is measured, and an
// ARROW Fetch decoded with arrow-go's ipc.NewReader carries the projected
// columns plus _offset and _timestamp.
func TestGoClient(t *testing.T) {
	dir := t.TempDir()
	p := startServer(t, dir, append(pgS3Args(t), "-data-dir", filepath.Join(dir, "data"))...)
	cli(t, p, "db", "create", "e2e")
	cli(t, p, "table", "create", "e2e.c", "-c", "id BIGINT NOT NULL", "-c", "s STRING", "-c", "v DOUBLE",
		"--buckets", "4", "--bucket-key", "id")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := client.New(p.url())

	// 10,000 rows, batches of at most 100.
	const n = 10000
	var (
		resMu   sync.Mutex
		batches int
		maxRows int64
	)
	prod := c.NewProducer("e2e", "c", client.WithBatchRows(100), client.WithLinger(2*time.Millisecond),
		client.WithOnResult(func(r client.SendResult) {
			resMu.Lock()
			defer resMu.Unlock()
			batches++
			maxRows = max(maxRows, r.Rows)
			if r.Err != nil {
				t.Errorf("batch %d failed: %v", r.Sequence, r.Err)
			}
		}))
	t0 := time.Now()
	for i := range n {
		if err := prod.Send(ctx, map[string]any{"id": i, "s": fmt.Sprintf("s%05d", i), "v": float64(i) * 1.5}); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
		if i == n/2 {
			if err := prod.Flush(ctx); err != nil {
				t.Fatalf("Flush: %v", err)
			}
		}
	}
	if err := prod.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if err := prod.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	produceTime := time.Since(t0)
	t.Logf("Producer: %d rows in %d batches (largest %d rows) in %v: %.0f rows/s",
		n, batches, maxRows, produceTime.Round(time.Millisecond), n/produceTime.Seconds())
	if maxRows > 100 {
		t.Errorf("a batch of %d rows with WithBatchRows(100)", maxRows)
	}
	if batches < n/100 {
		t.Errorf("%d batches for %d rows of at most 100", batches, n)
	}

	// Read everything back.
	sub, err := c.Subscribe(ctx, "e2e", "c", client.FromEarliest(), client.StopAtEnd())
	if err != nil {
		t.Fatal(err)
	}
	seen := make(map[int64]int, n)
	perBucket := map[int32][]clientRow{}
	t0 = time.Now()
	for row, err := range sub.Rows(ctx) {
		if err != nil {
			t.Fatalf("Rows: %v", err)
		}
		id := int64(row.Values["id"].(float64))
		seen[id]++
		if row.Timestamp.IsZero() || time.Since(row.Timestamp) > 10*time.Minute {
			t.Fatalf("row %d has timestamp %v", id, row.Timestamp)
		}
		s, _ := row.Values["s"].(string)
		v, _ := row.Values["v"].(float64)
		perBucket[row.Bucket] = append(perBucket[row.Bucket], clientRow{row.Offset, id, s, v})
	}
	t.Logf("Subscription read %d rows in %v", len(seen), time.Since(t0).Round(time.Millisecond))
	if len(seen) != n {
		t.Errorf("subscription saw %d distinct ids, want %d", len(seen), n)
	}
	for id := range int64(n) {
		if seen[id] != 1 {
			t.Errorf("id %d seen %d times", id, seen[id])
		}
	}
	if len(perBucket) != 4 {
		t.Errorf("rows in %d buckets of 4", len(perBucket))
	}
	for b, rows := range perBucket {
		for i, r := range rows {
			if r.offset != int64(i) {
				t.Fatalf("bucket %d: offset %d at position %d (out of order, gap or duplicate)", b, r.offset, i)
			}
			if i > 0 && r.id <= rows[i-1].id {
				t.Fatalf("bucket %d: id %d at offset %d after id %d: not in send order", b, r.id, r.offset, rows[i-1].id)
			}
			if r.s != fmt.Sprintf("s%05d", r.id) || r.v != float64(r.id)*1.5 {
				t.Fatalf("bucket %d offset %d: id %d s %q v %v", b, r.offset, r.id, r.s, r.v)
			}
		}
	}
	if pos := sub.Positions(); len(pos) != 4 {
		t.Errorf("Positions = %v", pos)
	} else {
		for b, off := range pos {
			if off != int64(len(perBucket[b.Bucket])) {
				t.Errorf("Positions[%v] = %d, want %d", b, off, len(perBucket[b.Bucket]))
			}
		}
	}

	// ARROW fetch of bucket 0 with a projection, decoded with stock arrow-go.
	checkArrowFetch(t, c, perBucket[0])

	// Latency: Send (one row, no linger) → seen by a following subscription.
	follow, err := c.Subscribe(ctx, "e2e", "c", client.FromLatest(), client.WithColumns("id"), client.WithMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	fctx, fcancel := context.WithCancel(ctx)
	seenAt := make(chan int64, 1024)
	followErr := make(chan error, 1)
	go func() {
		for row, err := range follow.Rows(fctx) {
			if err != nil {
				followErr <- err
				return
			}
			seenAt <- int64(row.Values["id"].(float64))
		}
		followErr <- nil
	}()
	pct := func(lat []time.Duration, q float64) time.Duration {
		return lat[min(len(lat)-1, int(q*float64(len(lat))))].Round(time.Microsecond)
	}
	nextID := int64(100000)
	for _, mode := range []struct {
		name  string
		dur   stromv1.Durability
		sends int
	}{{"durable", stromv1.Durability_DURABILITY_DURABLE, 200}, {"wal", stromv1.Durability_DURABILITY_WAL, 100}} {
		acked := make(chan time.Time, 1)
		single := c.NewProducer("e2e", "c", client.WithLinger(0), client.WithDurability(mode.dur),
			client.WithOnResult(func(r client.SendResult) {
				if r.Err != nil {
					t.Errorf("single-row send failed: %v", r.Err)
				}
				acked <- time.Now()
			}))
		seenLat := make([]time.Duration, 0, mode.sends)
		ackLat := make([]time.Duration, 0, mode.sends)
		for range mode.sends {
			id := nextID
			nextID++
			start := time.Now()
			if err := single.Send(ctx, map[string]any{"id": id, "s": "lat"}); err != nil {
				t.Fatal(err)
			}
			timeout := time.After(15 * time.Second)
			var ackAt time.Time
		wait:
			for {
				select {
				case got := <-seenAt:
					if got == id {
						break wait
					}
					t.Fatalf("following subscription saw id %d while waiting for %d", got, id)
				case err := <-followErr:
					t.Fatalf("following subscription ended: %v", err)
				case <-timeout:
					t.Fatalf("row %d not seen by the following subscription within 15s", id)
				}
			}
			seenLat = append(seenLat, time.Since(start))
			select {
			case ackAt = <-acked:
			case <-timeout:
				t.Fatalf("row %d: no Append answer within 15s", id)
			}
			ackLat = append(ackLat, ackAt.Sub(start))
		}
		if err := single.Close(ctx); err != nil {
			t.Fatalf("Close: %v", err)
		}
		slices.Sort(seenLat)
		slices.Sort(ackLat)
		t.Logf("%s: %d single-row sends: Send → seen by a following Subscription p50 %v p90 %v p99 %v max %v; Send → Append acknowledged p50 %v p99 %v",
			mode.name, mode.sends, pct(seenLat, 0.5), pct(seenLat, 0.9), pct(seenLat, 0.99), pct(seenLat, 1),
			pct(ackLat, 0.5), pct(ackLat, 0.99))
	}
	fcancel()
	<-followErr

	p.stop(t)
}

// clientRow is a row of e2e.c as a subscription read it.
type clientRow struct {
	offset, id int64
	s          string
	v          float64
}

// checkArrowFetch fetches bucket 0 as Arrow IPC with columns s and v and
// checks it against the rows read by the subscription (offset order).
func checkArrowFetch(t *testing.T, c *client.Client, want []clientRow) {
	t.Helper()
	resp, err := c.Read().Fetch(context.Background(), connect.NewRequest(&stromv1.FetchRequest{
		Database: "e2e", Table: "c", Bucket: 0, Offset: 0, Columns: []string{"v", "s"},
		Format: stromv1.Format_FORMAT_ARROW,
	}))
	if err != nil {
		t.Fatalf("Fetch ARROW: %v", err)
	}
	if len(resp.Msg.GetRows()) != 0 {
		t.Errorf("Fetch ARROW returned %d JSON rows too", len(resp.Msg.GetRows()))
	}
	rdr, err := ipc.NewReader(bytes.NewReader(resp.Msg.GetArrowIpc()))
	if err != nil {
		t.Fatalf("ipc.NewReader on the Fetch response (%d bytes): %v", len(resp.Msg.GetArrowIpc()), err)
	}
	defer rdr.Release()
	var names []string
	for _, f := range rdr.Schema().Fields() {
		names = append(names, f.Name)
	}
	sorted := slices.Clone(names)
	sort.Strings(sorted)
	if !slices.Equal(sorted, []string{"_offset", "_timestamp", "s", "v"}) {
		t.Fatalf("Fetch ARROW schema fields %v, want s, v, _offset, _timestamp", names)
	}
	t.Logf("Fetch ARROW schema: %s", rdr.Schema())
	col := func(rec arrow.RecordBatch, name string) arrow.Array {
		return rec.Column(rdr.Schema().FieldIndices(name)[0])
	}
	var rows int64
	for rdr.Next() {
		rec := rdr.RecordBatch()
		offs, ok := col(rec, "_offset").(*array.Int64)
		if !ok {
			t.Fatalf("_offset is %s, want int64", col(rec, "_offset").DataType())
		}
		ts, ok := col(rec, "_timestamp").(*array.Timestamp)
		if !ok {
			t.Fatalf("_timestamp is %s, want a timestamp", col(rec, "_timestamp").DataType())
		}
		unit := ts.DataType().(*arrow.TimestampType).Unit
		ss, ok := col(rec, "s").(*array.String)
		if !ok {
			t.Fatalf("s is %s, want utf8", col(rec, "s").DataType())
		}
		vs, ok := col(rec, "v").(*array.Float64)
		if !ok {
			t.Fatalf("v is %s, want float64", col(rec, "v").DataType())
		}
		for i := 0; i < int(rec.NumRows()); i++ {
			off := offs.Value(i)
			if off != rows {
				t.Fatalf("Fetch ARROW: row %d has _offset %d", rows, off)
			}
			if int(off) >= len(want) {
				t.Fatalf("Fetch ARROW: offset %d beyond the %d rows of bucket 0", off, len(want))
			}
			w := want[off]
			if ss.Value(i) != w.s || vs.Value(i) != w.v {
				t.Fatalf("Fetch ARROW offset %d: s %q v %v, want %q %v", off, ss.Value(i), vs.Value(i), w.s, w.v)
			}
			if tsv := ts.Value(i).ToTime(unit); tsv.IsZero() || time.Since(tsv) > 10*time.Minute {
				t.Fatalf("Fetch ARROW offset %d: _timestamp %v", off, tsv)
			}
			rows++
		}
	}
	if err := rdr.Err(); err != nil {
		t.Fatalf("reading the Fetch ARROW stream: %v", err)
	}
	if rows == 0 || rows != resp.Msg.GetNextOffset() {
		t.Errorf("Fetch ARROW: %d rows, next_offset %d", rows, resp.Msg.GetNextOffset())
	}
	t.Logf("Fetch ARROW of bucket 0: %d rows of %d, %d bytes", rows, resp.Msg.GetHighWatermark(), len(resp.Msg.GetArrowIpc()))
}

// TestSubscribeStream: the ReadService.Subscribe server stream, over the
// Connect protocol and over gRPC, delivers a bucket's committed rows from an
// offset with the projected columns, then rows appended while it is open, in
// offset order without gaps; a bad bucket ends the stream with
// invalid_argument.
func TestSubscribeStream(t *testing.T) {
	dir := t.TempDir()
	p := startServer(t, dir, append(pgS3Args(t), "-data-dir", filepath.Join(dir, "data"))...)
	cli(t, p, "db", "create", "e2e")
	cli(t, p, "table", "create", "e2e.s", "-c", "id BIGINT NOT NULL", "-c", "s STRING", "--buckets", "1")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	appendN := func(c *client.Client, from, n int) {
		req := &stromv1.AppendRequest{Database: "e2e", Table: "s"}
		for i := from; i < from+n; i++ {
			req.Rows = append(req.Rows, mustStruct(map[string]any{"id": float64(i), "s": fmt.Sprint("s", i)}))
		}
		if _, err := c.Write().Append(ctx, connect.NewRequest(req)); err != nil {
			t.Fatalf("append: %v", err)
		}
	}
	next := 0
	for _, proto := range []struct {
		name string
		p    client.Protocol
	}{{"connect", client.ProtocolConnect}, {"grpc", client.ProtocolGRPC}} {
		c := client.New(p.url(), client.WithProtocol(proto.p))
		appendN(c, next, 50)
		next += 50
		start := int64(next - 30) // mid-table
		sctx, scancel := context.WithCancel(ctx)
		stream, err := c.Read().Subscribe(sctx, connect.NewRequest(&stromv1.SubscribeRequest{Fetch: &stromv1.FetchRequest{
			Database: "e2e", Table: "s", Bucket: 0, Offset: start, Columns: []string{"id"}, MaxWaitMs: 1000,
		}}))
		if err != nil {
			t.Fatalf("%s: Subscribe: %v", proto.name, err)
		}
		want := int64(start)
		appended := false
		deadline := time.AfterFunc(30*time.Second, scancel)
		for want < int64(next+20) && stream.Receive() {
			for _, row := range stream.Msg().GetRecords().GetRows() {
				f := row.GetFields()
				off := int64(f["_offset"].GetNumberValue())
				if off != want {
					t.Fatalf("%s: stream row at offset %d, want %d", proto.name, off, want)
				}
				if int64(f["id"].GetNumberValue()) != off { // one bucket: id == offset
					t.Fatalf("%s: offset %d holds id %v", proto.name, off, f["id"])
				}
				if _, ok := f["s"]; ok {
					t.Fatalf("%s: column s not projected away: %v", proto.name, f)
				}
				if _, ok := f["_timestamp"]; !ok {
					t.Fatalf("%s: row without _timestamp: %v", proto.name, f)
				}
				want++
			}
			if want == int64(next) && !appended {
				appended = true
				appendN(c, next, 20) // while the stream is open
			}
		}
		deadline.Stop()
		if want != int64(next+20) {
			t.Fatalf("%s: stream ended at offset %d, want %d: %v", proto.name, want, next+20, stream.Err())
		}
		next += 20
		scancel()
		stream.Close()
		t.Logf("%s: Subscribe stream delivered offsets %d..%d, 20 of them appended while it was open", proto.name, start, next-1)

		bad, err := c.Read().Subscribe(ctx, connect.NewRequest(&stromv1.SubscribeRequest{Fetch: &stromv1.FetchRequest{
			Database: "e2e", Table: "s", Bucket: 99}}))
		if err == nil {
			for bad.Receive() {
				t.Fatalf("%s: Subscribe of bucket 99 delivered %v", proto.name, bad.Msg())
			}
			err = bad.Err()
			bad.Close()
		}
		if connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("%s: Subscribe of bucket 99: %v, want invalid_argument", proto.name, err)
		}
	}
	p.stop(t)
}

// TestIdempotentRetry: a request with a writer_id and sequence, sent again
// (as a client retries after a timeout), is written once and answered with
// the first attempt's offsets — for a table with a bucket key and for one
// without (whose rows go to a bucket chosen by the server).
func TestIdempotentRetry(t *testing.T) {
	dir := t.TempDir()
	p := startServer(t, dir, append(pgS3Args(t), "-data-dir", filepath.Join(dir, "data"))...)
	cli(t, p, "db", "create", "e2e")
	cli(t, p, "table", "create", "e2e.keyed", "-c", "id BIGINT NOT NULL", "--buckets", "3", "--bucket-key", "id")
	cli(t, p, "table", "create", "e2e.unkeyed", "-c", "id BIGINT NOT NULL", "--buckets", "3")
	c := client.New(p.url())
	ctx := context.Background()
	for _, table := range []string{"keyed", "unkeyed"} {
		t.Run(table, func(t *testing.T) {
			id := 0
			for seq := int64(1); seq <= 3; seq++ {
				req := &stromv1.AppendRequest{Database: "e2e", Table: table, WriterId: "writer-" + table, Sequence: seq}
				for range 10 {
					req.Rows = append(req.Rows, mustStruct(map[string]any{"id": float64(id)}))
					id++
				}
				var first string
				for attempt := range 4 {
					resp, err := c.Write().Append(ctx, connect.NewRequest(req))
					if err != nil {
						t.Fatalf("sequence %d attempt %d: %v", seq, attempt, err)
					}
					// A retry answers the first attempt's offsets, each
					// marked duplicate; the first attempt's are not.
					var offs []string
					for _, o := range resp.Msg.GetOffsets() {
						if o.GetDuplicate() != (attempt > 0) {
							t.Errorf("sequence %d attempt %d: bucket %d duplicate = %v", seq, attempt, o.GetBucket(), o.GetDuplicate())
						}
						offs = append(offs, fmt.Sprintf("%d:%d+%d", o.GetBucket(), o.GetBaseOffset(), o.GetCount()))
					}
					got := fmt.Sprint(offs)
					if attempt == 0 {
						first = got
					} else if got != first {
						t.Errorf("sequence %d: retry %d answered %s, the first attempt %s", seq, attempt, got, first)
					}
				}
			}
			readAll(t, p, "e2e", table, 3) // offsets contiguous per bucket
			sub, err := c.Subscribe(ctx, "e2e", table, client.FromEarliest(), client.StopAtEnd())
			if err != nil {
				t.Fatal(err)
			}
			count := map[int64]int{}
			rows := 0
			for row, err := range sub.Rows(ctx) {
				if err != nil {
					t.Fatal(err)
				}
				count[int64(row.Values["id"].(float64))]++
				rows++
			}
			bad := 0
			for i := range int64(id) {
				if count[i] != 1 {
					if bad < 5 {
						t.Errorf("id %d stored %d times", i, count[i])
					}
					bad++
				}
			}
			if rows != id {
				t.Errorf("%d rows stored for %d rows sent, each request sent 4 times with the same writer_id and sequence", rows, id)
			}
		})
	}
	p.stop(t)
}
