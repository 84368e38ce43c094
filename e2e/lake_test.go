package e2e

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/iceberg-go"
	icebergrest "github.com/apache/iceberg-go/catalog/rest"
	iceio "github.com/apache/iceberg-go/io"
	_ "github.com/apache/iceberg-go/io/gocloud/s3" // s3:// data files
	"github.com/apache/iceberg-go/table"
	"google.golang.org/protobuf/types/known/structpb"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/api/gen/strom/v1/stromv1connect"
	"github.com/strom-io/strom/testenv"
)

// TestTieringRoleKilledMidRound runs the tiering role as its own process
// next to a write frontend, kills it with SIGKILL again and again while
// rows stream in (rounds are cut short at any point: before, during or
// after the Iceberg commit, or between it and the catalog record), and
// checks that the Iceberg table read through the REST catalog holds every
// committed row exactly once, at the offsets the stream gave it.
func TestTieringRoleKilledMidRound(t *testing.T) {
	s3 := testenv.S3(t)
	common := append([]string{"-catalog.backend", "postgres", "-catalog.postgres.url", testenv.Postgres(t),
		"-lake.tiering.interval", "50ms", "-lake.tiering.max-round-rows", "300"}, s3Args(s3)...)
	writer := startServer(t, t.TempDir(), append(common, "-roles", "write,read", "-frontend.id", "w1")...)
	cli(t, writer, "db", "create", "lake")
	cli(t, writer, "table", "create", "lake.events", "-c", "id BIGINT NOT NULL", "-c", "note STRING",
		"--buckets", "3", "--bucket-key", "id", "-p", "table.datalake.enabled=true", "-p", "table.datalake.freshness=200ms")
	cli(t, writer, "table", "create", "lake.kv", "-c", "id BIGINT NOT NULL", "-c", "v STRING", "--primary-key", "id",
		"--buckets", "2", "-p", "table.datalake.enabled=true", "-p", "table.datalake.freshness=200ms")

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	write := stromv1connect.NewWriteServiceClient(http.DefaultClient, writer.url())
	var mu sync.Mutex
	written := 0
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		for n := 0; ; n++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			req := &stromv1.AppendRequest{Database: "lake", Table: "events", WriterId: "e2e", Sequence: int64(n + 1)}
			for i := range 50 {
				st, _ := structpb.NewStruct(map[string]any{"id": n*50 + i, "note": fmt.Sprintf("row %d", n*50+i)})
				req.Rows = append(req.Rows, st)
			}
			if _, err := write.Append(ctx, connect.NewRequest(req)); err != nil {
				done <- err
				return
			}
			mu.Lock()
			written += 50
			mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()

	// A primary-key table written by one writer with a model: upserts
	// (inserts and updates) and deletes of 200 keys. kvMu stops it while
	// a union scan is compared with the model.
	read := stromv1connect.NewReadServiceClient(http.DefaultClient, writer.url())
	var kvMu sync.Mutex
	model := map[int64]string{}
	kvDone := make(chan error, 1)
	go func() { kvDone <- writeKeyed(ctx, write, stop, &kvMu, model) }()

	tierDir := t.TempDir()
	tierArgs := append(common, "-roles", "tiering", "-frontend.id", "t1")
	for kill := range 6 {
		tierer := startServer(t, tierDir, tierArgs...)
		time.Sleep(time.Duration(300+kill*170) * time.Millisecond)
		tierer.kill(t)
		// Whatever the kill interrupted, union reads are exact.
		checkUnionLog(t, ctx, read)
		kvMu.Lock()
		checkUnionKeyed(t, ctx, read, model)
		kvMu.Unlock()
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatalf("writer: %v", err)
	}
	if err := <-kvDone; err != nil {
		t.Fatalf("primary-key writer: %v", err)
	}
	tierer := startServer(t, tierDir, tierArgs...)
	defer tierer.stop(t)

	admin := stromv1connect.NewAdminServiceClient(http.DefaultClient, writer.url())
	for _, name := range []string{"events", "kv"} {
		for {
			resp, err := admin.GetLakeStatus(ctx, connect.NewRequest(&stromv1.GetLakeStatusRequest{Database: "lake", Table: name}))
			if err != nil {
				t.Fatal(err)
			}
			if resp.Msg.GetTables()[0].GetLagRecords() == 0 {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("the lake never caught up: %v", resp.Msg)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if n := checkUnionLog(t, ctx, read); n != written {
		t.Fatalf("union scan: %d rows, %d were acknowledged", n, written)
	}
	checkUnionKeyed(t, ctx, read, model)
	checkLakeStatus(t, cli(t, writer, "lake", "status"), map[string]int{"lake.events": 3, "lake.kv": 2}, "lake.events", int64(written))

	// The stream's view: id -> (bucket, offset).
	type place struct {
		bucket int32
		offset int64
	}
	stream := map[int64]place{}
	for b := range int32(3) {
		for id, off := range readBucketIDs(t, writer, b) {
			stream[id] = place{b, off}
		}
	}
	if len(stream) != written {
		t.Fatalf("the stream holds %d rows, %d were acknowledged", len(stream), written)
	}

	cat, err := icebergrest.NewCatalog(ctx, "strom", writer.url()+"/iceberg", icebergrest.WithAdditionalProps(iceberg.Properties{
		iceio.S3AccessKeyID: s3.AccessKey, iceio.S3SecretAccessKey: s3.SecretKey,
	}))
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := cat.LoadTable(ctx, table.Identifier{"lake", "events"})
	if err != nil {
		t.Fatal(err)
	}
	at, err := tbl.Scan().ToArrowTable(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer at.Release()
	lake := map[int64]place{}
	tr := array.NewTableReader(at, 0)
	defer tr.Release()
	for tr.Next() {
		rec := tr.RecordBatch()
		idx := func(name string) int { return rec.Schema().FieldIndices(name)[0] }
		ids := rec.Column(idx("id")).(*array.Int64)
		buckets := rec.Column(idx("__bucket")).(*array.Int32)
		offsets := rec.Column(idx("__offset")).(*array.Int64)
		for i := range int(rec.NumRows()) {
			id := ids.Value(i)
			if _, dup := lake[id]; dup {
				t.Fatalf("id %d is in the lake twice", id)
			}
			lake[id] = place{buckets.Value(i), offsets.Value(i)}
		}
	}
	if len(lake) != len(stream) {
		t.Fatalf("the lake holds %d rows, the stream %d", len(lake), len(stream))
	}
	for id, want := range stream {
		if got, ok := lake[id]; !ok || got != want {
			t.Fatalf("id %d: lake %v (present %v), stream %v", id, got, ok, want)
		}
	}
	t.Logf("%d rows tiered exactly once across 6 kills of the tiering role", len(lake))
}

// readBucketIDs fetches every row of lake.events bucket b: id -> offset.
func readBucketIDs(t *testing.T, p *process, b int32) map[int64]int64 {
	t.Helper()
	read := stromv1connect.NewReadServiceClient(http.DefaultClient, p.url())
	out := map[int64]int64{}
	var next int64
	for {
		resp, err := read.Fetch(context.Background(), connect.NewRequest(&stromv1.FetchRequest{
			Database: "lake", Table: "events", Bucket: b, Offset: next, Columns: []string{"id"},
		}))
		if err != nil {
			t.Fatal(err)
		}
		rows := resp.Msg.GetRows()
		if len(rows) == 0 {
			return out
		}
		for _, r := range rows {
			f := r.GetFields()
			out[int64(f["id"].GetNumberValue())] = int64(f["_offset"].GetNumberValue())
		}
		next = resp.Msg.GetNextOffset()
	}
}

// writeKeyed upserts and deletes rows of lake.kv until stop, keeping model
// (id -> v) equal to the acknowledged writes; each write and its model
// update happen under mu.
func writeKeyed(ctx context.Context, write stromv1connect.WriteServiceClient, stop <-chan struct{}, mu *sync.Mutex, model map[int64]string) error {
	for n := 0; ; n++ {
		select {
		case <-stop:
			return nil
		default:
		}
		mu.Lock()
		var err error
		ids := []int64{int64(n*7) % 200, int64(n*13+5) % 200, int64(n*29+11) % 200}
		if n%4 == 3 {
			req := &stromv1.DeleteRequest{Database: "lake", Table: "kv", WriterId: "kv", Sequence: int64(n + 1)}
			for _, id := range ids {
				st, _ := structpb.NewStruct(map[string]any{"id": id})
				req.Keys = append(req.Keys, st)
			}
			if _, err = write.Delete(ctx, connect.NewRequest(req)); err == nil {
				for _, id := range ids {
					delete(model, id)
				}
			}
		} else {
			req := &stromv1.UpsertRequest{Database: "lake", Table: "kv", WriterId: "kv", Sequence: int64(n + 1)}
			for _, id := range ids {
				st, _ := structpb.NewStruct(map[string]any{"id": id, "v": fmt.Sprintf("w%d", n)})
				req.Rows = append(req.Rows, st)
			}
			if _, err = write.Upsert(ctx, connect.NewRequest(req)); err == nil {
				for _, id := range ids {
					model[id] = fmt.Sprintf("w%d", n)
				}
			}
		}
		mu.Unlock()
		if err != nil {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkUnionLog checks a union scan of lake.events, taken while rows are
// appended: per bucket, offsets 0 to some end, each once, ids where the
// stream has them. It returns the number of rows.
func checkUnionLog(t *testing.T, ctx context.Context, read stromv1connect.ReadServiceClient) int {
	t.Helper()
	rows := scanRows(t, ctx, read, &stromv1.ScanRequest{Database: "lake", Table: "events", Union: true, Columns: []string{"id"}})
	next := map[int32]int64{}
	for _, r := range rows {
		f := r.GetFields()
		b, off := int32(f["_bucket"].GetNumberValue()), int64(f["_offset"].GetNumberValue())
		if off != next[b] {
			t.Fatalf("union scan of lake.events: bucket %d offset %d, want %d", b, off, next[b])
		}
		next[b]++
	}
	return len(rows)
}

// scanRows reads every page of a scan (ScanStream) and returns the rows.
func scanRows(t *testing.T, ctx context.Context, read stromv1connect.ReadServiceClient, req *stromv1.ScanRequest) []*structpb.Struct {
	t.Helper()
	st, err := read.ScanStream(ctx, connect.NewRequest(&stromv1.ScanStreamRequest{Scan: req}))
	if err != nil {
		t.Fatalf("scan of %s.%s: %v", req.GetDatabase(), req.GetTable(), err)
	}
	defer st.Close()
	var rows []*structpb.Struct
	for st.Receive() {
		rows = append(rows, st.Msg().GetPage().GetRows()...)
	}
	if err := st.Err(); err != nil {
		t.Fatalf("scan of %s.%s: %v", req.GetDatabase(), req.GetTable(), err)
	}
	return rows
}

// checkUnionKeyed checks that a union scan of lake.kv equals model.
func checkUnionKeyed(t *testing.T, ctx context.Context, read stromv1connect.ReadServiceClient, model map[int64]string) {
	t.Helper()
	got := map[int64]string{}
	for _, r := range scanRows(t, ctx, read, &stromv1.ScanRequest{Database: "lake", Table: "kv", Union: true}) {
		f := r.GetFields()
		id := int64(f["id"].GetNumberValue())
		if _, dup := got[id]; dup {
			t.Fatalf("union scan of lake.kv: id %d twice", id)
		}
		got[id] = f["v"].GetStringValue()
	}
	if !maps.Equal(got, model) {
		for id, v := range model {
			if got[id] != v {
				t.Fatalf("union scan of lake.kv: %d rows, model %d; id %d is %q, want %q", len(got), len(model), id, got[id], v)
			}
		}
		t.Fatalf("union scan of lake.kv: %d rows, model %d", len(got), len(model))
	}
}

// checkLakeStatus checks the output of `strom lake status` for a lake that
// caught up: every bucket of each table in buckets (name -> bucket count)
// is tiered to its next offset with no lag and a tiering time; each table
// has the test's freshness (200ms), no records lag and a snapshot; and the
// next offsets of log table logTable add up to its rows.
func checkLakeStatus(t *testing.T, out string, buckets map[string]int, logTable string, rows int64) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("strom lake status: "+format+"\n%s", append(args, out)...)
	}
	sections := strings.Split(strings.TrimSpace(out), "\n\n")
	if len(sections) != 2 {
		fail("%d sections, want the buckets and the tables", len(sections))
	}
	lines := func(section string, header ...string) [][]string {
		ls := strings.Split(section, "\n")
		if h := strings.Join(strings.Fields(ls[0]), " "); h != strings.Join(header, " ") {
			fail("header %q, want %q", h, strings.Join(header, " "))
		}
		var rows [][]string
		for _, l := range ls[1:] {
			rows = append(rows, strings.Fields(l))
		}
		return rows
	}
	seen := map[string]map[string]bool{}
	var logNext int64
	for _, f := range lines(sections[0], "TABLE", "PARTITION", "BUCKET", "TIERED", "OFFSET", "NEXT", "OFFSET", "LAG", "TIERED", "AT") {
		// TIERED AT is a date and a time.
		if len(f) != 8 {
			fail("bucket line %q: want table, partition, bucket, tiered and next offset, lag and a time", f)
		}
		if _, ok := buckets[f[0]]; !ok {
			fail("unexpected table %s", f[0])
		}
		if seen[f[0]] == nil {
			seen[f[0]] = map[string]bool{}
		}
		seen[f[0]][f[2]] = true
		tiered, err1 := strconv.ParseInt(f[3], 10, 64)
		next, err2 := strconv.ParseInt(f[4], 10, 64)
		if err1 != nil || err2 != nil || f[1] != "-" || tiered != next || next <= 0 || f[5] != "0" {
			fail("bucket line %q: want an unpartitioned bucket tiered to its next offset, lag 0", f)
		}
		if _, err := time.ParseInLocation(time.DateTime, f[6]+" "+f[7], time.Local); err != nil {
			fail("bucket line %q: tiered at: %v", f, err)
		}
		if f[0] == logTable {
			logNext += next
		}
	}
	for name, n := range buckets {
		if len(seen[name]) != n {
			fail("%s: %d buckets listed, want %d", name, len(seen[name]), n)
		}
	}
	if logNext != rows {
		fail("the next offsets of %s add up to %d, want its %d rows", logTable, logNext, rows)
	}
	tables := lines(sections[1], "TABLE", "FRESHNESS", "LAG", "RECORDS", "SNAPSHOT")
	if len(tables) != len(buckets) {
		fail("%d table lines, want %d", len(tables), len(buckets))
	}
	for _, f := range tables {
		snap, err := strconv.ParseInt(safeField(f, 3), 10, 64)
		if _, ok := buckets[safeField(f, 0)]; !ok || len(f) != 4 || f[1] != "200ms" || f[2] != "0" || err != nil || snap == 0 {
			fail("table line %q: want a table listed above, freshness 200ms, lag 0 and a snapshot", f)
		}
	}
}

func safeField(f []string, i int) string {
	if i < len(f) {
		return f[i]
	}
	return ""
}
