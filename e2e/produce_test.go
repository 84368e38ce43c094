package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/api/gen/strom/v1/stromv1connect"
)

// consumedRow is one JSON line printed by `strom consume`.
type consumedRow map[string]any

func (r consumedRow) str(k string) string {
	v, ok := r[k]
	if !ok || v == nil {
		return "<nil>"
	}
	return fmt.Sprint(v)
}

// parseConsumed decodes the JSON lines of `strom consume` (numbers as
// json.Number, so BIGINT ids compare exactly).
func parseConsumed(t *testing.T, out string) []consumedRow {
	t.Helper()
	var rows []consumedRow
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		dec := json.NewDecoder(strings.NewReader(line))
		dec.UseNumber()
		var r consumedRow
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("consume printed a line that is not a JSON object: %q: %v", line, err)
		}
		rows = append(rows, r)
	}
	return rows
}

// checkConsumedOffsets checks that, per bucket, the rows come in offset
// order from 0 without gap or duplicate, carry a parseable _timestamp, and
// returns the row count per bucket.
func checkConsumedOffsets(t *testing.T, rows []consumedRow, buckets int) map[int]int {
	t.Helper()
	per := map[int][]int64{}
	for _, r := range rows {
		var b, off int64
		if _, err := fmt.Sscan(r.str("_bucket"), &b); err != nil {
			t.Fatalf("row without a numeric _bucket: %v", r)
		}
		if _, err := fmt.Sscan(r.str("_offset"), &off); err != nil {
			t.Fatalf("row without a numeric _offset: %v", r)
		}
		if b < 0 || int(b) >= buckets {
			t.Fatalf("row in bucket %d of a %d-bucket table: %v", b, buckets, r)
		}
		ts, ok := r["_timestamp"].(string)
		if !ok {
			t.Fatalf("row without a _timestamp string: %v", r)
		}
		if tt, err := time.Parse(time.RFC3339Nano, ts); err != nil || time.Since(tt) > time.Hour || time.Until(tt) > time.Minute {
			t.Fatalf("row with a bad _timestamp %q (%v): %v", ts, err, r)
		}
		per[int(b)] = append(per[int(b)], off)
	}
	counts := map[int]int{}
	for b, offs := range per {
		for i, o := range offs {
			if o != int64(i) {
				t.Fatalf("bucket %d: offset %d at position %d: out of order, gap or duplicate", b, o, i)
			}
		}
		counts[b] = len(offs)
	}
	return counts
}

// TestProduceConsume: `strom produce` of 5,000 JSON lines and of a CSV file
// with nulls into a 3-bucket table; `strom consume` reads back exactly those
// rows, projects, honours --from latest and --limit; a bad JSON line fails
// naming the line; `consume --follow` sees rows produced after it started.
func TestProduceConsume(t *testing.T) {
	start := time.Now()
	dir := t.TempDir()
	p := startServer(t, dir, append(pgS3Args(t), "-data-dir", filepath.Join(dir, "data"))...)
	cli(t, p, "db", "create", "e2e")
	cli(t, p, "table", "create", "e2e.p", "-c", "id BIGINT NOT NULL", "-c", "name STRING", "-c", "score DOUBLE",
		"-c", "note STRING", "--buckets", "3", "--bucket-key", "id")

	// What we expect per id: name, score, note as consume prints them.
	type want struct{ name, score, note string }
	expected := map[string]want{}

	// 5,000 JSON lines, with a blank line in the middle and some nulls.
	var jl bytes.Buffer
	for i := range 5000 {
		row := map[string]any{"id": i, "name": fmt.Sprintf("name-%d", i), "score": float64(i) / 4}
		w := want{name: fmt.Sprintf("name-%d", i), score: fmt.Sprint(json.Number(fmt.Sprint(float64(i) / 4)))}
		if i%7 == 0 {
			row["note"] = nil
			w.note = "<nil>"
		} else {
			row["note"] = fmt.Sprintf("note \"%d\" ✓", i)
			w.note = fmt.Sprintf("note \"%d\" ✓", i)
		}
		b, _ := json.Marshal(row)
		jl.Write(b)
		jl.WriteByte('\n')
		if i == 2500 {
			jl.WriteString("\n")
		}
		expected[fmt.Sprint(i)] = w
	}
	jsonFile := filepath.Join(dir, "rows.jsonl")
	if err := os.WriteFile(jsonFile, jl.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	cli(t, p, "produce", "e2e.p", jsonFile, "--batch-rows", "700")
	t.Logf("produce of 5,000 JSON lines: %v", time.Since(t0).Round(time.Millisecond))

	// CSV: header names the columns, empty fields are null, values are
	// converted by the server.
	var csv bytes.Buffer
	csv.WriteString("id,name,score,note\n")
	for i := 10000; i < 10200; i++ {
		name, score, note := fmt.Sprintf("csv-%d", i), fmt.Sprintf("%d.5", i), ""
		w := want{name: name, score: json.Number(score).String(), note: "<nil>"}
		switch i % 3 {
		case 0:
			name, w.name = "", "<nil>"
		case 1:
			score, w.score = "", "<nil>"
		case 2:
			w.note = `a "quoted", note`
			note = `"a ""quoted"", note"`
		}
		fmt.Fprintf(&csv, "%d,%s,%s,%s\n", i, name, score, note)
		expected[fmt.Sprint(i)] = w
	}
	csvFile := filepath.Join(dir, "rows.csv")
	if err := os.WriteFile(csvFile, csv.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	cli(t, p, "produce", "e2e.p", csvFile, "--format", "csv")

	// Everything, from earliest, without --follow: exactly the rows sent.
	t0 = time.Now()
	rows := parseConsumed(t, cli(t, p, "consume", "e2e.p", "--from", "earliest"))
	t.Logf("consume of %d rows: %v", len(rows), time.Since(t0).Round(time.Millisecond))
	if len(rows) != len(expected) {
		t.Errorf("consume printed %d rows, want %d", len(rows), len(expected))
	}
	seen := map[string]int{}
	for _, r := range rows {
		id := r.str("id")
		seen[id]++
		w, ok := expected[id]
		if !ok {
			t.Errorf("unexpected row %v", r)
			continue
		}
		got := want{name: r.str("name"), score: r.str("score"), note: r.str("note")}
		if got != w {
			t.Errorf("id %s: got %+v, want %+v (row %v)", id, got, w, r)
		}
		for k := range r {
			switch k {
			case "id", "name", "score", "note", "_bucket", "_offset", "_timestamp":
			default:
				t.Errorf("id %s: unexpected key %q", id, k)
			}
		}
		if t.Failed() && len(seen) > 20 {
			t.FailNow()
		}
	}
	for id := range expected {
		if seen[id] != 1 {
			t.Errorf("id %s printed %d times", id, seen[id])
		}
	}
	counts := checkConsumedOffsets(t, rows, 3)
	t.Logf("rows per bucket: %v", counts)
	for b := range 3 {
		if counts[b] == 0 {
			t.Errorf("bucket %d got no rows of 5,200 (bucketing by id is broken?)", b)
		}
	}

	// Projection: only the columns asked for, plus the system columns.
	proj := parseConsumed(t, cli(t, p, "consume", "e2e.p", "--from", "earliest", "--columns", "id,note"))
	if len(proj) != len(expected) {
		t.Errorf("consume --columns printed %d rows, want %d", len(proj), len(expected))
	}
	for _, r := range proj {
		keys := make([]string, 0, len(r))
		for k := range r {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if strings.Join(keys, ",") != "_bucket,_offset,_timestamp,id,note" {
			t.Fatalf("consume --columns id,note printed keys %v: %v", keys, r)
		}
		if w := expected[r.str("id")]; r.str("note") != w.note {
			t.Fatalf("consume --columns: id %s note %q, want %q", r.str("id"), r.str("note"), w.note)
		}
	}
	checkConsumedOffsets(t, proj, 3)

	// --from latest without --follow: nothing.
	if out := cli(t, p, "consume", "e2e.p", "--from", "latest"); strings.TrimSpace(out) != "" {
		t.Errorf("consume --from latest printed %q, want nothing", out)
	}
	// --limit.
	if lim := parseConsumed(t, cli(t, p, "consume", "e2e.p", "--limit", "7")); len(lim) != 7 {
		t.Errorf("consume --limit 7 printed %d rows", len(lim))
	}
	// --bucket 1 --from offset:5 --limit 3: offsets 5, 6, 7 of bucket 1.
	b1 := parseConsumed(t, cli(t, p, "consume", "e2e.p", "--bucket", "1", "--from", "offset:5", "--limit", "3"))
	if len(b1) != 3 || b1[0].str("_bucket") != "1" || b1[0].str("_offset") != "5" || b1[2].str("_offset") != "7" {
		t.Errorf("consume --bucket 1 --from offset:5 --limit 3 = %v", b1)
	}

	// A bad JSON line: non-zero exit naming the line.
	cli(t, p, "table", "create", "e2e.bad", "-c", "id BIGINT NOT NULL", "--buckets", "3")
	badFile := filepath.Join(dir, "bad.jsonl")
	if err := os.WriteFile(badFile, []byte("{\"id\": 1}\n{\"id\": 2}\n\n{\"id\": 3,\n{\"id\": 5}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	errOut := cliFails(t, p, "produce", "e2e.bad", badFile)
	if !strings.Contains(errOut, "line 4") || !strings.Contains(errOut, "JSON") {
		t.Errorf("produce of a bad JSON line: stderr does not name line 4:\n%s", errOut)
	}
	badRows := parseConsumed(t, cli(t, p, "consume", "e2e.bad"))
	for _, r := range badRows {
		if id := r.str("id"); id != "1" && id != "2" {
			t.Errorf("row after the bad line was written: %v", r)
		}
	}
	t.Logf("bad JSON line: stderr %q; rows before it written: %d", strings.TrimSpace(errOut), len(badRows))
	// A value the server rejects: non-zero exit naming the lines of the batch.
	if err := os.WriteFile(badFile, []byte("{\"id\": 1}\n{\"id\": \"x\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	errOut = cliFails(t, p, "produce", "e2e.bad", badFile)
	if !strings.Contains(errOut, "lines 1–2 (batch 1)") || !strings.Contains(errOut, "invalid_argument") || !strings.Contains(errOut, `"id"`) || !strings.Contains(errOut, "0 rows written") {
		t.Errorf("produce of a row the server rejects: stderr %s", errOut)
	}

	// consume --follow in the background sees rows produced afterwards.
	follow := startFollower(t, p, "consume", "e2e.p", "--from", "latest", "--follow", "--columns", "id")
	// The follower lists the latest offsets when it starts; produce probe
	// rows until it prints one, so that it is known to be following.
	probeDeadline := time.Now().Add(20 * time.Second)
	for probe := 0; !follow.sawAny(); probe++ {
		if time.Now().After(probeDeadline) {
			t.Fatalf("consume --follow printed nothing within 20s of probe rows; stderr: %s", follow.stderr())
		}
		produceLines(t, p, dir, "e2e.p", fmt.Sprintf("{\"id\": %d}\n", 50000+probe))
		follow.wait(func(map[string]int) bool { return follow.sawAny() }, time.Second)
	}
	var newRows strings.Builder
	for i := 60000; i < 60010; i++ {
		fmt.Fprintf(&newRows, "{\"id\": %d, \"name\": \"late\"}\n", i)
	}
	t0 = time.Now()
	produceLines(t, p, dir, "e2e.p", newRows.String())
	ok := follow.wait(func(ids map[string]int) bool {
		for i := 60000; i < 60010; i++ {
			if ids[fmt.Sprint(i)] == 0 {
				return false
			}
		}
		return true
	}, 10*time.Second)
	if !ok {
		t.Fatalf("consume --follow did not print the 10 rows produced after it within 10s; printed %v; stderr: %s", follow.ids(), follow.stderr())
	}
	t.Logf("consume --follow saw 10 new rows %v after produce started (incl. CLI start-up)", time.Since(t0).Round(time.Millisecond))
	for id, n := range follow.ids() {
		if n != 1 {
			t.Errorf("consume --follow printed id %s %d times", id, n)
		}
	}
	follow.stop(t)

	cli(t, p, "db", "drop", "e2e", "--cascade")
	p.stop(t)
	t.Logf("TestProduceConsume took %v", time.Since(start).Round(time.Millisecond))
}

// produceLines runs `strom produce table` on the JSON lines given.
func produceLines(t *testing.T, p *process, dir, table, lines string) {
	t.Helper()
	f, err := os.CreateTemp(dir, "lines-*.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(lines); err != nil {
		t.Fatal(err)
	}
	f.Close()
	cli(t, p, "produce", table, f.Name())
}

// follower is a `strom consume --follow` running in the background.
type follower struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	seen   map[string]int
	errBuf bytes.Buffer
	change chan struct{}
	done   chan error
}

func startFollower(t *testing.T, p *process, args ...string) *follower {
	t.Helper()
	f := &follower{seen: map[string]int{}, change: make(chan struct{}, 1), done: make(chan error, 1)}
	f.cmd = exec.Command(stromBin, append([]string{"--addr", p.addr}, args...)...)
	f.cmd.Stderr = &lockedWriter{mu: &f.mu, w: &f.errBuf}
	out, err := f.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			dec := json.NewDecoder(strings.NewReader(sc.Text()))
			dec.UseNumber()
			var r consumedRow
			if dec.Decode(&r) != nil {
				continue
			}
			f.mu.Lock()
			f.seen[r.str("id")]++
			f.mu.Unlock()
			select {
			case f.change <- struct{}{}:
			default:
			}
		}
		f.done <- f.cmd.Wait()
	}()
	t.Cleanup(func() {
		if f.cmd.ProcessState == nil {
			_ = f.cmd.Process.Kill()
		}
	})
	return f
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func (f *follower) ids() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := make(map[string]int, len(f.seen))
	for k, v := range f.seen {
		m[k] = v
	}
	return m
}

func (f *follower) sawAny() bool { return len(f.ids()) > 0 }

func (f *follower) stderr() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.errBuf.String()
}

// wait waits up to d for cond over the ids printed so far.
func (f *follower) wait(cond func(map[string]int) bool, d time.Duration) bool {
	deadline := time.After(d)
	for {
		if cond(f.ids()) {
			return true
		}
		select {
		case <-f.change:
		case <-deadline:
			return cond(f.ids())
		}
	}
}

// stop interrupts the follower as Ctrl-C would; it must exit cleanly and
// promptly.
func (f *follower) stop(t *testing.T) {
	t.Helper()
	if err := f.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-f.done:
		if err != nil {
			t.Errorf("consume --follow exited with %v after SIGINT; stderr: %s", err, f.stderr())
		}
	case <-time.After(10 * time.Second):
		_ = f.cmd.Process.Kill()
		t.Errorf("consume --follow did not exit within 10s of SIGINT")
	}
}

// jsonLines is n JSON lines with ids from 0; bad maps a line (from 1) to
// the text that replaces it.
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

// resumeHint matches the last line of a failed `strom produce`.
var resumeHint = regexp.MustCompile(`resume with --from-line (\d+) --writer-id (\S+)`)

// TestProduceExactAndResumable: `strom produce` stops at the first failing
// batch with everything before it written and nothing after it, exits 1,
// says how many rows were written and where to resume; resuming completes
// the load exactly; a load killed at any moment and run again from line 1
// writes every row exactly once, and a further run writes nothing.
func TestProduceExactAndResumable(t *testing.T) {
	dir := t.TempDir()
	p := startServer(t, dir, append(pgS3Args(t), "-data-dir", filepath.Join(dir, "data"))...)
	cli(t, p, "db", "create", "e2e")
	newTable := func(name string) string {
		cli(t, p, "table", "create", "e2e."+name, "-c", "id BIGINT NOT NULL", "-c", "name STRING", "--buckets", "3", "--bucket-key", "id")
		return "e2e." + name
	}
	file := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	// fails runs a produce that must exit with code 1 and returns stderr.
	fails := func(args ...string) string {
		t.Helper()
		out, errOut, err := runCLI(p, append([]string{"produce"}, args...)...)
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Fatalf("strom produce %s: %v, want exit code 1\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out, errOut)
		}
		return errOut
	}
	wantInErr := func(errOut string, parts ...string) {
		t.Helper()
		for _, part := range parts {
			if !strings.Contains(errOut, part) {
				t.Errorf("stderr does not say %q:\n%s", part, errOut)
			}
		}
	}
	// wantIDs checks that table holds the ids from..to-1, each once.
	wantIDs := func(table string, from, to int) {
		t.Helper()
		rows := parseConsumed(t, cli(t, p, "consume", table, "--from", "earliest", "--columns", "id"))
		checkConsumedOffsets(t, rows, 3)
		seen := map[string]int{}
		for _, r := range rows {
			seen[r.str("id")]++
		}
		for i := from; i < to; i++ {
			if n := seen[fmt.Sprint(i)]; n != 1 {
				t.Errorf("%s: id %d present %d times", table, i, n)
			}
			delete(seen, fmt.Sprint(i))
		}
		if len(seen) > 0 {
			t.Errorf("%s: %d unexpected ids, e.g. %v", table, len(seen), rows[0])
		}
		if t.Failed() {
			t.FailNow()
		}
	}

	// Every row refused: nothing written, and it says so.
	var refused strings.Builder
	for i := range 2500 {
		fmt.Fprintf(&refused, "{\"id\": \"x%d\"}\n", i)
	}
	tbl := newTable("refused")
	errOut := fails(tbl, file("refused.jsonl", refused.String()), "--batch-rows", "1000")
	wantInErr(errOut, "lines 1–1000 (batch 1): invalid_argument", `"id"`, "0 rows written;", "resume with --from-line 1 --writer-id produce-")
	if strings.Contains(errOut, "produced") {
		t.Errorf("stderr claims rows were produced:\n%s", errOut)
	}
	wantIDs(tbl, 0, 0)
	t.Logf("all rows refused: %s", strings.TrimSpace(errOut))

	// A bad value on line 1, valid lines after it: nothing written.
	tbl = newTable("line1")
	errOut = fails(tbl, file("line1.jsonl", jsonLines(2500, map[int]string{1: `{"id": "one"}`})), "--batch-rows", "1000")
	wantInErr(errOut, "lines 1–1000 (batch 1)", "0 rows written;", "--from-line 1 ")
	wantIDs(tbl, 0, 0)

	// A JSON syntax error on line 2: line 1, in its batch, is not written.
	tbl = newTable("syntax")
	errOut = fails(tbl, file("syntax.jsonl", jsonLines(3000, map[int]string{2: `{"id": 1,`})))
	wantInErr(errOut, "line 2: invalid JSON", "0 rows written;", "resume with --from-line 1 ")
	wantIDs(tbl, 0, 0)

	// A value the server refuses on line 1500 with batches of 1,000 (the
	// README's example): lines 1-1000 are written, nothing after; fixing
	// the line and resuming from the printed line with the printed writer
	// id completes the load exactly.
	broken := file("resume.jsonl", jsonLines(3000, map[int]string{1500: `{"id": "x"}`}))
	errOut = fails(tbl, broken, "--batch-rows", "1000")
	wantInErr(errOut, "strom: lines 1001–2000 (batch 1001): invalid_argument: row 499, column \"id\": want BIGINT, got string \"x\"\n"+
		"1000 rows written (lines 1–1000), nothing after them; resume with --from-line 1001 --writer-id produce-")
	wantIDs(tbl, 0, 1000)
	m := resumeHint.FindStringSubmatch(errOut)
	if m == nil {
		t.Fatalf("no resume hint in:\n%s", errOut)
	}
	fixed := file("resume.jsonl", jsonLines(3000, nil))
	out, errOut, err := runCLI(p, "produce", tbl, fixed, "--batch-rows", "1000", "--from-line", m[1], "--writer-id", m[2])
	if err != nil {
		t.Fatalf("resume: %v\n%s%s", err, out, errOut)
	}
	wantInErr(errOut, "produced 2000 rows (lines 1001–3000)")
	wantIDs(tbl, 0, 3000)

	// Killed at some point of the load (SIGKILL, as a crash), then run
	// again from line 1: every row exactly once. Wherever the kill lands,
	// that must hold; the log says where it landed.
	tbl = newTable("crash")
	const crashRows = 20000
	input := file("crash.jsonl", jsonLines(crashRows, nil))
	rc := stromv1connect.NewReadServiceClient(http.DefaultClient, p.url())
	written := func() int64 {
		resp, err := rc.ListOffsets(context.Background(), connect.NewRequest(&stromv1.ListOffsetsRequest{Database: "e2e", Table: "crash", Spec: stromv1.OffsetSpec_OFFSET_SPEC_LATEST}))
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, o := range resp.Msg.GetOffsets() {
			n += o.GetOffset()
		}
		return n
	}
	load := exec.Command(stromBin, "--addr", p.addr, "produce", tbl, input, "--batch-rows", "500")
	var loadErr bytes.Buffer
	load.Stderr = &loadErr
	if err := load.Start(); err != nil {
		t.Fatal(err)
	}
	loadDone := make(chan error, 1)
	go func() { loadDone <- load.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	killed := false
	for !killed {
		select {
		case err := <-loadDone:
			t.Logf("the load finished (%v) before it could be killed: %s", err, loadErr.String())
			killed = true
			continue
		case <-time.After(20 * time.Millisecond):
		}
		if n := written(); n >= 1000 || time.Now().After(deadline) {
			_ = load.Process.Kill()
			<-loadDone
			killed = true
		}
	}
	before := written()
	t.Logf("%d of %d rows written when the load was killed", before, crashRows)
	out, errOut, err = runCLI(p, "produce", tbl, input, "--batch-rows", "500")
	if err != nil {
		t.Fatalf("re-run: %v\n%s%s", err, out, errOut)
	}
	wantInErr(errOut, fmt.Sprintf("produced %d rows (lines 1–%d)", crashRows, crashRows))
	t.Logf("re-run: %s", strings.TrimSpace(errOut))
	wantIDs(tbl, 0, crashRows)

	// Once more: the file was loaded, nothing is written.
	_, errOut, err = runCLI(p, "produce", tbl, input, "--batch-rows", "500")
	if err != nil {
		t.Fatal(err)
	}
	wantInErr(errOut, fmt.Sprintf("%d of them were already written", crashRows))
	wantIDs(tbl, 0, crashRows)

	// stdin: a random writer id, printed for the resume.
	tbl = newTable("stdin")
	cmd := exec.Command(stromBin, "--addr", p.addr, "produce", tbl, "-", "--batch-rows", "10")
	cmd.Stdin = strings.NewReader(jsonLines(30, map[int]string{25: "{"}))
	var stdinErr bytes.Buffer
	cmd.Stderr = &stdinErr
	if err := cmd.Run(); err == nil {
		t.Fatal("produce of a bad stdin succeeded")
	}
	m = resumeHint.FindStringSubmatch(stdinErr.String())
	if m == nil || m[1] != "21" {
		t.Fatalf("stdin: no resume from line 21 in:\n%s", stdinErr.String())
	}
	cmd = exec.Command(stromBin, "--addr", p.addr, "produce", tbl, "--batch-rows", "10", "--from-line", m[1], "--writer-id", m[2])
	cmd.Stdin = strings.NewReader(jsonLines(30, nil))
	stdinErr.Reset()
	cmd.Stderr = &stdinErr
	if err := cmd.Run(); err != nil {
		t.Fatalf("stdin resume: %v\n%s", err, stdinErr.String())
	}
	wantIDs(tbl, 0, 30)

	cli(t, p, "db", "drop", "e2e", "--cascade")
	p.stop(t)
}
