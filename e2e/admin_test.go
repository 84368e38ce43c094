package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strom-io/strom/testenv"
)

// TestQuickStart is the README's quick start: `strom server` with no
// configuration keeps everything under ./data, and the CLI manages
// databases and tables. The same CLI session runs on PostgreSQL and S3,
// where nothing of the catalog or the objects is under ./data.
func TestQuickStart(t *testing.T) { onBackends(t, testQuickStart) }

func testQuickStart(t *testing.T, be backend) {
	dir := t.TempDir()
	p := startServer(t, dir, be.args...)
	for _, sub := range []string{"data/catalog", "data/objects"} {
		fi, err := os.Stat(filepath.Join(dir, sub))
		if there := err == nil && fi.IsDir(); there != be.embedded {
			t.Fatalf("./%s exists: %v, want %v with the embedded defaults, and only with them", sub, there, be.embedded)
		}
	}

	cli(t, p, "db", "create", "shop")
	if out := cli(t, p, "db", "list"); !strings.Contains(out, "shop") {
		t.Fatalf("db list: %s", out)
	}
	cli(t, p, "table", "create", "shop.orders",
		"--column", "id BIGINT NOT NULL", "--column", "amount DECIMAL(10, 2)", "--column", "ts TIMESTAMP_LTZ(3)",
		"--buckets", "4", "--bucket-key", "id", "--property", "table.log.ttl=7d")
	cli(t, p, "table", "create", "shop.customers",
		"--column", "id BIGINT NOT NULL", "--column", "name STRING", "--primary-key", "id")

	out := cli(t, p, "table", "describe", "shop.orders")
	for _, want := range []string{"log", "amount", "DECIMAL(10,2)", "TIMESTAMP_LTZ(3)", "NOT NULL", "table.log.ttl", "7d"} {
		if !strings.Contains(out, want) {
			t.Errorf("describe lacks %q:\n%s", want, out)
		}
	}

	var described struct {
		Table struct {
			Kind    string
			Buckets int
		}
		Buckets []map[string]any
	}
	if err := json.Unmarshal([]byte(cli(t, p, "table", "describe", "shop.orders", "-o", "json")), &described); err != nil {
		t.Fatal(err)
	}
	if described.Table.Kind != "TABLE_KIND_LOG" || described.Table.Buckets != 4 || len(described.Buckets) != 4 {
		t.Fatalf("describe -o json = %+v", described)
	}
	if out := cli(t, p, "table", "list", "shop"); !strings.Contains(out, "customers") || !strings.Contains(out, "primary-key") {
		t.Fatalf("table list: %s", out)
	}
	cli(t, p, "table", "alter", "shop.orders", "--add-column", "note STRING")
	if out := cli(t, p, "table", "describe", "shop.orders"); !strings.Contains(out, "schema version 2") {
		t.Fatalf("after alter: %s", out)
	}

	// Bad input: a clear error, exit status 1, nothing created.
	errOut := cliFails(t, p, "table", "create", "shop.bad", "--column", "id VARCHAR(3)")
	if !strings.Contains(errOut, "invalid_argument") || !strings.Contains(errOut, "VARCHAR") {
		t.Fatalf("bad type error: %s", errOut)
	}
	errOut = cliFails(t, p, "table", "create", "shop.bad", "--column", "id BIGINT", "--primary-key", "id")
	if !strings.Contains(errOut, "primary_key") || !strings.Contains(errOut, "nullable") {
		t.Fatalf("nullable key error: %s", errOut)
	}
	errOut = cliFails(t, p, "table", "create", "shop.bad", "--column", "id BIGINT NOT NULL", "--buckets", "2000")
	if !strings.Contains(errOut, "buckets") {
		t.Fatalf("bucket count error: %s", errOut)
	}
	cliFails(t, p, "table", "describe", "shop.bad")
	errOut = cliFails(t, p, "db", "drop", "shop")
	if !strings.Contains(errOut, "failed_precondition") {
		t.Fatalf("drop non-empty db: %s", errOut)
	}

	cli(t, p, "table", "drop", "shop.customers")
	cli(t, p, "db", "drop", "shop", "--cascade")
	if out := cli(t, p, "db", "list"); strings.Contains(out, "shop") {
		t.Fatalf("db list after drop: %s", out)
	}
	p.stop(t)
}

// TestPostgresAndS3FromConfigFile runs the server as a deployment would:
// PostgreSQL catalog and S3 object store from a YAML file with secrets from
// the environment; the catalog survives a restart.
func TestPostgresAndS3FromConfigFile(t *testing.T) {
	dir := t.TempDir()
	s3 := testenv.S3(t)
	cfg := `
data_dir: ` + filepath.Join(dir, "data") + `
log:
  format: json
catalog:
  backend: postgres
  postgres:
    url: ${TEST_PG_URL}
objstore:
  backend: s3
  s3:
    endpoint: ` + s3.Endpoint + `
    region: ` + s3.Region + `
    bucket: ` + s3.Bucket + `
    prefix: ` + s3.Prefix + `
    access_key_id: ` + s3.AccessKey + `
    secret_access_key: ${TEST_S3_SECRET}
`
	cfgFile := filepath.Join(dir, "strom.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TEST_PG_URL", testenv.Postgres(t))
	t.Setenv("TEST_S3_SECRET", s3.SecretKey)

	p := startServer(t, dir, "-config.file", cfgFile, "-config.expand-env")
	cli(t, p, "db", "create", "lake")
	cli(t, p, "table", "create", "lake.events", "--column", "id BIGINT NOT NULL", "--column", "day DATE NOT NULL",
		"--partition-key", "day", "--buckets", "8", "--property", "table.datalake.enabled=true")
	p.stop(t)

	p = startServer(t, dir, "-config.file", cfgFile, "-config.expand-env")
	out := cli(t, p, "table", "describe", "lake.events")
	for _, want := range []string{"partition key:", "day", "table.datalake.enabled"} {
		if !strings.Contains(out, want) {
			t.Errorf("describe after restart lacks %q:\n%s", want, out)
		}
	}
	p.stop(t)
}

// TestBadConfigFails: an unknown key or a bad value stops the server at
// start with a message naming it.
func TestBadConfigFails(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct{ yaml, want string }{
		"unknown key":     {"catalog:\n  backend: embedded\n  bogus: 1\n", "bogus"},
		"bad backend":     {"catalog:\n  backend: mysql\n", "catalog.backend"},
		"postgres no url": {"catalog:\n  backend: postgres\n", "catalog.postgres.url"},
	} {
		t.Run(name, func(t *testing.T) {
			f := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".yaml")
			if err := os.WriteFile(f, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(stromBin, "server", "-config.file", f, "-server.http-listen-address", "127.0.0.1:0").CombinedOutput()
			if err == nil || !strings.Contains(string(out), tc.want) {
				t.Fatalf("err=%v, output does not name %q:\n%s", err, tc.want, out)
			}
		})
	}
}

// TestGRPCurl: the server answers plain gRPC with reflection and health, so
// grpcurl works without proto files.
func TestGRPCurl(t *testing.T) {
	grpcurl := testenv.Binary(t, "grpcurl")
	p := startServer(t, t.TempDir())
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(grpcurl, append([]string{"-plaintext"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("grpcurl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if out := run(p.addr, "list"); !strings.Contains(out, "strom.v1.AdminService") || !strings.Contains(out, "grpc.health.v1.Health") {
		t.Fatalf("grpcurl list: %s", out)
	}
	run("-d", `{"name":"viagrpc"}`, p.addr, "strom.v1.AdminService/CreateDatabase")
	if out := run(p.addr, "strom.v1.AdminService/ListDatabases"); !strings.Contains(out, "viagrpc") {
		t.Fatalf("ListDatabases over gRPC: %s", out)
	}
	if out := run(p.addr, "grpc.health.v1.Health/Check"); !strings.Contains(out, "SERVING") {
		t.Fatalf("health over gRPC: %s", out)
	}
	p.stop(t)
}

// TestCatalogOutage: with PostgreSQL down, requests fail with `unavailable`
// and /readyz says why; when it returns, the server resumes by itself.
func TestCatalogOutage(t *testing.T) {
	pg := testenv.StartPostgres(t)
	p := startServer(t, t.TempDir(), "-catalog.backend", "postgres", "-catalog.postgres.url", pg.URL())
	cli(t, p, "db", "create", "before")

	pg.Stop(t)
	errOut := cliFails(t, p, "db", "create", "during")
	if !strings.Contains(errOut, "unavailable") {
		t.Fatalf("create during outage: %s", errOut)
	}
	resp, err := http.Get(p.url() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), `"catalog"`) {
		t.Fatalf("readyz during outage: %d %s", resp.StatusCode, body)
	}

	pg.Start(t)
	waitReady(t, p)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, errOut, err := runCLI(p, "db", "create", "after")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not resume after the catalog returned: %s", errOut)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out := cli(t, p, "db", "list"); !strings.Contains(out, "before") || !strings.Contains(out, "after") || strings.Contains(out, "during") {
		t.Fatalf("databases after outage: %s", out)
	}
	p.stop(t)
}
