package server_test

import (
	"context"
	"fmt"
	"testing"

	"connectrpc.com/connect"
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"google.golang.org/protobuf/types/known/structpb"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/services/batch"
)

// arrowRows encodes rows as an Arrow IPC stream of schema s.
func arrowRows(t *testing.T, s catalog.Schema, rows []map[string]any) []byte {
	t.Helper()
	rec, err := batch.FromJSON(memory.DefaultAllocator, s, rows)
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Release()
	data, err := batch.EncodeIPC(rec.Schema(), []arrow.RecordBatch{rec})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestAlterTableSeenByEveryFrontend runs two frontends on one PostgreSQL
// catalog, each leading one of a table's two buckets and each with the
// table cached (and its cache confirmed by its watch). One frontend adds
// a column; as soon as AlterTable returns — no sleep — the other accepts
// rows that use the new column and refuses an Arrow stream of the old
// schema: no write is accepted against the old schema once AlterTable has
// returned, neither by the frontend that decodes it nor by the leader it
// forwards to. The two frontends take turns altering and writing. Once
// DropTable has returned, the other frontend refuses writes and reads of
// the table.
func TestAlterTableSeenByEveryFrontend(t *testing.T) {
	shared := backends(t)["postgres+s3"](t)
	// A generous cache bound: with a tight one, a frontend whose watch lags
	// on a loaded machine reads the catalog instead — also correct, but
	// then this test would not show the cache at work.
	flags := []string{"-catalog.table-cache-max-staleness", "2s"}
	nodes := []*node{startNode(t, "f1", shared, flags...), startNode(t, "f2", shared, flags...)}
	ctx := context.Background()
	if _, err := nodes[0].admin.CreateDatabase(ctx, connect.NewRequest(&stromv1.CreateDatabaseRequest{Name: "s"})); err != nil {
		t.Fatal(err)
	}
	two := int32(2)
	if _, err := nodes[0].admin.CreateTable(ctx, connect.NewRequest(&stromv1.CreateTableRequest{
		Database: "s", Name: "t", Buckets: &two, BucketKey: []string{"id"},
		Schema: &stromv1.Schema{Columns: []*stromv1.Column{{Name: "id", Type: "BIGINT"}}},
	})); err != nil {
		t.Fatal(err)
	}
	waitLeaders(t, nodes[0], "t", map[string]int{"f1": 1, "f2": 1})

	schema := catalog.Schema{Columns: []catalog.Column{{Name: "id", Type: catalog.BigInt}}}
	id := 0
	// rows returns rows with new ids (so both buckets get some), each with
	// the given extra values.
	rows := func(n int, extra map[string]any) []map[string]any {
		out := make([]map[string]any, n)
		for i := range out {
			row := map[string]any{"id": float64(id)}
			for k, v := range extra {
				row[k] = v
			}
			out[i] = row
			id++
		}
		return out
	}
	structs := func(rs []map[string]any) []*structpb.Struct {
		out := make([]*structpb.Struct, len(rs))
		for i, r := range rs {
			out[i], _ = structpb.NewStruct(r)
		}
		return out
	}
	appendJSON := func(n *node, rs []map[string]any) error {
		_, err := n.write.Append(ctx, connect.NewRequest(&stromv1.AppendRequest{Database: "s", Table: "t", Rows: structs(rs)}))
		return err
	}
	hits := func(n *node) float64 {
		return sumMetric(t, "strom_catalog_table_cache_lookups_total", "result", n)["hit"]
	}
	// warm makes n serve the table from its cache: it writes until a write
	// is served from the cache, showing the cached definition confirmed.
	warm := func(n *node) {
		t.Helper()
		for i := 0; ; i++ {
			before := hits(n)
			if err := appendJSON(n, rows(4, nil)); err != nil {
				t.Fatal(err)
			}
			if hits(n) > before {
				return
			}
			if i == 500 {
				t.Fatalf("%s never served the table from its cache", n.id)
			}
		}
	}

	want := map[int]map[string]any{} // id -> the row as it must be read back
	for v := 1; v <= 4; v++ {
		alterer, writer := nodes[v%2], nodes[(v+1)%2]
		warm(writer)
		warm(alterer)
		col := fmt.Sprintf("c%d", v)
		if _, err := alterer.admin.AlterTable(ctx, connect.NewRequest(&stromv1.AlterTableRequest{
			Database: "s", Name: "t", AddColumns: []*stromv1.Column{{Name: col, Type: "STRING", Nullable: true}},
		})); err != nil {
			t.Fatal(err)
		}
		old := schema
		schema.Columns = append(schema.Columns[:len(schema.Columns):len(schema.Columns)], catalog.Column{Name: col, Type: catalog.String, Nullable: true})

		// Right away, through the frontend that had the old schema cached.
		using := rows(6, map[string]any{col: "new-" + col})
		if err := appendJSON(writer, using); err != nil {
			t.Fatalf("%s, right after %s added column %s: rows using it refused: %v", writer.id, alterer.id, col, err)
		}
		for _, r := range using {
			want[int(r["id"].(float64))] = r
		}
		_, err := writer.write.Append(ctx, connect.NewRequest(&stromv1.AppendRequest{Database: "s", Table: "t", ArrowIpc: arrowRows(t, old, rows(6, nil))}))
		wantCode(t, err, connect.CodeInvalidArgument)
		wantMessage(t, err, col)
		omitting := rows(6, nil)
		if _, err := writer.write.Append(ctx, connect.NewRequest(&stromv1.AppendRequest{Database: "s", Table: "t", ArrowIpc: arrowRows(t, schema, omitting)})); err != nil {
			t.Fatalf("%s, right after %s added column %s: an Arrow stream of the new schema refused: %v", writer.id, alterer.id, col, err)
		}
		for _, r := range omitting {
			want[int(r["id"].(float64))] = r
		}
	}

	// Every row accepted after an AlterTable reads back with its values.
	got := map[int]map[string]any{}
	for b := int32(0); b < 2; b++ {
		var offset int64
		for {
			resp, err := nodes[0].read.Fetch(ctx, connect.NewRequest(&stromv1.FetchRequest{Database: "s", Table: "t", Bucket: b, Offset: offset}))
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range resp.Msg.GetRows() {
				m := r.AsMap()
				got[int(m["id"].(float64))] = m
			}
			if resp.Msg.GetNextOffset() == offset || resp.Msg.GetNextOffset() == resp.Msg.GetHighWatermark() {
				break
			}
			offset = resp.Msg.GetNextOffset()
		}
	}
	for id, w := range want {
		g := got[id]
		for v := 1; v <= 4; v++ {
			col := fmt.Sprintf("c%d", v)
			if g == nil || fmt.Sprint(g[col]) != fmt.Sprint(w[col]) {
				t.Fatalf("row %d read back as %v, want %s = %v", id, g, col, w[col])
			}
		}
	}

	warm(nodes[1])
	if _, err := nodes[0].admin.DropTable(ctx, connect.NewRequest(&stromv1.DropTableRequest{Database: "s", Name: "t"})); err != nil {
		t.Fatal(err)
	}
	wantCode(t, appendJSON(nodes[1], rows(4, nil)), connect.CodeNotFound)
	_, err := nodes[1].read.Fetch(ctx, connect.NewRequest(&stromv1.FetchRequest{Database: "s", Table: "t"}))
	wantCode(t, err, connect.CodeNotFound)
}
