package lake_test

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/iceberg-go/table"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/tiering/lake"
)

func pkTable(id int64) catalog.Table {
	t := logTable(id)
	t.Name = "users"
	t.Schema.PrimaryKey = []string{"id"}
	return t
}

// pkRow is a row of the primary-key test table.
type pkRow struct {
	id     int64
	msg    string
	bucket int32
	offset int64
}

// pkRows builds rows of tbl.
func pkRows(t *testing.T, tbl *table.Table, rows ...pkRow) arrow.RecordBatch {
	t.Helper()
	sc, err := lake.ArrowSchema(tbl)
	if err != nil {
		t.Fatal(err)
	}
	rb := array.NewRecordBuilder(memory.DefaultAllocator, sc)
	defer rb.Release()
	for _, r := range rows {
		for i, f := range sc.Fields() {
			switch f.Name {
			case "id":
				rb.Field(i).(*array.Int64Builder).Append(r.id)
			case "msg":
				rb.Field(i).(*array.StringBuilder).Append(r.msg)
			case lake.ColumnBucket:
				rb.Field(i).(*array.Int32Builder).Append(r.bucket)
			case lake.ColumnOffset:
				rb.Field(i).(*array.Int64Builder).Append(r.offset)
			case lake.ColumnTimestamp:
				rb.Field(i).(*array.TimestampBuilder).Append(arrow.Timestamp(time.Unix(r.offset, 0).UnixMicro()))
			default:
				rb.Field(i).AppendNull()
			}
		}
	}
	return rb.NewRecordBatch()
}

// pkDeletes builds delete keys of tbl: id and bucket.
func pkDeletes(t *testing.T, tbl *table.Table, bucket int32, ids ...int64) arrow.RecordBatch {
	t.Helper()
	sc, err := lake.DeleteSchema(tbl)
	if err != nil {
		t.Fatal(err)
	}
	if names := []string{sc.Field(0).Name, sc.Field(1).Name}; sc.NumFields() != 2 || !slices.Equal(names, []string{"id", lake.ColumnBucket}) {
		t.Fatalf("DeleteSchema = %s, want id, __bucket", sc)
	}
	rb := array.NewRecordBuilder(memory.DefaultAllocator, sc)
	defer rb.Release()
	for _, id := range ids {
		rb.Field(0).(*array.Int64Builder).Append(id)
		rb.Field(1).(*array.Int32Builder).Append(bucket)
	}
	return rb.NewRecordBatch()
}

// pkScan scans the table (at a snapshot, if not 0) and returns its rows
// by id as "msg@bucket/offset", failing on a duplicate id.
func pkScan(t *testing.T, tbl *table.Table, snap int64) map[int64]string {
	t.Helper()
	var opts []table.ScanOption
	if snap != 0 {
		opts = append(opts, table.WithSnapshotID(snap))
	}
	at, err := tbl.Scan(opts...).ToArrowTable(ctxT(t))
	if err != nil {
		t.Fatalf("scan: %v", err)
	}
	defer at.Release()
	out := map[int64]string{}
	tr := array.NewTableReader(at, 1024)
	defer tr.Release()
	for tr.Next() {
		rec := tr.RecordBatch()
		col := func(name string) arrow.Array { return rec.Column(rec.Schema().FieldIndices(name)[0]) }
		ids, msgs := col("id").(*array.Int64), col("msg").(*array.String)
		bs, os := col(lake.ColumnBucket).(*array.Int32), col(lake.ColumnOffset).(*array.Int64)
		for i := range int(rec.NumRows()) {
			if _, dup := out[ids.Value(i)]; dup {
				t.Fatalf("id %d is in the lake twice", ids.Value(i))
			}
			out[ids.Value(i)] = fmt.Sprintf("%s@%d/%d", msgs.Value(i), bs.Value(i), os.Value(i))
		}
	}
	return out
}

func TestPrimaryKeyTable(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	tt := pkTable(3)
	tbl, err := e.lake.EnsureTable(ctx, tt)
	if err != nil {
		t.Fatal(err)
	}
	sc := tbl.Schema()
	if len(sc.IdentifierFieldIDs) != 1 {
		t.Fatalf("identifier fields %v, want [id]", sc.IdentifierFieldIDs)
	}
	if f, _ := sc.FindFieldByID(sc.IdentifierFieldIDs[0]); f.Name != "id" || !f.Required {
		t.Fatalf("identifier field %+v, want the required id", f)
	}
	// Columns added later keep the identifier fields.
	evolved := tt
	evolved.Schema.Columns = append(slices.Clone(tt.Schema.Columns), catalog.Column{Name: "note", Type: catalog.String, Nullable: true})
	if tbl, err = e.lake.EnsureTable(ctx, evolved); err != nil {
		t.Fatal(err)
	}
	if got := tbl.Schema().IdentifierFieldIDs; len(got) != 1 || got[0] != sc.IdentifierFieldIDs[0] {
		t.Fatalf("identifier fields after adding a column: %v", got)
	}
	tt = evolved
	// Another primary key is not this table.
	changed := tt
	changed.Schema.PrimaryKey = []string{"id", "msg"}
	if _, err := e.lake.EnsureTable(ctx, changed); !errors.Is(err, lake.ErrSchemaMismatch) {
		t.Fatalf("EnsureTable with another primary key: %v, want ErrSchemaMismatch", err)
	}
	// Keys that Iceberg cannot express are refused.
	floaty := catalog.Table{ID: 4, TableSpec: catalog.TableSpec{Database: "db", Name: "f", Buckets: 1,
		Schema: catalog.Schema{Columns: []catalog.Column{{Name: "k", Type: catalog.Double}}, PrimaryKey: []string{"k"}}}}
	if _, err := e.lake.EnsureTable(ctx, floaty); !errors.Is(err, lake.ErrUnsupportedKey) {
		t.Fatalf("EnsureTable with a DOUBLE key: %v, want ErrUnsupportedKey", err)
	}

	b0, b1 := bid(3, 0), bid(3, 1)
	// Snapshot 1: inserts only, no deletes.
	s1, err := e.lake.CommitDelta(ctx, tbl, lake.Delta{Rows: []arrow.RecordBatch{
		pkRows(t, tbl, pkRow{1, "a", 0, 0}, pkRow{2, "b", 0, 1}, pkRow{3, "c", 0, 2}),
		pkRows(t, tbl, pkRow{6, "f", 1, 0}, pkRow{7, "g", 1, 1}),
	}}, map[catalog.BucketID]int64{b0: 3, b1: 2})
	if err != nil {
		t.Fatalf("CommitDelta 1: %v", err)
	}
	want1 := map[int64]string{1: "a@0/0", 2: "b@0/1", 3: "c@0/2", 6: "f@1/0", 7: "g@1/1"}
	tbl, _ = e.lake.EnsureTable(ctx, tt)
	if got := pkScan(t, tbl, 0); !maps.Equal(got, want1) {
		t.Fatalf("after delta 1: %v, want %v", got, want1)
	}

	// Snapshot 2: update 2 and 7, delete 3, insert 4: the updated keys are
	// deleted and re-added in one snapshot.
	s2, err := e.lake.CommitDelta(ctx, tbl, lake.Delta{
		Rows:    []arrow.RecordBatch{pkRows(t, tbl, pkRow{2, "B", 0, 4}, pkRow{4, "d", 0, 6}, pkRow{7, "G", 1, 3})},
		Deletes: []arrow.RecordBatch{pkDeletes(t, tbl, 0, 2, 3), pkDeletes(t, tbl, 1, 7)},
	}, map[catalog.BucketID]int64{b0: 7, b1: 4})
	if err != nil {
		t.Fatalf("CommitDelta 2: %v", err)
	}
	want2 := map[int64]string{1: "a@0/0", 2: "B@0/4", 4: "d@0/6", 6: "f@1/0", 7: "G@1/3"}
	tbl, _ = e.lake.EnsureTable(ctx, tt)
	if got := pkScan(t, tbl, 0); !maps.Equal(got, want2) {
		t.Fatalf("after delta 2: %v, want %v", got, want2)
	}
	if s := tbl.CurrentSnapshot(); s.SnapshotID != s2 || s.Summary.Properties["added-equality-delete-files"] != "2" {
		t.Fatalf("snapshot 2 summary %v", s.Summary)
	}

	// Snapshot 3: deletes only (bucket 1), then an empty delta that only
	// moves the offsets (bucket 0).
	if _, err := e.lake.CommitDelta(ctx, tbl, lake.Delta{Deletes: []arrow.RecordBatch{pkDeletes(t, tbl, 1, 6)}},
		map[catalog.BucketID]int64{b1: 5}); err != nil {
		t.Fatalf("CommitDelta 3: %v", err)
	}
	tbl, _ = e.lake.EnsureTable(ctx, tt)
	s4, err := e.lake.CommitDelta(ctx, tbl, lake.Delta{}, map[catalog.BucketID]int64{b0: 9})
	if err != nil {
		t.Fatalf("empty CommitDelta: %v", err)
	}
	want3 := map[int64]string{1: "a@0/0", 2: "B@0/4", 4: "d@0/6", 7: "G@1/3"}
	tbl, _ = e.lake.EnsureTable(ctx, tt)
	if got := pkScan(t, tbl, 0); !maps.Equal(got, want3) {
		t.Fatalf("after deltas 3 and 4: %v, want %v", got, want3)
	}
	if o, id := offsets(t, e.lake, tt); id != s4 || o[b0] != 9 || o[b1] != 5 {
		t.Fatalf("offsets %v at %d, want {0:9, 1:5} at %d", o, id, s4)
	}
	if n := lake.DeltasSinceCompaction(tbl); n != 2 {
		t.Fatalf("DeltasSinceCompaction = %d, want 2", n)
	}

	// Compaction: the same rows, no delete files, the same offsets.
	cs, err := e.lake.Compact(ctx, tbl)
	if err != nil {
		t.Fatalf("Compact: %v", err)
	}
	if cs.SnapshotID == 0 || cs.Partitions != 2 || cs.RemovedDeleteFiles != 3 || cs.AddedDataFiles != 2 {
		t.Fatalf("Compact stats %+v", cs)
	}
	tbl, _ = e.lake.EnsureTable(ctx, tt)
	if got := pkScan(t, tbl, 0); !maps.Equal(got, want3) {
		t.Fatalf("after compaction: %v, want %v", got, want3)
	}
	tasks, err := tbl.Scan().PlanFiles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		if len(task.EqualityDeleteFiles)+len(task.DeleteFiles) > 0 {
			t.Fatalf("data file %s still has delete files after compaction", task.File.FilePath())
		}
	}
	if s := tbl.CurrentSnapshot(); s.Summary.Properties["total-delete-files"] != "0" || s.Summary.Properties[lake.SummaryCompaction] != "true" {
		t.Fatalf("compaction snapshot summary %v", s.Summary)
	}
	if o, id := offsets(t, e.lake, tt); id != cs.SnapshotID || o[b0] != 9 || o[b1] != 5 {
		t.Fatalf("offsets after compaction %v at %d", o, id)
	}
	if n := lake.DeltasSinceCompaction(tbl); n != 0 {
		t.Fatalf("DeltasSinceCompaction after compaction = %d", n)
	}
	// Nothing left to compact.
	if cs, err := e.lake.Compact(ctx, tbl); err != nil || cs.SnapshotID != 0 {
		t.Fatalf("second Compact = %+v, %v; want nothing to do", cs, err)
	}
	// Older snapshots still read as they were.
	if got := pkScan(t, tbl, s1); !maps.Equal(got, want1) {
		t.Fatalf("snapshot 1 after compaction: %v, want %v", got, want1)
	}
	if got := pkScan(t, tbl, s2); !maps.Equal(got, want2) {
		t.Fatalf("snapshot 2 after compaction: %v, want %v", got, want2)
	}

	// Compaction from a stale table handle is a conflict.
	if _, err := e.lake.CommitDelta(ctx, tbl, lake.Delta{
		Rows:    []arrow.RecordBatch{pkRows(t, tbl, pkRow{1, "A", 0, 9})},
		Deletes: []arrow.RecordBatch{pkDeletes(t, tbl, 0, 1)},
	}, map[catalog.BucketID]int64{b0: 10}); err != nil {
		t.Fatal(err)
	}
	tbl, _ = e.lake.EnsureTable(ctx, tt)
	if _, err := e.lake.CommitDelta(ctx, tbl, lake.Delta{Deletes: []arrow.RecordBatch{pkDeletes(t, tbl, 0, 4)}},
		map[catalog.BucketID]int64{b0: 11}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.lake.Compact(ctx, tbl); !errors.Is(err, lake.ErrConflict) {
		t.Fatalf("Compact of a stale table: %v, want ErrConflict", err)
	}
	tbl, _ = e.lake.EnsureTable(ctx, tt)
	want5 := map[int64]string{1: "A@0/9", 2: "B@0/4", 7: "G@1/3"}
	if got := pkScan(t, tbl, 0); !maps.Equal(got, want5) {
		t.Fatalf("after deltas 5 and 6: %v, want %v", got, want5)
	}
}
