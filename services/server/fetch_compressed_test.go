package server_test

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/api/gen/strom/v1/stromv1connect"
)

// TestFetchArrowCompressed: a Fetch with arrow_compressed returns, read
// with stock arrow-go, exactly the rows of the same Fetch without it, for
// every codec, with projections, from an offset inside a batch, for
// batches written before an AlterTable added a projected column, and in
// pages of max_bytes; with FORMAT_JSON the flag is refused.
func TestFetchArrowCompressed(t *testing.T) {
	base := startServer(t)
	ctx := context.Background()
	admin := stromv1connect.NewAdminServiceClient(http.DefaultClient, base)
	write := stromv1connect.NewWriteServiceClient(http.DefaultClient, base)
	read := stromv1connect.NewReadServiceClient(http.DefaultClient, base)
	if _, err := admin.CreateDatabase(ctx, connect.NewRequest(&stromv1.CreateDatabaseRequest{Name: "fc"})); err != nil {
		t.Fatal(err)
	}
	one := int32(1)
	for _, codec := range []string{"zstd", "lz4", "none"} {
		t.Run(codec, func(t *testing.T) {
			if _, err := admin.CreateTable(ctx, connect.NewRequest(&stromv1.CreateTableRequest{
				Database: "fc", Name: codec, Buckets: &one, Properties: map[string]string{"table.log.compression": codec},
				Schema: &stromv1.Schema{Columns: []*stromv1.Column{
					{Name: "id", Type: "BIGINT"},
					{Name: "s", Type: "STRING", Nullable: true},
					{Name: "d", Type: "DECIMAL(10,2)", Nullable: true},
					{Name: "b", Type: "BOOLEAN", Nullable: true},
				}},
			})); err != nil {
				t.Fatal(err)
			}
			appendRows := func(from, n int, extra bool) {
				t.Helper()
				var rows []*structpb.Struct
				for i := from; i < from+n; i++ {
					r := map[string]any{"id": i, "s": fmt.Sprintf("row %d", i), "d": fmt.Sprintf("%d.25", i), "b": i%3 == 0}
					if i%5 == 0 {
						r["s"] = nil
					}
					if extra {
						r["note"] = fmt.Sprintf("note %d", i)
					}
					s, err := structpb.NewStruct(r)
					if err != nil {
						t.Fatal(err)
					}
					rows = append(rows, s)
				}
				if _, err := write.Append(ctx, connect.NewRequest(&stromv1.AppendRequest{Database: "fc", Table: codec, Rows: rows})); err != nil {
					t.Fatal(err)
				}
			}
			for i := range 4 {
				appendRows(i*50, 50, false)
			}
			if _, err := admin.AlterTable(ctx, connect.NewRequest(&stromv1.AlterTableRequest{
				Database: "fc", Name: codec, AddColumns: []*stromv1.Column{{Name: "note", Type: "STRING", Nullable: true}},
			})); err != nil {
				t.Fatal(err)
			}
			appendRows(200, 50, true)
			size := map[bool]int{}
			fetch := func(offset, maxBytes int64, cols []string, compressed bool) ([]map[string]any, int64) {
				t.Helper()
				resp, err := read.Fetch(ctx, connect.NewRequest(&stromv1.FetchRequest{
					Database: "fc", Table: codec, Offset: offset, MaxBytes: maxBytes, Columns: cols,
					Format: stromv1.Format_FORMAT_ARROW, ArrowCompressed: compressed,
				}))
				if err != nil {
					t.Fatal(err)
				}
				if offset == 0 && maxBytes == 0 && cols == nil {
					size[compressed] = len(resp.Msg.GetArrowIpc())
				}
				rows, err := decodeIPCRows(resp.Msg.GetArrowIpc())
				if err != nil {
					t.Fatalf("arrow-go reading the response (compressed %v): %v", compressed, err)
				}
				return rows, resp.Msg.GetNextOffset()
			}
			for _, cols := range [][]string{nil, {"s"}, {"note", "id"}, {"b", "d"}} {
				for _, offset := range []int64{0, 17, 200, 233} {
					for _, maxBytes := range []int64{0, 1} {
						want, wantNext := fetch(offset, maxBytes, cols, false)
						got, next := fetch(offset, maxBytes, cols, true)
						if next != wantNext || !reflect.DeepEqual(got, want) {
							t.Fatalf("columns %v from %d max %d: compressed %d rows to %d, uncompressed %d rows to %d\n got %v\nwant %v",
								cols, offset, maxBytes, len(got), next, len(want), wantNext, head(got), head(want))
						}
						if len(want) == 0 {
							t.Fatalf("columns %v from %d: no rows", cols, offset)
						}
					}
				}
			}
			// The compressed buffers went out as stored: with a codec the
			// response is smaller.
			if codec != "none" && size[true] >= size[false] {
				t.Fatalf("all rows: %d bytes compressed, %d uncompressed", size[true], size[false])
			}
		})
	}
	_, err := read.Fetch(ctx, connect.NewRequest(&stromv1.FetchRequest{Database: "fc", Table: "zstd", ArrowCompressed: true}))
	wantCode(t, err, connect.CodeInvalidArgument)
	wantMessage(t, err, "arrow_compressed")
}

func head(rows []map[string]any) []map[string]any { return rows[:min(len(rows), 3)] }
