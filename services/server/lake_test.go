package server_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/iceberg-go"
	icebergrest "github.com/apache/iceberg-go/catalog/rest"
	iceio "github.com/apache/iceberg-go/io"
	"github.com/apache/iceberg-go/table"
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

// TestTieringThroughRESTCatalog runs a server with every role on
// PostgreSQL and S3: a lake-enabled log table is tiered into Iceberg while
// it is written, and iceberg-go's own REST client, given the catalog URI
// http://<api>/iceberg, reads back exactly the rows Strom holds.
func TestTieringThroughRESTCatalog(t *testing.T) {
	flags := backends(t)["postgres+s3"](t)
	base := startServer(t, append(flags, "-lake.tiering.interval", "100ms")...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin := stromv1connect.NewAdminServiceClient(http.DefaultClient, base)
	if _, err := admin.CreateDatabase(ctx, connect.NewRequest(&stromv1.CreateDatabaseRequest{Name: "shop"})); err != nil {
		t.Fatal(err)
	}
	three := int32(3)
	if _, err := admin.CreateTable(ctx, connect.NewRequest(&stromv1.CreateTableRequest{
		Database: "shop", Name: "orders", Buckets: &three, BucketKey: []string{"id"},
		Schema:     &stromv1.Schema{Columns: []*stromv1.Column{{Name: "id", Type: "BIGINT"}, {Name: "note", Type: "STRING", Nullable: true}}},
		Properties: map[string]string{"table.datalake.enabled": "true", "table.datalake.freshness": "1s"},
	})); err != nil {
		t.Fatal(err)
	}
	write := stromv1connect.NewWriteServiceClient(http.DefaultClient, base)
	const rounds, perRound = 5, 40
	for r := range rounds {
		req := &stromv1.AppendRequest{Database: "shop", Table: "orders"}
		for i := range perRound {
			id := r*perRound + i
			row := map[string]any{"id": id}
			if id%3 != 0 {
				row["note"] = fmt.Sprintf("n%d", id)
			}
			st, _ := structpb.NewStruct(row)
			req.Rows = append(req.Rows, st)
		}
		if _, err := write.Append(ctx, connect.NewRequest(req)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(150 * time.Millisecond) // several tiering rounds under writes
	}
	const total = rounds * perRound
	waitLakeCaughtUp(t, ctx, admin, "shop", "orders")

	s3 := lakeS3(t, flags)
	cat, err := icebergrest.NewCatalog(ctx, "strom", base+"/iceberg", icebergrest.WithAdditionalProps(iceberg.Properties{
		iceio.S3AccessKeyID: s3.key, iceio.S3SecretAccessKey: s3.secret,
	}))
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := cat.LoadTable(ctx, table.Identifier{"shop", "orders"})
	if err != nil {
		t.Fatal(err)
	}
	at, err := tbl.Scan().ToArrowTable(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer at.Release()
	type key struct {
		bucket int32
		offset int64
	}
	seen := map[int64]key{}
	offsets := map[int32][]int64{}
	tr := array.NewTableReader(at, 0)
	defer tr.Release()
	for tr.Next() {
		rec := tr.RecordBatch()
		col := func(name string) arrow.Array { return rec.Column(rec.Schema().FieldIndices(name)[0]) }
		ids, notes := col("id").(*array.Int64), col("note").(*array.String)
		buckets, offs := col("__bucket").(*array.Int32), col("__offset").(*array.Int64)
		for i := range int(rec.NumRows()) {
			id := ids.Value(i)
			if _, dup := seen[id]; dup {
				t.Fatalf("id %d twice in the lake", id)
			}
			seen[id] = key{buckets.Value(i), offs.Value(i)}
			offsets[buckets.Value(i)] = append(offsets[buckets.Value(i)], offs.Value(i))
			wantNote := id%3 != 0
			if notes.IsValid(i) != wantNote || (wantNote && notes.Value(i) != fmt.Sprintf("n%d", id)) {
				t.Fatalf("id %d: note %q (valid %v)", id, notes.Value(i), notes.IsValid(i))
			}
		}
	}
	if len(seen) != total {
		t.Fatalf("lake holds %d rows, want %d", len(seen), total)
	}
	// Every bucket's offsets are 0..n-1, as Strom assigned them.
	read := stromv1connect.NewReadServiceClient(http.DefaultClient, base)
	for b, offs := range offsets {
		slices.Sort(offs)
		for i, o := range offs {
			if o != int64(i) {
				t.Fatalf("bucket %d: lake offsets %v are not 0..%d", b, offs, len(offs)-1)
			}
		}
		resp, err := read.Fetch(ctx, connect.NewRequest(&stromv1.FetchRequest{Database: "shop", Table: "orders", Bucket: b, Offset: 0, Columns: []string{"id"}}))
		if err != nil {
			t.Fatal(err)
		}
		for _, row := range resp.Msg.GetRows() {
			f := row.GetFields()
			id := int64(f["id"].GetNumberValue())
			if got := seen[id]; got != (key{b, int64(f["_offset"].GetNumberValue())}) {
				t.Fatalf("id %d: lake says bucket %d offset %d, the stream bucket %d offset %v", id, got.bucket, got.offset, b, f["_offset"])
			}
		}
	}
}

type s3Keys struct{ key, secret string }

// lakeS3 picks the S3 keys out of the server flags.
func lakeS3(t *testing.T, flags []string) s3Keys {
	t.Helper()
	var k s3Keys
	for i := 0; i+1 < len(flags); i++ {
		switch flags[i] {
		case "-objstore.s3.access-key-id":
			k.key = flags[i+1]
		case "-objstore.s3.secret-access-key":
			k.secret = flags[i+1]
		}
	}
	if k.key == "" {
		t.Fatal("no S3 keys in the flags")
	}
	return k
}

// waitLakeCaughtUp waits until db.tbl's lake has a snapshot and no lag.
func waitLakeCaughtUp(t *testing.T, ctx context.Context, admin stromv1connect.AdminServiceClient, db, tbl string) {
	t.Helper()
	for {
		resp, err := admin.GetLakeStatus(ctx, connect.NewRequest(&stromv1.GetLakeStatusRequest{Database: db, Table: tbl}))
		if err != nil {
			t.Fatal(err)
		}
		if st := resp.Msg.GetTables()[0]; st.GetSnapshotId() != 0 && st.GetLagRecords() == 0 {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("the lake of %s.%s still lags: %v", db, tbl, resp.Msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
