package tiering_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/catalog/postgres"
	"github.com/strom-io/strom/testenv"
	"github.com/strom-io/strom/tiering"
	"github.com/strom-io/strom/tiering/lake"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// harness is a Strom catalog in PostgreSQL, a lake on S3 and a fake source.
type harness struct {
	t       *testing.T
	store   *postgres.Store
	lakeCfg lake.Config
	lake    *lake.Lake
	src     *fakeSource

	mu     sync.Mutex
	epochs map[catalog.BucketID]int64
	next   map[catalog.BucketID]int64
	seq    int
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	dsn := testenv.Postgres(t)
	ep := testenv.S3(t)
	store, err := postgres.Open(context.Background(), dsn)
	if err != nil {
		t.Fatalf("postgres.Open: %v", err)
	}
	t.Cleanup(func() { store.Close() })
	h := &harness{
		t: t, store: store, src: newFakeSource(),
		lakeCfg: lake.Config{
			PostgresURL: dsn,
			Warehouse:   "s3://" + ep.Bucket + "/" + ep.Prefix + "lake",
			S3: lake.S3Config{Endpoint: ep.Endpoint, Region: ep.Region,
				AccessKey: ep.AccessKey, SecretKey: ep.SecretKey, PathStyle: true},
			// Merge manifests early, so that the tests exercise it.
			TableProperties: map[string]string{"commit.manifest.min-count-to-merge": "3"},
		},
		epochs: map[catalog.BucketID]int64{}, next: map[catalog.BucketID]int64{},
	}
	h.lake = h.openLake()
	return h
}

func (h *harness) openLake() *lake.Lake {
	h.t.Helper()
	l, err := lake.Open(context.Background(), h.lakeCfg)
	if err != nil {
		h.t.Fatalf("lake.Open: %v", err)
	}
	h.t.Cleanup(func() { l.Close() })
	return l
}

func (h *harness) tierer(cfg tiering.Config, store tiering.Catalog, l *lake.Lake) *tiering.Tierer {
	h.t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(testWriter{h.t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if store == nil {
		store = h.store
	}
	if l == nil {
		l = h.lake
	}
	tr, err := tiering.New(cfg, store, l, h.src)
	if err != nil {
		h.t.Fatal(err)
	}
	return tr
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// columns of the test tables: every Strom type.
var columns = []catalog.Column{
	{Name: "id", Type: catalog.BigInt},
	{Name: "day", Type: catalog.Date},
	{Name: "small", Type: catalog.TinyInt, Nullable: true},
	{Name: "mid", Type: catalog.SmallInt, Nullable: true},
	{Name: "n", Type: catalog.Int, Nullable: true},
	{Name: "price", Type: catalog.Decimal(10, 2), Nullable: true},
	{Name: "msg", Type: catalog.String, Nullable: true},
	{Name: "raw", Type: catalog.Bytes, Nullable: true},
	{Name: "flag", Type: catalog.Boolean, Nullable: true},
	{Name: "f", Type: catalog.Float, Nullable: true},
	{Name: "d", Type: catalog.Double, Nullable: true},
	{Name: "tod", Type: catalog.Time, Nullable: true},
	{Name: "ts", Type: catalog.Timestamp(3), Nullable: true},
	{Name: "ts9", Type: catalog.Timestamp(9), Nullable: true},
	{Name: "ltz", Type: catalog.TimestampLTZ(0), Nullable: true},
}

var noteColumn = catalog.Column{Name: "note", Type: catalog.String, Nullable: true}

func (h *harness) createTable(name string, buckets int32, partitioned bool, props map[string]string) catalog.Table {
	h.t.Helper()
	ctx := ctxT(h.t)
	if _, err := h.store.GetDatabase(ctx, "db"); errors.Is(err, catalog.ErrNotFound) {
		if _, err := h.store.CreateDatabase(ctx, "db"); err != nil {
			h.t.Fatal(err)
		}
	}
	spec := catalog.TableSpec{
		Database: "db", Name: name, Buckets: buckets,
		Schema:     catalog.Schema{Columns: slices.Clone(columns)},
		Properties: map[string]string{catalog.PropDatalakeEnabled: "true"},
	}
	for k, v := range props {
		spec.Properties[k] = v
	}
	if partitioned {
		spec.PartitionKey = "day"
	}
	tbl, err := h.store.CreateTable(ctx, spec)
	if err != nil {
		h.t.Fatalf("CreateTable: %v", err)
	}
	return tbl
}

// commit appends n offsets to bucket b in the catalog, as a frontend does
// when it commits a segment.
func (h *harness) commit(b catalog.BucketID, n int64) {
	h.t.Helper()
	ctx := ctxT(h.t)
	h.mu.Lock()
	defer h.mu.Unlock()
	epoch, ok := h.epochs[b]
	if !ok {
		l, err := h.store.AcquireLease(ctx, b, "writer", time.Hour)
		if err != nil {
			h.t.Fatalf("AcquireLease: %v", err)
		}
		epoch = l.Epoch
		h.epochs[b] = epoch
	}
	h.seq++
	base := h.next[b]
	ts := time.Now()
	err := h.store.CommitSegment(ctx, catalog.Segment{ObjectKey: fmt.Sprintf("seg/%d", h.seq), Size: n * 100,
		Ranges: []catalog.SegmentRange{{Bucket: b, Epoch: epoch, BaseOffset: base, EndOffset: base + n,
			ByteLength: n * 100, RowCount: n, MinTimestamp: ts, MaxTimestamp: ts}}})
	if err != nil {
		h.t.Fatalf("CommitSegment: %v", err)
	}
	h.next[b] = base + n
}

// fakeSource serves deterministic records for any offset of a log table,
// and the changelog that tests stored (addChanges) for a primary-key
// table: batches of batchRows rows aligned to multiples of batchRows, so
// that reads begin and end inside batches. Batches from evolveAt on carry
// the column note.
type fakeSource struct {
	evolveAt atomic.Int64
	reads    atomic.Int64

	mu         sync.Mutex
	changelogs map[catalog.BucketID][]change
}

const batchRows = 7

func newFakeSource() *fakeSource {
	s := &fakeSource{changelogs: map[catalog.BucketID][]change{}}
	s.evolveAt.Store(math.MaxInt64)
	return s
}

// evolve makes batches at or after offset (rounded up to a batch) carry
// the note column; reads of earlier offsets are unchanged.
func (s *fakeSource) evolve(offset int64) {
	s.evolveAt.Store((offset + batchRows - 1) / batchRows * batchRows)
}

func (s *fakeSource) Read(ctx context.Context, t catalog.Table, b catalog.BucketID, from, to int64,
	fn func(rec arrow.RecordBatch, base int64, ts time.Time) error) error {
	s.reads.Add(1)
	for start := from / batchRows * batchRows; start < to; start += batchRows {
		if err := ctx.Err(); err != nil {
			return err
		}
		var rec arrow.RecordBatch
		if t.IsPrimaryKey() {
			var err error
			if rec, err = s.changelogBatch(b, start, start+batchRows, start >= s.evolveAt.Load()); err != nil {
				return err
			}
		} else {
			rec = buildBatch(b, start, start+batchRows, start >= s.evolveAt.Load())
		}
		err := fn(rec, start, commitTime(b, start))
		rec.Release()
		if err != nil {
			return err
		}
	}
	return nil
}

var epoch = time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)

// commitTime of the batch of bucket b that begins at offset start (ms
// precision, like a catalog timestamp).
func commitTime(b catalog.BucketID, start int64) time.Time {
	return epoch.Add(time.Duration(start)*time.Second + time.Duration(b.Bucket)*time.Millisecond)
}

// sourceSchema is the Arrow schema services writes for the columns (see
// services/batch.ArrowSchema).
func sourceSchema(withNote bool) *arrow.Schema {
	tsType := func(unit arrow.TimeUnit, tz string) arrow.DataType {
		return &arrow.TimestampType{Unit: unit, TimeZone: tz}
	}
	fields := []arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "day", Type: arrow.FixedWidthTypes.Date32},
		{Name: "small", Type: arrow.PrimitiveTypes.Int8, Nullable: true},
		{Name: "mid", Type: arrow.PrimitiveTypes.Int16, Nullable: true},
		{Name: "n", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
		{Name: "price", Type: &arrow.Decimal128Type{Precision: 10, Scale: 2}, Nullable: true},
		{Name: "msg", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "raw", Type: arrow.BinaryTypes.Binary, Nullable: true},
		{Name: "flag", Type: arrow.FixedWidthTypes.Boolean, Nullable: true},
		{Name: "f", Type: arrow.PrimitiveTypes.Float32, Nullable: true},
		{Name: "d", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		{Name: "tod", Type: &arrow.Time64Type{Unit: arrow.Microsecond}, Nullable: true},
		{Name: "ts", Type: tsType(arrow.Millisecond, ""), Nullable: true},
		{Name: "ts9", Type: tsType(arrow.Nanosecond, ""), Nullable: true},
		{Name: "ltz", Type: tsType(arrow.Second, "UTC"), Nullable: true},
	}
	if withNote {
		fields = append(fields, arrow.Field{Name: "note", Type: arrow.BinaryTypes.String, Nullable: true})
	}
	return arrow.NewSchema(fields, nil)
}

// dayOf is the day column of a row: the partition's date in a partitioned
// table, else one of three days.
func dayOf(b catalog.BucketID, o int64) int32 {
	if b.Partition != "" {
		d, err := time.Parse(time.DateOnly, b.Partition)
		if err != nil {
			panic(err)
		}
		return int32(d.Unix() / 86400)
	}
	return int32(epoch.Unix()/86400 + o%3)
}

const ts9Base = int64(1714521600123456789) // 2024-05-01T00:00:00.123456789Z in ns

func buildBatch(b catalog.BucketID, from, to int64, withNote bool) arrow.RecordBatch {
	rb := array.NewRecordBuilder(memory.DefaultAllocator, sourceSchema(withNote))
	defer rb.Release()
	for o := from; o < to; o++ {
		rb.Field(0).(*array.Int64Builder).Append(o*100 + int64(b.Bucket))
		rb.Field(1).(*array.Date32Builder).Append(arrow.Date32(dayOf(b, o)))
		if o%5 == 0 {
			rb.Field(2).AppendNull()
		} else {
			rb.Field(2).(*array.Int8Builder).Append(int8(o%100 - 50))
		}
		rb.Field(3).(*array.Int16Builder).Append(int16(o*3 - 1000))
		rb.Field(4).(*array.Int32Builder).Append(int32(o * 7))
		if o%4 == 1 {
			rb.Field(5).AppendNull()
		} else {
			rb.Field(5).(*array.Decimal128Builder).Append(decimal128.FromI64(o*123 - 500))
		}
		if o%3 == 0 {
			rb.Field(6).AppendNull()
		} else {
			rb.Field(6).(*array.StringBuilder).Append(fmt.Sprintf("m-%s-%d", b.Partition, o))
		}
		rb.Field(7).(*array.BinaryBuilder).Append([]byte{byte(o), byte(b.Bucket), 0})
		rb.Field(8).(*array.BooleanBuilder).Append(o%2 == 0)
		rb.Field(9).(*array.Float32Builder).Append(float32(o) / 4)
		rb.Field(10).(*array.Float64Builder).Append(float64(o) / 8)
		rb.Field(11).(*array.Time64Builder).Append(arrow.Time64(o * 1_000_001 % 86_400_000_000))
		rb.Field(12).(*array.TimestampBuilder).Append(arrow.Timestamp(epoch.UnixMilli() + o*1001))
		rb.Field(13).(*array.TimestampBuilder).Append(arrow.Timestamp(ts9Base + o*1_000_000_007))
		rb.Field(14).(*array.TimestampBuilder).Append(arrow.Timestamp(epoch.Unix() + o))
		if withNote {
			rb.Field(15).(*array.StringBuilder).Append(fmt.Sprintf("note-%d", o))
		}
	}
	return rb.NewRecordBatch()
}

// wantRow is the lake row of offset o of bucket b, in the canonical form
// of canon.
func wantRow(b catalog.BucketID, o int64, evolveAt int64, withNote bool) map[string]any {
	start := o / batchRows * batchRows
	r := map[string]any{
		"id":    o*100 + int64(b.Bucket),
		"day":   int64(dayOf(b, o)),
		"small": int64(o%100 - 50),
		"mid":   int64(o*3 - 1000),
		"n":     o * 7,
		"price": decimal128.FromI64(o*123 - 500).ToString(2),
		"msg":   fmt.Sprintf("m-%s-%d", b.Partition, o),
		"raw":   hex.EncodeToString([]byte{byte(o), byte(b.Bucket), 0}),
		"flag":  o%2 == 0,
		"f":     float64(float32(o) / 4),
		"d":     float64(o) / 8,
		"tod":   o * 1_000_001 % 86_400_000_000,
		"ts":    (epoch.UnixMilli() + o*1001) * 1000,
		"ts9":   (ts9Base + o*1_000_000_007) / 1000,
		"ltz":   (epoch.Unix() + o) * 1_000_000,

		lake.ColumnBucket:    int64(b.Bucket),
		lake.ColumnOffset:    o,
		lake.ColumnTimestamp: commitTime(b, start).UnixMicro(),
	}
	if o%5 == 0 {
		r["small"] = nil
	}
	if o%4 == 1 {
		r["price"] = nil
	}
	if o%3 == 0 {
		r["msg"] = nil
	}
	if withNote {
		r["note"] = nil
		if start >= evolveAt {
			r["note"] = fmt.Sprintf("note-%d", o)
		}
	}
	return r
}

// canon returns value i of a lake column in a comparable form: integers,
// dates, times and timestamps as int64 (days, microseconds), floats as
// float64, decimals and strings as strings, binary as hex, null as nil.
func canon(t *testing.T, a arrow.Array, i int) any {
	if a.IsNull(i) {
		return nil
	}
	switch a := a.(type) {
	case *array.Int32:
		return int64(a.Value(i))
	case *array.Int64:
		return a.Value(i)
	case *array.Boolean:
		return a.Value(i)
	case *array.Float32:
		return float64(a.Value(i))
	case *array.Float64:
		return a.Value(i)
	case *array.Decimal128:
		return a.Value(i).ToString(a.DataType().(*arrow.Decimal128Type).Scale)
	case *array.String:
		return a.Value(i)
	case *array.LargeString:
		return a.Value(i)
	case *array.Binary:
		return hex.EncodeToString(a.Value(i))
	case *array.LargeBinary:
		return hex.EncodeToString(a.Value(i))
	case *array.Date32:
		return int64(a.Value(i))
	case *array.Time64:
		if u := a.DataType().(*arrow.Time64Type).Unit; u != arrow.Microsecond {
			t.Fatalf("time column in %s, want microseconds", u)
		}
		return int64(a.Value(i))
	case *array.Timestamp:
		if u := a.DataType().(*arrow.TimestampType).Unit; u != arrow.Microsecond {
			t.Fatalf("timestamp column in %s, want microseconds", u)
		}
		return int64(a.Value(i))
	}
	t.Fatalf("unexpected lake column type %s", a.DataType())
	return nil
}

// lakeRows scans the lake table with iceberg-go's scanner and returns its
// rows by "partition/bucket/offset", failing on a duplicate.
func (h *harness) lakeRows(tbl catalog.Table) map[string]map[string]any {
	h.t.Helper()
	ctx := ctxT(h.t)
	it, err := h.lake.Catalog().LoadTable(ctx, lake.Identifier(tbl))
	if err != nil {
		h.t.Fatalf("LoadTable: %v", err)
	}
	at, err := it.Scan().ToArrowTable(ctx)
	if err != nil {
		h.t.Fatalf("scan: %v", err)
	}
	defer at.Release()
	tr := array.NewTableReader(at, 4096)
	defer tr.Release()
	out := map[string]map[string]any{}
	for tr.Next() {
		rec := tr.RecordBatch()
		for i := range int(rec.NumRows()) {
			row := map[string]any{}
			for j, f := range rec.Schema().Fields() {
				row[f.Name] = canon(h.t, rec.Column(j), i)
			}
			part := ""
			if tbl.PartitionKey != "" {
				part = time.Unix(row["day"].(int64)*86400, 0).UTC().Format(time.DateOnly)
			}
			key := fmt.Sprintf("%s/%d/%d", part, row[lake.ColumnBucket], row[lake.ColumnOffset])
			if _, dup := out[key]; dup {
				h.t.Fatalf("row %s is in the lake twice", key)
			}
			out[key] = row
		}
	}
	return out
}

// checkLake compares the lake table row for row with the source up to the
// given offsets, and the catalog's tiered offsets with them.
func (h *harness) checkLake(tbl catalog.Table, upTo map[catalog.BucketID]int64, withNote bool) {
	h.t.Helper()
	got := h.lakeRows(tbl)
	n := 0
	for b, end := range upTo {
		for o := range end {
			key := fmt.Sprintf("%s/%d/%d", b.Partition, b.Bucket, o)
			row, ok := got[key]
			if !ok {
				h.t.Fatalf("row %s is missing from the lake", key)
			}
			want := wantRow(b, o, h.src.evolveAt.Load(), withNote)
			if len(row) != len(want) {
				h.t.Fatalf("row %s has columns %v, want %v", key, row, want)
			}
			for c, w := range want {
				if row[c] != w {
					h.t.Fatalf("row %s column %s = %#v, want %#v", key, c, row[c], w)
				}
			}
			n++
		}
	}
	if len(got) != n {
		h.t.Fatalf("lake has %d rows, want %d", len(got), n)
	}
	// The catalog's tiered offsets match, and name the lake's snapshot.
	it, err := h.lake.EnsureTable(ctxT(h.t), tbl)
	if err != nil {
		h.t.Fatal(err)
	}
	inLake, snap, err := h.lake.Offsets(ctxT(h.t), it)
	if err != nil {
		h.t.Fatal(err)
	}
	tiered, err := h.store.TieredOffsets(ctxT(h.t), tbl.ID)
	if err != nil {
		h.t.Fatal(err)
	}
	if len(tiered) != len(upTo) || len(inLake) != len(upTo) {
		h.t.Fatalf("tiered offsets %+v, lake offsets %v; want %v", tiered, inLake, upTo)
	}
	for _, o := range tiered {
		if o.Offset != upTo[o.Bucket] || inLake[o.Bucket] != o.Offset {
			h.t.Fatalf("tiered offset %+v, lake %d; want %d", o, inLake[o.Bucket], upTo[o.Bucket])
		}
		if o.LakeSnapshotID == 0 || it.SnapshotByID(o.LakeSnapshotID) == nil {
			h.t.Fatalf("tiered offset %+v names no snapshot of the lake table (current %d)", o, snap)
		}
	}
}

func (h *harness) nextOffsets() map[catalog.BucketID]int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[catalog.BucketID]int64{}
	for b, n := range h.next {
		if n > 0 {
			out[b] = n
		}
	}
	return out
}

func TestTierLogTable(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	tbl := h.createTable("events", 2, false, nil)
	b0, b1 := catalog.BucketID{TableID: tbl.ID, Bucket: 0}, catalog.BucketID{TableID: tbl.ID, Bucket: 1}
	var stats []tiering.TierStats
	tr := h.tierer(tiering.Config{OnTier: func(s tiering.TierStats) { stats = append(stats, s) }}, nil, nil)

	// Nothing committed: nothing to do, and no lake table yet.
	if s, err := tr.Tier(ctx, tbl.ID); err != nil || s.Rows != 0 {
		t.Fatalf("Tier of an empty table = %+v, %v", s, err)
	}

	// Round 1.
	h.commit(b0, 30)
	h.commit(b1, 17)
	h.commit(b0, 5)
	s, err := tr.Tier(ctx, tbl.ID)
	if err != nil {
		t.Fatalf("Tier 1: %v", err)
	}
	if s.Rows != 52 || s.Buckets != 2 || s.Bytes <= 0 || s.SnapshotID == 0 || s.More || s.Lag < time.Hour {
		t.Fatalf("Tier 1 stats = %+v", s)
	}
	h.checkLake(tbl, h.nextOffsets(), false)

	// The Strom table gains a column; later records carry it.
	tbl, err = h.store.AddColumns(ctx, "db", "events", []catalog.Column{noteColumn})
	if err != nil {
		t.Fatal(err)
	}
	h.src.evolve(40)
	h.commit(b1, 40)
	h.commit(b0, 3)

	// Round 2.
	s2, err := tr.Tier(ctx, tbl.ID)
	if err != nil {
		t.Fatalf("Tier 2: %v", err)
	}
	if s2.Rows != 43 || s2.SnapshotID == s.SnapshotID {
		t.Fatalf("Tier 2 stats = %+v", s2)
	}
	h.checkLake(tbl, h.nextOffsets(), true)
	if len(stats) != 2 || stats[1].Rows != 43 {
		t.Fatalf("OnTier got %+v", stats)
	}
	// Nothing new: a round does nothing.
	if s, err := tr.Tier(ctx, tbl.ID); err != nil || s.Rows != 0 || s.SnapshotID != 0 {
		t.Fatalf("Tier with nothing new = %+v, %v", s, err)
	}
}

// flakyStore fails SetTieredOffsets a number of times, as if the process
// died between the Iceberg commit and the catalog update.
type flakyStore struct {
	tiering.Catalog
	failures atomic.Int32
}

func (f *flakyStore) SetTieredOffsets(ctx context.Context, o []catalog.TieredOffset) error {
	if f.failures.Add(-1) >= 0 {
		return errors.New("injected failure")
	}
	return f.Catalog.SetTieredOffsets(ctx, o)
}

func TestTierReconcilesAfterCrash(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	tbl := h.createTable("events", 2, false, nil)
	b0, b1 := catalog.BucketID{TableID: tbl.ID, Bucket: 0}, catalog.BucketID{TableID: tbl.ID, Bucket: 1}
	flaky := &flakyStore{Catalog: h.store}
	tr := h.tierer(tiering.Config{}, flaky, nil)

	h.commit(b0, 20)
	h.commit(b1, 9)
	flaky.failures.Store(1)
	s, err := tr.Tier(ctx, tbl.ID)
	if err == nil || s.SnapshotID == 0 {
		t.Fatalf("Tier with a failing catalog update = %+v, %v; want an error after the Iceberg commit", s, err)
	}
	if tiered, _ := h.store.TieredOffsets(ctx, tbl.ID); len(tiered) != 0 {
		t.Fatalf("tiered offsets after the failed update: %+v", tiered)
	}

	// More records arrive; the next round (another process: a new Tierer
	// and lake) records what Iceberg holds and tiers only the new records.
	h.commit(b0, 4)
	tr2 := h.tierer(tiering.Config{}, h.store, h.openLake())
	s2, err := tr2.Tier(ctx, tbl.ID)
	if err != nil {
		t.Fatalf("Tier after the crash: %v", err)
	}
	if s2.Reconciled != 2 || s2.Rows != 4 || s2.Buckets != 1 {
		t.Fatalf("Tier after the crash: %+v; want 2 buckets reconciled and 4 rows tiered", s2)
	}
	h.checkLake(tbl, h.nextOffsets(), false)

	// A crash with nothing new: the round only reconciles.
	h.commit(b1, 6)
	flaky.failures.Store(1)
	if _, err := tr.Tier(ctx, tbl.ID); err == nil {
		t.Fatal("Tier with a failing catalog update succeeded")
	}
	s3, err := tr2.Tier(ctx, tbl.ID)
	if err != nil || s3.Reconciled != 1 || s3.Rows != 0 {
		t.Fatalf("reconciling round = %+v, %v", s3, err)
	}
	h.checkLake(tbl, h.nextOffsets(), false)
}

func TestTierConcurrentTierers(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	tbl := h.createTable("events", 3, false, nil)
	var buckets []catalog.BucketID
	for b := range int32(3) {
		buckets = append(buckets, catalog.BucketID{TableID: tbl.ID, Bucket: b})
	}
	tierers := []*tiering.Tierer{
		h.tierer(tiering.Config{MaxRoundRows: 25}, nil, nil),
		h.tierer(tiering.Config{MaxRoundRows: 40}, nil, h.openLake()),
	}
	var conflicts atomic.Int32
	for round := range 5 {
		for i, b := range buckets {
			h.commit(b, int64(5+3*round+i))
		}
		var wg sync.WaitGroup
		for _, tr := range tierers {
			wg.Go(func() {
				for range 2 {
					_, err := tr.Tier(ctx, tbl.ID)
					if errors.Is(err, lake.ErrConflict) {
						conflicts.Add(1)
					} else if err != nil {
						t.Errorf("Tier: %v", err)
					}
				}
			})
		}
		wg.Wait()
	}
	// Catch up.
	for range 10 {
		s, err := tierers[0].Tier(ctx, tbl.ID)
		if err != nil {
			t.Fatal(err)
		}
		if s.Rows == 0 && s.Reconciled == 0 {
			break
		}
	}
	t.Logf("%d rounds ended in a conflict", conflicts.Load())
	h.checkLake(tbl, h.nextOffsets(), false)

	// Appends merged their manifests (min-count-to-merge is 3 here).
	it, err := h.lake.Catalog().LoadTable(ctx, lake.Identifier(tbl))
	if err != nil {
		t.Fatal(err)
	}
	fs, err := it.FS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	manifests, err := it.CurrentSnapshot().Manifests(fs)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(it.Metadata().Snapshots()); len(manifests) >= 3 || n < 5 {
		t.Errorf("%d manifests after %d snapshots; want them merged", len(manifests), n)
	}
}

func TestTierPartitioned(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	tbl := h.createTable("clicks", 2, true, nil)
	var buckets []catalog.BucketID
	for _, p := range []string{"2024-05-01", "2024-05-02"} {
		for b := range int32(2) {
			buckets = append(buckets, catalog.BucketID{TableID: tbl.ID, Partition: p, Bucket: b})
		}
	}
	tr := h.tierer(tiering.Config{}, nil, nil)
	for round := range 2 {
		for i, b := range buckets {
			h.commit(b, int64(4+i+round*10))
		}
		s, err := tr.Tier(ctx, tbl.ID)
		if err != nil {
			t.Fatalf("Tier %d: %v", round, err)
		}
		if s.Buckets != 4 {
			t.Fatalf("Tier %d stats %+v", round, s)
		}
	}
	h.checkLake(tbl, h.nextOffsets(), false)

	// Every data file holds one bucket of one partition.
	it, err := h.lake.Catalog().LoadTable(ctx, lake.Identifier(tbl))
	if err != nil {
		t.Fatal(err)
	}
	tasks, err := it.Scan().PlanFiles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, task := range tasks {
		p := task.File.Partition()
		if len(p) != 2 {
			t.Fatalf("data file %s partition %v, want day and __bucket", task.File.FilePath(), p)
		}
		seen[fmt.Sprint(p)] = true
	}
	if len(seen) != 4 {
		t.Fatalf("data files cover partitions %v, want 4", seen)
	}
}

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// fakeClock is a clock that stands still until advanced.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type claimsFunc func(int64) bool

func (f claimsFunc) Owns(id int64) bool { return f(id) }

// TestRun runs the loop: due tables are tiered in bounded rounds until
// they catch up; primary-key tables whose key the lake cannot express are
// skipped with one log line; tables another process claims are left alone.
func TestRun(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	fast := map[string]string{catalog.PropDatalakeFreshness: "2s"}
	tbl := h.createTable("events", 2, false, fast)
	other := h.createTable("theirs", 1, false, fast)
	pk, err := h.store.CreateTable(ctx, catalog.TableSpec{
		Database: "db", Name: "users", Buckets: 1,
		Schema:     catalog.Schema{Columns: []catalog.Column{{Name: "score", Type: catalog.Double}}, PrimaryKey: []string{"score"}},
		Properties: map[string]string{catalog.PropDatalakeEnabled: "true", catalog.PropDatalakeFreshness: "1s"},
	})
	if err != nil {
		t.Fatal(err)
	}
	b0, b1 := catalog.BucketID{TableID: tbl.ID, Bucket: 0}, catalog.BucketID{TableID: tbl.ID, Bucket: 1}
	h.commit(b0, 50)
	h.commit(b1, 45)
	h.commit(catalog.BucketID{TableID: other.ID}, 5)
	h.commit(catalog.BucketID{TableID: pk.ID}, 5)

	var logs syncBuffer
	var mu sync.Mutex
	var rounds []tiering.TierStats
	tr := h.tierer(tiering.Config{
		Interval:     20 * time.Millisecond,
		MaxRoundRows: 30,
		Claims:       claimsFunc(func(id int64) bool { return id != other.ID }),
		Logger:       slog.New(slog.NewTextHandler(&logs, nil)),
		OnTier: func(s tiering.TierStats) {
			mu.Lock()
			rounds = append(rounds, s)
			mu.Unlock()
		},
	}, nil, nil)
	clock := &fakeClock{now: time.Now()}
	tiering.SetClock(tr, clock.Now)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- tr.Run(runCtx) }()
	caughtUp := func() bool {
		tiered, err := h.store.TieredOffsets(ctx, tbl.ID)
		if err != nil {
			t.Fatal(err)
		}
		return len(tiered) == 2 && tiered[0].Offset == 50 && tiered[1].Offset == 45
	}
	deadline := time.Now().Add(time.Minute)
	for !caughtUp() {
		if time.Now().After(deadline) {
			t.Fatalf("not caught up after a minute; logs:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}

	// Records committed now wait for half the freshness (1s) after the
	// start of the round that caught up. The tierer's clock stands still
	// unless moved; each RunOnce is one look of the loop at every table.
	if err := tr.RunOnce(ctx); err != nil { // a last round if the previous one hit the bound exactly
		t.Fatal(err)
	}
	h.commit(b1, 5)
	for _, step := range []struct {
		advance time.Duration
		want    int64
		when    string
	}{
		{0, 45, "at once"},
		{time.Second - time.Millisecond, 45, "1ms before half the freshness"},
		{time.Millisecond, 50, "at half the freshness"},
	} {
		clock.advance(step.advance)
		if err := tr.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		if tiered, _ := h.store.TieredOffsets(ctx, tbl.ID); tiered[1].Offset != step.want {
			t.Fatalf("%s: tiered %+v, want bucket 1 tiered to %d", step.when, tiered, step.want)
		}
	}

	h.checkLake(tbl, map[catalog.BucketID]int64{b0: 50, b1: 50}, false)
	mu.Lock()
	defer mu.Unlock()
	if len(rounds) < 4 {
		t.Errorf("%d rounds for 100 rows at most 30 per round: %+v", len(rounds), rounds)
	}
	for _, r := range rounds {
		if r.Err != nil || r.TableID != tbl.ID || r.Rows > 30+batchRows {
			t.Errorf("round %+v", r)
		}
	}
	if tiered, _ := h.store.TieredOffsets(ctx, other.ID); len(tiered) != 0 {
		t.Errorf("a table claimed by another process was tiered: %+v", tiered)
	}
	if ok, err := h.lake.Catalog().CheckTableExists(ctx, lake.Identifier(pk)); err != nil || ok {
		t.Errorf("primary-key table with a DOUBLE key in the lake: %v, %v", ok, err)
	}
	if n := strings.Count(logs.String(), "skipping primary-key table"); n != 1 {
		t.Errorf("primary-key skip logged %d times, want once:\n%s", n, logs.String())
	}
}
