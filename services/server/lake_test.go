package server_test

import (
	"context"
	"net/http"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/api/gen/strom/v1/stromv1connect"
)

func TestLakeStatus(t *testing.T) {
	base := startServer(t)
	ctx := context.Background()
	admin := stromv1connect.NewAdminServiceClient(http.DefaultClient, base)
	if _, err := admin.CreateDatabase(ctx, connect.NewRequest(&stromv1.CreateDatabaseRequest{Name: "l"})); err != nil {
		t.Fatal(err)
	}
	two := int32(2)
	schema := &stromv1.Schema{Columns: []*stromv1.Column{{Name: "id", Type: "BIGINT"}}}
	for _, name := range []string{"lake", "plain"} {
		props := map[string]string{}
		if name == "lake" {
			props = map[string]string{"table.datalake.enabled": "true", "table.datalake.freshness": "30s"}
		}
		if _, err := admin.CreateTable(ctx, connect.NewRequest(&stromv1.CreateTableRequest{
			Database: "l", Name: name, Schema: schema, Buckets: &two, BucketKey: []string{"id"}, Properties: props,
		})); err != nil {
			t.Fatal(err)
		}
	}
	write := stromv1connect.NewWriteServiceClient(http.DefaultClient, base)
	req := &stromv1.AppendRequest{Database: "l", Table: "lake"}
	for i := range 10 {
		st, _ := structpb.NewStruct(map[string]any{"id": i})
		req.Rows = append(req.Rows, st)
	}
	if _, err := write.Append(ctx, connect.NewRequest(req)); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*stromv1.GetLakeStatusRequest{{}, {Database: "l"}, {Database: "l", Table: "lake"}} {
		resp, err := admin.GetLakeStatus(ctx, connect.NewRequest(r))
		if err != nil {
			t.Fatalf("GetLakeStatus(%v): %v", r, err)
		}
		tables := resp.Msg.GetTables()
		if len(tables) != 1 || tables[0].GetTable() != "lake" || tables[0].GetFreshnessMs() != 30000 {
			t.Fatalf("GetLakeStatus(%v) = %v, want the one lake table", r, tables)
		}
		var next int64
		for _, b := range tables[0].GetBuckets() {
			next += b.GetNextOffset()
			if b.GetTieredOffset() != 0 || b.GetTieredTime() != nil {
				t.Fatalf("bucket %v tiered before any tiering", b)
			}
		}
		if len(tables[0].GetBuckets()) != 2 || next != 10 || tables[0].GetLagRecords() != 10 {
			t.Fatalf("lake status %v, want 2 buckets lagging 10 records", tables[0])
		}
	}
	_, err := admin.GetLakeStatus(ctx, connect.NewRequest(&stromv1.GetLakeStatusRequest{Database: "l", Table: "plain"}))
	wantCode(t, err, connect.CodeFailedPrecondition)
	_, err = admin.GetLakeStatus(ctx, connect.NewRequest(&stromv1.GetLakeStatusRequest{Table: "lake"}))
	wantCode(t, err, connect.CodeInvalidArgument)
	_, err = admin.GetLakeStatus(ctx, connect.NewRequest(&stromv1.GetLakeStatusRequest{Database: "nope"}))
	wantCode(t, err, connect.CodeNotFound)
}
