package lake_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/testenv"
	"github.com/strom-io/strom/tiering/lake"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// env is a lake on a fresh database and bucket.
type env struct {
	lake *lake.Lake
	s3   testenv.S3Endpoint
	cfg  lake.Config
}

func newEnv(t *testing.T) env {
	t.Helper()
	ep := testenv.S3(t)
	cfg := lake.Config{
		PostgresURL: testenv.Postgres(t),
		Warehouse:   "s3://" + ep.Bucket + "/" + ep.Prefix + "lake",
		S3: lake.S3Config{
			Endpoint: ep.Endpoint, Region: ep.Region,
			AccessKey: ep.AccessKey, SecretKey: ep.SecretKey, PathStyle: true,
		},
	}
	return env{lake: openLake(t, cfg), s3: ep, cfg: cfg}
}

func openLake(t *testing.T, cfg lake.Config) *lake.Lake {
	t.Helper()
	l, err := lake.Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func logTable(id int64) catalog.Table {
	return catalog.Table{ID: id, TableSpec: catalog.TableSpec{
		Database: "db", Name: "events",
		Schema: catalog.Schema{Columns: []catalog.Column{
			{Name: "id", Type: catalog.BigInt},
			{Name: "msg", Type: catalog.String, Nullable: true},
		}},
		Buckets: 2,
	}}
}

func TestEnsureTable(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	all := catalog.Table{ID: 7, TableSpec: catalog.TableSpec{
		Database: "sales", Name: "all_types", Buckets: 3, PartitionKey: "day",
		Schema: catalog.Schema{Columns: []catalog.Column{
			{Name: "b", Type: catalog.Boolean},
			{Name: "i8", Type: catalog.TinyInt, Nullable: true},
			{Name: "i16", Type: catalog.SmallInt, Nullable: true},
			{Name: "i32", Type: catalog.Int, Nullable: true},
			{Name: "i64", Type: catalog.BigInt},
			{Name: "f32", Type: catalog.Float, Nullable: true},
			{Name: "f64", Type: catalog.Double, Nullable: true},
			{Name: "dec", Type: catalog.Decimal(20, 4), Nullable: true},
			{Name: "s", Type: catalog.String, Nullable: true},
			{Name: "bin", Type: catalog.Bytes, Nullable: true},
			{Name: "day", Type: catalog.Date},
			{Name: "tod", Type: catalog.Time, Nullable: true},
			{Name: "ts0", Type: catalog.Timestamp(0), Nullable: true},
			{Name: "ts9", Type: catalog.Timestamp(9), Nullable: true},
			{Name: "ltz3", Type: catalog.TimestampLTZ(3), Nullable: true},
		}},
	}}
	tbl, err := e.lake.EnsureTable(ctx, all)
	if err != nil {
		t.Fatalf("EnsureTable: %v", err)
	}
	want := []string{
		"b:boolean:req", "i8:int", "i16:int", "i32:int", "i64:long:req", "f32:float", "f64:double",
		"dec:decimal(20, 4)", "s:string", "bin:binary", "day:date:req", "tod:time", "ts0:timestamp",
		"ts9:timestamp", "ltz3:timestamptz",
		"__bucket:int:req", "__offset:long:req", "__timestamp:timestamptz:req",
	}
	if got := describe(tbl.Schema()); !slices.Equal(got, want) {
		t.Errorf("schema\n got %v\nwant %v", got, want)
	}
	var spec []string
	ps := tbl.Spec()
	for _, f := range ps.Fields() {
		name, _ := tbl.Schema().FindColumnName(f.SourceID())
		spec = append(spec, f.Name+"="+f.Transform.String()+"("+name+")")
	}
	if want := []string{"day=identity(day)", "__bucket=identity(__bucket)"}; !slices.Equal(spec, want) {
		t.Errorf("partition spec %v, want %v", spec, want)
	}
	if v := tbl.Metadata().Version(); v != 2 {
		t.Errorf("format version %d, want 2", v)
	}
	props := tbl.Properties()
	if props["write.parquet.compression-codec"] != "zstd" || props[lake.PropTableID] != "7" {
		t.Errorf("properties %v", props)
	}
	if loc := tbl.Location(); !strings.HasSuffix(loc, "/lake/sales.db/all_types") {
		t.Errorf("location %s", loc)
	}

	// Idempotent, also from a second process.
	other := openLake(t, e.cfg)
	again, err := other.EnsureTable(ctx, all)
	if err != nil || again.MetadataLocation() != tbl.MetadataLocation() {
		t.Fatalf("EnsureTable again: %v, %s want %s", err, again.MetadataLocation(), tbl.MetadataLocation())
	}

	// Columns added to the Strom table are added to the lake table.
	evolved := all
	evolved.Schema.Columns = append(slices.Clone(all.Schema.Columns),
		catalog.Column{Name: "note", Type: catalog.String, Nullable: true},
		catalog.Column{Name: "amount", Type: catalog.Decimal(10, 2), Nullable: true})
	tbl, err = e.lake.EnsureTable(ctx, evolved)
	if err != nil {
		t.Fatalf("EnsureTable with added columns: %v", err)
	}
	got := describe(tbl.Schema())
	if tail := got[len(got)-2:]; !slices.Equal(tail, []string{"note:string", "amount:decimal(10, 2)"}) {
		t.Errorf("evolved schema %v", got)
	}

	// A Strom table of the same name with another id is refused.
	foreign := evolved
	foreign.ID = 8
	if _, err := e.lake.EnsureTable(ctx, foreign); !errors.Is(err, lake.ErrForeignTable) {
		t.Errorf("EnsureTable of another table id: %v, want ErrForeignTable", err)
	}
	// A column whose type changed is refused.
	changed := evolved
	changed.Schema.Columns = slices.Clone(evolved.Schema.Columns)
	changed.Schema.Columns[0].Type = catalog.Int
	if _, err := e.lake.EnsureTable(ctx, changed); !errors.Is(err, lake.ErrSchemaMismatch) {
		t.Errorf("EnsureTable with a changed type: %v, want ErrSchemaMismatch", err)
	}
}

func describe(sc *iceberg.Schema) []string {
	var out []string
	for _, f := range sc.Fields() {
		s := f.Name + ":" + f.Type.String()
		if f.Required {
			s += ":req"
		}
		out = append(out, s)
	}
	return out
}

// batch builds a record batch of tbl for bucket b with offsets [from, to);
// the id is the offset times 10 plus the bucket.
func batch(t *testing.T, tbl *table.Table, b int32, from, to int64) arrow.RecordBatch {
	t.Helper()
	sc, err := lake.ArrowSchema(tbl)
	if err != nil {
		t.Fatal(err)
	}
	rb := array.NewRecordBuilder(memory.DefaultAllocator, sc)
	defer rb.Release()
	ts := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	for o := from; o < to; o++ {
		for i, f := range sc.Fields() {
			switch f.Name {
			case "id":
				rb.Field(i).(*array.Int64Builder).Append(o*10 + int64(b))
			case "msg":
				if o%3 == 0 {
					rb.Field(i).AppendNull()
				} else {
					rb.Field(i).(*array.StringBuilder).Append("m")
				}
			case lake.ColumnBucket:
				rb.Field(i).(*array.Int32Builder).Append(b)
			case lake.ColumnOffset:
				rb.Field(i).(*array.Int64Builder).Append(o)
			case lake.ColumnTimestamp:
				rb.Field(i).(*array.TimestampBuilder).Append(arrow.Timestamp(ts.Add(time.Duration(o) * time.Second).UnixMicro()))
			default:
				rb.Field(i).AppendNull()
			}
		}
	}
	return rb.NewRecordBatch()
}

func bid(tableID int64, b int32) catalog.BucketID {
	return catalog.BucketID{TableID: tableID, Bucket: b}
}

// rows scans the table and returns "bucket/offset" of every row, sorted.
func rows(t *testing.T, l *lake.Lake, tt catalog.Table) []string {
	t.Helper()
	tbl, err := l.Catalog().LoadTable(ctxT(t), lake.Identifier(tt))
	if err != nil {
		t.Fatal(err)
	}
	at, err := tbl.Scan().ToArrowTable(ctxT(t))
	if err != nil {
		t.Fatalf("scan: %v", err)
	}
	defer at.Release()
	var out []string
	tr := array.NewTableReader(at, 1024)
	defer tr.Release()
	for tr.Next() {
		rec := tr.RecordBatch()
		bc := rec.Column(int(rec.Schema().FieldIndices(lake.ColumnBucket)[0])).(*array.Int32)
		oc := rec.Column(int(rec.Schema().FieldIndices(lake.ColumnOffset)[0])).(*array.Int64)
		for i := range int(rec.NumRows()) {
			out = append(out, formatRow(bc.Value(i), oc.Value(i)))
		}
	}
	slices.Sort(out)
	return out
}

func formatRow(b int32, o int64) string {
	return string(rune('0'+b)) + "/" + strings.Repeat("0", 4-len(itoa(o))) + itoa(o)
}

func itoa(n int64) string {
	if n == 0 {
		return "0"
	}
	var s []byte
	for ; n > 0; n /= 10 {
		s = append([]byte{byte('0' + n%10)}, s...)
	}
	return string(s)
}

func wantRows(ranges map[int32][2]int64) []string {
	var out []string
	for b, r := range ranges {
		for o := r[0]; o < r[1]; o++ {
			out = append(out, formatRow(b, o))
		}
	}
	slices.Sort(out)
	return out
}

func offsets(t *testing.T, l *lake.Lake, tt catalog.Table) (map[catalog.BucketID]int64, int64) {
	t.Helper()
	tbl, err := l.EnsureTable(ctxT(t), tt)
	if err != nil {
		t.Fatal(err)
	}
	o, id, err := l.Offsets(ctxT(t), tbl)
	if err != nil {
		t.Fatal(err)
	}
	return o, id
}

func TestAppend(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	tt := logTable(1)
	tbl, err := e.lake.EnsureTable(ctx, tt)
	if err != nil {
		t.Fatal(err)
	}
	if o, id := offsets(t, e.lake, tt); len(o) != 0 || id != 0 {
		t.Fatalf("Offsets of a new table = %v, %d", o, id)
	}
	recs := []arrow.RecordBatch{batch(t, tbl, 0, 0, 5), batch(t, tbl, 1, 0, 3), batch(t, tbl, 0, 5, 8)}
	snap1, err := e.lake.Append(ctx, tbl, recs, map[catalog.BucketID]int64{bid(1, 0): 8, bid(1, 1): 3})
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	o, id := offsets(t, e.lake, tt)
	if id != snap1 || o[bid(1, 0)] != 8 || o[bid(1, 1)] != 3 || len(o) != 2 {
		t.Fatalf("Offsets = %v, %d; want {0:8, 1:3}, %d", o, id, snap1)
	}
	// A second append of one bucket keeps the other's offset.
	tbl, _ = e.lake.EnsureTable(ctx, tt)
	snap2, err := e.lake.Append(ctx, tbl, []arrow.RecordBatch{batch(t, tbl, 1, 3, 10)}, map[catalog.BucketID]int64{bid(1, 1): 10})
	if err != nil {
		t.Fatalf("Append 2: %v", err)
	}
	o, id = offsets(t, e.lake, tt)
	if id != snap2 || o[bid(1, 0)] != 8 || o[bid(1, 1)] != 10 {
		t.Fatalf("Offsets after append 2 = %v, %d", o, id)
	}
	if got, want := rows(t, e.lake, tt), wantRows(map[int32][2]int64{0: {0, 8}, 1: {0, 10}}); !slices.Equal(got, want) {
		t.Fatalf("rows\n got %v\nwant %v", got, want)
	}
	// The same append again from the stale table is recognised as done.
	if id, err := e.lake.Append(ctx, tbl, []arrow.RecordBatch{batch(t, tbl, 1, 3, 10)}, map[catalog.BucketID]int64{bid(1, 1): 10}); !errors.Is(err, lake.ErrAlreadyCommitted) || id != snap2 {
		t.Fatalf("repeated Append from a stale table = %d, %v; want %d, ErrAlreadyCommitted", id, err, snap2)
	}
	// From a fresh table, records that do not advance the offsets are refused.
	tbl, _ = e.lake.EnsureTable(ctx, tt)
	if _, err := e.lake.Append(ctx, tbl, []arrow.RecordBatch{batch(t, tbl, 1, 3, 10)}, map[catalog.BucketID]int64{bid(1, 1): 10}); err == nil {
		t.Fatal("Append of already tiered offsets succeeded")
	}
	// Nulls in a required column are refused.
	bad := batch(t, tbl, 0, 8, 9)
	sc := bad.Schema()
	cols := slices.Clone(bad.Columns())
	cols[0] = array.MakeArrayOfNull(memory.DefaultAllocator, arrow.PrimitiveTypes.Int64, 1)
	if _, err := e.lake.Append(ctx, tbl, []arrow.RecordBatch{array.NewRecordBatch(sc, cols, 1)}, map[catalog.BucketID]int64{bid(1, 0): 9}); err == nil || !strings.Contains(err.Error(), `"id" is required`) {
		t.Fatalf("Append with nulls in a required column: %v", err)
	}
	checkNoOrphans(t, e, tt)
	checkParquet(t, e, tt)
}

// checkParquet reads the footer of a data file: zstd-compressed column
// chunks, and Iceberg field ids on the columns.
func checkParquet(t *testing.T, e env, tt catalog.Table) {
	t.Helper()
	ctx := ctxT(t)
	tbl, err := e.lake.Catalog().LoadTable(ctx, lake.Identifier(tt))
	if err != nil {
		t.Fatal(err)
	}
	tasks, err := tbl.Scan().PlanFiles(ctx)
	if err != nil || len(tasks) == 0 {
		t.Fatalf("PlanFiles: %d tasks, %v", len(tasks), err)
	}
	fs, err := tbl.FS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f, err := fs.Open(tasks[0].File.FilePath())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rdr, err := file.NewParquetReader(f)
	if err != nil {
		t.Fatal(err)
	}
	defer rdr.Close()
	md := rdr.MetaData()
	for i := range md.Schema.NumColumns() {
		col := md.Schema.Column(i)
		if col.SchemaNode().FieldID() <= 0 {
			t.Errorf("column %s has no field id", col.Name())
		}
		cc, err := md.RowGroup(0).ColumnChunk(i)
		if err != nil {
			t.Fatal(err)
		}
		if c := cc.Compression(); c != compress.Codecs.Zstd {
			t.Errorf("column %s compressed with %s, want zstd", col.Name(), c)
		}
	}
}

// TestAppendConflicts commits from stale table handles, as concurrent
// tierers do.
func TestAppendConflicts(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	tt := logTable(1)
	stale, err := e.lake.EnsureTable(ctx, tt)
	if err != nil {
		t.Fatal(err)
	}
	// Two tierers append the same range at once: one commit, no duplicates.
	var wg sync.WaitGroup
	ids := make([]int64, 2)
	errs := make([]error, 2)
	for i := range 2 {
		wg.Go(func() {
			l := e.lake
			if i == 1 {
				l = openLake(t, e.cfg)
			}
			ids[i], errs[i] = l.Append(ctx, stale, []arrow.RecordBatch{batch(t, stale, 0, 0, 10)}, map[catalog.BucketID]int64{bid(1, 0): 10})
		})
	}
	wg.Wait()
	if ids[0] == 0 || ids[0] != ids[1] || !(errs[0] == nil && errors.Is(errs[1], lake.ErrAlreadyCommitted) ||
		errs[1] == nil && errors.Is(errs[0], lake.ErrAlreadyCommitted)) {
		t.Fatalf("concurrent appends: ids %v, errs %v; want one snapshot, one ErrAlreadyCommitted", ids, errs)
	}
	if got, want := rows(t, e.lake, tt), wantRows(map[int32][2]int64{0: {0, 10}}); !slices.Equal(got, want) {
		t.Fatalf("rows after concurrent appends\n got %v\nwant %v", got, want)
	}
	checkNoOrphans(t, e, tt)

	// A stale append that overlaps the committed range only partly fails.
	_, err = e.lake.Append(ctx, stale, []arrow.RecordBatch{batch(t, stale, 0, 0, 20)}, map[catalog.BucketID]int64{bid(1, 0): 20})
	if !errors.Is(err, lake.ErrConflict) {
		t.Fatalf("partly overlapping append: %v, want ErrConflict", err)
	}
	checkNoOrphans(t, e, tt)

	// A stale append of another bucket is committed on top.
	id, err := e.lake.Append(ctx, stale, []arrow.RecordBatch{batch(t, stale, 1, 0, 4)}, map[catalog.BucketID]int64{bid(1, 1): 4})
	if err != nil {
		t.Fatalf("append of an untouched bucket from a stale table: %v", err)
	}
	o, head := offsets(t, e.lake, tt)
	if head != id || o[bid(1, 0)] != 10 || o[bid(1, 1)] != 4 {
		t.Fatalf("offsets %v at %d after rebased append %d", o, head, id)
	}
	if got, want := rows(t, e.lake, tt), wantRows(map[int32][2]int64{0: {0, 10}, 1: {0, 4}}); !slices.Equal(got, want) {
		t.Fatalf("rows\n got %v\nwant %v", got, want)
	}
	checkNoOrphans(t, e, tt)
}

// checkNoOrphans fails if the table's data directory holds a file that the
// current snapshot does not reference.
func checkNoOrphans(t *testing.T, e env, tt catalog.Table) {
	t.Helper()
	ctx := ctxT(t)
	tbl, err := e.lake.Catalog().LoadTable(ctx, lake.Identifier(tt))
	if err != nil {
		t.Fatal(err)
	}
	referenced := map[string]bool{}
	tasks, err := tbl.Scan().PlanFiles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		referenced[task.File.FilePath()] = true
	}
	prefix := strings.TrimPrefix(tbl.Location(), "s3://"+e.s3.Bucket+"/") + "/data/"
	client := e.s3.Client(t)
	var token *string
	for {
		out, err := client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &e.s3.Bucket, Prefix: &prefix, ContinuationToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range out.Contents {
			if p := "s3://" + e.s3.Bucket + "/" + *o.Key; !referenced[p] {
				t.Errorf("orphan data file %s", p)
			}
		}
		if out.NextContinuationToken == nil {
			break
		}
		token = out.NextContinuationToken
	}
}
