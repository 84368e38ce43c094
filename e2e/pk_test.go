package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/api/gen/strom/v1/stromv1connect"
)

// pkRow is a row of e2e.pk: primary key (g, id), bucket key g; c is a
// column that AlterTable adds while the table has rows.
type pkRow struct {
	g, id int64
	a     *string
	b     *int64
	c     *string
}

type pkKey struct{ g, id int64 }

// pkModel is the table as the acknowledged operations define it.
type pkModel map[pkKey]pkRow

// pkOp is one upsert, partial update or delete.
type pkOp struct {
	kind   string // "upsert", "partial-a", "partial-b", "partial-c", "delete"
	row    pkRow
	writer string
	seq    int64
}

func (m pkModel) apply(op pkOp) {
	k := pkKey{op.row.g, op.row.id}
	switch op.kind {
	case "upsert":
		m[k] = op.row
	case "partial-a":
		old, ok := m[k]
		if !ok {
			old = pkRow{g: k.g, id: k.id}
		}
		old.a = op.row.a
		m[k] = old
	case "partial-b":
		old, ok := m[k]
		if !ok {
			old = pkRow{g: k.g, id: k.id}
		}
		old.b = op.row.b
		m[k] = old
	case "partial-c":
		old, ok := m[k]
		if !ok {
			old = pkRow{g: k.g, id: k.id}
		}
		old.c = op.row.c
		m[k] = old
	case "delete":
		delete(m, k)
	}
}

// randomPKOp returns a random op; withC: the table has column c, which the
// op may then set.
func randomPKOp(r *rand.Rand, seq int64, withC bool) pkOp {
	row := pkRow{g: r.Int64N(3), id: r.Int64N(8)}
	if r.IntN(4) > 0 {
		s := fmt.Sprintf("a%d", r.IntN(100))
		row.a = &s
	}
	if r.IntN(4) > 0 {
		n := r.Int64N(1000) - 500
		row.b = &n
	}
	kinds := []string{"upsert", "upsert", "partial-a", "partial-b", "delete"}
	if withC {
		if r.IntN(3) > 0 {
			s := fmt.Sprintf("c%d", r.IntN(100))
			row.c = &s
		}
		kinds = append(kinds, "partial-c")
	}
	return pkOp{kind: kinds[r.IntN(len(kinds))], row: row, writer: "pk-writer", seq: seq}
}

func (r pkRow) object(cols ...string) *structpb.Struct {
	m := map[string]any{"g": r.g, "id": r.id}
	for _, c := range cols {
		switch c {
		case "a":
			if r.a != nil {
				m["a"] = *r.a
			} else {
				m["a"] = nil
			}
		case "b":
			if r.b != nil {
				m["b"] = *r.b
			} else {
				m["b"] = nil
			}
		case "c":
			if r.c != nil {
				m["c"] = *r.c
			} else {
				m["c"] = nil
			}
		}
	}
	s, err := structpb.NewStruct(m)
	if err != nil {
		panic(err)
	}
	return s
}

// send performs op once.
func (op pkOp) send(ctx context.Context, w stromv1connect.WriteServiceClient) error {
	var err error
	switch op.kind {
	case "upsert":
		cols := []string{"a", "b"}
		if op.row.c != nil {
			cols = append(cols, "c") // a row without c is an upsert as before the AlterTable: c NULL
		}
		_, err = w.Upsert(ctx, connect.NewRequest(&stromv1.UpsertRequest{Database: "e2e", Table: "pk", Rows: []*structpb.Struct{op.row.object(cols...)}, WriterId: op.writer, Sequence: op.seq}))
	case "partial-a":
		_, err = w.Upsert(ctx, connect.NewRequest(&stromv1.UpsertRequest{Database: "e2e", Table: "pk", Rows: []*structpb.Struct{op.row.object("a")}, TargetColumns: []string{"g", "id", "a"}, WriterId: op.writer, Sequence: op.seq}))
	case "partial-b":
		_, err = w.Upsert(ctx, connect.NewRequest(&stromv1.UpsertRequest{Database: "e2e", Table: "pk", Rows: []*structpb.Struct{op.row.object("b")}, TargetColumns: []string{"g", "id", "b"}, WriterId: op.writer, Sequence: op.seq}))
	case "partial-c":
		_, err = w.Upsert(ctx, connect.NewRequest(&stromv1.UpsertRequest{Database: "e2e", Table: "pk", Rows: []*structpb.Struct{op.row.object("c")}, TargetColumns: []string{"g", "id", "c"}, WriterId: op.writer, Sequence: op.seq}))
	case "delete":
		_, err = w.Delete(ctx, connect.NewRequest(&stromv1.DeleteRequest{Database: "e2e", Table: "pk", Keys: []*structpb.Struct{op.row.object()}, WriterId: op.writer, Sequence: op.seq}))
	}
	return err
}

func createPKTable(t *testing.T, p *process) {
	cli(t, p, "db", "create", "e2e", "--if-not-exists")
	cli(t, p, "table", "create", "e2e.pk", "-c", "g BIGINT NOT NULL", "-c", "id BIGINT NOT NULL", "-c", "a STRING", "-c", "b BIGINT",
		"--primary-key", "g,id", "--bucket-key", "g", "--buckets", "3")
}

func rowFromStruct(s *structpb.Struct) pkRow {
	f := s.GetFields()
	r := pkRow{g: int64(f["g"].GetNumberValue()), id: int64(f["id"].GetNumberValue())}
	if v, ok := f["a"]; ok {
		if _, null := v.GetKind().(*structpb.Value_NullValue); !null {
			s := v.GetStringValue()
			r.a = &s
		}
	}
	if v, ok := f["b"]; ok {
		if _, null := v.GetKind().(*structpb.Value_NullValue); !null {
			n := int64(v.GetNumberValue())
			r.b = &n
		}
	}
	if v, ok := f["c"]; ok {
		if _, null := v.GetKind().(*structpb.Value_NullValue); !null {
			s := v.GetStringValue()
			r.c = &s
		}
	}
	return r
}

func (r pkRow) String() string {
	a, b, c := "null", "null", "null"
	if r.a != nil {
		a = *r.a
	}
	if r.b != nil {
		b = fmt.Sprint(*r.b)
	}
	if r.c != nil {
		c = *r.c
	}
	return fmt.Sprintf("(%d,%d,%s,%s,%s)", r.g, r.id, a, b, c)
}

func sortedRows(rows []pkRow) string {
	s := make([]string, len(rows))
	for i, r := range rows {
		s[i] = r.String()
	}
	sort.Strings(s)
	return fmt.Sprint(s)
}

func (m pkModel) rows(g int64, all bool) []pkRow {
	var out []pkRow
	for k, r := range m {
		if all || k.g == g {
			out = append(out, r)
		}
	}
	return out
}

// checkPK compares lookups, prefix lookups, count and scan with the model.
func checkPK(t *testing.T, rc stromv1connect.ReadServiceClient, m pkModel) {
	t.Helper()
	ctx := context.Background()
	var keys []*structpb.Struct
	var want []pkRow
	for g := int64(0); g < 3; g++ {
		for id := int64(0); id < 8; id++ {
			keys = append(keys, pkRow{g: g, id: id}.object())
			if r, ok := m[pkKey{g, id}]; ok {
				want = append(want, r)
			}
		}
	}
	// Right after a restart with a wiped data directory the buckets wait
	// for the dead process's leases to expire: unavailable, as a client
	// retrying would see.
	var lk *connect.Response[stromv1.LookupResponse]
	var err error
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		lk, err = rc.Lookup(ctx, connect.NewRequest(&stromv1.LookupRequest{Database: "e2e", Table: "pk", Keys: keys}))
		if connect.CodeOf(err) != connect.CodeUnavailable || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("lookup: %v", err)
	}
	var got []pkRow
	for _, s := range lk.Msg.GetRows() {
		got = append(got, rowFromStruct(s))
	}
	if sortedRows(got) != sortedRows(want) {
		t.Fatalf("lookup:\n got %s\nwant %s", sortedRows(got), sortedRows(want))
	}
	for g := int64(0); g < 3; g++ {
		pl, err := rc.PrefixLookup(ctx, connect.NewRequest(&stromv1.PrefixLookupRequest{Database: "e2e", Table: "pk", Prefix: pkRow{g: g}.prefix()}))
		if err != nil {
			t.Fatalf("prefix lookup: %v", err)
		}
		got = got[:0]
		for _, s := range pl.Msg.GetRows() {
			got = append(got, rowFromStruct(s))
		}
		if sortedRows(got) != sortedRows(m.rows(g, false)) {
			t.Fatalf("prefix lookup g=%d:\n got %s\nwant %s", g, sortedRows(got), sortedRows(m.rows(g, false)))
		}
	}
	cnt, err := rc.Count(ctx, connect.NewRequest(&stromv1.CountRequest{Database: "e2e", Table: "pk"}))
	if err != nil || cnt.Msg.GetCount() != int64(len(m)) {
		t.Fatalf("count = %d, %v; want %d", cnt.Msg.GetCount(), err, len(m))
	}
	sc, err := rc.Scan(ctx, connect.NewRequest(&stromv1.ScanRequest{Database: "e2e", Table: "pk", Limit: 1000}))
	if err != nil {
		t.Fatalf("scan: %v", err)
	}
	got = got[:0]
	for _, s := range sc.Msg.GetRows() {
		got = append(got, rowFromStruct(s))
	}
	if sortedRows(got) != sortedRows(m.rows(0, true)) {
		t.Fatalf("scan:\n got %s\nwant %s", sortedRows(got), sortedRows(m.rows(0, true)))
	}
}

func (r pkRow) prefix() *structpb.Struct {
	s, _ := structpb.NewStruct(map[string]any{"g": r.g})
	return s
}

// replayChangelog rebuilds the table from its changelog: every bucket from
// offset 0, +I/+U put, -D delete; it must equal the model.
func replayChangelog(t *testing.T, p *process, m pkModel) {
	t.Helper()
	rc := stromv1connect.NewReadServiceClient(http.DefaultClient, p.url())
	replayed := pkModel{}
	for b := int32(0); b < 3; b++ {
		var offset int64
		for {
			resp, err := rc.Fetch(context.Background(), connect.NewRequest(&stromv1.FetchRequest{Database: "e2e", Table: "pk", Bucket: b, Offset: offset}))
			if err != nil {
				t.Fatalf("fetch changelog: %v", err)
			}
			for _, s := range resp.Msg.GetRows() {
				r := rowFromStruct(s)
				switch ct := s.GetFields()["_change_type"].GetStringValue(); ct {
				case "+I", "+U":
					replayed[pkKey{r.g, r.id}] = r
				case "-D":
					delete(replayed, pkKey{r.g, r.id})
				case "-U":
				default:
					t.Fatalf("change type %q", ct)
				}
			}
			if resp.Msg.GetNextOffset() >= resp.Msg.GetHighWatermark() {
				break
			}
			offset = resp.Msg.GetNextOffset()
		}
	}
	if sortedRows(replayed.rows(0, true)) != sortedRows(m.rows(0, true)) {
		t.Fatalf("changelog replay:\n got %s\nwant %s", sortedRows(replayed.rows(0, true)), sortedRows(m.rows(0, true)))
	}
}

// TestPrimaryKeyModel: random upserts, partial updates and deletes over a
// small key space, checked against a model for lookups, prefix lookups,
// count and scan, and the changelog replays to the same table. Halfway,
// AlterTable adds column c, which rows written before read as NULL and
// later ops set; a restart follows, then more ops.
func TestPrimaryKeyModel(t *testing.T) {
	dir := t.TempDir()
	args := append(pgS3Args(t), "-frontend.flush-interval", "5ms", "-data-dir", filepath.Join(dir, "data"))
	p := startServer(t, dir, args...)
	createPKTable(t, p)
	wc := stromv1connect.NewWriteServiceClient(http.DefaultClient, p.url())
	rc := stromv1connect.NewReadServiceClient(http.DefaultClient, p.url())
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(uint64(seed), 1))
	m := pkModel{}
	withC := false
	for i := int64(1); i <= 450; i++ {
		switch i {
		case 150:
			cli(t, p, "table", "alter", "e2e.pk", "--add-column", "c STRING")
			withC = true
			checkPK(t, rc, m)
		case 300:
			p.stop(t)
			p = startServer(t, dir, args...)
			wc = stromv1connect.NewWriteServiceClient(http.DefaultClient, p.url())
			rc = stromv1connect.NewReadServiceClient(http.DefaultClient, p.url())
			checkPK(t, rc, m)
		}
		op := randomPKOp(r, i, withC)
		if err := op.send(context.Background(), wc); err != nil {
			t.Fatalf("op %d %s %s: %v", i, op.kind, op.row, err)
		}
		m.apply(op)
		if i%25 == 0 {
			checkPK(t, rc, m)
		}
	}
	checkPK(t, rc, m)
	replayChangelog(t, p, m)
	p.stop(t)
}

// TestPrimaryKeyKillAndRecover: kill -9 during durable upserts; after a
// restart the table equals the model of acknowledged operations and the
// changelog replays to it. The second time the local data directory is
// deleted before the restart: the KV state comes back from the object
// store and the catalog alone.
func TestPrimaryKeyKillAndRecover(t *testing.T) {
	dir := t.TempDir()
	args := append(pgS3Args(t), "-data-dir", filepath.Join(dir, "data"), "-frontend.kv-snapshot-interval", "1s")
	p := startServer(t, dir, args...)
	createPKTable(t, p)
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	m := pkModel{}
	seq := int64(0)
	withC := false
	for round, wipe := range []bool{false, true} {
		wc := stromv1connect.NewWriteServiceClient(http.DefaultClient, p.url())
		if round == 1 {
			// Rows of both schema versions go through the kill and the
			// restore from the KV snapshot.
			cli(t, p, "table", "alter", "e2e.pk", "--add-column", "c STRING")
			withC = true
		}
		done := make(chan *pkOp, 1)
		go func() {
			for n := 0; n < 100000; n++ { // bounded; the kill ends it
				seq++
				op := randomPKOp(r, seq, withC)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := op.send(ctx, wc)
				cancel()
				if err != nil {
					done <- &op // in flight when the server died
					return
				}
				m.apply(op)
			}
			done <- nil
		}()
		time.Sleep(2 * time.Second)
		p.kill(t)
		inflight := <-done
		if wipe {
			if err := os.RemoveAll(filepath.Join(dir, "data")); err != nil {
				t.Fatal(err)
			}
		}
		before := p.log()
		p = startServer(t, dir, args...)
		wc = stromv1connect.NewWriteServiceClient(http.DefaultClient, p.url())
		if inflight != nil {
			// Unknown outcome: the retry with the same sequence is applied
			// at most once.
			var err error
			for attempt := 0; attempt < 50; attempt++ {
				if err = inflight.send(context.Background(), wc); err == nil || connect.CodeOf(err) != connect.CodeUnavailable {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			if err != nil {
				t.Fatalf("round %d: retry after restart: %v", round, err)
			}
			m.apply(*inflight)
		}
		t.Logf("round %d (wipe %v): %d ops, %d rows", round, wipe, seq, len(m))
		if wipe && !strings.Contains(p.log(), "KV snapshot restored") {
			t.Errorf("no KV snapshot was restored after the data directory was deleted (snapshots taken before: %v)", strings.Contains(before, "KV snapshot taken"))
		}
		checkPK(t, stromv1connect.NewReadServiceClient(http.DefaultClient, p.url()), m)
		replayChangelog(t, p, m)
	}
	p.stop(t)
}

// TestPrimaryKeyCLI: the CLI's upsert, delete, lookup, scan and count, and
// bad input refused with the cause named and nothing written, on each
// backend.
func TestPrimaryKeyCLI(t *testing.T) { onBackends(t, testPrimaryKeyCLI) }

func testPrimaryKeyCLI(t *testing.T, be backend) {
	p := startServer(t, t.TempDir(), be.args...)
	cli(t, p, "db", "create", "shop")
	cli(t, p, "table", "create", "shop.customers", "-c", "region STRING NOT NULL", "-c", "id BIGINT NOT NULL", "-c", "name STRING", "-c", "city STRING",
		"--primary-key", "region,id", "--bucket-key", "region", "--buckets", "4")
	cli(t, p, "table", "create", "shop.events", "-c", "id BIGINT NOT NULL")
	cli(t, p, "upsert", "shop.customers", "--row", `{"region": "eu", "id": 1, "name": "ada", "city": "paris"}`,
		"--row", `{"region": "eu", "id": 2, "name": "bob"}`, "--row", `{"region": "us", "id": 3, "name": "cy"}`)
	cli(t, p, "upsert", "shop.customers", "--row", `{"region": "eu", "id": 1, "city": "rome"}`, "--target-columns", "region,id,city")

	out := cli(t, p, "lookup", "shop.customers", "--key", `{"region": "eu", "id": 1}`, "--key", `{"region": "us", "id": 9}`)
	if !strings.Contains(out, `"city":"rome"`) || !strings.Contains(out, `"name":"ada"`) || strings.Count(out, "\n") != 1 {
		t.Fatalf("lookup after a partial update: %s", out)
	}
	if out := cli(t, p, "lookup", "shop.customers", "--prefix", `{"region": "eu"}`); strings.Count(out, "\n") != 2 || strings.Contains(out, `"us"`) {
		t.Fatalf("prefix lookup: %s", out)
	}
	if out := strings.TrimSpace(cli(t, p, "count", "shop.customers")); out != "3" {
		t.Fatalf("count = %q", out)
	}
	cli(t, p, "delete", "shop.customers", "--key", `{"region": "eu", "id": 2}`)
	if out := cli(t, p, "scan", "shop.customers", "--limit", "10"); strings.Count(out, "\n") != 2 || strings.Contains(out, "bob") {
		t.Fatalf("scan after delete: %s", out)
	}
	// Page by page (ScanStream), from the KV index and as a union.
	if out := cli(t, p, "scan", "shop.customers", "--limit", "0", "--page-size", "1"); strings.Count(out, "\n") != 2 || strings.Contains(out, "bob") {
		t.Fatalf("scan in pages of one row: %s", out)
	}
	if out := cli(t, p, "scan", "shop.customers", "--union", "--limit", "0", "--page-size", "1", "--columns", "id"); strings.Count(out, "\n") != 2 || !strings.Contains(out, `"_offset"`) || strings.Contains(out, "name") {
		t.Fatalf("union scan in pages of one row: %s", out)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"upsert", "shop.events", "--row", `{"id": 1}`}, "failed_precondition"},
		{[]string{"upsert", "shop.customers", "--row", `{"region": "eu", "name": "no id"}`}, `"id"`},
		{[]string{"upsert", "shop.customers", "--row", `{"region": "eu", "id": null}`}, `"id"`},
		{[]string{"upsert", "shop.customers", "--row", `{"region": "eu", "id": 5, "age": 3}`}, "age"},
		{[]string{"upsert", "shop.customers", "--row", `{"region": "eu", "city": "x"}`, "--target-columns", "region,city"}, "id"},
		{[]string{"upsert", "shop.customers", "--row", `{"region": "eu", "id": 1}`, "--target-columns", "region,id,nope"}, "nope"},
		{[]string{"lookup", "shop.customers", "--key", `{"region": "eu"}`}, "id"},
		{[]string{"count", "shop.events"}, "failed_precondition"},
	} {
		errOut := cliFails(t, p, tc.args...)
		if !strings.Contains(errOut, tc.want) {
			t.Errorf("strom %v: error does not name %s: %s", tc.args, tc.want, errOut)
		}
	}
	if out := strings.TrimSpace(cli(t, p, "count", "shop.customers")); out != "2" {
		t.Fatalf("count after refused writes = %q", out)
	}
	p.stop(t)
}
