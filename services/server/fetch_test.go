package server_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/api/gen/strom/v1/stromv1connect"
)

// A fetch with max_bytes projecting only a column added by AlterTable —
// which the batches written before it lack, so they read as nulls —
// returns as many batches as the same fetch without the projection, and
// walking next_offset returns every offset exactly once.
func TestFetchMaxBytesProjectingAddedColumn(t *testing.T) {
	for name, flags := range backends(t) {
		t.Run(name, func(t *testing.T) {
			base := startServer(t, flags(t)...)
			ctx := context.Background()
			admin := stromv1connect.NewAdminServiceClient(http.DefaultClient, base)
			write := stromv1connect.NewWriteServiceClient(http.DefaultClient, base)
			read := stromv1connect.NewReadServiceClient(http.DefaultClient, base)
			if _, err := admin.CreateDatabase(ctx, connect.NewRequest(&stromv1.CreateDatabaseRequest{Name: "db"})); err != nil {
				t.Fatal(err)
			}
			one := int32(1)
			if _, err := admin.CreateTable(ctx, connect.NewRequest(&stromv1.CreateTableRequest{
				Database: "db", Name: "events", Buckets: &one,
				Schema: &stromv1.Schema{Columns: []*stromv1.Column{{Name: "id", Type: "BIGINT"}, {Name: "s", Type: "STRING", Nullable: true}}},
			})); err != nil {
				t.Fatal(err)
			}
			// Each durable append is its own batch: 6 appends of 8 rows,
			// ids (= offsets) 0..3 before the ALTER, 4..7 after it with the
			// new column set.
			appendRows := func(from, to int64, withNote bool) {
				t.Helper()
				req := &stromv1.AppendRequest{Database: "db", Table: "events"}
				for id := from; id < to; id++ {
					row := map[string]any{"id": id, "s": fmt.Sprintf("s%d", id)}
					if withNote {
						row["note"] = fmt.Sprintf("n%d", id)
					}
					st, err := structpb.NewStruct(row)
					if err != nil {
						t.Fatal(err)
					}
					req.Rows = append(req.Rows, st)
				}
				if _, err := write.Append(ctx, connect.NewRequest(req)); err != nil {
					t.Fatalf("append ids [%d, %d): %v", from, to, err)
				}
			}
			appendRows(0, 2, false)
			appendRows(2, 3, false)
			appendRows(3, 4, false)
			if _, err := admin.AlterTable(ctx, connect.NewRequest(&stromv1.AlterTableRequest{
				Database: "db", Name: "events", AddColumns: []*stromv1.Column{{Name: "note", Type: "STRING", Nullable: true}},
			})); err != nil {
				t.Fatal(err)
			}
			appendRows(4, 5, true)
			appendRows(5, 7, true)
			appendRows(7, 8, true)
			const rows = 8

			// walk fetches from offset 0 to the end with max_bytes 1 and
			// returns the offsets of each response.
			walk := func(columns []string) [][]int64 {
				t.Helper()
				var pages [][]int64
				seen := map[int64]bool{}
				for off := int64(0); off < rows; {
					resp, err := read.Fetch(ctx, connect.NewRequest(&stromv1.FetchRequest{Database: "db", Table: "events", Offset: off, MaxBytes: 1, Columns: columns}))
					if err != nil {
						t.Fatalf("fetch %v from %d: %v", columns, off, err)
					}
					var page []int64
					for _, r := range resp.Msg.GetRows() {
						f := r.AsMap()
						o := int64(f["_offset"].(float64))
						if seen[o] {
							t.Fatalf("fetch %v from %d: offset %d returned again", columns, off, o)
						}
						seen[o] = true
						page = append(page, o)
						note, ok := f["note"]
						switch {
						case len(columns) > 0 && len(f) != 3:
							t.Fatalf("fetch %v: row %v has other columns than the projection", columns, f)
						case o < 4 && ok && note != nil:
							t.Fatalf("offset %d written before the ALTER has note %v", o, note)
						case o >= 4 && note != fmt.Sprintf("n%d", o):
							t.Fatalf("offset %d: note %v, want n%d", o, note, o)
						}
					}
					if len(page) == 0 || page[0] != off || resp.Msg.GetNextOffset() != off+int64(len(page)) {
						t.Fatalf("fetch %v from %d: offsets %v, next_offset %d", columns, off, page, resp.Msg.GetNextOffset())
					}
					pages = append(pages, page)
					off = resp.Msg.GetNextOffset()
				}
				if len(seen) != rows {
					t.Fatalf("fetch %v: %d offsets, want %d", columns, len(seen), rows)
				}
				return pages
			}
			all := walk(nil)
			if want := "[[0 1] [2] [3] [4] [5 6] [7]]"; fmt.Sprint(all) != want {
				t.Fatalf("max_bytes 1 without a projection: pages %v, want one batch each: %s", all, want)
			}
			if got := walk([]string{"note"}); fmt.Sprint(got) != fmt.Sprint(all) {
				t.Fatalf("max_bytes 1 projecting the added column: pages %v, want %v as without the projection", got, all)
			}
		})
	}
}
