package rest_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/iceberg-go"
	icebergcatalog "github.com/apache/iceberg-go/catalog"
	icebergrest "github.com/apache/iceberg-go/catalog/rest"
	sqlcat "github.com/apache/iceberg-go/catalog/sql"
	iceio "github.com/apache/iceberg-go/io"
	_ "github.com/apache/iceberg-go/io/gocloud/s3" // registers the s3:// IO
	"github.com/apache/iceberg-go/table"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver

	"github.com/strom-io/strom/testenv"
	"github.com/strom-io/strom/tiering/rest"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// Both the full iceberg-go interface and the SQL catalog satisfy rest.Catalog.
var (
	_ rest.Catalog = icebergcatalog.Catalog(nil)
	_ rest.Catalog = (*sqlcat.Catalog)(nil)
)

// The lake of every test: namespaces db, db.nested and "odd level%", and
// the table db.nested.events holding testRows.
var (
	nsDB      = table.Identifier{"db"}
	nsNested  = table.Identifier{"db", "nested"}
	nsOdd     = table.Identifier{"odd level%"}
	eventsID  = table.Identifier{"db", "nested", "events"}
	eventsSch = iceberg.NewSchema(0,
		iceberg.NestedField{ID: 1, Name: "id", Type: iceberg.PrimitiveTypes.Int64, Required: true},
		iceberg.NestedField{ID: 2, Name: "name", Type: iceberg.PrimitiveTypes.String},
		iceberg.NestedField{ID: 3, Name: "amount", Type: iceberg.PrimitiveTypes.Float64},
	)
)

type row struct {
	ID     int64
	Name   *string
	Amount float64
}

func ptr(s string) *string { return &s }

var testRows = []row{
	{1, ptr("alpha"), 1.5},
	{2, nil, -2},
	{3, ptr("gamma ünïcode"), 1e9},
}

// lake is a real Iceberg lake: iceberg-go's SQL catalog on PostgreSQL with
// its files in a versitygw bucket, written the way the tiering role writes.
type lake struct {
	cat *sqlcat.Catalog
	s3  testenv.S3Endpoint
	cfg rest.Config // what the server tells engines about S3 (no keys)
}

func newLake(t *testing.T) *lake {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ep := testenv.S3(t)
	db, err := sql.Open("pgx", testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	warehouse := "s3://" + ep.Bucket + "/" + ep.Prefix + "lake"
	cat, err := sqlcat.NewCatalog("strom", db, sqlcat.Postgres, iceberg.Properties{
		"warehouse":             warehouse,
		iceio.S3EndpointURL:     ep.Endpoint,
		iceio.S3Region:          ep.Region,
		iceio.S3AccessKeyID:     ep.AccessKey,
		iceio.S3SecretAccessKey: ep.SecretKey,
	})
	if err != nil {
		t.Fatalf("SQL catalog: %v", err)
	}
	t.Cleanup(func() { cat.Close() })
	for _, ns := range []table.Identifier{nsDB, nsNested, nsOdd} {
		props := iceberg.Properties{"owner": "strom-tiering"}
		if err := cat.CreateNamespace(ctx, ns, props); err != nil {
			t.Fatalf("create namespace %v: %v", ns, err)
		}
	}
	tbl, err := cat.CreateTable(ctx, eventsID, eventsSch)
	if err != nil {
		t.Fatalf("create table: %v", err)
	}
	arrowSchema, err := table.SchemaToArrowSchema(eventsSch, nil, false, false)
	if err != nil {
		t.Fatal(err)
	}
	b := array.NewRecordBuilder(memory.DefaultAllocator, arrowSchema)
	defer b.Release()
	for _, r := range testRows {
		b.Field(0).(*array.Int64Builder).Append(r.ID)
		if r.Name == nil {
			b.Field(1).AppendNull()
		} else {
			b.Field(1).(*array.StringBuilder).Append(*r.Name)
		}
		b.Field(2).(*array.Float64Builder).Append(r.Amount)
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	arrTbl := array.NewTableFromRecords(arrowSchema, []arrow.RecordBatch{rec})
	defer arrTbl.Release()
	if _, err := tbl.AppendTable(ctx, arrTbl, 1024, iceberg.Properties{"strom.offsets": `{"0":3}`}); err != nil {
		t.Fatalf("append: %v", err)
	}
	return &lake{cat: cat, s3: ep, cfg: rest.Config{
		Warehouse:   warehouse,
		S3Endpoint:  ep.Endpoint,
		S3Region:    ep.Region,
		S3PathStyle: true,
	}}
}

// serve mounts the handler at /iceberg/ as Strom does and returns the
// catalog URI an engine is given.
func (l *lake) serve(t *testing.T, cfg rest.Config) string {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	mux := http.NewServeMux()
	mux.Handle("/iceberg/", http.StripPrefix("/iceberg", rest.NewHandler(l.cat, cfg, logger)))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL + "/iceberg"
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// scan reads every row of tbl through its own IO, sorted by id.
func scan(t *testing.T, ctx context.Context, tbl *table.Table) []row {
	t.Helper()
	at, err := tbl.Scan().ToArrowTable(ctx)
	if err != nil {
		t.Fatalf("scan: %v", err)
	}
	defer at.Release()
	var rows []row
	tr := array.NewTableReader(at, 0)
	defer tr.Release()
	for tr.Next() {
		rec := tr.RecordBatch()
		ids := rec.Column(0).(*array.Int64)
		names := rec.Column(1).(*array.String)
		amounts := rec.Column(2).(*array.Float64)
		for i := range int(rec.NumRows()) {
			r := row{ID: ids.Value(i), Amount: amounts.Value(i)}
			if names.IsValid(i) {
				r.Name = ptr(names.Value(i))
			}
			rows = append(rows, r)
		}
	}
	slices.SortFunc(rows, func(a, b row) int { return int(a.ID - b.ID) })
	return rows
}

func fmtRows(rows []row) string {
	s := ""
	for _, r := range rows {
		name := "<null>"
		if r.Name != nil {
			name = *r.Name
		}
		s += fmt.Sprintf("(%d %q %g) ", r.ID, name, r.Amount)
	}
	return s
}

// TestIcebergGoClient reads the lake through iceberg-go's own REST client,
// the way an engine does: configuration, namespaces, tables, the table
// metadata, and then the data files straight from S3.
func TestIcebergGoClient(t *testing.T) {
	l := newLake(t)
	for _, prefix := range []string{"", "strom"} {
		t.Run("prefix="+prefix, func(t *testing.T) {
			cfg := l.cfg
			cfg.Prefix = prefix
			uri := l.serve(t, cfg)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			// The server vends no keys: the engine brings its own.
			client, err := icebergrest.NewCatalog(ctx, "strom", uri, icebergrest.WithAdditionalProps(iceberg.Properties{
				iceio.S3AccessKeyID:     l.s3.AccessKey,
				iceio.S3SecretAccessKey: l.s3.SecretKey,
			}))
			if err != nil {
				t.Fatalf("NewCatalog: %v", err)
			}
			defer client.Close()

			top, err := client.ListNamespaces(ctx, nil)
			if err != nil {
				t.Fatalf("ListNamespaces: %v", err)
			}
			if want := []table.Identifier{nsDB, nsOdd}; !slices.EqualFunc(top, want, slices.Equal) {
				t.Errorf("top-level namespaces = %q, want %q", top, want)
			}
			under, err := client.ListNamespaces(ctx, nsDB)
			if err != nil {
				t.Fatalf("ListNamespaces(db): %v", err)
			}
			if want := []table.Identifier{nsNested}; !slices.EqualFunc(under, want, slices.Equal) {
				t.Errorf("namespaces under db = %q, want %q", under, want)
			}
			props, err := client.LoadNamespaceProperties(ctx, nsNested)
			if err != nil || props["owner"] != "strom-tiering" {
				t.Errorf("LoadNamespaceProperties(db.nested) = %v, %v; want owner=strom-tiering", props, err)
			}
			for _, c := range []struct {
				ns   table.Identifier
				want bool
			}{{nsNested, true}, {nsOdd, true}, {table.Identifier{"db", "missing"}, false}} {
				got, err := client.CheckNamespaceExists(ctx, c.ns)
				if err != nil || got != c.want {
					t.Errorf("CheckNamespaceExists(%q) = %v, %v; want %v", c.ns, got, err, c.want)
				}
			}

			var tables []table.Identifier
			for id, err := range client.ListTables(ctx, nsNested) {
				if err != nil {
					t.Fatalf("ListTables: %v", err)
				}
				tables = append(tables, id)
			}
			if want := []table.Identifier{eventsID}; !slices.EqualFunc(tables, want, slices.Equal) {
				t.Errorf("tables of db.nested = %q, want %q", tables, want)
			}
			for _, c := range []struct {
				id   table.Identifier
				want bool
			}{{eventsID, true}, {table.Identifier{"db", "nested", "nope"}, false}, {table.Identifier{"nope", "events"}, false}} {
				got, err := client.CheckTableExists(ctx, c.id)
				if err != nil || got != c.want {
					t.Errorf("CheckTableExists(%q) = %v, %v; want %v", c.id, got, err, c.want)
				}
			}

			tbl, err := client.LoadTable(ctx, eventsID)
			if err != nil {
				t.Fatalf("LoadTable: %v", err)
			}
			direct, err := l.cat.LoadTable(ctx, eventsID)
			if err != nil {
				t.Fatal(err)
			}
			if tbl.MetadataLocation() != direct.MetadataLocation() {
				t.Errorf("metadata location = %q, want %q", tbl.MetadataLocation(), direct.MetadataLocation())
			}
			if !tbl.Metadata().Equals(direct.Metadata()) {
				t.Errorf("metadata over REST differs from the SQL catalog's")
			}
			snap := tbl.CurrentSnapshot()
			if snap == nil || snap.Summary == nil || snap.Summary.Properties["strom.offsets"] != `{"0":3}` {
				t.Errorf("current snapshot %+v lacks strom.offsets", snap)
			}
			if got := scan(t, ctx, tbl); fmtRows(got) != fmtRows(testRows) {
				t.Errorf("rows over REST = %s\nwant %s", fmtRows(got), fmtRows(testRows))
			}

			if _, err := client.LoadTable(ctx, table.Identifier{"db", "nested", "nope"}); !errors.Is(err, icebergcatalog.ErrNoSuchTable) {
				t.Errorf("LoadTable(missing) error = %v, want ErrNoSuchTable", err)
			}
			if _, err := client.ListNamespaces(ctx, table.Identifier{"missing"}); !errors.Is(err, icebergcatalog.ErrNoSuchNamespace) {
				t.Errorf("ListNamespaces(missing) error = %v, want ErrNoSuchNamespace", err)
			}
			// The server advertises only read endpoints, so iceberg-go refuses
			// writes itself, before sending them.
			if _, err := client.CreateTable(ctx, table.Identifier{"db", "new"}, eventsSch); !errors.Is(err, icebergrest.ErrEndpointNotSupported) {
				t.Errorf("CreateTable error = %v, want ErrEndpointNotSupported", err)
			}
			if err := client.DropTable(ctx, eventsID); !errors.Is(err, icebergrest.ErrEndpointNotSupported) {
				t.Errorf("DropTable error = %v, want ErrEndpointNotSupported", err)
			}
			if _, _, err := client.CommitTable(ctx, eventsID, nil, nil); err == nil {
				t.Errorf("CommitTable succeeded on a read-only catalog")
			}
		})
	}
}

// TestVendedCredentials: with VendCredentials on, a client that has no S3
// keys of its own reads the data files with the ones the table load hands it.
func TestVendedCredentials(t *testing.T) {
	l := newLake(t)
	cfg := l.cfg
	cfg.VendCredentials = true
	cfg.S3AccessKeyID = l.s3.AccessKey
	cfg.S3SecretAccessKey = l.s3.SecretKey
	uri := l.serve(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client, err := icebergrest.NewCatalog(ctx, "strom", uri)
	if err != nil {
		t.Fatalf("NewCatalog: %v", err)
	}
	defer client.Close()
	tbl, err := client.LoadTable(ctx, eventsID)
	if err != nil {
		t.Fatalf("LoadTable: %v", err)
	}
	if got := scan(t, ctx, tbl); fmtRows(got) != fmtRows(testRows) {
		t.Errorf("rows with vended keys = %s\nwant %s", fmtRows(got), fmtRows(testRows))
	}
}
