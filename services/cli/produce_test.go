package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/strom-io/strom/api/client"
	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/services/server"
)

// startStrom runs a real Strom server (embedded catalog, objects on disk)
// until the test ends and returns its base URL.
func startStrom(t *testing.T) string {
	t.Helper()
	args := []string{"-data-dir", t.TempDir(), "-server.http-listen-address", "127.0.0.1:0", "-server.internal-listen-address", "127.0.0.1:0", "-log.level", "warn"}
	cfg, err := server.LoadConfig("test", args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := server.New(ctx, cfg, logger, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return srv.URL()
}

// produceEnv is a server with the log table db.t (id BIGINT NOT NULL,
// name STRING, 3 buckets by id).
type produceEnv struct {
	url string
	c   *client.Client
}

func newProduceEnv(t *testing.T) *produceEnv {
	t.Helper()
	url := startStrom(t)
	e := &produceEnv{url: url, c: client.New(url)}
	ctx := t.Context()
	if _, err := e.c.Admin().CreateDatabase(ctx, connect.NewRequest(&stromv1.CreateDatabaseRequest{Name: "db"})); err != nil {
		t.Fatal(err)
	}
	buckets := int32(3)
	if _, err := e.c.Admin().CreateTable(ctx, connect.NewRequest(&stromv1.CreateTableRequest{
		Database: "db", Name: "t", Buckets: &buckets, BucketKey: []string{"id"},
		Schema: &stromv1.Schema{Columns: []*stromv1.Column{{Name: "id", Type: "BIGINT"}, {Name: "name", Type: "STRING", Nullable: true}}},
	})); err != nil {
		t.Fatal(err)
	}
	return e
}

// cfg is a load of input into db.t with its derived writer id.
func (e *produceEnv) cfg(t *testing.T, input string, batchRows int) produceConfig {
	t.Helper()
	cfg := produceConfig{database: "db", table: "t", format: "json", batchRows: batchRows, fromLine: 1,
		retry: client.RetryPolicy{MaxAttempts: 3}}
	id, err := loadWriterID(cfg, strings.NewReader(input))
	if err != nil {
		t.Fatal(err)
	}
	cfg.writerID = id
	return cfg
}

func (e *produceEnv) produce(t *testing.T, input string, cfg produceConfig) (produceStats, error) {
	t.Helper()
	return produce(t.Context(), e.c, strings.NewReader(input), cfg)
}

// rows reads every row of db.t: the ids in offset order per bucket.
func (e *produceEnv) ids(t *testing.T) []string {
	t.Helper()
	var ids []string
	for b := range int32(3) {
		for off := int64(0); ; {
			resp, err := e.c.Read().Fetch(t.Context(), connect.NewRequest(&stromv1.FetchRequest{Database: "db", Table: "t", Bucket: b, Offset: off}))
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range resp.Msg.GetRows() {
				ids = append(ids, fmt.Sprint(r.AsMap()["id"]))
			}
			off = resp.Msg.GetNextOffset()
			if off >= resp.Msg.GetHighWatermark() {
				break
			}
		}
	}
	return ids
}

// wantIDs checks that db.t holds exactly the ids from..to-1, once each.
func (e *produceEnv) wantIDs(t *testing.T, from, to int) {
	t.Helper()
	ids := e.ids(t)
	seen := map[string]int{}
	for _, id := range ids {
		seen[id]++
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("id %s written %d times", id, n)
		}
	}
	for i := from; i < to; i++ {
		if seen[fmt.Sprint(i)] == 0 {
			t.Errorf("id %d missing", i)
		}
		delete(seen, fmt.Sprint(i))
	}
	if len(seen) > 0 {
		extra := make([]string, 0, len(seen))
		for id := range seen {
			extra = append(extra, id)
		}
		sort.Strings(extra)
		t.Errorf("unexpected ids %v", extra)
	}
	if t.Failed() {
		t.FailNow()
	}
}

// jsonLines is n rows with ids from 0; bad maps a line (from 1) to the
// text that replaces it.
func jsonLines(n int, bad map[int]string) string {
	var b strings.Builder
	for i := range n {
		if s, ok := bad[i+1]; ok {
			b.WriteString(s + "\n")
			continue
		}
		fmt.Fprintf(&b, "{\"id\": %d, \"name\": \"n%d\"}\n", i, i)
	}
	return b.String()
}

func wantErrParts(t *testing.T, err error, parts ...string) *produceError {
	t.Helper()
	var pe *produceError
	if !errors.As(err, &pe) {
		t.Fatalf("err %v (%T), want a *produceError", err, err)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error does not say %q:\n%v", p, err)
		}
	}
	return pe
}

func TestProduceJSONLines(t *testing.T) {
	e := newProduceEnv(t)
	input := "{\"id\": 1, \"name\": \"big \\\"one\\\"\"}\n\n  {\"id\": 9007199254740993}\n"
	st, err := e.produce(t, input, e.cfg(t, input, 10))
	if err != nil {
		t.Fatal(err)
	}
	if st.written != 2 || st.already != 0 {
		t.Errorf("stats %+v", st)
	}
	if s := st.summary(); !strings.HasPrefix(s, "produced 2 rows (lines 1–3) in ") {
		t.Errorf("summary %q", s)
	}
	ids := e.ids(t)
	sort.Strings(ids)
	if strings.Join(ids, ",") != "1,9007199254740993" {
		t.Errorf("ids %v, want 1 and 9007199254740993 (beyond float64)", ids)
	}
}

// TestProduceSyntaxErrorWritesNothingOfItsBatch: a JSON syntax error on
// line 2 stops the load before its batch is sent: line 1, in the same
// batch, is not written either, and the resume line is 1.
func TestProduceSyntaxErrorWritesNothingOfItsBatch(t *testing.T) {
	e := newProduceEnv(t)
	input := jsonLines(5, map[int]string{2: `{"id": `})
	_, err := e.produce(t, input, e.cfg(t, input, 1000))
	wantErrParts(t, err, "line 2: invalid JSON", "0 rows written", "resume with --from-line 1 --writer-id produce-")
	e.wantIDs(t, 0, 0)

	// With batches of 2: lines 1-2 are written, the batch of lines 3-4
	// holding the bad line 4 is not.
	input = jsonLines(6, map[int]string{4: `[1]`})
	_, err = e.produce(t, input, e.cfg(t, input, 2))
	wantErrParts(t, err, "line 4: invalid JSON", "2 rows written (lines 1–2), nothing after them", "resume with --from-line 3 ")
	e.wantIDs(t, 0, 2)

	for _, bad := range []string{"null", "{} {}"} {
		input := bad + "\n"
		if _, err := e.produce(t, input, e.cfg(t, input, 10)); err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("%q: err %v, want line 1", bad, err)
		}
	}
}

// TestProduceAllRefused: every batch refused by the server: nothing is
// written and the command says so (it used to count the rows as produced).
func TestProduceAllRefused(t *testing.T) {
	e := newProduceEnv(t)
	var b strings.Builder
	for i := range 25 {
		fmt.Fprintf(&b, "{\"id\": \"x%d\"}\n", i)
	}
	input := b.String()
	st, err := e.produce(t, input, e.cfg(t, input, 10))
	pe := wantErrParts(t, err, "lines 1–10 (batch 1): invalid_argument", `"id"`, "0 rows written;", "resume with --from-line 1 ")
	if connect.CodeOf(err) != connect.CodeInvalidArgument || pe.ambiguous {
		t.Errorf("code %v, ambiguous %v; want invalid_argument, not ambiguous", connect.CodeOf(err), pe.ambiguous)
	}
	if st.rows() != 0 {
		t.Errorf("stats %+v, want 0 rows", st)
	}
	e.wantIDs(t, 0, 0)
}

// TestProduceBadValueOnLine1: a value the server refuses on line 1, valid
// lines after it: nothing is written (later batches used to be).
func TestProduceBadValueOnLine1(t *testing.T) {
	e := newProduceEnv(t)
	input := jsonLines(2500, map[int]string{1: `{"id": "one"}`})
	_, err := e.produce(t, input, e.cfg(t, input, 1000))
	wantErrParts(t, err, "lines 1–1000 (batch 1): invalid_argument", "0 rows written;", "--from-line 1 ")
	e.wantIDs(t, 0, 0)
}

// TestProduceResumeAfterFix: a bad value on line 1500 stops the load after
// lines 1-1000; after fixing the line, resuming from the printed line with
// the printed writer id completes the load exactly; running the fixed file
// again from line 1 with that writer id writes nothing.
func TestProduceResumeAfterFix(t *testing.T) {
	e := newProduceEnv(t)
	bad := jsonLines(3000, map[int]string{1500: `{"id": "x"}`})
	cfg := e.cfg(t, bad, 1000)
	_, err := e.produce(t, bad, cfg)
	pe := wantErrParts(t, err, "lines 1001–2000 (batch 1001)", "1000 rows written (lines 1–1000), nothing after them", "resume with --from-line 1001 --writer-id "+cfg.writerID)
	e.wantIDs(t, 0, 1000)

	fixed := jsonLines(3000, nil)
	cfg.fromLine = pe.resume
	st, err := e.produce(t, fixed, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if st.written != 2000 || st.already != 0 || st.first != 1001 || st.last != 3000 {
		t.Errorf("resume: stats %+v, want 2000 rows written, lines 1001-3000", st)
	}
	e.wantIDs(t, 0, 3000)

	cfg.fromLine = 1
	st, err = e.produce(t, fixed, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if st.written != 0 || st.already != 3000 || !strings.Contains(st.summary(), "3000 of them were already written by an earlier run") {
		t.Errorf("re-run: stats %+v, summary %q; want all 3000 already written", st, st.summary())
	}
	e.wantIDs(t, 0, 3000)
}

// TestProduceCrashRerun: a load killed right after a batch was acknowledged
// (before it could print anything) and run again from line 1 writes every
// row exactly once; a third run writes nothing.
func TestProduceCrashRerun(t *testing.T) {
	e := newProduceEnv(t)
	input := jsonLines(5000, nil)
	for _, killAfter := range []int{1, 2, 4} {
		t.Run(fmt.Sprintf("after batch %d", killAfter), func(t *testing.T) {
			e := newProduceEnv(t)
			cfg := e.cfg(t, input, 1000)
			ctx, kill := context.WithCancel(t.Context())
			acked := 0
			cfg.afterBatch = func(o batchOutcome) {
				if o.err == nil {
					acked++
				}
				if acked == killAfter {
					kill()
				}
			}
			_, err := produce(ctx, e.c, strings.NewReader(input), cfg)
			wantErrParts(t, err, fmt.Sprintf("%d rows written", killAfter*1000))
			e.wantIDs(t, 0, killAfter*1000)

			cfg.afterBatch = nil
			st, err := e.produce(t, input, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if st.written != int64(5000-killAfter*1000) || st.already != int64(killAfter*1000) {
				t.Errorf("re-run: stats %+v, want %d written, %d already", st, 5000-killAfter*1000, killAfter*1000)
			}
			e.wantIDs(t, 0, 5000)
		})
	}
	cfg := e.cfg(t, input, 1000)
	for run := range 2 {
		st, err := e.produce(t, input, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if want := int64(5000 * run); st.already != want || st.written != 5000-want {
			t.Errorf("run %d: stats %+v, want %d already written", run+1, st, want)
		}
	}
	e.wantIDs(t, 0, 5000)
}

// dropAppendResponse is an HTTP client that, for the Append requests whose
// number (from 1) is in drop, lets the server handle the request and then
// reports a broken connection: the batch is written but the client cannot
// know.
type dropAppendResponse struct {
	n    atomic.Int64
	drop map[int64]bool
}

func (d *dropAppendResponse) Do(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultClient.Do(req)
	if err != nil || !strings.HasSuffix(req.URL.Path, "/Append") {
		return resp, err
	}
	if d.drop[d.n.Add(1)] {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return nil, errors.New("connection reset by peer (test)")
	}
	return resp, nil
}

// TestProduceLostAck: the acknowledgement of a written batch is lost.
// Without retries the load stops there and says the batch may have been
// written; resuming from the printed line writes it exactly once. With
// retries the retry of the same sequence gets the first offsets back.
func TestProduceLostAck(t *testing.T) {
	e := newProduceEnv(t)
	input := jsonLines(3000, nil)
	cfg := e.cfg(t, input, 1000)
	cfg.retry = client.RetryPolicy{MaxAttempts: 1}
	lossy := client.New(e.url, client.WithHTTPClient(&dropAppendResponse{drop: map[int64]bool{2: true}}))
	_, err := produce(t.Context(), lossy, strings.NewReader(input), cfg)
	pe := wantErrParts(t, err, "lines 1001–2000 (batch 1001)", "may or may not have been written", "1000 rows written (lines 1–1000)", "--from-line 1001 ")
	if !pe.ambiguous {
		t.Error("a lost acknowledgement is not reported as ambiguous")
	}
	e.wantIDs(t, 0, 2000) // the batch was written, unknown to the client

	cfg.fromLine = pe.resume
	st, err := e.produce(t, input, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if st.written != 1000 || st.already != 1000 {
		t.Errorf("resume: stats %+v, want lines 1001-2000 already written, 2001-3000 written", st)
	}
	e.wantIDs(t, 0, 3000)

	e = newProduceEnv(t)
	cfg.fromLine, cfg.retry = 1, client.RetryPolicy{MaxAttempts: 3}
	lossy = client.New(e.url, client.WithHTTPClient(&dropAppendResponse{drop: map[int64]bool{1: true, 3: true}}))
	st, err = produce(t.Context(), lossy, strings.NewReader(input), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if st.rows() != 3000 {
		t.Errorf("stats %+v, want 3000 rows", st)
	}
	e.wantIDs(t, 0, 3000)
}

// TestProduceFromLine: --from-line skips the lines before it, also in the
// middle of a batch, and beyond the end produces nothing.
func TestProduceFromLine(t *testing.T) {
	e := newProduceEnv(t)
	input := jsonLines(3000, map[int]string{10: "not JSON: lines before --from-line are not decoded"})
	cfg := e.cfg(t, input, 1000)
	cfg.fromLine = 1500
	st, err := e.produce(t, input, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if st.written != 1501 || st.first != 1500 || st.last != 3000 {
		t.Errorf("stats %+v, want lines 1500-3000", st)
	}
	e.wantIDs(t, 1499, 3000)
	cfg.fromLine = 4000
	st, err = e.produce(t, input, cfg)
	if err != nil || st.rows() != 0 || !strings.HasPrefix(st.summary(), "produced 0 rows (no lines)") {
		t.Errorf("from beyond the end: %v, %q", err, st.summary())
	}
}

// TestProduceBatchesDoNotDependOnFromLine: batches are cut from line 1
// whatever --from-line is, and the sequence is the line of a batch's first
// row, so that runs from different lines send the same sequences.
func TestProduceBatchesDoNotDependOnFromLine(t *testing.T) {
	input := "{\"id\": 1}\n\n{\"id\": 2}\n{\"id\": 3}\n\n\n{\"id\": 4}\n{\"id\": 5}\n"
	for _, tc := range []struct {
		from int64
		want string // seq:first-last per batch
	}{
		{1, "1:1-3 4:4-7 8:8-8"},
		{2, "1:3-3 4:4-7 8:8-8"},
		{5, "4:7-7 8:8-8"},
		{8, "8:8-8"},
		{9, ""},
	} {
		out := make(chan batchItem)
		go readBatches(t.Context(), newJSONReader(strings.NewReader(input)), produceConfig{batchRows: 2, fromLine: tc.from}, out)
		var got []string
		for it := range out {
			if it.err != nil {
				t.Fatal(it.err)
			}
			got = append(got, fmt.Sprintf("%d:%d-%d", it.batch.seq, it.batch.first, it.batch.last))
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("--from-line %d: batches %v, want %s", tc.from, got, tc.want)
		}
	}
}

func TestProduceCSV(t *testing.T) {
	e := newProduceEnv(t)
	input := "id,name\n1,ann\n2,\"bo\nb\"\n3,\n"
	cfg := e.cfg(t, input, 10)
	cfg.format = "csv"
	st, err := e.produce(t, input, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if st.written != 3 || st.first != 2 || st.last != 5 {
		t.Errorf("stats %+v, want 3 rows, lines 2-5", st)
	}
	e.wantIDs(t, 1, 4)

	short := "id,name\n1,a\n2\n"
	cfg = e.cfg(t, short, 10)
	cfg.format = "csv"
	_, err = e.produce(t, short, cfg)
	wantErrParts(t, err, "line 3: 1 fields, want 2", "0 rows written", "--from-line 2 ")
}

func TestLoadWriterID(t *testing.T) {
	base := produceConfig{database: "db", table: "t", format: "json", batchRows: 1000}
	id := func(cfg produceConfig, content string) string {
		s, err := loadWriterID(cfg, strings.NewReader(content))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a := id(base, "{}\n")
	if a != id(base, "{}\n") || !strings.HasPrefix(a, "produce-") {
		t.Fatalf("writer id %q is not stable", a)
	}
	other := base
	other.table = "u"
	rows := base
	rows.batchRows = 999
	csv := base
	csv.format = "csv"
	from := base
	from.fromLine = 7 // not part of the load's identity
	if id(from, "{}\n") != a {
		t.Error("--from-line changes the writer id")
	}
	for name, got := range map[string]string{"content": id(base, "{} \n"), "table": id(other, "{}\n"), "batch rows": id(rows, "{}\n"), "format": id(csv, "{}\n")} {
		if got == a {
			t.Errorf("another %s, same writer id", name)
		}
	}
}
