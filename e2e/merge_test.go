package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/api/gen/strom/v1/stromv1connect"
)

// mergeRow is a row of the merge-engine tables: key id, and nullable BIGINT
// columns (nil: NULL).
type mergeRow map[string]*int64

// mergeEngine is one merge engine under test: its table's properties and
// columns, and the model of how an upsert combines with the stored row.
type mergeEngine struct {
	name  string
	props []string // -p key=value
	cols  []string // non-key columns, all BIGINT
	merge func(old, new mergeRow) mergeRow
}

func ptr(v int64) *int64 { return &v }

var mergeEngines = []mergeEngine{
	{
		name:  "first_row",
		props: []string{"table.merge-engine=first_row"},
		cols:  []string{"v", "w"},
		merge: func(old, new mergeRow) mergeRow {
			if old != nil {
				return old
			}
			return new
		},
	},
	{
		name:  "versioned",
		props: []string{"table.merge-engine=versioned", "table.merge-engine.version-column=ver"},
		cols:  []string{"ver", "v"},
		merge: func(old, new mergeRow) mergeRow {
			if old != nil && *old["ver"] > *new["ver"] {
				return old // a tie goes to the new row
			}
			return new
		},
	},
	{
		name: "aggregation",
		props: []string{"table.merge-engine=aggregation",
			"table.merge-engine.aggregate.total=sum", "table.merge-engine.aggregate.hi=max",
			"table.merge-engine.aggregate.lo=min", "table.merge-engine.aggregate.n=count",
			"table.merge-engine.aggregate.last=last_value", "table.merge-engine.aggregate.first=first_value"},
		cols: []string{"total", "hi", "lo", "n", "last", "first", "nonnull"},
		merge: func(old, new mergeRow) mergeRow {
			if old == nil {
				res := mergeRow{}
				for c, v := range new {
					res[c] = v
				}
				res["n"] = ptr(1)
				return res
			}
			pick := func(c string, f func(a, b int64) int64) *int64 {
				switch {
				case old[c] == nil:
					return new[c]
				case new[c] == nil:
					return old[c]
				}
				return ptr(f(*old[c], *new[c]))
			}
			res := mergeRow{
				"total": pick("total", func(a, b int64) int64 { return a + b }),
				"hi":    pick("hi", func(a, b int64) int64 { return max(a, b) }),
				"lo":    pick("lo", func(a, b int64) int64 { return min(a, b) }),
				"n":     ptr(*old["n"] + 1),
				"last":  new["last"],
				"first": old["first"],
			}
			res["nonnull"] = old["nonnull"]
			if new["nonnull"] != nil {
				res["nonnull"] = new["nonnull"]
			}
			return res
		},
	},
}

func (e mergeEngine) randomRow(r *rand.Rand) mergeRow {
	row := mergeRow{}
	for _, c := range e.cols {
		switch {
		case c == "ver":
			row[c] = ptr(r.Int64N(5)) // ties and older versions happen
		case c == "n":
			row[c] = nil // count ignores the value sent
		case r.IntN(4) == 0:
			row[c] = nil
		default:
			row[c] = ptr(r.Int64N(200) - 100)
		}
	}
	return row
}

func (e mergeEngine) json(id int64, row mergeRow) string {
	m := map[string]any{"id": id}
	for _, c := range e.cols {
		if v := row[c]; v != nil {
			m[c] = *v
		} else {
			m[c] = nil
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func (e mergeEngine) show(rows map[int64]mergeRow) string {
	var out []string
	for _, id := range slicesSortedKeys(rows) {
		out = append(out, e.json(id, rows[id]))
	}
	return strings.Join(out, "\n")
}

func slicesSortedKeys(m map[int64]mergeRow) []int64 {
	keys := make([]int64, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// parseMergeRows reads rows printed as JSON (CLI lines or API structs).
func (e mergeEngine) parse(t *testing.T, objs []map[string]any) map[int64]mergeRow {
	t.Helper()
	out := map[int64]mergeRow{}
	for _, o := range objs {
		row := mergeRow{}
		for _, c := range e.cols {
			v, ok := o[c]
			if !ok {
				t.Fatalf("%s: row %v lacks %q", e.name, o, c)
			}
			if v != nil {
				n, err := json.Number(fmt.Sprint(v)).Int64()
				if err != nil {
					t.Fatalf("%s: column %s = %v: %v", e.name, c, v, err)
				}
				row[c] = &n
			}
		}
		id, err := json.Number(fmt.Sprint(o["id"])).Int64()
		if err != nil {
			t.Fatal(err)
		}
		out[id] = row
	}
	return out
}

// TestMergeEnginesModel writes first_row, versioned and aggregation tables
// through the real binary, with the Connect API (batches of upserts that
// repeat keys) and with the CLI, and checks lookups, scans and counts
// against a model of each engine after every round.
func TestMergeEnginesModel(t *testing.T) {
	p := startServer(t, t.TempDir(), append(pgS3Args(t), "-frontend.flush-interval", "5ms")...)
	cli(t, p, "db", "create", "merge")
	wc := stromv1connect.NewWriteServiceClient(http.DefaultClient, p.url())
	rc := stromv1connect.NewReadServiceClient(http.DefaultClient, p.url())
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(uint64(seed), 3))
	for _, e := range mergeEngines {
		t.Run(e.name, func(t *testing.T) {
			args := []string{"table", "create", "merge." + e.name, "-c", "id BIGINT NOT NULL", "--primary-key", "id", "--buckets", "2"}
			for _, c := range e.cols {
				typ := "BIGINT"
				if c == "ver" {
					typ = "BIGINT NOT NULL"
				}
				args = append(args, "-c", c+" "+typ)
			}
			for _, kv := range e.props {
				args = append(args, "-p", kv)
			}
			cli(t, p, args...)
			model := map[int64]mergeRow{}
			apply := func(id int64, row mergeRow) {
				if old, ok := model[id]; ok {
					model[id] = e.merge(old, row)
				} else {
					model[id] = e.merge(nil, row)
				}
			}
			for round := range 12 {
				if round%3 == 2 {
					// Through the binary: one upsert per --row, in order.
					args := []string{"upsert", "merge." + e.name}
					for range 1 + r.IntN(3) {
						id, row := r.Int64N(6), e.randomRow(r)
						args = append(args, "--row", e.json(id, row))
						apply(id, row)
					}
					cli(t, p, args...)
				} else {
					req := &stromv1.UpsertRequest{Database: "merge", Table: e.name}
					for range 1 + r.IntN(8) {
						id, row := r.Int64N(6), e.randomRow(r)
						var o map[string]any
						if err := json.Unmarshal([]byte(e.json(id, row)), &o); err != nil {
							t.Fatal(err)
						}
						s, err := structpb.NewStruct(o)
						if err != nil {
							t.Fatal(err)
						}
						req.Rows = append(req.Rows, s)
						apply(id, row)
					}
					if _, err := wc.Upsert(context.Background(), connect.NewRequest(req)); err != nil {
						t.Fatalf("round %d: upsert: %v", round, err)
					}
				}
				checkMerge(t, e, rc, p, model)
			}
		})
	}
}

// checkMerge compares Lookup, Scan (API and CLI) and Count with the model.
func checkMerge(t *testing.T, e mergeEngine, rc stromv1connect.ReadServiceClient, p *process, model map[int64]mergeRow) {
	t.Helper()
	ctx := context.Background()
	want := e.show(model)
	var keys []*structpb.Struct
	for id := range int64(6) {
		s, _ := structpb.NewStruct(map[string]any{"id": id})
		keys = append(keys, s)
	}
	lk, err := rc.Lookup(ctx, connect.NewRequest(&stromv1.LookupRequest{Database: "merge", Table: e.name, Keys: keys}))
	if err != nil {
		t.Fatalf("lookup: %v", err)
	}
	var objs []map[string]any
	for _, s := range lk.Msg.GetRows() {
		objs = append(objs, s.AsMap())
	}
	if got := e.show(e.parse(t, objs)); got != want {
		t.Fatalf("lookup:\n got %s\nwant %s", got, want)
	}
	objs = objs[:0]
	for _, line := range strings.Split(strings.TrimSpace(cli(t, p, "scan", "merge."+e.name)), "\n") {
		if line == "" {
			continue
		}
		var o map[string]any
		if err := json.Unmarshal([]byte(line), &o); err != nil {
			t.Fatalf("scan line %q: %v", line, err)
		}
		objs = append(objs, o)
	}
	if got := e.show(e.parse(t, objs)); got != want {
		t.Fatalf("CLI scan:\n got %s\nwant %s", got, want)
	}
	cnt, err := rc.Count(ctx, connect.NewRequest(&stromv1.CountRequest{Database: "merge", Table: e.name}))
	if err != nil || cnt.Msg.GetCount() != int64(len(model)) {
		t.Fatalf("count = %d, %v; want %d", cnt.Msg.GetCount(), err, len(model))
	}
}
