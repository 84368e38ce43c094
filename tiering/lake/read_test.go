package lake_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/tiering/lake"
)

// readAll collects what Records yields: "bucket/offset" per row, the
// first batch's field names, and the yielded error.
func readAll(t *testing.T, s *lake.Snapshot, b catalog.BucketID, from, to int64, columns []string) ([]string, []string, error) {
	t.Helper()
	var got, fields []string
	for rec, err := range s.Records(ctxT(t), b, from, to, columns) {
		if err != nil {
			return got, fields, err
		}
		if fields == nil {
			for _, f := range rec.Schema().Fields() {
				fields = append(fields, f.Name)
			}
		}
		want, _ := s.Schema(columns)
		if !rec.Schema().Equal(want) {
			t.Errorf("batch schema %s, want Schema(%v) %s", rec.Schema(), columns, want)
		}
		bc := rec.Column(rec.Schema().FieldIndices(lake.ColumnBucket)[0]).(*array.Int32)
		oc := rec.Column(rec.Schema().FieldIndices(lake.ColumnOffset)[0]).(*array.Int64)
		for i := range int(rec.NumRows()) {
			got = append(got, formatRow(bc.Value(i), oc.Value(i)))
		}
		rec.Release()
	}
	return got, fields, nil
}

func TestSnapshotRecords(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	tt := logTable(1)
	b0, b1 := bid(1, 0), bid(1, 1)

	// Nothing in the lake, not even a table: an empty snapshot.
	snap, err := e.lake.Snapshot(ctx, tt)
	if err != nil || snap.ID != 0 || len(snap.Offsets) != 0 {
		t.Fatalf("Snapshot of a table the lake lacks = %+v, %v; want empty", snap, err)
	}
	if got, _, err := readAll(t, snap, b0, 0, 100, nil); err != nil || len(got) != 0 {
		t.Fatalf("Records of an empty snapshot = %v, %v", got, err)
	}
	tbl, err := e.lake.EnsureTable(ctx, tt)
	if err != nil {
		t.Fatal(err)
	}
	if snap, err := e.lake.Snapshot(ctx, tt); err != nil || snap.ID != 0 {
		t.Fatalf("Snapshot of a table without snapshots = %+v, %v", snap, err)
	}

	// Three appends: bucket 0 in three files, bucket 1 in one.
	if _, err := e.lake.Append(ctx, tbl, []arrow.RecordBatch{batch(t, tbl, 0, 0, 5), batch(t, tbl, 1, 0, 3)}, map[catalog.BucketID]int64{b0: 5, b1: 3}); err != nil {
		t.Fatal(err)
	}
	for _, r := range [][2]int64{{5, 8}, {8, 12}} {
		tbl, _ = e.lake.EnsureTable(ctx, tt)
		if _, err := e.lake.Append(ctx, tbl, []arrow.RecordBatch{batch(t, tbl, 0, r[0], r[1])}, map[catalog.BucketID]int64{b0: r[1]}); err != nil {
			t.Fatal(err)
		}
	}
	snap, err = e.lake.Snapshot(ctx, tt)
	if err != nil {
		t.Fatal(err)
	}
	if _, head := offsets(t, e.lake, tt); snap.ID != head || snap.Offsets[b0] != 12 || snap.Offsets[b1] != 3 || len(snap.Offsets) != 2 {
		t.Fatalf("Snapshot = id %d offsets %v; want id %d offsets {0:12, 1:3}", snap.ID, snap.Offsets, head)
	}

	for _, c := range []struct {
		name     string
		b        catalog.BucketID
		from, to int64
		columns  []string
		want     []string
		fields   []string
	}{
		{"all of bucket 0", b0, 0, 100, nil, wantRows(map[int32][2]int64{0: {0, 12}}), []string{"id", "msg", "__bucket", "__offset", "__timestamp"}},
		{"bucket 0 before 7", b0, 0, 7, nil, wantRows(map[int32][2]int64{0: {0, 7}}), nil},
		{"bucket 0 before a file boundary", b0, 0, 8, nil, wantRows(map[int32][2]int64{0: {0, 8}}), nil},
		{"bucket 0 from 3 before 10", b0, 3, 10, nil, wantRows(map[int32][2]int64{0: {3, 10}}), nil},
		{"bucket 0 from a file boundary", b0, 8, 100, nil, wantRows(map[int32][2]int64{0: {8, 12}}), nil},
		{"bucket 0 from its end", b0, 12, 100, nil, nil, nil},
		{"before 0", b0, 0, 0, nil, nil, nil},
		{"bucket 1 projected", b1, 0, 100, []string{"msg"}, wantRows(map[int32][2]int64{1: {0, 3}}), []string{"msg", "__bucket", "__offset", "__timestamp"}},
		{"a bucket never tiered", bid(1, 5), 0, 100, nil, nil, nil},
	} {
		got, fields, err := readAll(t, snap, c.b, c.from, c.to, c.columns)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		// Records yields offset order: compare unsorted.
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: rows\n got %v\nwant %v", c.name, got, c.want)
		}
		if c.fields != nil && !slices.Equal(fields, c.fields) {
			t.Errorf("%s: fields %v, want %v", c.name, fields, c.fields)
		}
	}

	// Values and types: id = offset*10 + bucket, msg null every third row,
	// __timestamp as written.
	for rec, err := range snap.Records(ctx, b0, 0, 4, []string{"id", "msg"}) {
		if err != nil {
			t.Fatal(err)
		}
		ids, msgs := rec.Column(0).(*array.Int64), rec.Column(1).(*array.String)
		ts := rec.Column(4).(*array.Timestamp)
		for i := range int(rec.NumRows()) {
			o := int64(i)
			wantTS := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(o) * time.Second)
			if ids.Value(i) != o*10 || msgs.IsNull(i) != (o%3 == 0) || ts.Value(i).ToTime(arrow.Microsecond) != wantTS {
				t.Errorf("row %d: id %d, msg null %v, ts %v", i, ids.Value(i), msgs.IsNull(i), ts.Value(i).ToTime(arrow.Microsecond))
			}
		}
		rec.Release()
	}

	// A column the Strom table gained after the last round is null.
	evolved := tt
	evolved.Schema.Columns = append(slices.Clone(tt.Schema.Columns), catalog.Column{Name: "note", Type: catalog.SmallInt, Nullable: true})
	esnap, err := e.lake.Snapshot(ctx, evolved)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rec, err := range esnap.Records(ctx, b1, 0, 100, []string{"note", "id"}) {
		if err != nil {
			t.Fatal(err)
		}
		if rec.Schema().Field(0).Name != "note" || !arrow.TypeEqual(rec.Column(0).DataType(), arrow.PrimitiveTypes.Int32) || rec.Column(0).NullN() != int(rec.NumRows()) {
			t.Errorf("added column: %s, %d nulls of %d", rec.Schema().Field(0), rec.Column(0).NullN(), rec.NumRows())
		}
		n += int(rec.NumRows())
		rec.Release()
	}
	if n != 3 {
		t.Errorf("evolved table: %d rows of bucket 1, want 3", n)
	}

	// Breaking out early is fine.
	for rec, err := range snap.Records(ctx, b0, 0, 100, nil) {
		if err != nil {
			t.Fatal(err)
		}
		rec.Release()
		break
	}
	// Unknown and repeated columns are errors.
	if _, _, err := readAll(t, snap, b0, 0, 100, []string{"nope"}); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("unknown column: %v", err)
	}
	if _, err := snap.Schema([]string{"id", "id"}); err == nil {
		t.Error("Schema with a repeated column succeeded")
	}

	// The snapshot does not move with later commits.
	tbl, _ = e.lake.EnsureTable(ctx, tt)
	if _, err := e.lake.Append(ctx, tbl, []arrow.RecordBatch{batch(t, tbl, 1, 3, 6)}, map[catalog.BucketID]int64{b1: 6}); err != nil {
		t.Fatal(err)
	}
	if got, _, err := readAll(t, snap, b1, 0, 100, nil); err != nil || len(got) != 3 || snap.Offsets[b1] != 3 {
		t.Errorf("old snapshot after a commit: %v, %v, offsets %v", got, err, snap.Offsets)
	}

	// A Strom table of the same name with another id does not read it.
	if _, err := e.lake.Snapshot(ctx, logTable(2)); !errors.Is(err, lake.ErrForeignTable) {
		t.Errorf("Snapshot of another table id: %v, want ErrForeignTable", err)
	}
}

// TestSnapshotRecordsChecksOffsets: a lake whose data files disagree with
// strom.offsets (which only a foreign writer or a broken tierer makes)
// yields an error, never a duplicate or a gap.
func TestSnapshotRecordsChecksOffsets(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	for i, c := range []struct {
		name   string
		ranges [][2]int64
		offset int64
		want   string
	}{
		{"gap", [][2]int64{{0, 3}, {4, 6}}, 6, "misses one"},
		{"duplicate", [][2]int64{{0, 3}, {2, 5}}, 5, "twice"},
		{"short", [][2]int64{{0, 3}}, 5, "end at offset 3, want 5"},
	} {
		tt := logTable(int64(10 + i))
		tt.Name = c.name
		tbl, err := e.lake.EnsureTable(ctx, tt)
		if err != nil {
			t.Fatal(err)
		}
		var recs []arrow.RecordBatch
		for _, r := range c.ranges {
			recs = append(recs, batch(t, tbl, 0, r[0], r[1]))
		}
		if _, err := e.lake.Append(ctx, tbl, recs, map[catalog.BucketID]int64{bid(tt.ID, 0): c.offset}); err != nil {
			t.Fatal(err)
		}
		snap, err := e.lake.Snapshot(ctx, tt)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := readAll(t, snap, bid(tt.ID, 0), 0, 100, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Records error %v, want one saying %q", c.name, err, c.want)
		}
	}
}

// TestSnapshotPartitioned reads a table partitioned by a DATE column: the
// files' partition values name the buckets as Strom does (YYYY-MM-DD).
func TestSnapshotPartitioned(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	tt := catalog.Table{ID: 3, TableSpec: catalog.TableSpec{
		Database: "db", Name: "daily", Buckets: 2, PartitionKey: "day",
		Schema: catalog.Schema{Columns: []catalog.Column{
			{Name: "id", Type: catalog.BigInt},
			{Name: "day", Type: catalog.Date},
			{Name: "small", Type: catalog.TinyInt, Nullable: true},
		}},
	}}
	tbl, err := e.lake.EnsureTable(ctx, tt)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := lake.ArrowSchema(tbl)
	if err != nil {
		t.Fatal(err)
	}
	days := map[string]arrow.Date32{"2024-05-01": 19844, "2024-05-02": 19845}
	build := func(day string, b int32, from, to int64) arrow.RecordBatch {
		rb := array.NewRecordBuilder(memory.DefaultAllocator, sc)
		defer rb.Release()
		for o := from; o < to; o++ {
			rb.Field(0).(*array.Int64Builder).Append(o*100 + int64(days[day]-19844)*10 + int64(b))
			rb.Field(1).(*array.Date32Builder).Append(days[day])
			rb.Field(2).(*array.Int32Builder).Append(int32(o))
			rb.Field(3).(*array.Int32Builder).Append(b)
			rb.Field(4).(*array.Int64Builder).Append(o)
			rb.Field(5).(*array.TimestampBuilder).Append(arrow.Timestamp(o))
		}
		return rb.NewRecordBatch()
	}
	p1 := catalog.BucketID{TableID: 3, Partition: "2024-05-01", Bucket: 1}
	p2 := catalog.BucketID{TableID: 3, Partition: "2024-05-02", Bucket: 1}
	if _, err := e.lake.Append(ctx, tbl, []arrow.RecordBatch{build("2024-05-01", 1, 0, 4), build("2024-05-02", 1, 0, 2)},
		map[catalog.BucketID]int64{p1: 4, p2: 2}); err != nil {
		t.Fatal(err)
	}
	snap, err := e.lake.Snapshot(ctx, tt)
	if err != nil {
		t.Fatal(err)
	}
	for b, want := range map[catalog.BucketID]int{p1: 4, p2: 2, {TableID: 3, Partition: "2024-05-01", Bucket: 0}: 0} {
		n := 0
		for rec, err := range snap.Records(ctx, b, 0, 100, nil) {
			if err != nil {
				t.Fatalf("%s: %v", b, err)
			}
			dc := rec.Column(1).(*array.Date32)
			for i := range int(rec.NumRows()) {
				if got := dc.Value(i).FormattedString(); got != b.Partition {
					t.Errorf("%s: row of day %s", b, got)
				}
			}
			n += int(rec.NumRows())
			rec.Release()
		}
		if n != want {
			t.Errorf("%s: %d rows, want %d", b, n, want)
		}
	}
}

// TestSnapshotRecordsOrders: the rows of one tiering round may sit in a
// data file out of offset order (the round's batches interleave);
// Records yields them in order.
func TestSnapshotRecordsOrders(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	tt := logTable(1)
	tbl, err := e.lake.EnsureTable(ctx, tt)
	if err != nil {
		t.Fatal(err)
	}
	recs := []arrow.RecordBatch{batch(t, tbl, 0, 6, 10), batch(t, tbl, 0, 0, 2), batch(t, tbl, 0, 4, 6), batch(t, tbl, 0, 2, 4)}
	if _, err := e.lake.Append(ctx, tbl, recs, map[catalog.BucketID]int64{bid(1, 0): 10}); err != nil {
		t.Fatal(err)
	}
	snap, err := e.lake.Snapshot(ctx, tt)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range [][2]int64{{0, 100}, {3, 7}, {5, 10}} {
		got, _, err := readAll(t, snap, bid(1, 0), r[0], r[1], nil)
		if want := wantRows(map[int32][2]int64{0: {r[0], min(r[1], 10)}}); err != nil || !slices.Equal(got, want) {
			t.Errorf("Records [%d, %d) = %v, %v; want %v", r[0], r[1], got, err, want)
		}
	}
}

// TestSnapshotRowsFrom: a bucket in 20 data files (two chunks of files);
// RowsFrom at every position of a full read (and at a chunk's end)
// yields exactly the rows after it, in the same order; SnapshotAt gives
// back an older snapshot after a newer commit, with its own rows and
// positions, and refuses one the table does not have.
func TestSnapshotRowsFrom(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	tt := logTable(1)
	b0 := bid(1, 0)
	const files, per = 20, 3
	for f := range int64(files) {
		tbl, err := e.lake.EnsureTable(ctx, tt)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.lake.Append(ctx, tbl, []arrow.RecordBatch{batch(t, tbl, 0, f*per, (f+1)*per)}, map[catalog.BucketID]int64{b0: (f + 1) * per}); err != nil {
			t.Fatal(err)
		}
	}
	snap, err := e.lake.Snapshot(ctx, tt)
	if err != nil {
		t.Fatal(err)
	}
	type posRow struct {
		pos lake.RowsPos
		row string
	}
	read := func(s *lake.Snapshot, from lake.RowsPos) []posRow {
		t.Helper()
		var out []posRow
		for rb, err := range s.RowsFrom(ctx, b0, nil, from) {
			if err != nil {
				t.Fatalf("RowsFrom(%+v): %v", from, err)
			}
			oc := rb.Rec.Column(rb.Rec.Schema().FieldIndices(lake.ColumnOffset)[0]).(*array.Int64)
			for i := range int(rb.Rec.NumRows()) {
				out = append(out, posRow{lake.RowsPos{Chunk: rb.At.Chunk, Row: rb.At.Row + int64(i)}, formatRow(0, oc.Value(i))})
			}
			rb.Rec.Release()
		}
		return out
	}
	all := read(snap, lake.RowsPos{})
	if len(all) != files*per {
		t.Fatalf("RowsFrom(start) = %d rows, want %d", len(all), files*per)
	}
	chunks := map[int]bool{}
	for _, r := range all {
		chunks[r.pos.Chunk] = true
	}
	if len(chunks) != 2 {
		t.Fatalf("20 files came in chunks %v, want 2 chunks", chunks)
	}
	for i, r := range all {
		if got := read(snap, r.pos); !slices.Equal(got, all[i:]) {
			t.Fatalf("RowsFrom(%+v) = %d rows starting %v, want the %d from row %d", r.pos, len(got), got[:min(1, len(got))], len(all)-i, i)
		}
	}
	// The end of chunk 0 is the start of chunk 1; past the end is nothing.
	last0 := 0
	for i, r := range all {
		if r.pos.Chunk == 0 {
			last0 = i
		}
	}
	if got := read(snap, lake.RowsPos{Chunk: 0, Row: all[last0].pos.Row + 1}); !slices.Equal(got, all[last0+1:]) {
		t.Fatalf("RowsFrom(end of chunk 0) = %d rows, want %d", len(got), len(all)-last0-1)
	}
	if got := read(snap, lake.RowsPos{Chunk: 2}); len(got) != 0 {
		t.Fatalf("RowsFrom(chunk 2) = %d rows, want none", len(got))
	}

	// A newer snapshot; the old one by id reads as before.
	tbl, _ := e.lake.EnsureTable(ctx, tt)
	if _, err := e.lake.Append(ctx, tbl, []arrow.RecordBatch{batch(t, tbl, 0, files*per, files*per+5)}, map[catalog.BucketID]int64{b0: files*per + 5}); err != nil {
		t.Fatal(err)
	}
	old, err := e.lake.SnapshotAt(ctx, tt, snap.ID)
	if err != nil || old.ID != snap.ID || old.Offsets[b0] != files*per {
		t.Fatalf("SnapshotAt(%d) = %+v, %v", snap.ID, old, err)
	}
	if got := read(old, lake.RowsPos{}); !slices.Equal(got, all) {
		t.Fatalf("SnapshotAt(%d) rows = %d, want the %d of the snapshot", snap.ID, len(got), len(all))
	}
	if got, _, err := readAll(t, old, b0, 0, 1000, nil); err != nil || len(got) != files*per {
		t.Fatalf("SnapshotAt(%d) records = %d, %v; want %d", snap.ID, len(got), err, files*per)
	}
	if cur, err := e.lake.Snapshot(ctx, tt); err != nil || len(read(cur, lake.RowsPos{})) != files*per+5 {
		t.Fatalf("current snapshot: %v", err)
	}
	if _, err := e.lake.SnapshotAt(ctx, tt, snap.ID+12345); !errors.Is(err, lake.ErrSnapshotGone) {
		t.Fatalf("SnapshotAt(an unknown id) = %v, want ErrSnapshotGone", err)
	}
	if empty, err := e.lake.SnapshotAt(ctx, tt, 0); err != nil || empty.ID != 0 || len(read(empty, lake.RowsPos{})) != 0 {
		t.Fatalf("SnapshotAt(0) = %+v, %v; want the empty snapshot", empty, err)
	}
}
