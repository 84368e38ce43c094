package server_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/api/gen/strom/v1/stromv1connect"
	"github.com/strom-io/strom/services/readsvc"
	"github.com/strom-io/strom/services/server"
)

// scanMode is how a test reads a scan.
type scanMode int

const (
	scanUnary  scanMode = iota // one Scan call: the result fits a page
	scanPaged                  // Scan calls, each with the last one's next_page_token
	scanStream                 // one ScanStream call
)

func (m scanMode) String() string { return [...]string{"one Scan", "paged Scan", "ScanStream"}[m] }

// scanHow is how a test reads a scan, and with what page size (0: the
// default).
type scanHow struct {
	mode     scanMode
	pageSize int32
}

// readScan runs req as mode says and returns its pages, checking their
// shape: every page but the last holds exactly the page size and a
// next_page_token, the last one no token and at most the page size.
func readScan(t *testing.T, ctx context.Context, read stromv1connect.ReadServiceClient, req *stromv1.ScanRequest, mode scanMode) []*stromv1.ScanResponse {
	t.Helper()
	var pages []*stromv1.ScanResponse
	switch mode {
	case scanUnary:
		resp, err := read.Scan(ctx, connect.NewRequest(req))
		if err != nil {
			t.Fatalf("scan %v: %v", req, err)
		}
		pages = append(pages, resp.Msg)
	case scanPaged:
		r := proto.Clone(req).(*stromv1.ScanRequest)
		for {
			resp, err := read.Scan(ctx, connect.NewRequest(r))
			if err != nil {
				t.Fatalf("scan %v, page %d: %v", req, len(pages)+1, err)
			}
			pages = append(pages, resp.Msg)
			if resp.Msg.GetNextPageToken() == "" {
				break
			}
			r.PageToken = resp.Msg.GetNextPageToken()
		}
	case scanStream:
		st, err := read.ScanStream(ctx, connect.NewRequest(&stromv1.ScanStreamRequest{Scan: req}))
		if err != nil {
			t.Fatalf("scan stream %v: %v", req, err)
		}
		for st.Receive() {
			pages = append(pages, st.Msg().GetPage())
		}
		if err := st.Err(); err != nil {
			t.Fatalf("scan stream %v, after %d pages: %v", req, len(pages), err)
		}
		st.Close()
	}
	size := int64(req.GetPageSize())
	if size == 0 {
		size = readsvc.MaxScanPageSize
	}
	if len(pages) == 0 {
		t.Fatalf("%s of %v: no page", mode, req)
	}
	for i, p := range pages {
		n, last := pageRows(t, p, req.GetFormat()), i == len(pages)-1
		switch {
		case last && p.GetNextPageToken() != "":
			t.Fatalf("%s of %v: the last page (%d of %d rows) has a next_page_token", mode, req, i+1, n)
		case !last && p.GetNextPageToken() == "":
			t.Fatalf("%s of %v: page %d of %d has no next_page_token", mode, req, i+1, len(pages))
		case !last && n != size, n > size:
			t.Fatalf("%s of %v: page %d of %d has %d rows, page size %d", mode, req, i+1, len(pages), n, size)
		}
	}
	return pages
}

// pageRows counts the rows of a page.
func pageRows(t *testing.T, p *stromv1.ScanResponse, f stromv1.Format) int64 {
	t.Helper()
	if f != stromv1.Format_FORMAT_ARROW {
		return int64(len(p.GetRows()))
	}
	rdr, err := ipc.NewReader(bytes.NewReader(p.GetArrowIpc()))
	if err != nil {
		t.Fatalf("page: %v", err)
	}
	defer rdr.Release()
	var n int64
	for rdr.Next() {
		n += rdr.RecordBatch().NumRows()
	}
	if err := rdr.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// pageObjects returns the rows of a page as JSON objects (Arrow pages
// converted the way the JSON format writes them, numbers as float64).
func pageObjects(t *testing.T, p *stromv1.ScanResponse, f stromv1.Format) []map[string]any {
	t.Helper()
	if f != stromv1.Format_FORMAT_ARROW {
		out := make([]map[string]any, len(p.GetRows()))
		for i, r := range p.GetRows() {
			out[i] = r.AsMap()
		}
		return out
	}
	rdr, err := ipc.NewReader(bytes.NewReader(p.GetArrowIpc()))
	if err != nil {
		t.Fatalf("page: %v", err)
	}
	defer rdr.Release()
	var out []map[string]any
	for rdr.Next() {
		rec := rdr.RecordBatch()
		for i := range int(rec.NumRows()) {
			row := map[string]any{}
			for c, f := range rec.Schema().Fields() {
				col := rec.Column(c)
				switch {
				case col.IsNull(i):
					row[f.Name] = nil
				default:
					switch a := col.(type) {
					case *array.Int64:
						row[f.Name] = float64(a.Value(i))
					case *array.Int32:
						row[f.Name] = float64(a.Value(i))
					case *array.String:
						row[f.Name] = a.Value(i)
					default:
						row[f.Name] = col.ValueStr(i)
					}
				}
			}
			out = append(out, row)
		}
	}
	if err := rdr.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// restartable is a server the test stops and starts again on the same
// data directory, PostgreSQL and S3.
type restartable struct {
	t       *testing.T
	dataDir string
	flags   []string
	reg     *prometheus.Registry
	url     string
	stop    func()
}

func (r *restartable) start(args ...string) {
	r.t.Helper()
	if r.stop != nil {
		r.stop()
	}
	args = append(append([]string{"-data-dir", r.dataDir, "-server.http-listen-address", "127.0.0.1:0", "-server.internal-listen-address", "127.0.0.1:0", "-log.level", "warn"}, r.flags...), args...)
	cfg, err := server.LoadConfig("test", args, nil)
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.reg = prometheus.NewRegistry()
	srv, err := server.New(ctx, cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})), r.reg)
	if err != nil {
		cancel()
		r.t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		cancel()
		r.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	r.url = srv.URL()
	r.stop = func() {
		cancel()
		if err := <-done; err != nil {
			r.t.Errorf("serve: %v", err)
		}
		r.stop = nil
	}
}

// heldRows returns, per kind of scan, how many scans
// strom_read_scan_held_rows observed and how many of them held at most
// bound rows (bound must be a bucket's upper bound).
func heldRows(t *testing.T, reg *prometheus.Registry, bound float64) (scans, within map[string]uint64) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	scans, within = map[string]uint64{}, map[string]uint64{}
	for _, mf := range mfs {
		if mf.GetName() != "strom_read_scan_held_rows" {
			continue
		}
		for _, m := range mf.GetMetric() {
			kind := labelOf(m, "kind")
			h := m.GetHistogram()
			scans[kind] = h.GetSampleCount()
			found := false
			for _, b := range h.GetBucket() {
				if b.GetUpperBound() == bound {
					within[kind], found = b.GetCumulativeCount(), true
				}
			}
			if !found {
				t.Fatalf("strom_read_scan_held_rows has no bucket %v", bound)
			}
		}
	}
	return scans, within
}

func labelOf(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// TestScanPages: a log table and a primary-key table of 20,000 rows
// each, most of them in the lake and the rest in the stream (a tail of
// appends; of updates and deletes), read with pages of 1..10000 rows by
// ScanStream and by Scan calls following next_page_token, in JSON and
// Arrow: union scans of both tables and the KV scan of the primary-key
// table return every row exactly once, in order, with the values the
// table holds; a limit spans pages; a broken stream resumed from its last
// token returns the rest; every page is full but the last; and no scan
// held more than a page and one batch of its source at once
// (strom_read_scan_held_rows), far below the table. Tokens of another
// scan, damaged tokens and page sizes over the most are refused.
func TestScanPages(t *testing.T) {
	srv := &restartable{t: t, dataDir: t.TempDir(), flags: backends(t)["postgres+s3"](t)}
	srv.start("-lake.tiering.interval", "100ms")
	t.Cleanup(func() {
		if srv.stop != nil {
			srv.stop()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	clients := func() (stromv1connect.AdminServiceClient, stromv1connect.WriteServiceClient, stromv1connect.ReadServiceClient) {
		return stromv1connect.NewAdminServiceClient(http.DefaultClient, srv.url),
			stromv1connect.NewWriteServiceClient(http.DefaultClient, srv.url),
			stromv1connect.NewReadServiceClient(http.DefaultClient, srv.url)
	}
	admin, write, _ := clients()
	if _, err := admin.CreateDatabase(ctx, connect.NewRequest(&stromv1.CreateDatabaseRequest{Name: "pg"})); err != nil {
		t.Fatal(err)
	}
	three := int32(3)
	lakeProps := map[string]string{"table.datalake.enabled": "true", "table.datalake.freshness": "1s"}
	if _, err := admin.CreateTable(ctx, connect.NewRequest(&stromv1.CreateTableRequest{
		Database: "pg", Name: "events", Buckets: &three, BucketKey: []string{"id"},
		Schema: &stromv1.Schema{Columns: unionTableColumns}, Properties: lakeProps,
	})); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CreateTable(ctx, connect.NewRequest(&stromv1.CreateTableRequest{
		Database: "pg", Name: "items", Buckets: &three, Properties: lakeProps,
		Schema: &stromv1.Schema{Columns: []*stromv1.Column{{Name: "id", Type: "BIGINT"}, {Name: "note", Type: "STRING", Nullable: true}}, PrimaryKey: []string{"id"}},
	})); err != nil {
		t.Fatal(err)
	}
	const n, tail, batchRows = 20000, 2000, 200
	upsert := func(from, to int64, note func(int64) string) {
		t.Helper()
		req := &stromv1.UpsertRequest{Database: "pg", Table: "items"}
		for id := from; id < to; id++ {
			st, _ := structpb.NewStruct(map[string]any{"id": id, "note": note(id)})
			req.Rows = append(req.Rows, st)
		}
		if _, err := write.Upsert(ctx, connect.NewRequest(req)); err != nil {
			t.Fatal(err)
		}
	}
	for from := int64(0); from < n; from += batchRows {
		if err := appendUnionRows(ctx, write, "pg", "events", from, from+batchRows); err != nil {
			t.Fatal(err)
		}
		upsert(from, from+batchRows, func(id int64) string { return fmt.Sprintf("a%d", id) })
	}
	waitLakeCaughtUp(t, ctx, admin, "pg", "events")
	waitLakeCaughtUp(t, ctx, admin, "pg", "items")

	// Tiering idle (past its one check at start), the tails: appends,
	// and updates of every fifth key and deletes of every seventh.
	srv.start("-lake.tiering.interval", "1h")
	admin, write, read := clients()
	waitTieringCheck := func(tbl string) {
		t.Helper()
		waitLakeCaughtUp(t, ctx, admin, "pg", tbl)
	}
	waitTieringCheck("events")
	waitTieringCheck("items")
	for from := int64(n); from < n+tail; from += batchRows {
		if err := appendUnionRows(ctx, write, "pg", "events", from, from+batchRows); err != nil {
			t.Fatal(err)
		}
	}
	notes := map[float64]string{}
	for id := range int64(n) {
		notes[float64(id)] = fmt.Sprintf("a%d", id)
	}
	for from := int64(0); from < n; from += 5 * batchRows {
		req := &stromv1.UpsertRequest{Database: "pg", Table: "items"}
		for id := from + 1; id < from+5*batchRows; id += 5 {
			st, _ := structpb.NewStruct(map[string]any{"id": id, "note": fmt.Sprintf("b%d", id)})
			req.Rows = append(req.Rows, st)
			notes[float64(id)] = fmt.Sprintf("b%d", id)
		}
		if _, err := write.Upsert(ctx, connect.NewRequest(req)); err != nil {
			t.Fatal(err)
		}
		del := &stromv1.DeleteRequest{Database: "pg", Table: "items"}
		for id := from + 3; id < from+5*batchRows; id += 7 {
			st, _ := structpb.NewStruct(map[string]any{"id": id})
			del.Keys = append(del.Keys, st)
			delete(notes, float64(id))
		}
		if _, err := write.Delete(ctx, connect.NewRequest(del)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tbl := range []string{"events", "items"} {
		resp, err := admin.GetLakeStatus(ctx, connect.NewRequest(&stromv1.GetLakeStatusRequest{Database: "pg", Table: tbl}))
		if err != nil {
			t.Fatal(err)
		}
		st := resp.Msg.GetTables()[0]
		var tiered int64
		for _, b := range st.GetBuckets() {
			tiered += b.GetTieredOffset()
		}
		if tiered == 0 || st.GetLagRecords() == 0 {
			t.Fatalf("%s: %d records tiered, %d in the tail; want both layers", tbl, tiered, st.GetLagRecords())
		}
		t.Logf("%s: %d records in the lake, %d in the stream tail", tbl, tiered, st.GetLagRecords())
	}

	// The models: every log row once (by offset order checkUnion), the
	// primary-key table's notes by id.
	model := map[int64]rowKey{}
	for b := range three {
		for off := int64(0); ; {
			resp, err := read.Fetch(ctx, connect.NewRequest(&stromv1.FetchRequest{Database: "pg", Table: "events", Bucket: b, Offset: off, Columns: []string{"id"}}))
			if err != nil {
				t.Fatal(err)
			}
			for _, row := range resp.Msg.GetRows() {
				f := row.GetFields()
				model[int64(f["id"].GetNumberValue())] = rowKey{b, int64(f["_offset"].GetNumberValue())}
			}
			if off = resp.Msg.GetNextOffset(); off >= resp.Msg.GetHighWatermark() {
				break
			}
		}
	}
	if len(model) != n+tail {
		t.Fatalf("the stream holds %d rows, %d were written", len(model), n+tail)
	}
	ends := nextOffsets(t, ctx, read, "pg", "events", stromv1.OffsetSpec_OFFSET_SPEC_LATEST)
	checkItems := func(name string, objs []map[string]any, union bool) {
		t.Helper()
		got := map[float64]string{}
		lastBucket := -1.0
		for _, o := range objs {
			id := o["id"].(float64)
			if _, dup := got[id]; dup {
				t.Fatalf("%s: id %v twice", name, id)
			}
			got[id], _ = o["note"].(string)
			if union {
				// Bucket by bucket; the order within a bucket is the
				// lake's, then the tail's: not checked.
				b := o["_bucket"].(float64)
				if b < lastBucket {
					t.Fatalf("%s: bucket %v after bucket %v", name, b, lastBucket)
				}
				lastBucket = b
			}
		}
		if !maps.Equal(got, notes) {
			t.Fatalf("%s: %d rows, the table has %d (or other values)", name, len(got), len(notes))
		}
	}

	logCheck := func(name string, pages []*stromv1.ScanResponse, f stromv1.Format) {
		var rows []unionRow
		for _, p := range pages {
			rows = append(rows, unionPageRows(t, p, f, nil)...)
		}
		checkUnion(t, name, rows, model, ends, ends, n+tail)
		if len(rows) != n+tail {
			t.Fatalf("%s: %d rows, want %d", name, len(rows), n+tail)
		}
	}
	itemsCheck := func(union bool) func(string, []*stromv1.ScanResponse, stromv1.Format) {
		return func(name string, pages []*stromv1.ScanResponse, f stromv1.Format) {
			var objs []map[string]any
			for _, p := range pages {
				objs = append(objs, pageObjects(t, p, f)...)
			}
			checkItems(name, objs, union)
		}
	}
	tables := []struct {
		table string
		union bool
		check func(string, []*stromv1.ScanResponse, stromv1.Format)
	}{
		{"events", true, logCheck},
		{"items", true, itemsCheck(true)},
		{"items", false, itemsCheck(false)},
	}
	ways := []struct {
		how    scanHow
		format stromv1.Format
	}{
		{scanHow{mode: scanStream, pageSize: 128}, stromv1.Format_FORMAT_JSON},
		{scanHow{mode: scanStream}, stromv1.Format_FORMAT_ARROW},
		{scanHow{mode: scanPaged, pageSize: 1000}, stromv1.Format_FORMAT_ARROW},
		{scanHow{mode: scanPaged, pageSize: 3000}, stromv1.Format_FORMAT_JSON},
	}
	for _, tc := range tables {
		for _, w := range ways {
			name := fmt.Sprintf("%s union %v, %s of %d-row pages, %s", tc.table, tc.union, w.how.mode, w.how.pageSize, w.format)
			req := &stromv1.ScanRequest{Database: "pg", Table: tc.table, Union: tc.union, Format: w.format, PageSize: w.how.pageSize}
			tc.check(name, readScan(t, ctx, read, req, w.how.mode), w.format)
		}
		// A limit spans pages; the page that reaches it is the last.
		for _, size := range []int32{300, 250} {
			req := &stromv1.ScanRequest{Database: "pg", Table: tc.table, Union: tc.union, PageSize: size, Limit: 1000}
			for _, mode := range []scanMode{scanStream, scanPaged} {
				var got int64
				pages := readScan(t, ctx, read, req, mode)
				for _, p := range pages {
					got += int64(len(p.GetRows()))
				}
				if got != 1000 || len(pages) != 4 {
					t.Fatalf("%s union %v, limit 1000 in pages of %d (%s): %d rows in %d pages", tc.table, tc.union, size, mode, got, len(pages))
				}
			}
		}
		// A broken stream resumes after its last page.
		full := readScan(t, ctx, read, &stromv1.ScanRequest{Database: "pg", Table: tc.table, Union: tc.union, PageSize: 500}, scanStream)
		sctx, stop := context.WithCancel(ctx)
		st, err := read.ScanStream(sctx, connect.NewRequest(&stromv1.ScanStreamRequest{Scan: &stromv1.ScanRequest{Database: "pg", Table: tc.table, Union: tc.union, PageSize: 500}}))
		if err != nil {
			t.Fatal(err)
		}
		var resumed []*stromv1.ScanResponse
		for len(resumed) < 7 && st.Receive() {
			resumed = append(resumed, st.Msg().GetPage())
		}
		stop()
		st.Close()
		if len(resumed) != 7 {
			t.Fatalf("%s union %v: the stream ended after %d pages: %v", tc.table, tc.union, len(resumed), st.Err())
		}
		rest := readScan(t, ctx, read, &stromv1.ScanRequest{Database: "pg", Table: tc.table, Union: tc.union, PageSize: 500, PageToken: resumed[6].GetNextPageToken()}, scanStream)
		resumed = append(resumed, rest...)
		if len(resumed) != len(full) {
			t.Fatalf("%s union %v: %d pages resumed, %d in one stream", tc.table, tc.union, len(resumed), len(full))
		}
		for i := range full {
			a, b := pageObjects(t, full[i], stromv1.Format_FORMAT_JSON), pageObjects(t, resumed[i], stromv1.Format_FORMAT_JSON)
			if len(a) != len(b) {
				t.Fatalf("%s union %v: page %d has %d rows resumed, %d in one stream", tc.table, tc.union, i, len(b), len(a))
			}
			for j := range a {
				if !maps.Equal(a[j], b[j]) {
					t.Fatalf("%s union %v: page %d row %d is %v resumed, %v in one stream", tc.table, tc.union, i, j, b[j], a[j])
				}
			}
		}
		tc.check(fmt.Sprintf("%s union %v resumed", tc.table, tc.union), resumed, stromv1.Format_FORMAT_JSON)
	}

	// No scan held the table: at most a page (10,000 rows at most) and
	// one batch of its source, where holding the table is 20,000 rows
	// and more.
	scans, within := heldRows(t, srv.reg, 16384)
	for _, kind := range []string{readsvc.ScanKV, readsvc.ScanUnionLog, readsvc.ScanUnionPK} {
		if scans[kind] == 0 || within[kind] != scans[kind] {
			t.Fatalf("%s: %d of %d scans held at most 16384 rows at once", kind, within[kind], scans[kind])
		}
	}

	// Refused: a token with another scan's fields, a damaged token, a
	// page size over the most.
	first, err := read.Scan(ctx, connect.NewRequest(&stromv1.ScanRequest{Database: "pg", Table: "events", Union: true, PageSize: 10}))
	if err != nil {
		t.Fatal(err)
	}
	token := first.Msg.GetNextPageToken()
	for _, c := range []struct {
		req  *stromv1.ScanRequest
		code connect.Code
		want string
	}{
		{&stromv1.ScanRequest{Database: "pg", Table: "items", Union: true, PageToken: token}, connect.CodeInvalidArgument, "another table"},
		{&stromv1.ScanRequest{Database: "pg", Table: "events", PageToken: token, Union: false}, connect.CodeFailedPrecondition, "log table"},
		{&stromv1.ScanRequest{Database: "pg", Table: "events", Union: true, Columns: []string{"id"}, PageToken: token}, connect.CodeInvalidArgument, "columns"},
		{&stromv1.ScanRequest{Database: "pg", Table: "events", Union: true, Limit: 5, PageToken: token}, connect.CodeInvalidArgument, "limit 0"},
		{&stromv1.ScanRequest{Database: "pg", Table: "events", Union: true, PageToken: token[:len(token)-3]}, connect.CodeInvalidArgument, "pass the next_page_token of the previous page unchanged"},
		{&stromv1.ScanRequest{Database: "pg", Table: "events", Union: true, PageToken: "abc"}, connect.CodeInvalidArgument, "not a token"},
		{&stromv1.ScanRequest{Database: "pg", Table: "events", Union: true, PageSize: readsvc.MaxScanPageSize + 1}, connect.CodeInvalidArgument, "page_size: 10001 is more than the most"},
		{&stromv1.ScanRequest{Database: "pg", Table: "events", Union: true, PageSize: -1}, connect.CodeInvalidArgument, "page_size: must not be negative"},
	} {
		_, err := read.Scan(ctx, connect.NewRequest(c.req))
		wantCode(t, err, c.code)
		wantMessage(t, err, c.want)
		st, err := read.ScanStream(ctx, connect.NewRequest(&stromv1.ScanStreamRequest{Scan: c.req}))
		if err == nil {
			for st.Receive() {
				t.Fatalf("ScanStream %v: a page, want %s", c.req, c.code)
			}
			err = st.Err()
			st.Close()
		}
		wantCode(t, err, c.code)
	}
	st, err := read.ScanStream(ctx, connect.NewRequest(&stromv1.ScanStreamRequest{}))
	if err == nil {
		for st.Receive() {
		}
		err = st.Err()
		st.Close()
	}
	wantCode(t, err, connect.CodeInvalidArgument)
	wantMessage(t, err, "scan: required")
}
