package catalog_test

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/strom-io/strom/catalog"
)

func validSpec() catalog.TableSpec {
	return catalog.TableSpec{
		Database: "db",
		Name:     "orders",
		Schema: catalog.Schema{
			Columns: []catalog.Column{
				{Name: "id", Type: catalog.BigInt},
				{Name: "day", Type: catalog.Date},
				{Name: "ver", Type: catalog.Timestamp(3)},
				{Name: "note", Type: catalog.String, Nullable: true},
			},
			PrimaryKey: []string{"id", "day"},
		},
		Buckets:      8,
		BucketKey:    []string{"id"},
		PartitionKey: "day",
		Properties: map[string]string{
			catalog.PropLogTTL: "7d", catalog.PropLogCompression: "zstd",
			catalog.PropDatalakeEnabled: "true", catalog.PropDatalakeFreshness: "3m",
			catalog.PropMergeEngine: "versioned", catalog.PropMergeEngineVersionColumn: "ver",
			"owner": "team-a",
		},
	}
}

func TestValidate(t *testing.T) {
	if err := validSpec().Validate(); err != nil {
		t.Fatalf("valid spec: %v", err)
	}
	logTable := func(s *catalog.TableSpec) {
		s.Schema.PrimaryKey = nil
		delete(s.Properties, catalog.PropMergeEngine)
		delete(s.Properties, catalog.PropMergeEngineVersionColumn)
	}
	for _, tc := range []struct {
		name   string
		edit   func(*catalog.TableSpec)
		field  string // "" means valid
		reason string
	}{
		{"log table", logTable, "", ""},
		{"log table any bucket key", func(s *catalog.TableSpec) { logTable(s); s.BucketKey = []string{"note"} }, "", ""},
		{"no bucket key", func(s *catalog.TableSpec) { s.BucketKey = nil }, "", ""},
		{"no partition", func(s *catalog.TableSpec) { s.PartitionKey = "" }, "", ""},
		{"name 128", func(s *catalog.TableSpec) { s.Name = strings.Repeat("a", 128) }, "", ""},
		{"digit start, dash", func(s *catalog.TableSpec) { s.Name = "1a-b_c" }, "", ""},
		{"ttl go duration", func(s *catalog.TableSpec) { s.Properties[catalog.PropLogTTL] = "36h" }, "", ""},
		{"int version column", func(s *catalog.TableSpec) { s.Schema.Columns[2].Type = catalog.Int }, "", ""},

		{"empty database", func(s *catalog.TableSpec) { s.Database = "" }, "database", "empty"},
		{"bad database", func(s *catalog.TableSpec) { s.Database = "a.b" }, "database", "character"},
		{"empty name", func(s *catalog.TableSpec) { s.Name = "" }, "name", "empty"},
		{"long name", func(s *catalog.TableSpec) { s.Name = strings.Repeat("a", 129) }, "name", "limit is 128"},
		{"underscore name", func(s *catalog.TableSpec) { s.Name = "_x" }, "name", "reserved"},
		{"dash start", func(s *catalog.TableSpec) { s.Name = "-x" }, "name", "start with a letter or digit"},
		{"unicode name", func(s *catalog.TableSpec) { s.Name = "café" }, "name", "character"},
		{"no columns", func(s *catalog.TableSpec) { s.Schema.Columns = nil }, "schema.columns", "at least one column"},
		{"bad column name", func(s *catalog.TableSpec) { s.Schema.Columns[3].Name = "a b" }, "schema.columns[3].name", "character"},
		{"system column", func(s *catalog.TableSpec) { s.Schema.Columns[3].Name = "_offset" }, "schema.columns[3].name", "reserved for system columns"},
		{"bucket column", func(s *catalog.TableSpec) { s.Schema.Columns[3].Name = "__bucket" }, "schema.columns[3].name", "reserved"},
		{"duplicate column", func(s *catalog.TableSpec) { s.Schema.Columns[3].Name = "Day" }, "schema.columns[3].name", "duplicates columns[1]"},
		{"missing type", func(s *catalog.TableSpec) { s.Schema.Columns[3].Type = catalog.Type{} }, "schema.columns[3].type", "missing type"},
		{"bad decimal", func(s *catalog.TableSpec) { s.Schema.Columns[3].Type = catalog.Decimal(40, 2) }, "schema.columns[3].type", "DECIMAL precision 40 out of range 1..38"},
		{"pk unknown", func(s *catalog.TableSpec) { s.Schema.PrimaryKey = []string{"nope"} }, "schema.primary_key[0]", `unknown column "nope"`},
		{"pk wrong case", func(s *catalog.TableSpec) { s.Schema.PrimaryKey = []string{"ID"} }, "schema.primary_key[0]", `did you mean "id"`},
		{"pk duplicate", func(s *catalog.TableSpec) { s.Schema.PrimaryKey = []string{"id", "id"} }, "schema.primary_key[1]", "twice"},
		{"pk nullable", func(s *catalog.TableSpec) { s.Schema.PrimaryKey = []string{"id", "day", "note"} }, "schema.primary_key[2]", "nullable"},
		{"zero buckets", func(s *catalog.TableSpec) { s.Buckets = 0 }, "buckets", "out of range 1..1024"},
		{"1025 buckets", func(s *catalog.TableSpec) { s.Buckets = 1025 }, "buckets", "out of range 1..1024"},
		{"bucket key unknown", func(s *catalog.TableSpec) { s.BucketKey = []string{"id", "x"} }, "bucket_key[1]", `unknown column "x"`},
		{"bucket key duplicate", func(s *catalog.TableSpec) { s.BucketKey = []string{"id", "id"} }, "bucket_key[1]", "twice"},
		{"bucket key outside pk", func(s *catalog.TableSpec) { s.BucketKey = []string{"note"} }, "bucket_key[0]", "subset of its primary key"},
		{"partition unknown", func(s *catalog.TableSpec) { s.PartitionKey = "nope" }, "partition_key", "unknown column"},
		{"partition nullable", func(s *catalog.TableSpec) { logTable(s); s.PartitionKey = "note" }, "partition_key", "NOT NULL"},
		{"partition type", func(s *catalog.TableSpec) { logTable(s); s.PartitionKey = "ver" }, "partition_key", "must be STRING, INT, BIGINT or DATE"},
		{"partition outside pk", func(s *catalog.TableSpec) {
			s.Schema.Columns = append(s.Schema.Columns, catalog.Column{Name: "region", Type: catalog.String})
			s.PartitionKey = "region"
		}, "partition_key", "part of its primary key"},
		{"unknown table property", func(s *catalog.TableSpec) { s.Properties["table.foo"] = "x" }, `properties["table.foo"]`, "unknown table property"},
		{"ttl bad", func(s *catalog.TableSpec) { s.Properties[catalog.PropLogTTL] = "soon" }, `properties["table.log.ttl"]`, "Go duration"},
		{"ttl zero", func(s *catalog.TableSpec) { s.Properties[catalog.PropLogTTL] = "0d" }, `properties["table.log.ttl"]`, "> 0"},
		{"ttl negative", func(s *catalog.TableSpec) { s.Properties[catalog.PropLogTTL] = "-1h" }, `properties["table.log.ttl"]`, "> 0"},
		{"compression", func(s *catalog.TableSpec) { s.Properties[catalog.PropLogCompression] = "gzip" }, `properties["table.log.compression"]`, "zstd, lz4 or none"},
		{"datalake enabled", func(s *catalog.TableSpec) { s.Properties[catalog.PropDatalakeEnabled] = "yes" }, `properties["table.datalake.enabled"]`, "true or false"},
		{"freshness", func(s *catalog.TableSpec) { s.Properties[catalog.PropDatalakeFreshness] = "0s" }, `properties["table.datalake.freshness"]`, "> 0"},
		{"merge engine unknown", func(s *catalog.TableSpec) { s.Properties[catalog.PropMergeEngine] = "sum" }, `properties["table.merge-engine"]`, "last_row, first_row"},
		{"merge engine on log table", func(s *catalog.TableSpec) { logTable(s); s.Properties[catalog.PropMergeEngine] = "first_row" }, `properties["table.merge-engine"]`, "primary-key table"},
		{"versioned without column", func(s *catalog.TableSpec) { delete(s.Properties, catalog.PropMergeEngineVersionColumn) }, `properties["table.merge-engine.version-column"]`, "needs a version column"},
		{"version column without versioned", func(s *catalog.TableSpec) { s.Properties[catalog.PropMergeEngine] = "last_row" }, `properties["table.merge-engine.version-column"]`, "only allowed"},
		{"version column unknown", func(s *catalog.TableSpec) { s.Properties[catalog.PropMergeEngineVersionColumn] = "nope" }, `properties["table.merge-engine.version-column"]`, "unknown column"},
		{"version column type", func(s *catalog.TableSpec) { s.Properties[catalog.PropMergeEngineVersionColumn] = "note" }, `properties["table.merge-engine.version-column"]`, "integer or timestamp"},
	} {
		spec := validSpec()
		spec.Schema.Columns = slices.Clone(spec.Schema.Columns)
		spec.Properties = maps.Clone(spec.Properties)
		tc.edit(&spec)
		err := spec.Validate()
		if tc.field == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		var ve *catalog.ValidationError
		if !errors.As(err, &ve) || !errors.Is(err, catalog.ErrInvalid) {
			t.Errorf("%s: error %v is not a *ValidationError that Is ErrInvalid", tc.name, err)
			continue
		}
		if ve.Field != tc.field || !strings.Contains(ve.Reason, tc.reason) {
			t.Errorf("%s: got %q; want field %q, reason containing %q", tc.name, err, tc.field, tc.reason)
		}
	}
}

func TestValidationErrorString(t *testing.T) {
	err := (&catalog.ValidationError{Field: "schema.columns[2].type", Reason: `unknown type "VARCHAR"`}).Error()
	if err != `schema.columns[2].type: unknown type "VARCHAR"` {
		t.Fatalf("Error() = %q", err)
	}
}

func TestValidateAddColumns(t *testing.T) {
	s := validSpec().Schema
	ok := []catalog.Column{{Name: "x", Type: catalog.Int, Nullable: true}}
	if err := catalog.ValidateAddColumns(s, ok); err != nil {
		t.Fatal(err)
	}
	for name, cols := range map[string][]catalog.Column{
		"none":         nil,
		"not nullable": {{Name: "x", Type: catalog.Int}},
		"exists":       {{Name: "NOTE", Type: catalog.Int, Nullable: true}},
		"twice":        {{Name: "x", Type: catalog.Int, Nullable: true}, {Name: "X", Type: catalog.Int, Nullable: true}},
		"bad type":     {{Name: "x", Nullable: true}},
		"reserved":     {{Name: "_x", Type: catalog.Int, Nullable: true}},
	} {
		if err := catalog.ValidateAddColumns(s, cols); !errors.Is(err, catalog.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"7d": 7 * 24 * time.Hour, "0d": 0, "90m": 90 * time.Minute, "1h30m": 90 * time.Minute} {
		if got, err := catalog.ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "d", "7", "1.5d", "x", "999999999999d"} {
		if _, err := catalog.ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) succeeded", in)
		}
	}
}

func TestSegmentValidate(t *testing.T) {
	b := catalog.BucketID{TableID: 1}
	good := catalog.Segment{ObjectKey: "k", Ranges: []catalog.SegmentRange{{Bucket: b, BaseOffset: 0, EndOffset: 1}}}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, seg := range map[string]catalog.Segment{
		"no key":           {Ranges: good.Ranges},
		"no ranges":        {ObjectKey: "k"},
		"empty":            {ObjectKey: "k", Ranges: []catalog.SegmentRange{{Bucket: b, BaseOffset: 1, EndOffset: 1}}},
		"negative":         {ObjectKey: "k", Ranges: []catalog.SegmentRange{{Bucket: b, BaseOffset: -1, EndOffset: 1}}},
		"bytes":            {ObjectKey: "k", Ranges: []catalog.SegmentRange{{Bucket: b, EndOffset: 1, ByteLength: -1}}},
		"other key":        {ObjectKey: "k", Ranges: []catalog.SegmentRange{{Bucket: b, EndOffset: 1, ObjectKey: "j"}}},
		"same bucket":      {ObjectKey: "k", Ranges: []catalog.SegmentRange{{Bucket: b, EndOffset: 1}, {Bucket: b, BaseOffset: 1, EndOffset: 2}}},
		"writer id":        {ObjectKey: "k", Ranges: []catalog.SegmentRange{{Bucket: b, EndOffset: 1, Writers: []catalog.WriterSequence{{EndOffset: 1}}}}},
		"writer twice":     {ObjectKey: "k", Ranges: []catalog.SegmentRange{{Bucket: b, EndOffset: 2, Writers: []catalog.WriterSequence{{WriterID: "w", EndOffset: 1}, {WriterID: "w", BaseOffset: 1, EndOffset: 2}}}}},
		"writer outside":   {ObjectKey: "k", Ranges: []catalog.SegmentRange{{Bucket: b, EndOffset: 1, Writers: []catalog.WriterSequence{{WriterID: "w", EndOffset: 2}}}}},
		"writer backwards": {ObjectKey: "k", Ranges: []catalog.SegmentRange{{Bucket: b, EndOffset: 2, Writers: []catalog.WriterSequence{{WriterID: "w", BaseOffset: 2, EndOffset: 1}}}}},
	} {
		if err := seg.Validate(); !errors.Is(err, catalog.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

// FuzzValidate builds table specs from bytes and checks that Validate never
// panics and always answers nil or a *ValidationError.
func FuzzValidate(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("\x03id\x05BIGINT\x00day\x04DATE\x00"))
	f.Add([]byte{0xff, 0x00, 0x10, 'a', 0x20})
	f.Add([]byte("db\x00t\x00\x02\x01\x00\x04\x01\x02table.merge-engine\x00versioned"))
	names := []string{"id", "day", "ver", "note", "ID", "_x", "", "a b", "x"}
	types := []string{"BIGINT", "INT", "DATE", "STRING", "TIMESTAMP(3)", "DECIMAL(10,2)", "DOUBLE", "BOOLEAN"}
	props := []string{catalog.PropLogTTL, catalog.PropLogCompression, catalog.PropDatalakeEnabled, catalog.PropDatalakeFreshness,
		catalog.PropMergeEngine, catalog.PropMergeEngineVersionColumn, "table.x", "owner"}
	values := []string{"7d", "0s", "zstd", "true", "versioned", "last_row", "id", "ver", "x", "-1h", "aggregation"}
	f.Fuzz(func(t *testing.T, data []byte) {
		next := func() int {
			if len(data) == 0 {
				return 0
			}
			b := data[0]
			data = data[1:]
			return int(b)
		}
		pick := func(xs []string) string { return xs[next()%len(xs)] }
		spec := catalog.TableSpec{Database: pick([]string{"db", "", "_d"}), Name: pick(names), Properties: map[string]string{}}
		for n := next() % 6; n > 0; n-- {
			typ, _ := catalog.ParseType(pick(types))
			if next()%7 == 0 {
				typ = catalog.Type{Kind: catalog.Kind(next()), Precision: int32(next()) - 10, Scale: int32(next()) - 10}
			}
			spec.Schema.Columns = append(spec.Schema.Columns, catalog.Column{Name: pick(names), Type: typ, Nullable: next()%2 == 0})
		}
		for n := next() % 3; n > 0; n-- {
			spec.Schema.PrimaryKey = append(spec.Schema.PrimaryKey, pick(names))
		}
		for n := next() % 3; n > 0; n-- {
			spec.BucketKey = append(spec.BucketKey, pick(names))
		}
		if next()%2 == 0 {
			spec.PartitionKey = pick(names)
		}
		spec.Buckets = int32(next()*8) - 16
		for n := next() % 4; n > 0; n-- {
			spec.Properties[pick(props)] = pick(values)
		}
		err := spec.Validate()
		if err == nil {
			return
		}
		var ve *catalog.ValidationError
		if !errors.As(err, &ve) || !errors.Is(err, catalog.ErrInvalid) || ve.Field == "" || ve.Reason == "" {
			t.Fatalf("Validate(%+v) = %v: not a complete *ValidationError", spec, err)
		}
	})
}

func TestValidateAggregateProperties(t *testing.T) {
	base := func(props map[string]string) catalog.TableSpec {
		return catalog.TableSpec{Database: "d", Name: "t", Buckets: 1, Properties: props, Schema: catalog.Schema{
			Columns: []catalog.Column{
				{Name: "id", Type: catalog.MustParseType("BIGINT")},
				{Name: "total", Type: catalog.MustParseType("DECIMAL(10,2)"), Nullable: true},
				{Name: "name", Type: catalog.MustParseType("STRING"), Nullable: true},
				{Name: "n", Type: catalog.MustParseType("BIGINT"), Nullable: true},
			},
			PrimaryKey: []string{"id"},
		}}
	}
	agg := func(kv ...string) map[string]string {
		m := map[string]string{catalog.PropMergeEngine: "aggregation"}
		for i := 0; i < len(kv); i += 2 {
			m[catalog.PropMergeEngineAggregatePrefix+kv[i]] = kv[i+1]
		}
		return m
	}
	if err := base(agg("total", "sum", "name", "max", "n", "count")).Validate(); err != nil {
		t.Fatalf("valid aggregation: %v", err)
	}
	for _, tc := range []struct {
		props map[string]string
		want  string
	}{
		{agg("name", "sum"), `sum cannot apply to column "name"`},
		{agg("total", "count"), `count cannot apply to column "total"`},
		{agg("id", "sum"), "primary key"},
		{agg("nope", "sum"), "nope"},
		{agg("total", "avg"), `unknown aggregation "avg"`},
		{map[string]string{catalog.PropMergeEngineAggregatePrefix + "total": "sum"}, "only allowed with"},
	} {
		err := base(tc.props).Validate()
		if !errors.Is(err, catalog.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want it to name %q", tc.props, err, tc.want)
		}
	}
}

func TestValidatePartition(t *testing.T) {
	table := func(partKey string, typ catalog.Type) catalog.Table {
		return catalog.Table{TableSpec: catalog.TableSpec{Database: "db", Name: "t", PartitionKey: partKey,
			Schema: catalog.Schema{Columns: []catalog.Column{{Name: "id", Type: catalog.BigInt}, {Name: "p", Type: typ}}}}}
	}
	unpartitioned := table("", catalog.String)
	for _, tc := range []struct {
		t    catalog.Table
		p    string
		want string // "" when valid
	}{
		{unpartitioned, "", ""},
		{unpartitioned, "x", "partition: table db.t is not partitioned: leave partition empty"},
		{table("p", catalog.String), "", `partition: required: table db.t is partitioned by column "p" (STRING)`},
		{table("p", catalog.String), "any thing", ""},
		{table("p", catalog.Date), "2025-01-02", ""},
		{table("p", catalog.Date), "2025-1-2", `partition: "2025-1-2" is not a value of partition column "p" (DATE): write it as YYYY-MM-DD`},
		{table("p", catalog.Date), "2025-02-30", "write it as YYYY-MM-DD"},
		{table("p", catalog.BigInt), "-42", ""},
		{table("p", catalog.BigInt), "042", "write it as a decimal integer"},
		{table("p", catalog.BigInt), "+42", "write it as a decimal integer"},
		{table("p", catalog.Int), "4294967296", `partition: "4294967296" is not a value of partition column "p" (INT)`},
		{table("p", catalog.Int), "abc", "write it as a decimal integer"},
	} {
		err := tc.t.ValidatePartition(tc.p)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s %q: %v", tc.t.PartitionKey, tc.p, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, catalog.ErrInvalid)):
			t.Errorf("%s %q: error %v, want ErrInvalid with %q", tc.t.PartitionKey, tc.p, err, tc.want)
		}
	}
}
