package server_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/iceberg-go"
	icecatalog "github.com/apache/iceberg-go/catalog"
	icebergrest "github.com/apache/iceberg-go/catalog/rest"
	iceio "github.com/apache/iceberg-go/io"
	"google.golang.org/protobuf/types/known/structpb"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
)

// alterModel is the expected content of the alter test's table: id →
// column → value (absent or nil: NULL).
type alterModel map[int64]map[string]any

func (m alterModel) String() string {
	var out []string
	for _, id := range slices.Sorted(maps.Keys(m)) {
		out = append(out, fmt.Sprintf("%d:%v", id, showAlterRow(m[id])))
	}
	return strings.Join(out, " ")
}

func showAlterRow(r map[string]any) string {
	var out []string
	for _, c := range []string{"name", "score", "note", "flag"} {
		out = append(out, fmt.Sprintf("%s=%v", c, r[c]))
	}
	return strings.Join(out, ",")
}

// rowsModel reads rows of the alter test's table (JSON values) into a
// model; columns of the table the rows lack must not exist yet.
func rowsModel(t *testing.T, rows []*structpb.Struct, cols []string) alterModel {
	t.Helper()
	m := alterModel{}
	for _, s := range rows {
		f := s.AsMap()
		row := map[string]any{}
		for _, c := range cols {
			v, ok := f[c]
			if !ok {
				t.Fatalf("row %v lacks column %q", f, c)
			}
			if v != nil {
				row[c] = fmt.Sprint(v)
			}
		}
		for c := range f {
			if !slices.Contains(cols, c) && !strings.HasPrefix(c, "_") && c != "id" {
				t.Fatalf("row %v has column %q, which the table does not have yet", f, c)
			}
		}
		m[int64(f["id"].(float64))] = row
	}
	return m
}

// alterTable drives a primary-key table through AlterTable add_columns
// with rows written before and after, checking every read path against
// the model after each step.
type alterTable struct {
	t     *testing.T
	db    string
	cols  []string // non-key columns, in schema order
	model alterModel
	seq   int64
}

func (a *alterTable) row(id int64, vals map[string]any) *structpb.Struct {
	f := map[string]any{"id": id}
	maps.Copy(f, vals)
	s, err := structpb.NewStruct(f)
	if err != nil {
		a.t.Fatal(err)
	}
	return s
}

// upsert writes rows (a partial update when target is set) and applies
// them to the model.
func (a *alterTable) upsert(n *node, target []string, rows map[int64]map[string]any) {
	a.t.Helper()
	req := &stromv1.UpsertRequest{Database: a.db, Table: "t", TargetColumns: target, WriterId: "alter", Sequence: a.next()}
	for _, id := range slices.Sorted(maps.Keys(rows)) {
		req.Rows = append(req.Rows, a.row(id, rows[id]))
		old, ok := a.model[id]
		if !ok || target == nil {
			old = map[string]any{}
		}
		for c, v := range rows[id] {
			if v == nil {
				delete(old, c)
			} else {
				old[c] = fmt.Sprint(v)
			}
		}
		a.model[id] = old
	}
	if _, err := retryUnavailable(func() (*connect.Response[stromv1.UpsertResponse], error) {
		return n.write.Upsert(context.Background(), connect.NewRequest(req))
	}); err != nil {
		a.t.Fatalf("upsert %v: %v", rows, err)
	}
}

func (a *alterTable) next() int64 { a.seq++; return a.seq }

func (a *alterTable) delete(n *node, ids ...int64) {
	a.t.Helper()
	req := &stromv1.DeleteRequest{Database: a.db, Table: "t", WriterId: "alter", Sequence: a.next()}
	for _, id := range ids {
		req.Keys = append(req.Keys, a.row(id, nil))
		delete(a.model, id)
	}
	if _, err := retryUnavailable(func() (*connect.Response[stromv1.DeleteResponse], error) {
		return n.write.Delete(context.Background(), connect.NewRequest(req))
	}); err != nil {
		a.t.Fatalf("delete %v: %v", ids, err)
	}
}

func (a *alterTable) addColumn(n *node, name, typ string) {
	a.t.Helper()
	if _, err := n.admin.AlterTable(context.Background(), connect.NewRequest(&stromv1.AlterTableRequest{
		Database: a.db, Name: "t", AddColumns: []*stromv1.Column{{Name: name, Type: typ, Nullable: true}},
	})); err != nil {
		a.t.Fatalf("add column %s: %v", name, err)
	}
	a.cols = append(a.cols, name)
}

// check compares Lookup, PrefixLookup, Scan, Count and the changelog
// replayed from offset 0 with the model, through node n.
func (a *alterTable) check(what string, n *node) {
	a.t.Helper()
	ctx := context.Background()
	want := a.model.String()
	var keys []*structpb.Struct
	for id := range int64(10) {
		keys = append(keys, a.row(id, nil))
	}
	lk, err := retryUnavailable(func() (*connect.Response[stromv1.LookupResponse], error) {
		return n.read.Lookup(ctx, connect.NewRequest(&stromv1.LookupRequest{Database: a.db, Table: "t", Keys: keys}))
	})
	if err != nil {
		a.t.Fatalf("%s: lookup: %v", what, err)
	}
	if got := rowsModel(a.t, lk.Msg.GetRows(), a.cols).String(); got != want {
		a.t.Fatalf("%s: lookup\n got %s\nwant %s", what, got, want)
	}
	sc, err := n.read.Scan(ctx, connect.NewRequest(&stromv1.ScanRequest{Database: a.db, Table: "t"}))
	if err != nil {
		a.t.Fatalf("%s: scan: %v", what, err)
	}
	if got := rowsModel(a.t, sc.Msg.GetRows(), a.cols).String(); got != want {
		a.t.Fatalf("%s: scan\n got %s\nwant %s", what, got, want)
	}
	prefix := alterModel{}
	for id := range int64(10) {
		pl, err := n.read.PrefixLookup(ctx, connect.NewRequest(&stromv1.PrefixLookupRequest{Database: a.db, Table: "t", Prefix: a.row(id, nil)}))
		if err != nil {
			a.t.Fatalf("%s: prefix lookup %d: %v", what, id, err)
		}
		maps.Copy(prefix, rowsModel(a.t, pl.Msg.GetRows(), a.cols))
	}
	if got := prefix.String(); got != want {
		a.t.Fatalf("%s: prefix lookups\n got %s\nwant %s", what, got, want)
	}
	cnt, err := n.read.Count(ctx, connect.NewRequest(&stromv1.CountRequest{Database: a.db, Table: "t"}))
	if err != nil || cnt.Msg.GetCount() != int64(len(a.model)) {
		a.t.Fatalf("%s: count = %d, %v; want %d", what, cnt.Msg.GetCount(), err, len(a.model))
	}
	replayed := alterModel{}
	for b := range int32(2) {
		for offset := int64(0); ; {
			resp, err := n.read.Fetch(ctx, connect.NewRequest(&stromv1.FetchRequest{Database: a.db, Table: "t", Bucket: b, Offset: offset}))
			if err != nil {
				a.t.Fatalf("%s: fetch bucket %d at %d: %v", what, b, offset, err)
			}
			for _, s := range resp.Msg.GetRows() {
				one := rowsModel(a.t, []*structpb.Struct{s}, a.cols)
				switch ct := s.GetFields()["_change_type"].GetStringValue(); ct {
				case "+I", "+U":
					maps.Copy(replayed, one)
				case "-D":
					for id := range one {
						delete(replayed, id)
					}
				}
			}
			if offset = resp.Msg.GetNextOffset(); offset >= resp.Msg.GetHighWatermark() {
				break
			}
		}
	}
	if got := replayed.String(); got != want {
		a.t.Fatalf("%s: changelog replay\n got %s\nwant %s", what, got, want)
	}
}

// retryUnavailable retries a call while it fails with unavailable (a
// bucket between leaders), for up to 30 s.
func retryUnavailable[T any](call func() (T, error)) (T, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		v, err := call()
		if connect.CodeOf(err) != connect.CodeUnavailable || time.Now().After(deadline) {
			return v, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func newAlterTable(t *testing.T, n *node, db string, props map[string]string) *alterTable {
	t.Helper()
	ctx := context.Background()
	if _, err := n.admin.CreateDatabase(ctx, connect.NewRequest(&stromv1.CreateDatabaseRequest{Name: db})); err != nil {
		t.Fatal(err)
	}
	buckets := int32(2)
	if _, err := n.admin.CreateTable(ctx, connect.NewRequest(&stromv1.CreateTableRequest{
		Database: db, Name: "t", Buckets: &buckets, Properties: props,
		Schema: &stromv1.Schema{Columns: []*stromv1.Column{
			{Name: "id", Type: "BIGINT"},
			{Name: "name", Type: "STRING", Nullable: true},
			{Name: "score", Type: "INT", Nullable: true},
		}, PrimaryKey: []string{"id"}},
	})); err != nil {
		t.Fatal(err)
	}
	return &alterTable{t: t, db: db, cols: []string{"name", "score"}, model: alterModel{}}
}

// writeAround writes before and after adding columns: upserts of old and
// new width, partial updates of old and new columns, deletes.
func (a *alterTable) writeAround(n *node) {
	a.upsert(n, nil, map[int64]map[string]any{0: {"name": "ada", "score": 1}, 1: {"name": "bob"}, 2: {"score": 3}, 3: {"name": "cy", "score": 4}})
	a.check("before alter", n)
	a.addColumn(n, "note", "STRING")
	a.check("after alter, old rows only", n)
	a.upsert(n, nil, map[int64]map[string]any{4: {"name": "dee", "note": "new"}, 1: {"name": "bob", "score": 2, "note": "x"}})
	a.upsert(n, []string{"id", "note"}, map[int64]map[string]any{0: {"note": "partial"}, 5: {"note": "fresh"}})
	a.upsert(n, []string{"id", "score"}, map[int64]map[string]any{2: {"score": 30}})
	a.delete(n, 3)
	a.check("after writes under version 2", n)
	a.addColumn(n, "flag", "BOOLEAN")
	a.upsert(n, []string{"id", "flag"}, map[int64]map[string]any{2: {"flag": true}, 6: {"flag": false}})
	a.upsert(n, nil, map[int64]map[string]any{7: {"name": "eve", "score": 7, "note": "n", "flag": true}})
	a.delete(n, 4)
	a.check("after writes under version 3", n)
}

// TestAlterPrimaryKeyTable adds columns to a primary-key table with rows:
// old rows read with NULLs in the new columns, and writes of every kind
// work, on both backends, after a restart that keeps the data directory,
// and (with PostgreSQL and S3) on a frontend that restores the KV state
// from its snapshot in the object store.
func TestAlterPrimaryKeyTable(t *testing.T) {
	for name, backend := range backends(t) {
		t.Run(name, func(t *testing.T) {
			shared := backend(t)
			dir := t.TempDir()
			n := startNode(t, "f1", shared, "-data-dir", dir)
			a := newAlterTable(t, n, "alter", nil)
			a.writeAround(n)

			n.stop() // drains: the KV state is snapshotted and the lease released
			n = startNode(t, "f1", shared, "-data-dir", dir)
			a.check("after a restart", n)
			a.upsert(n, []string{"id", "note"}, map[int64]map[string]any{1: {"note": "restarted"}})
			a.check("written after a restart", n)

			if shared == nil {
				return // the embedded catalog and objects live in the data directory
			}
			n.stop()
			n = startNode(t, "f2", shared) // a new data directory: restore from the snapshot
			a.check("restored from the KV snapshot", n)
			a.upsert(n, nil, map[int64]map[string]any{8: {"name": "new", "flag": true}})
			a.check("written after the restore", n)
		})
	}
}

// TestAlterPrimaryKeyTableAcrossFrontends: two frontends, each leading a
// bucket, one altering the table while the other reads and writes through
// forwarding; then one frontend leaves and the other takes its bucket
// over, KV state of both versions included.
func TestAlterPrimaryKeyTableAcrossFrontends(t *testing.T) {
	shared := backends(t)["postgres+s3"](t)
	n1 := startNode(t, "f1", shared)
	n2 := startNode(t, "f2", shared)
	a := newAlterTable(t, n1, "alter2", nil)
	a.upsert(n1, nil, map[int64]map[string]any{0: {"name": "ada"}, 1: {"name": "bob"}, 2: {"name": "cy"}, 3: {"score": 3}})
	waitLeaders(t, n1, "t", map[string]int{"f1": 1, "f2": 1})
	a.check("f1 before alter", n1)
	a.addColumn(n2, "note", "STRING")
	a.check("f2 after alter", n2)
	a.check("f1 after alter", n1)
	a.upsert(n2, []string{"id", "note"}, map[int64]map[string]any{0: {"note": "a"}, 1: {"note": "b"}, 4: {"note": "c"}})
	a.upsert(n1, nil, map[int64]map[string]any{5: {"name": "dee", "note": "d"}})
	a.check("f1 after writes", n1)
	a.check("f2 after writes", n2)
	n1.stop()
	waitLeaders(t, n2, "t", map[string]int{"f2": 2})
	a.check("f2 after f1 left", n2)
	a.upsert(n2, []string{"id", "note"}, map[int64]map[string]any{2: {"note": "taken over"}})
	a.check("f2 writes after f1 left", n2)
}

// TestAlterPrimaryKeyTableTiered tiers a primary-key table whose columns
// are added while it is tiered: the Iceberg table, read with iceberg-go's
// scanner through the REST catalog, gains the columns and equals the
// model, and so does a union scan.
func TestAlterPrimaryKeyTableTiered(t *testing.T) {
	t.Setenv("AWS_CA_BUNDLE", "") // see TestLakeTablesMatchStrom
	shared := backends(t)["postgres+s3"](t)
	n := startNode(t, "f1", shared, "-lake.tiering.interval", "100ms")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a := newAlterTable(t, n, "alter3", map[string]string{"table.datalake.enabled": "true", "table.datalake.freshness": "1s"})
	a.upsert(n, nil, map[int64]map[string]any{0: {"name": "ada", "score": 1}, 1: {"name": "bob"}})
	waitLakeCaughtUp(t, ctx, n.admin, "alter3", "t")
	a.writeAround(n)
	waitLakeCaughtUp(t, ctx, n.admin, "alter3", "t")

	s3 := lakeS3(t, shared)
	rc, err := icebergrest.NewCatalog(ctx, "strom", n.base+"/iceberg", icebergrest.WithAdditionalProps(iceberg.Properties{
		iceio.S3AccessKeyID: s3.key, iceio.S3SecretAccessKey: s3.secret,
	}))
	if err != nil {
		t.Fatal(err)
	}
	it, err := rc.LoadTable(ctx, icecatalog.ToIdentifier("alter3", "t"))
	if err != nil {
		t.Fatal(err)
	}
	at, err := it.Scan().ToArrowTable(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer at.Release()
	tr := array.NewTableReader(at, 1024)
	defer tr.Release()
	lake := alterModel{}
	for tr.Next() {
		rows, err := recordRows(tr.RecordBatch())
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			row := map[string]any{}
			for _, c := range a.cols {
				v, ok := r[c]
				if !ok {
					t.Fatalf("Iceberg row %v lacks column %q", r, c)
				}
				if v != nil {
					row[c] = fmt.Sprint(v)
				}
			}
			lake[r["id"].(int64)] = row
		}
	}
	if got, want := lake.String(), a.model.String(); got != want {
		t.Fatalf("Iceberg table\n got %s\nwant %s", got, want)
	}
	sc, err := n.read.Scan(ctx, connect.NewRequest(&stromv1.ScanRequest{Database: "alter3", Table: "t", Union: true}))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := rowsModel(t, sc.Msg.GetRows(), a.cols).String(), a.model.String(); got != want {
		t.Fatalf("union scan\n got %s\nwant %s", got, want)
	}
}
