package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/structpb"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/api/gen/strom/v1/stromv1connect"
	"github.com/strom-io/strom/services/rpcerr"
	"github.com/strom-io/strom/services/server"
	"github.com/strom-io/strom/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// startServer runs a server on a free loopback port until the test ends and
// returns its base URL.
func startServer(t *testing.T, args ...string) string {
	t.Helper()
	return startServerMetrics(t, prometheus.NewRegistry(), args...)
}

// startServerMetrics is startServer with the server's metrics in reg.
func startServerMetrics(t *testing.T, reg *prometheus.Registry, args ...string) string {
	t.Helper()
	args = append([]string{"-data-dir", t.TempDir(), "-server.http-listen-address", "127.0.0.1:0", "-server.internal-listen-address", "127.0.0.1:0", "-log.level", "warn"}, args...)
	cfg, err := server.LoadConfig("test", args, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := server.New(ctx, cfg, logger, reg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return srv.URL()
}

// backends are the catalog and object store configurations every API test
// runs against: the embedded defaults and real PostgreSQL with versitygw.
func backends(t *testing.T) map[string]func(t *testing.T) []string {
	return map[string]func(t *testing.T) []string{
		"embedded": func(*testing.T) []string { return nil },
		"postgres+s3": func(t *testing.T) []string {
			s3 := testenv.S3(t)
			return []string{
				"-catalog.backend", "postgres", "-catalog.postgres.url", testenv.Postgres(t),
				"-objstore.backend", "s3",
				"-objstore.s3.endpoint", s3.Endpoint, "-objstore.s3.region", s3.Region,
				"-objstore.s3.bucket", s3.Bucket, "-objstore.s3.prefix", s3.Prefix,
				"-objstore.s3.access-key-id", s3.AccessKey, "-objstore.s3.secret-access-key", s3.SecretKey,
			}
		},
	}
}

func h2cClient() *http.Client {
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

func TestAdminOverEveryProtocol(t *testing.T) {
	for name, flags := range backends(t) {
		t.Run(name, func(t *testing.T) {
			base := startServer(t, flags(t)...)
			clients := map[string]stromv1connect.AdminServiceClient{
				"connect-json": stromv1connect.NewAdminServiceClient(http.DefaultClient, base, connect.WithProtoJSON()),
				"grpc":         stromv1connect.NewAdminServiceClient(h2cClient(), base, connect.WithGRPC()),
				"grpc-web":     stromv1connect.NewAdminServiceClient(http.DefaultClient, base, connect.WithGRPCWeb()),
			}
			for proto, c := range clients {
				t.Run(proto, func(t *testing.T) { exerciseAdmin(t, c, "db_"+strings.ReplaceAll(proto, "-", "_")) })
			}
		})
	}
}

func exerciseAdmin(t *testing.T, c stromv1connect.AdminServiceClient, db string) {
	ctx := context.Background()
	if resp, err := c.CreateDatabase(ctx, connect.NewRequest(&stromv1.CreateDatabaseRequest{Name: db, IfNotExists: true})); err != nil || resp.Msg.GetExisted() {
		t.Fatalf("create: %v, %v; want created, not existed", resp, err)
	}
	_, err := c.CreateDatabase(ctx, connect.NewRequest(&stromv1.CreateDatabaseRequest{Name: db}))
	wantCode(t, err, connect.CodeAlreadyExists)
	if resp, err := c.CreateDatabase(ctx, connect.NewRequest(&stromv1.CreateDatabaseRequest{Name: db, IfNotExists: true})); err != nil || !resp.Msg.GetExisted() || resp.Msg.GetDatabase().GetName() != db {
		t.Fatalf("if_not_exists on an existing database: %v, %v; want existed", resp, err)
	}

	buckets := int32(4)
	created, err := c.CreateTable(ctx, connect.NewRequest(&stromv1.CreateTableRequest{
		Database: db, Name: "orders",
		Schema: &stromv1.Schema{Columns: []*stromv1.Column{
			{Name: "id", Type: "bigint"},
			{Name: "amount", Type: "DECIMAL(10, 2)", Nullable: true},
			{Name: "ts", Type: "TIMESTAMP_LTZ(3)", Nullable: true},
		}},
		Buckets:    &buckets,
		BucketKey:  []string{"id"},
		Properties: map[string]string{"table.log.ttl": "7d", "owner": "team-a"},
	}))
	if err != nil {
		t.Fatal(err)
	}
	tbl := created.Msg.GetTable()
	if tbl.GetKind() != stromv1.TableKind_TABLE_KIND_LOG || tbl.GetBuckets() != 4 || tbl.GetSchemaVersion() != 1 {
		t.Fatalf("created table = %v", tbl)
	}
	if got := tbl.GetSchema().GetColumns()[1].GetType(); got != "DECIMAL(10,2)" {
		t.Fatalf("type not canonical: %q", got)
	}

	pk, err := c.CreateTable(ctx, connect.NewRequest(&stromv1.CreateTableRequest{
		Database: db, Name: "customers",
		Schema: &stromv1.Schema{
			Columns:    []*stromv1.Column{{Name: "id", Type: "BIGINT"}, {Name: "name", Type: "STRING", Nullable: true}},
			PrimaryKey: []string{"id"},
		},
		Properties: map[string]string{"table.merge-engine": "first_row"},
	}))
	if err != nil {
		t.Fatal(err)
	}
	if pk.Msg.GetTable().GetKind() != stromv1.TableKind_TABLE_KIND_PRIMARY_KEY || pk.Msg.GetTable().GetBuckets() != 1 || pk.Msg.GetExisted() {
		t.Fatalf("primary-key table = %v", pk.Msg)
	}
	again, err := c.CreateTable(ctx, connect.NewRequest(&stromv1.CreateTableRequest{
		Database: db, Name: "customers", IfNotExists: true,
		Schema: &stromv1.Schema{Columns: []*stromv1.Column{{Name: "other", Type: "STRING"}}},
	}))
	if err != nil || !again.Msg.GetExisted() || again.Msg.GetTable().GetId() != pk.Msg.GetTable().GetId() {
		t.Fatalf("if_not_exists on an existing table: %v, %v; want existed, the existing table", again, err)
	}

	got, err := c.GetTable(ctx, connect.NewRequest(&stromv1.GetTableRequest{Database: db, Name: "orders"}))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Msg.GetBuckets()) != 4 || got.Msg.GetTable().GetId() != tbl.GetId() || got.Msg.GetTable().GetProperties()["owner"] != "team-a" {
		t.Fatalf("get table = %v", got.Msg)
	}

	list, err := c.ListTables(ctx, connect.NewRequest(&stromv1.ListTablesRequest{Database: db}))
	if err != nil {
		t.Fatal(err)
	}
	if names := tableNames(list.Msg.GetTables()); names != "customers,orders" {
		t.Fatalf("tables = %s", names)
	}

	altered, err := c.AlterTable(ctx, connect.NewRequest(&stromv1.AlterTableRequest{
		Database: db, Name: "orders", AddColumns: []*stromv1.Column{{Name: "note", Type: "STRING", Nullable: true}},
	}))
	if err != nil {
		t.Fatal(err)
	}
	if altered.Msg.GetTable().GetSchemaVersion() != 2 || len(altered.Msg.GetTable().GetSchema().GetColumns()) != 4 {
		t.Fatalf("altered = %v", altered.Msg.GetTable())
	}

	// Bad input is rejected whole, naming the field.
	_, err = c.CreateTable(ctx, connect.NewRequest(&stromv1.CreateTableRequest{
		Database: db, Name: "bad",
		Schema: &stromv1.Schema{Columns: []*stromv1.Column{{Name: "id", Type: "VARCHAR(3)"}}},
	}))
	wantCode(t, err, connect.CodeInvalidArgument)
	wantMessage(t, err, "schema.columns[0].type")
	_, err = c.GetTable(ctx, connect.NewRequest(&stromv1.GetTableRequest{Database: db, Name: "bad"}))
	wantCode(t, err, connect.CodeNotFound)

	_, err = c.DropDatabase(ctx, connect.NewRequest(&stromv1.DropDatabaseRequest{Name: db}))
	wantCode(t, err, connect.CodeFailedPrecondition)
	if _, err := c.DropTable(ctx, connect.NewRequest(&stromv1.DropTableRequest{Database: db, Name: "orders"})); err != nil {
		t.Fatal(err)
	}
	_, err = c.DropTable(ctx, connect.NewRequest(&stromv1.DropTableRequest{Database: db, Name: "orders"}))
	wantCode(t, err, connect.CodeNotFound)
	if _, err := c.DropTable(ctx, connect.NewRequest(&stromv1.DropTableRequest{Database: db, Name: "orders", IfExists: true})); err != nil {
		t.Fatalf("if_exists: %v", err)
	}
	if _, err := c.DropDatabase(ctx, connect.NewRequest(&stromv1.DropDatabaseRequest{Name: db, Cascade: true})); err != nil {
		t.Fatal(err)
	}
	_, err = c.ListTables(ctx, connect.NewRequest(&stromv1.ListTablesRequest{Database: db}))
	wantCode(t, err, connect.CodeNotFound)
}

// TestCurlJSON speaks the Connect protocol as curl would: POST JSON, with
// the proto field names and with camelCase.
func TestCurlJSON(t *testing.T) {
	base := startServer(t)
	post := func(method, body string) (int, map[string]any) {
		t.Helper()
		resp, err := http.Post(base+"/strom.v1.AdminService/"+method, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatalf("%s: decode: %v", method, err)
		}
		return resp.StatusCode, out
	}
	if code, out := post("CreateDatabase", `{"name":"shop"}`); code != 200 {
		t.Fatalf("CreateDatabase: %d %v", code, out)
	}
	code, out := post("CreateTable", `{"database":"shop","name":"events","schema":{"columns":[{"name":"id","type":"BIGINT"},{"name":"payload","type":"STRING","nullable":true}]},"bucket_key":["id"],"buckets":2}`)
	if code != 200 {
		t.Fatalf("CreateTable: %d %v", code, out)
	}
	if code, out := post("CreateTable", `{"database":"shop","name":"events2","schema":{"columns":[{"name":"id","type":"BIGINT"}],"primaryKey":["id"]},"bucketKey":["id"]}`); code != 200 {
		t.Fatalf("CreateTable camelCase: %d %v", code, out)
	}
	code, out = post("CreateTable", `{"database":"shop","name":"x","schema":{"columns":[{"name":"id","type":"BIGINT"}]},"buckets":0}`)
	if code != 400 || out["code"] != "invalid_argument" || !strings.Contains(out["message"].(string), "buckets") {
		t.Fatalf("zero buckets: %d %v", code, out)
	}
	code, out = post("CreateTable", `{"database":"shop","name":`)
	if code != 400 || out["code"] != "invalid_argument" {
		t.Fatalf("malformed JSON: %d %v", code, out)
	}
	code, out = post("GetTable", `{"database":"shop","name":"nope"}`)
	if code != 404 || out["code"] != "not_found" {
		t.Fatalf("missing table: %d %v", code, out)
	}
	// Read-only RPCs are also served over GET.
	resp, err := http.Get(base + "/strom.v1.AdminService/ListDatabases?encoding=json&message=%7B%7D")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte(`"shop"`)) {
		t.Fatalf("GET ListDatabases: %d %s", resp.StatusCode, body)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	base := startServer(t)
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, body)
		}
		if path == "/readyz" && !bytes.Contains(body, []byte(`"ready":true`)) {
			t.Fatalf("readyz: %s", body)
		}
	}
}

func tableNames(ts []*stromv1.Table) string {
	var names []string
	for _, t := range ts {
		names = append(names, t.GetName())
	}
	return strings.Join(names, ",")
}

func wantCode(t *testing.T, err error, code connect.Code) {
	t.Helper()
	if connect.CodeOf(err) != code {
		t.Fatalf("got error %v (code %v), want code %v", err, connect.CodeOf(err), code)
	}
}

func wantMessage(t *testing.T, err error, part string) {
	t.Helper()
	var ce *connect.Error
	if !errors.As(err, &ce) || !strings.Contains(ce.Message(), part) {
		t.Fatalf("error %v does not name %q", err, part)
	}
}

// TestGRPCHealth asks the standard gRPC health service, over the Connect
// protocol with JSON as curl would.
func TestGRPCHealth(t *testing.T) {
	base := startServer(t)
	resp, err := http.Post(base+"/grpc.health.v1.Health/Check", "application/json", strings.NewReader(`{"service":"strom.v1.AdminService"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte("SERVING")) {
		t.Fatalf("health: %d %s", resp.StatusCode, body)
	}
}

// TestWritePathMetrics: an append shows in the writer and WAL metrics.
func TestWritePathMetrics(t *testing.T) {
	base := startServer(t)
	for _, call := range []struct{ method, body string }{
		{"AdminService/CreateDatabase", `{"name":"m"}`},
		{"AdminService/CreateTable", `{"database":"m","name":"t","schema":{"columns":[{"name":"id","type":"BIGINT"}]}}`},
		{"WriteService/Append", `{"database":"m","table":"t","rows":[{"id":1},{"id":2}]}`},
	} {
		resp, err := http.Post(base+"/strom.v1."+call.method, "application/json", strings.NewReader(call.body))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", call.method, resp.StatusCode, body)
		}
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`strom_writer_flushes_total{result="committed"} 1`,
		`strom_writer_flushed_rows_total 2`,
		`strom_wal_records_total 1`,
		`strom_api_requests_total{code="ok",procedure="/strom.v1.WriteService/Append"} 1`,
	} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestSubscribeStreamsCommits: a Subscribe stream (gRPC) delivers what was
// committed before it started and then every new commit, in order.
func TestSubscribeStreamsCommits(t *testing.T) {
	base := startServer(t, "-frontend.flush-interval", "5ms")
	ctx := context.Background()
	admin := stromv1connect.NewAdminServiceClient(http.DefaultClient, base)
	if _, err := admin.CreateDatabase(ctx, connect.NewRequest(&stromv1.CreateDatabaseRequest{Name: "s"})); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CreateTable(ctx, connect.NewRequest(&stromv1.CreateTableRequest{
		Database: "s", Name: "t", Schema: &stromv1.Schema{Columns: []*stromv1.Column{{Name: "id", Type: "BIGINT"}, {Name: "s", Type: "STRING", Nullable: true}}},
	})); err != nil {
		t.Fatal(err)
	}
	write := stromv1connect.NewWriteServiceClient(h2cClient(), base, connect.WithGRPC())
	appendIDs := func(ids ...int) {
		t.Helper()
		req := &stromv1.AppendRequest{Database: "s", Table: "t"}
		for _, id := range ids {
			st, _ := structpb.NewStruct(map[string]any{"id": id, "s": "x"})
			req.Rows = append(req.Rows, st)
		}
		if _, err := write.Append(ctx, connect.NewRequest(req)); err != nil {
			t.Fatal(err)
		}
	}
	appendIDs(1, 2)

	read := stromv1connect.NewReadServiceClient(h2cClient(), base, connect.WithGRPC())
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	stream, err := read.Subscribe(sctx, connect.NewRequest(&stromv1.SubscribeRequest{Fetch: &stromv1.FetchRequest{
		Database: "s", Table: "t", Columns: []string{"id"},
	}}))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	var got []float64
	next := float64(0)
	receive := func(n int) {
		t.Helper()
		for len(got) < n {
			if !stream.Receive() {
				t.Fatalf("stream ended after %v: %v", got, stream.Err())
			}
			for _, row := range stream.Msg().GetRecords().GetRows() {
				f := row.GetFields()
				if f["_offset"].GetNumberValue() != next {
					t.Fatalf("offset %v, want %v", f["_offset"].GetNumberValue(), next)
				}
				if _, ok := f["s"]; ok {
					t.Fatalf("projected row has column s: %v", f)
				}
				next++
				got = append(got, f["id"].GetNumberValue())
			}
		}
	}
	receive(2)
	appendIDs(3)
	appendIDs(4, 5)
	receive(5)
	if fmt.Sprint(got) != "[1 2 3 4 5]" {
		t.Fatalf("streamed ids %v", got)
	}
}

// TestAppendIdempotenceAnswers: a retry with an idempotent writer's latest
// sequence writes nothing and answers the first offsets marked duplicate; an
// older sequence is refused with failed_precondition and the ErrorInfo
// reason STALE_SEQUENCE, over every protocol.
func TestAppendIdempotenceAnswers(t *testing.T) {
	base := startServer(t)
	ctx := t.Context()
	admin := stromv1connect.NewAdminServiceClient(http.DefaultClient, base)
	if _, err := admin.CreateDatabase(ctx, connect.NewRequest(&stromv1.CreateDatabaseRequest{Name: "db"})); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CreateTable(ctx, connect.NewRequest(&stromv1.CreateTableRequest{
		Database: "db", Name: "t", Schema: &stromv1.Schema{Columns: []*stromv1.Column{{Name: "id", Type: "BIGINT"}}},
	})); err != nil {
		t.Fatal(err)
	}
	for proto, w := range map[string]stromv1connect.WriteServiceClient{
		"connect-json": stromv1connect.NewWriteServiceClient(http.DefaultClient, base, connect.WithProtoJSON()),
		"grpc":         stromv1connect.NewWriteServiceClient(h2cClient(), base, connect.WithGRPC()),
	} {
		t.Run(proto, func(t *testing.T) {
			appendSeq := func(seq int64, ids ...float64) (*stromv1.AppendResponse, error) {
				req := &stromv1.AppendRequest{Database: "db", Table: "t", WriterId: "writer-" + proto, Sequence: seq}
				for _, id := range ids {
					req.Rows = append(req.Rows, &structpb.Struct{Fields: map[string]*structpb.Value{"id": structpb.NewNumberValue(id)}})
				}
				resp, err := w.Append(ctx, connect.NewRequest(req))
				if err != nil {
					return nil, err
				}
				return resp.Msg, nil
			}
			first, err := appendSeq(10, 1, 2)
			if err != nil || len(first.GetOffsets()) != 1 || first.GetOffsets()[0].GetDuplicate() || first.GetOffsets()[0].GetCount() != 2 {
				t.Fatalf("first append: %v, %v", first, err)
			}
			retry, err := appendSeq(10, 1, 2)
			if err != nil || len(retry.GetOffsets()) != 1 || !retry.GetOffsets()[0].GetDuplicate() ||
				retry.GetOffsets()[0].GetBaseOffset() != first.GetOffsets()[0].GetBaseOffset() || retry.GetOffsets()[0].GetCount() != 2 {
				t.Fatalf("retry: %v, %v; want the first offsets, duplicate", retry, err)
			}
			if _, err := appendSeq(20, 3); err != nil {
				t.Fatal(err)
			}
			_, err = appendSeq(10, 1, 2)
			wantCode(t, err, connect.CodeFailedPrecondition)
			if !rpcerr.HasReason(err, rpcerr.ReasonStaleSequence) {
				t.Errorf("stale sequence: %v has no reason %s", err, rpcerr.ReasonStaleSequence)
			}
			_, err = w.Append(ctx, connect.NewRequest(&stromv1.AppendRequest{Database: "db", Table: "missing", Rows: []*structpb.Struct{{}}}))
			if connect.CodeOf(err) != connect.CodeNotFound || rpcerr.HasReason(err, rpcerr.ReasonStaleSequence) {
				t.Errorf("append to a missing table: %v", err)
			}
		})
	}
}
