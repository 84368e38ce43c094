package server_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
)

// catalogCalls sums strom_catalog_calls_total by method over the nodes.
func catalogCalls(t *testing.T, nodes ...*node) map[string]float64 {
	t.Helper()
	return sumMetric(t, "strom_catalog_calls_total", "method", nodes...)
}

// sumMetric sums the counter name by the value of label over the nodes'
// /metrics (label values hold no quotes or commas here).
func sumMetric(t *testing.T, name, label string, nodes ...*node) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, n := range nodes {
		resp, err := http.Get(n.base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			labels, ok := strings.CutPrefix(sc.Text(), name+"{")
			if !ok {
				continue
			}
			labels, count, ok := strings.Cut(labels, "} ")
			if !ok {
				t.Fatalf("metrics line %q", sc.Text())
			}
			v, err := strconv.ParseFloat(count, 64)
			if err != nil {
				t.Fatalf("metrics line %q: %v", sc.Text(), err)
			}
			for _, l := range strings.Split(labels, ",") {
				if value, ok := strings.CutPrefix(l, label+"=\""); ok {
					out[strings.TrimSuffix(value, "\"")] += v
				}
			}
		}
		_ = resp.Body.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// metadataMethods are the catalog reads of table and bucket metadata that
// the hot path must not make once warm.
var metadataMethods = []string{"GetTable", "GetTableByID", "ListTables", "SchemaVersions", "GetDatabase", "ListBuckets", "GetBucket"}

// delta is the calls made between two catalogCalls.
func delta(before, after map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for m, v := range after {
		if d := v - before[m]; d != 0 {
			out[m] = d
		}
	}
	return out
}

func metadata(d map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for _, m := range metadataMethods {
		if d[m] != 0 {
			out[m] = d[m]
		}
	}
	return out
}

// hotPath drives Append (durable), Fetch and Lookup against a log table
// and a primary-key table of 2 buckets each, created through the first
// node; requests go to the nodes in turn.
type hotPath struct {
	t     *testing.T
	nodes []*node
	db    string
	next  int // next row id
	turn  int
}

func newHotPath(t *testing.T, db string, nodes ...*node) *hotPath {
	t.Helper()
	ctx := context.Background()
	n := nodes[0]
	if _, err := n.admin.CreateDatabase(ctx, connect.NewRequest(&stromv1.CreateDatabaseRequest{Name: db})); err != nil {
		t.Fatal(err)
	}
	two := int32(2)
	if _, err := n.admin.CreateTable(ctx, connect.NewRequest(&stromv1.CreateTableRequest{
		Database: db, Name: "log", Buckets: &two, BucketKey: []string{"id"},
		Schema: &stromv1.Schema{Columns: []*stromv1.Column{{Name: "id", Type: "BIGINT"}, {Name: "v", Type: "STRING", Nullable: true}}},
	})); err != nil {
		t.Fatal(err)
	}
	if _, err := n.admin.CreateTable(ctx, connect.NewRequest(&stromv1.CreateTableRequest{
		Database: db, Name: "pk", Buckets: &two,
		Schema: &stromv1.Schema{Columns: []*stromv1.Column{{Name: "id", Type: "BIGINT"}, {Name: "v", Type: "STRING", Nullable: true}}, PrimaryKey: []string{"id"}},
	})); err != nil {
		t.Fatal(err)
	}
	return &hotPath{t: t, nodes: nodes, db: db}
}

func (h *hotPath) node() *node {
	n := h.nodes[h.turn%len(h.nodes)]
	h.turn++
	return n
}

// rows returns n rows with new ids: with n >= 2 some land in each bucket.
func (h *hotPath) rows(n int) []*structpb.Struct {
	out := make([]*structpb.Struct, n)
	for i := range out {
		out[i], _ = structpb.NewStruct(map[string]any{"id": h.next, "v": fmt.Sprint("v", h.next)})
		h.next++
	}
	return out
}

func (h *hotPath) appendRows(n int) {
	h.t.Helper()
	_, err := h.node().write.Append(context.Background(), connect.NewRequest(&stromv1.AppendRequest{
		Database: h.db, Table: "log", Rows: h.rows(n), Durability: stromv1.Durability_DURABILITY_DURABLE}))
	if err != nil {
		h.t.Fatal(err)
	}
}

func (h *hotPath) upsert() {
	h.t.Helper()
	_, err := h.node().write.Upsert(context.Background(), connect.NewRequest(&stromv1.UpsertRequest{
		Database: h.db, Table: "pk", Rows: h.rows(8), Durability: stromv1.Durability_DURABILITY_DURABLE}))
	if err != nil {
		h.t.Fatal(err)
	}
}

func (h *hotPath) fetch(bucket int32) {
	h.t.Helper()
	resp, err := h.node().read.Fetch(context.Background(), connect.NewRequest(&stromv1.FetchRequest{
		Database: h.db, Table: "log", Bucket: bucket, Offset: 0}))
	if err != nil {
		h.t.Fatal(err)
	}
	if len(resp.Msg.GetRows()) == 0 {
		h.t.Fatalf("fetch of bucket %d returned no rows", bucket)
	}
}

func (h *hotPath) lookup() {
	h.t.Helper()
	keys := make([]*structpb.Struct, 8)
	for i := range keys {
		keys[i], _ = structpb.NewStruct(map[string]any{"id": i})
	}
	resp, err := h.node().read.Lookup(context.Background(), connect.NewRequest(&stromv1.LookupRequest{Database: h.db, Table: "pk", Keys: keys}))
	if err != nil {
		h.t.Fatal(err)
	}
	if len(resp.Msg.GetRows()) == 0 {
		h.t.Fatal("lookup found no rows")
	}
}

// round is one of each operation, on every node.
func (h *hotPath) round() {
	for range h.nodes {
		h.appendRows(4)
		h.upsert()
		h.fetch(0)
		h.fetch(1)
		h.lookup()
	}
}

// warmUp runs rounds until one makes no metadata read: every bucket is
// led and every cache filled (and, with PostgreSQL, confirmed by its
// watch). It gives up after 30s.
func (h *hotPath) warmUp() {
	h.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		before := catalogCalls(h.t, h.nodes...)
		h.round()
		d := metadata(delta(before, catalogCalls(h.t, h.nodes...)))
		if len(d) == 0 {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("still reading metadata from the catalog after 30s of warm-up: %v", d)
		}
	}
}

// measure runs op n times and returns the catalog calls it made.
func (h *hotPath) measure(n int, op func()) map[string]float64 {
	before := catalogCalls(h.t, h.nodes...)
	for range n {
		op()
	}
	return delta(before, catalogCalls(h.t, h.nodes...))
}

// checkHotPath asserts the catalog calls of steady-state Append (durable),
// Fetch and Lookup: no metadata read at all; an Append's only call is the
// flush's CommitSegment, a Fetch's the one ListSegments of its bucket, a
// Lookup makes none.
func checkHotPath(t *testing.T, h *hotPath) {
	t.Helper()
	const n = 10
	h.warmUp()

	appends := h.measure(n, func() { h.appendRows(1) })
	t.Logf("%d durable appends of one row: catalog calls %v", n, appends)
	if m := metadata(appends); len(m) != 0 {
		t.Errorf("appends read metadata from the catalog: %v", m)
	}
	if c := appends["CommitSegment"]; c < 1 || c > n {
		t.Errorf("%d durable appends made %v CommitSegment calls, want 1 to %d", n, c, n)
	}
	if c := appends["ListSegments"]; c != 0 {
		t.Errorf("appends listed segments %v times", c)
	}

	fetches := h.measure(n, func() { h.fetch(0) })
	t.Logf("%d fetches: catalog calls %v", n, fetches)
	if m := metadata(fetches); len(m) != 0 {
		t.Errorf("fetches read metadata from the catalog: %v", m)
	}
	if c := fetches["ListSegments"]; c != n {
		t.Errorf("%d fetches made %v ListSegments calls, want one each", n, c)
	}

	lookups := h.measure(n, h.lookup)
	t.Logf("%d lookups: catalog calls %v", n, lookups)
	if m := metadata(lookups); len(m) != 0 {
		t.Errorf("lookups read metadata from the catalog: %v", m)
	}
	for _, m := range []string{"ListSegments", "CommitSegment", "ListKVSnapshots"} {
		if lookups[m] != 0 {
			t.Errorf("lookups made %v %s calls", lookups[m], m)
		}
	}
}

// TestHotPathCatalogCalls counts, through strom_catalog_calls_total, the
// catalog calls of steady-state Append, Fetch and Lookup on one frontend
// of each backend, and on two PostgreSQL frontends that forward to each
// other: once warm, none reads table or bucket metadata (checkHotPath).
// The PostgreSQL frontends run with a long table cache bound, so that a
// slow watch on a loaded machine cannot make a read go to the catalog
// (which would be correct, but not what this test counts); retention is
// kept from listing buckets meanwhile.
func TestHotPathCatalogCalls(t *testing.T) {
	quiet := []string{"-retention.interval", "1h", "-catalog.table-cache-max-staleness", "1m"}
	for name, flags := range backends(t) {
		t.Run(name, func(t *testing.T) {
			n := startNode(t, "f1", flags(t), quiet...)
			checkHotPath(t, newHotPath(t, "hot", n))
		})
	}
	t.Run("postgres cluster", func(t *testing.T) {
		shared := backends(t)["postgres+s3"](t)
		nodes := []*node{startNode(t, "f1", shared, quiet...), startNode(t, "f2", shared, quiet...)}
		h := newHotPath(t, "hot", nodes...)
		waitLeaders(t, nodes[0], "log", map[string]int{"f1": 1, "f2": 1})
		waitLeaders(t, nodes[0], "pk", map[string]int{"f1": 1, "f2": 1})
		checkHotPath(t, h)
		if f := sumMetric(t, "strom_forwarded_requests_total", "procedure", nodes...); f["Write"] == 0 || f["Lookup"] == 0 {
			t.Fatalf("forwarded calls %v: want writes and lookups forwarded", f)
		}
	})
	// Without the table cache every request reads its table: the counter
	// sees it, so a regression fails the checks above.
	t.Run("embedded without cache", func(t *testing.T) {
		n := startNode(t, "f1", nil, "-retention.interval", "1h", "-catalog.table-cache-max-staleness", "0")
		h := newHotPath(t, "hot", n)
		h.round()
		for what, op := range map[string]func(){"append": func() { h.appendRows(1) }, "fetch": func() { h.fetch(0) }, "lookup": h.lookup} {
			if got := h.measure(5, op)["GetTable"]; got != 5 {
				t.Errorf("5 %ss without the cache made %v GetTable calls, want 5", what, got)
			}
		}
	})
}
