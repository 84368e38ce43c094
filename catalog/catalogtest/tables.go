package catalogtest

import (
	"errors"
	"maps"
	"reflect"
	"slices"
	"testing"

	"github.com/strom-io/strom/catalog"
)

func testTableValidation(t *testing.T, s catalog.Store) {
	ctx := ctxT(t)
	_, err := s.CreateDatabase(ctx, "db")
	noErr(t, err, "CreateDatabase")
	cases := []struct {
		name  string
		edit  func(*catalog.TableSpec)
		field string
	}{
		{"bad table name", func(sp *catalog.TableSpec) { sp.Name = "a/b" }, "name"},
		{"no columns", func(sp *catalog.TableSpec) {
			sp.Schema.Columns = nil
			sp.BucketKey = nil
			sp.PartitionKey = ""
			sp.Properties = nil
		}, "schema.columns"},
		{"bad type", func(sp *catalog.TableSpec) { sp.Schema.Columns[2].Type = catalog.Type{} }, "schema.columns[2].type"},
		{"reserved column", func(sp *catalog.TableSpec) { sp.Schema.Columns[2].Name = "_offset" }, "schema.columns[2].name"},
		{"duplicate column", func(sp *catalog.TableSpec) { sp.Schema.Columns[2].Name = "ID" }, "schema.columns[2].name"},
		{"zero buckets", func(sp *catalog.TableSpec) { sp.Buckets = 0 }, "buckets"},
		{"too many buckets", func(sp *catalog.TableSpec) { sp.Buckets = 1025 }, "buckets"},
		{"unknown bucket key", func(sp *catalog.TableSpec) { sp.BucketKey = []string{"nope"} }, "bucket_key[0]"},
		{"nullable partition key", func(sp *catalog.TableSpec) { sp.PartitionKey = "msg" }, "partition_key"},
		{"unknown property", func(sp *catalog.TableSpec) { sp.Properties["table.nope"] = "1" }, `properties["table.nope"]`},
		{"merge engine on log table", func(sp *catalog.TableSpec) { sp.Properties[catalog.PropMergeEngine] = "first_row" }, `properties["table.merge-engine"]`},
	}
	for _, tc := range cases {
		spec := logSpec("db", "t")
		spec.Schema.Columns = slices.Clone(spec.Schema.Columns)
		spec.Properties = maps.Clone(spec.Properties)
		tc.edit(&spec)
		_, err := s.CreateTable(ctx, spec)
		wantErr(t, err, catalog.ErrInvalid, tc.name)
		var ve *catalog.ValidationError
		if !errors.As(err, &ve) {
			t.Fatalf("%s: error %v is not a *catalog.ValidationError", tc.name, err)
		}
		if ve.Field != tc.field {
			t.Errorf("%s: error names field %q, want %q (%v)", tc.name, ve.Field, tc.field, err)
		}
	}
	tables, err := s.ListTables(ctx, "db")
	noErr(t, err, "ListTables")
	if len(tables) != 0 {
		t.Fatalf("invalid specs created tables: %v", tables)
	}
	_, err = s.CreateTable(ctx, logSpec("nodb", "t"))
	wantErr(t, err, catalog.ErrNotFound, "CreateTable in missing database")
}

func sameSpec(t *testing.T, what string, got, want catalog.TableSpec) {
	t.Helper()
	if len(want.Properties) == 0 {
		want.Properties = nil
	}
	if len(got.Properties) == 0 {
		got.Properties = nil
	}
	if len(want.BucketKey) == 0 {
		want.BucketKey = nil
	}
	if len(got.BucketKey) == 0 {
		got.BucketKey = nil
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got  %+v\n want %+v", what, got, want)
	}
}

func testTables(t *testing.T, s catalog.Store) {
	ctx := ctxT(t)
	spec := logSpec("db", "events")
	tbl := setup(t, s, spec)
	if tbl.ID == 0 || tbl.SchemaVersion != 1 || tbl.CreatedAt.IsZero() || tbl.IsPrimaryKey() {
		t.Fatalf("CreateTable = %+v", tbl)
	}
	sameSpec(t, "CreateTable", tbl.TableSpec, spec)
	got, err := s.GetTable(ctx, "db", "events")
	noErr(t, err, "GetTable")
	sameSpec(t, "GetTable", got.TableSpec, spec)
	if got.ID != tbl.ID || got.SchemaVersion != 1 || !got.CreatedAt.Equal(tbl.CreatedAt) {
		t.Fatalf("GetTable = %+v, created %+v", got, tbl)
	}
	byID, err := s.GetTableByID(ctx, tbl.ID)
	noErr(t, err, "GetTableByID")
	sameSpec(t, "GetTableByID", byID.TableSpec, spec)

	pk := setup(t, s, pkSpec("db", "accounts"))
	if !pk.IsPrimaryKey() {
		t.Fatalf("pk table: IsPrimaryKey false")
	}
	_, err = s.CreateTable(ctx, logSpec("db", "events"))
	wantErr(t, err, catalog.ErrAlreadyExists, "CreateTable duplicate")
	_, err = s.GetTable(ctx, "db", "nope")
	wantErr(t, err, catalog.ErrNotFound, "GetTable missing")
	_, err = s.GetTableByID(ctx, tbl.ID+pk.ID+1000)
	wantErr(t, err, catalog.ErrNotFound, "GetTableByID missing")

	list, err := s.ListTables(ctx, "db")
	noErr(t, err, "ListTables")
	if got := names(list, func(t catalog.Table) string { return t.Name }); !slices.Equal(got, []string{"accounts", "events"}) {
		t.Fatalf("ListTables = %v, want [accounts events]", got)
	}
	_, err = s.ListTables(ctx, "nodb")
	wantErr(t, err, catalog.ErrNotFound, "ListTables of missing database")

	noErr(t, s.DropTable(ctx, "db", "events"), "DropTable")
	_, err = s.GetTable(ctx, "db", "events")
	wantErr(t, err, catalog.ErrNotFound, "GetTable after drop")
	_, err = s.GetTableByID(ctx, tbl.ID)
	wantErr(t, err, catalog.ErrNotFound, "GetTableByID after drop")
	wantErr(t, s.DropTable(ctx, "db", "events"), catalog.ErrNotFound, "DropTable twice")
	again := setup(t, s, spec)
	if again.ID == tbl.ID {
		t.Fatalf("recreated table reuses id %d", tbl.ID)
	}
}

func testAddColumns(t *testing.T, s catalog.Store) {
	ctx := ctxT(t)
	spec := pkSpec("db", "t")
	tbl := setup(t, s, spec)
	_, err := s.AddColumns(ctx, "db", "t", []catalog.Column{{Name: "extra", Type: catalog.Double}})
	wantErr(t, err, catalog.ErrInvalid, "AddColumns non-nullable")
	_, err = s.AddColumns(ctx, "db", "t", []catalog.Column{{Name: "NAME", Type: catalog.Double, Nullable: true}})
	wantErr(t, err, catalog.ErrInvalid, "AddColumns existing name")
	_, err = s.AddColumns(ctx, "db", "nope", []catalog.Column{{Name: "x", Type: catalog.Double, Nullable: true}})
	wantErr(t, err, catalog.ErrNotFound, "AddColumns to missing table")

	add := []catalog.Column{{Name: "score", Type: catalog.Double, Nullable: true}, {Name: "d", Type: catalog.Decimal(38, 9), Nullable: true}}
	t2, err := s.AddColumns(ctx, "db", "t", add)
	noErr(t, err, "AddColumns")
	if t2.SchemaVersion != 2 || t2.ID != tbl.ID {
		t.Fatalf("AddColumns = version %d id %d, want version 2 id %d", t2.SchemaVersion, t2.ID, tbl.ID)
	}
	wantCols := append(slices.Clone(spec.Schema.Columns), add...)
	if !reflect.DeepEqual(t2.Schema.Columns, wantCols) {
		t.Fatalf("AddColumns columns = %v, want %v", t2.Schema.Columns, wantCols)
	}
	got, err := s.GetTable(ctx, "db", "t")
	noErr(t, err, "GetTable")
	if got.SchemaVersion != 2 || !reflect.DeepEqual(got.Schema.Columns, wantCols) || !slices.Equal(got.Schema.PrimaryKey, []string{"id"}) {
		t.Fatalf("GetTable after AddColumns = %+v", got)
	}
	vs, err := s.SchemaVersions(ctx, tbl.ID)
	noErr(t, err, "SchemaVersions")
	if len(vs) != 2 || vs[0].Version != 1 || vs[1].Version != 2 {
		t.Fatalf("SchemaVersions = %+v", vs)
	}
	if !reflect.DeepEqual(vs[0].Schema, spec.Schema) || !reflect.DeepEqual(vs[1].Schema.Columns, wantCols) {
		t.Fatalf("SchemaVersions schemas = %+v", vs)
	}
	_, err = s.SchemaVersions(ctx, tbl.ID+1000)
	wantErr(t, err, catalog.ErrNotFound, "SchemaVersions of missing table")
}

func testBuckets(t *testing.T, s catalog.Store) {
	ctx := ctxT(t)
	tbl := setup(t, s, logSpec("db", "t"))
	bs, err := s.ListBuckets(ctx, tbl.ID)
	noErr(t, err, "ListBuckets")
	if len(bs) != int(tbl.Buckets) {
		t.Fatalf("ListBuckets: %d rows, want %d", len(bs), tbl.Buckets)
	}
	for i, b := range bs {
		want := catalog.BucketState{BucketID: catalog.BucketID{TableID: tbl.ID, Bucket: int32(i)}}
		if b.BucketID != want.BucketID || b.Leader != "" || b.Epoch != 0 || b.NextOffset != 0 {
			t.Fatalf("bucket %d = %+v, want a fresh row of %v", i, b, want.BucketID)
		}
	}
	_, err = s.ListBuckets(ctx, tbl.ID+1000)
	wantErr(t, err, catalog.ErrNotFound, "ListBuckets of missing table")
}
