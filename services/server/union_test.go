package server_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/iceberg-go"
	icebergrest "github.com/apache/iceberg-go/catalog/rest"
	iceio "github.com/apache/iceberg-go/io"
	"github.com/apache/iceberg-go/table"
	"google.golang.org/protobuf/types/known/structpb"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/api/gen/strom/v1/stromv1connect"
	"github.com/strom-io/strom/tiering/lake"
)

// unionEpoch is the "at" value of id 0; id n is n milliseconds later.
var unionEpoch = time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)

// unionTableColumns: TINYINT and TIMESTAMP(3) have other types in the
// lake (int, microseconds), so union reads convert them back.
var unionTableColumns = []*stromv1.Column{
	{Name: "id", Type: "BIGINT"},
	{Name: "note", Type: "STRING", Nullable: true},
	{Name: "small", Type: "TINYINT", Nullable: true},
	{Name: "at", Type: "TIMESTAMP(3)", Nullable: true},
}

// unionRowValues are the columns of the row with this id.
func unionRowValues(id int64) map[string]any {
	row := map[string]any{"id": id, "small": id % 100, "at": unionEpoch.Add(time.Duration(id) * time.Millisecond).Format("2006-01-02T15:04:05.000")}
	if id%3 != 0 {
		row["note"] = fmt.Sprintf("n%d", id)
	}
	return row
}

// unionRow is a row of a union scan: its id and where it is (scanUnion
// checks its other columns against unionRowValues(id)).
type unionRow struct {
	id     int64
	bucket int32
	offset int64
}

type rowKey struct {
	bucket int32
	offset int64
}

// appendUnionRows appends the rows of ids [from, to); safe to call from
// any goroutine.
func appendUnionRows(ctx context.Context, write stromv1connect.WriteServiceClient, db, tbl string, from, to int64) error {
	req := &stromv1.AppendRequest{Database: db, Table: tbl}
	for id := from; id < to; id++ {
		st, err := structpb.NewStruct(unionRowValues(id))
		if err != nil {
			return err
		}
		req.Rows = append(req.Rows, st)
	}
	_, err := write.Append(ctx, connect.NewRequest(req))
	return err
}

// scanUnion runs Scan{union: true} as how says (one Scan, pages of Scan
// calls, or ScanStream) and decodes the rows (JSON or Arrow), checking
// every column that was returned against the row's id.
func scanUnion(t *testing.T, ctx context.Context, read stromv1connect.ReadServiceClient, db, tbl string, format stromv1.Format, how scanHow, columns []string, limit int64) []unionRow {
	t.Helper()
	pages := readScan(t, ctx, read, &stromv1.ScanRequest{Database: db, Table: tbl, Union: true, Format: format, Columns: columns, Limit: limit, PageSize: how.pageSize}, how.mode)
	var rows []unionRow
	for _, page := range pages {
		rows = append(rows, unionPageRows(t, page, format, columns)...)
	}
	return rows
}

// unionPageRows decodes one page of a union scan of a table of
// unionTableColumns.
func unionPageRows(t *testing.T, page *stromv1.ScanResponse, format stromv1.Format, columns []string) []unionRow {
	t.Helper()
	var rows []unionRow
	if format != stromv1.Format_FORMAT_ARROW {
		for _, st := range page.GetRows() {
			f := st.AsMap()
			id := int64(f["id"].(float64))
			want := unionRowValues(id)
			for _, c := range []string{"note", "small", "at"} {
				v, ok := f[c]
				if !ok {
					if len(columns) == 0 || slices.Contains(columns, c) {
						t.Fatalf("row %v lacks column %s", f, c)
					}
					continue
				}
				if c == "small" {
					v = int64(v.(float64))
				}
				if v != want[c] {
					t.Fatalf("id %d: %s = %v, want %v", id, c, v, want[c])
				}
			}
			if _, err := time.Parse(time.RFC3339Nano, f["_timestamp"].(string)); err != nil {
				t.Fatalf("id %d: _timestamp: %v", id, err)
			}
			rows = append(rows, unionRow{id: id, bucket: int32(f["_bucket"].(float64)), offset: int64(f["_offset"].(float64))})
		}
		return rows
	}
	rdr, err := ipc.NewReader(bytes.NewReader(page.GetArrowIpc()))
	if err != nil {
		t.Fatalf("decode union scan: %v", err)
	}
	defer rdr.Release()
	want := []string{"id", "note", "small", "at"}
	if len(columns) > 0 {
		want = columns
	}
	want = append(slices.Clone(want), "_bucket", "_offset", "_timestamp")
	var names []string
	for _, f := range rdr.Schema().Fields() {
		names = append(names, f.Name)
	}
	if !slices.Equal(names, want) {
		t.Fatalf("union scan schema %v, want %v", names, want)
	}
	for rdr.Next() {
		rec := rdr.RecordBatch()
		col := func(name string) arrow.Array {
			if idx := rec.Schema().FieldIndices(name); len(idx) > 0 {
				return rec.Column(idx[0])
			}
			return nil
		}
		ids := col("id").(*array.Int64)
		buckets, offsets := col("_bucket").(*array.Int32), col("_offset").(*array.Int64)
		for i := range int(rec.NumRows()) {
			id := ids.Value(i)
			if c, ok := col("note").(*array.String); ok && (c.IsNull(i) != (id%3 == 0) || c.IsValid(i) && c.Value(i) != fmt.Sprintf("n%d", id)) {
				t.Fatalf("id %d: note %q (null %v)", id, c.Value(i), c.IsNull(i))
			}
			if c := col("small"); c != nil {
				if s, ok := c.(*array.Int8); !ok || int64(s.Value(i)) != id%100 {
					t.Fatalf("id %d: small is %s %v, want int8 %d", id, c.DataType(), c, id%100)
				}
			}
			if c := col("at"); c != nil {
				ts, ok := c.(*array.Timestamp)
				if !ok || c.DataType().(*arrow.TimestampType).Unit != arrow.Millisecond || int64(ts.Value(i)) != unionEpoch.Add(time.Duration(id)*time.Millisecond).UnixMilli() {
					t.Fatalf("id %d: at is %s %v", id, c.DataType(), c)
				}
			}
			rows = append(rows, unionRow{id: id, bucket: buckets.Value(i), offset: offsets.Value(i)})
		}
	}
	if err := rdr.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

// checkUnion checks one union scan against the model (where every id is
// in the stream): no id and no (bucket, offset) twice, every bucket's
// offsets 0, 1, ... in order with buckets ascending, each row where the
// model has its id, every bucket's end within [lo, hi] (its next offset
// before and after the scan), and every id acknowledged before the scan
// included. It returns the rows per bucket.
func checkUnion(t *testing.T, name string, rows []unionRow, model map[int64]rowKey, lo, hi map[int32]int64, acked int64) map[int32]int64 {
	t.Helper()
	next := map[int32]int64{}
	seen := map[int64]bool{}
	last := int32(-1)
	for i, r := range rows {
		if r.bucket < last {
			t.Fatalf("%s: row %d is of bucket %d after bucket %d", name, i, r.bucket, last)
		}
		last = r.bucket
		if r.offset != next[r.bucket] {
			t.Fatalf("%s: row %d: bucket %d offset %d, want %d (a gap or a duplicate)", name, i, r.bucket, r.offset, next[r.bucket])
		}
		next[r.bucket]++
		if seen[r.id] {
			t.Fatalf("%s: id %d twice", name, r.id)
		}
		seen[r.id] = true
		if k, ok := model[r.id]; !ok || k != (rowKey{r.bucket, r.offset}) {
			t.Fatalf("%s: id %d at bucket %d offset %d, the table has it at %v (known %v)", name, r.id, r.bucket, r.offset, k, ok)
		}
	}
	for b, l := range lo {
		if next[b] < l || next[b] > hi[b] {
			t.Fatalf("%s: bucket %d ends at %d, outside [%d, %d] (next offsets before and after the scan)", name, b, next[b], l, hi[b])
		}
	}
	for id := range acked {
		if !seen[id] {
			t.Fatalf("%s: id %d was acknowledged before the scan and is missing (%d rows)", name, id, len(rows))
		}
	}
	return next
}

// nextOffsets returns every bucket's next offset (OFFSET_SPEC_LATEST), or
// its first retained one (OFFSET_SPEC_EARLIEST).
func nextOffsets(t *testing.T, ctx context.Context, read stromv1connect.ReadServiceClient, db, tbl string, spec stromv1.OffsetSpec) map[int32]int64 {
	t.Helper()
	resp, err := read.ListOffsets(ctx, connect.NewRequest(&stromv1.ListOffsetsRequest{Database: db, Table: tbl, Spec: spec}))
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	for _, o := range resp.Msg.GetOffsets() {
		out[o.GetBucket()] = o.GetOffset()
	}
	return out
}

// TestUnionScan writes a lake-enabled log table while it is tiered every
// half second and retention deletes what is tiered and older than 200ms,
// and union-scans it meanwhile: every scan is the table up to its bucket
// ends, fixed when the scan starts — no row twice, none missing — also
// when the lake holds part of a bucket and the stream the rest, when
// retention deletes the tail a scan was about to read (it then reads a
// newer lake snapshot), and once the stream no longer holds the oldest
// rows.
func TestUnionScan(t *testing.T) {
	start := time.Now()
	flags := backends(t)["postgres+s3"](t)
	base := startServer(t, append(flags, "-lake.tiering.interval", "100ms", "-retention.interval", "100ms", "-frontend.flush-interval", "20ms")...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin := stromv1connect.NewAdminServiceClient(http.DefaultClient, base)
	if _, err := admin.CreateDatabase(ctx, connect.NewRequest(&stromv1.CreateDatabaseRequest{Name: "u"})); err != nil {
		t.Fatal(err)
	}
	three := int32(3)
	if _, err := admin.CreateTable(ctx, connect.NewRequest(&stromv1.CreateTableRequest{
		Database: "u", Name: "events", Buckets: &three, BucketKey: []string{"id"},
		Schema: &stromv1.Schema{Columns: unionTableColumns},
		Properties: map[string]string{
			"table.datalake.enabled": "true", "table.datalake.freshness": "1s", "table.log.ttl": "200ms",
		},
	})); err != nil {
		t.Fatal(err)
	}
	write := stromv1connect.NewWriteServiceClient(http.DefaultClient, base)
	read := stromv1connect.NewReadServiceClient(http.DefaultClient, base)
	s3 := lakeS3(t, flags)
	cat, err := icebergrest.NewCatalog(ctx, "strom", base+"/iceberg", icebergrest.WithAdditionalProps(iceberg.Properties{
		iceio.S3AccessKeyID: s3.key, iceio.S3SecretAccessKey: s3.secret,
	}))
	if err != nil {
		t.Fatal(err)
	}
	// lakeOffsets is strom.offsets of the lake's current snapshot.
	lakeOffsets := func() map[int32]int64 {
		t.Helper()
		out := map[int32]int64{}
		tbl, err := cat.LoadTable(ctx, table.Identifier{"u", "events"})
		if err != nil || tbl.CurrentSnapshot() == nil {
			return out // not tiered yet
		}
		offs, err := lake.DecodeOffsets(tbl.CurrentSnapshot().Summary.Properties[lake.SummaryOffsets], 0)
		if err != nil {
			t.Fatal(err)
		}
		for b, o := range offs {
			out[b.Bucket] = o
		}
		return out
	}
	// catalogTiered is the sum of the catalog's tiered offsets.
	catalogTiered := func() int64 {
		t.Helper()
		resp, err := admin.GetLakeStatus(ctx, connect.NewRequest(&stromv1.GetLakeStatusRequest{Database: "u", Table: "events"}))
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, b := range resp.Msg.GetTables()[0].GetBuckets() {
			n += b.GetTieredOffset()
		}
		return n
	}

	// One writer, 25 rows every ~20ms: ids below acked are acknowledged.
	const perAppend = 25
	var acked atomic.Int64
	stop := make(chan struct{})
	writerDone := make(chan error, 1)
	go func() {
		for next := int64(0); ; next += perAppend {
			select {
			case <-stop:
				writerDone <- nil
				return
			default:
			}
			if err := appendUnionRows(ctx, write, "u", "events", next, next+perAppend); err != nil {
				writerDone <- err
				return
			}
			acked.Store(next + perAppend)
			time.Sleep(20 * time.Millisecond)
		}
	}()

	type moment struct {
		name   string
		rows   []unionRow
		lo, hi map[int32]int64
		acked  int64
		// tieredBefore: the catalog's tiered offsets (sum) before the
		// scan; lakeAfter: the lake's offsets after it.
		tieredBefore int64
		lakeAfter    map[int32]int64
	}
	var moments []moment
	mixed := 0
	writeUntil := time.Now().Add(5 * time.Second)
	for i := 0; time.Now().Before(writeUntil) || mixed == 0 && time.Since(start) < 20*time.Second; i++ {
		m := moment{name: fmt.Sprintf("scan %d", i), acked: acked.Load()}
		m.lo = nextOffsets(t, ctx, read, "u", "events", stromv1.OffsetSpec_OFFSET_SPEC_LATEST)
		m.tieredBefore = catalogTiered()
		// One Scan, small pages streamed, and small pages of Scan calls:
		// every way holds the ends fixed at the scan's start.
		format, columns, how := stromv1.Format_FORMAT_JSON, []string(nil), scanHow{mode: scanUnary}
		switch i % 3 {
		case 1:
			format, how = stromv1.Format_FORMAT_ARROW, scanHow{mode: scanStream, pageSize: 7}
		case 2:
			format, columns, how = stromv1.Format_FORMAT_ARROW, []string{"at", "id"}, scanHow{mode: scanPaged, pageSize: 700}
		}
		m.rows = scanUnion(t, ctx, read, "u", "events", format, how, columns, 0)
		m.hi = nextOffsets(t, ctx, read, "u", "events", stromv1.OffsetSpec_OFFSET_SPEC_LATEST)
		m.lakeAfter = lakeOffsets()
		// Both layers contributed: the lake held rows before the scan
		// (its offsets only grow), and after the scan it still lacked
		// rows the scan returned, which came from the stream.
		n := map[int32]int64{}
		for _, r := range m.rows {
			n[r.bucket]++
		}
		for b := range n {
			if m.tieredBefore > 0 && m.lakeAfter[b] < n[b] {
				mixed++
				break
			}
		}
		moments = append(moments, m)
		time.Sleep(150 * time.Millisecond)
	}
	close(stop)
	if err := <-writerDone; err != nil {
		t.Fatal(err)
	}
	total := acked.Load()
	if mixed == 0 {
		t.Fatalf("no union scan of %d read part of a bucket from the lake and the rest from the stream", len(moments))
	}

	// Wait until the lake holds everything and retention has deleted the
	// oldest rows from the stream.
	for {
		lk := lakeOffsets()
		first := nextOffsets(t, ctx, read, "u", "events", stromv1.OffsetSpec_OFFSET_SPEC_EARLIEST)
		var inLake, deleted int64
		for b := range int32(3) {
			inLake += lk[b]
			deleted += first[b]
		}
		if inLake == total && deleted > 0 {
			break
		}
		if time.Since(start) > 40*time.Second {
			t.Fatalf("lake holds %d of %d rows, retention deleted %d", inLake, total, deleted)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The model: where each id is, by iceberg-go's own read of the lake
	// through the REST catalog, checked against what the stream still has.
	model := map[int64]rowKey{}
	tbl, err := cat.LoadTable(ctx, table.Identifier{"u", "events"})
	if err != nil {
		t.Fatal(err)
	}
	at, err := tbl.Scan(table.WithSelectedFields("id", "__bucket", "__offset")).ToArrowTable(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tr := array.NewTableReader(at, 0)
	for tr.Next() {
		rec := tr.RecordBatch()
		ids, bs, os := rec.Column(0).(*array.Int64), rec.Column(1).(*array.Int32), rec.Column(2).(*array.Int64)
		for i := range int(rec.NumRows()) {
			if _, dup := model[ids.Value(i)]; dup {
				t.Fatalf("id %d twice in the lake", ids.Value(i))
			}
			model[ids.Value(i)] = rowKey{bs.Value(i), os.Value(i)}
		}
	}
	tr.Release()
	at.Release()
	if int64(len(model)) != total {
		t.Fatalf("lake holds %d ids, %d were written", len(model), total)
	}
	first := nextOffsets(t, ctx, read, "u", "events", stromv1.OffsetSpec_OFFSET_SPEC_EARLIEST)
	for b := range int32(3) {
		resp, err := read.Fetch(ctx, connect.NewRequest(&stromv1.FetchRequest{Database: "u", Table: "events", Bucket: b, Offset: first[b], Columns: []string{"id"}}))
		if err != nil {
			t.Fatal(err)
		}
		for _, row := range resp.Msg.GetRows() {
			f := row.GetFields()
			id := int64(f["id"].GetNumberValue())
			if got := model[id]; got != (rowKey{b, int64(f["_offset"].GetNumberValue())}) {
				t.Fatalf("id %d: lake at %v, stream at bucket %d offset %v", id, got, b, f["_offset"])
			}
		}
	}

	for _, m := range moments {
		checkUnion(t, m.name, m.rows, model, m.lo, m.hi, m.acked)
	}

	// Now the lake holds everything and the stream has lost the oldest
	// rows: the union still returns every row, from the lake.
	final := nextOffsets(t, ctx, read, "u", "events", stromv1.OffsetSpec_OFFSET_SPEC_LATEST)
	for _, f := range []stromv1.Format{stromv1.Format_FORMAT_JSON, stromv1.Format_FORMAT_ARROW} {
		rows := scanUnion(t, ctx, read, "u", "events", f, scanHow{mode: scanStream, pageSize: 13}, nil, 0)
		checkUnion(t, "final "+f.String(), rows, model, final, final, total)
		if int64(len(rows)) != total {
			t.Fatalf("final union scan: %d rows, want %d", len(rows), total)
		}
	}
	// A limit cuts the same order: bucket 0 from offset 0.
	rows := scanUnion(t, ctx, read, "u", "events", stromv1.Format_FORMAT_ARROW, scanHow{mode: scanPaged, pageSize: 15}, []string{"small", "id"}, 40)
	if len(rows) != 40 || final[0] < 40 {
		t.Fatalf("limit 40: %d rows (bucket 0 holds %d)", len(rows), final[0])
	}
	for i, r := range rows {
		if r.bucket != 0 || r.offset != int64(i) || model[r.id] != (rowKey{0, int64(i)}) {
			t.Fatalf("limit 40: row %d is id %d at bucket %d offset %d", i, r.id, r.bucket, r.offset)
		}
	}
	t.Logf("%d union scans (%d mixed lake+stream) while writing %d rows; took %s", len(moments), mixed, total, time.Since(start).Round(time.Millisecond))
}

// TestUnionScanWithoutLake: in a deployment without a lake, a union scan
// reads the stream alone, lake-enabled or not; a primary-key table has no
// union read yet.
func TestUnionScanWithoutLake(t *testing.T) {
	base := startServer(t)
	ctx := context.Background()
	admin := stromv1connect.NewAdminServiceClient(http.DefaultClient, base)
	if _, err := admin.CreateDatabase(ctx, connect.NewRequest(&stromv1.CreateDatabaseRequest{Name: "w"})); err != nil {
		t.Fatal(err)
	}
	two := int32(2)
	for name, props := range map[string]map[string]string{"lake": {"table.datalake.enabled": "true"}, "plain": nil} {
		if _, err := admin.CreateTable(ctx, connect.NewRequest(&stromv1.CreateTableRequest{
			Database: "w", Name: name, Buckets: &two, BucketKey: []string{"id"},
			Schema: &stromv1.Schema{Columns: unionTableColumns}, Properties: props,
		})); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := admin.CreateTable(ctx, connect.NewRequest(&stromv1.CreateTableRequest{
		Database: "w", Name: "pk",
		Schema: &stromv1.Schema{Columns: []*stromv1.Column{{Name: "id", Type: "BIGINT"}}, PrimaryKey: []string{"id"}},
	})); err != nil {
		t.Fatal(err)
	}
	write := stromv1connect.NewWriteServiceClient(http.DefaultClient, base)
	read := stromv1connect.NewReadServiceClient(http.DefaultClient, base)
	for _, name := range []string{"lake", "plain"} {
		for _, r := range [][2]int64{{0, 30}, {30, 45}} {
			if err := appendUnionRows(ctx, write, "w", name, r[0], r[1]); err != nil {
				t.Fatal(err)
			}
		}
		// The model: the stream itself.
		model := map[int64]rowKey{}
		for b := range int32(2) {
			resp, err := read.Fetch(ctx, connect.NewRequest(&stromv1.FetchRequest{Database: "w", Table: name, Bucket: b, Columns: []string{"id"}}))
			if err != nil {
				t.Fatal(err)
			}
			for _, row := range resp.Msg.GetRows() {
				f := row.GetFields()
				model[int64(f["id"].GetNumberValue())] = rowKey{b, int64(f["_offset"].GetNumberValue())}
			}
		}
		next := nextOffsets(t, ctx, read, "w", name, stromv1.OffsetSpec_OFFSET_SPEC_LATEST)
		for _, f := range []stromv1.Format{stromv1.Format_FORMAT_JSON, stromv1.Format_FORMAT_ARROW} {
			rows := scanUnion(t, ctx, read, "w", name, f, scanHow{mode: scanPaged, pageSize: 4}, nil, 0)
			checkUnion(t, name+" "+f.String(), rows, model, next, next, 45)
			if len(rows) != 45 {
				t.Fatalf("%s: %d rows, want 45", name, len(rows))
			}
		}
		if rows := scanUnion(t, ctx, read, "w", name, stromv1.Format_FORMAT_JSON, scanHow{mode: scanStream, pageSize: 3}, []string{"id"}, 7); len(rows) != 7 {
			t.Fatalf("%s: limit 7 returned %d rows", name, len(rows))
		}
	}
	// A primary-key table without a lake: its changelog replayed.
	upsert := &stromv1.UpsertRequest{Database: "w", Table: "pk"}
	for id := range 5 {
		st, _ := structpb.NewStruct(map[string]any{"id": id})
		upsert.Rows = append(upsert.Rows, st)
	}
	if _, err := write.Upsert(ctx, connect.NewRequest(upsert)); err != nil {
		t.Fatal(err)
	}
	if _, err := write.Delete(ctx, connect.NewRequest(&stromv1.DeleteRequest{Database: "w", Table: "pk", Keys: upsert.Rows[:2]})); err != nil {
		t.Fatal(err)
	}
	resp, err := read.Scan(ctx, connect.NewRequest(&stromv1.ScanRequest{Database: "w", Table: "pk", Union: true}))
	if err != nil {
		t.Fatal(err)
	}
	var ids []float64
	for _, r := range resp.Msg.GetRows() {
		f := r.AsMap()
		if f["_offset"] != f["id"] {
			t.Fatalf("union row %v: _offset is not the offset of its insert", f)
		}
		ids = append(ids, f["id"].(float64))
	}
	if slices.Sort(ids); !slices.Equal(ids, []float64{2, 3, 4}) {
		t.Fatalf("union scan of the primary-key table: ids %v, want [2 3 4]", ids)
	}
	_, err = read.Scan(ctx, connect.NewRequest(&stromv1.ScanRequest{Database: "w", Table: "plain", Union: true, Columns: []string{"nope"}}))
	wantCode(t, err, connect.CodeInvalidArgument)
	_, err = read.Scan(ctx, connect.NewRequest(&stromv1.ScanRequest{Database: "w", Table: "plain", Union: true, Columns: []string{"id", "id"}}))
	wantCode(t, err, connect.CodeInvalidArgument)
	_, err = read.Scan(ctx, connect.NewRequest(&stromv1.ScanRequest{Database: "w", Table: "plain", Union: true, Limit: -1}))
	wantCode(t, err, connect.CodeInvalidArgument)
	_, err = read.Scan(ctx, connect.NewRequest(&stromv1.ScanRequest{Database: "w", Table: "nope", Union: true}))
	wantCode(t, err, connect.CodeNotFound)
}
