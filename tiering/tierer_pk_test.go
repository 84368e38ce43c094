package tiering_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/iceberg-go/table"
	"github.com/jackc/pgx/v5"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/catalog/changelog"
	"github.com/strom-io/strom/tiering"
	"github.com/strom-io/strom/tiering/lake"
)

// pkColumns are the columns of the primary-key test tables.
var pkColumns = []catalog.Column{
	{Name: "id", Type: catalog.BigInt},
	{Name: "tag", Type: catalog.String},
	{Name: "day", Type: catalog.Date},
	{Name: "small", Type: catalog.TinyInt, Nullable: true},
	{Name: "v", Type: catalog.Int, Nullable: true},
	{Name: "price", Type: catalog.Decimal(10, 2), Nullable: true},
	{Name: "ts", Type: catalog.Timestamp(3), Nullable: true},
	{Name: "msg", Type: catalog.String, Nullable: true},
}

// pkRow is a row of a primary-key test table.
type pkRow struct {
	id        int64
	tag       string
	day       int32
	small     int8
	v         int32
	vNull     bool
	price     int64 // cents
	ts        int64 // ms
	msg       string
	note      string
	hasNote   bool
	msgIsNull bool
}

// change is one changelog row, as services/kv writes it: the whole row and
// its change type.
type change struct {
	kind string // +I, -U, +U, -D
	row  pkRow
}

func (r pkRow) key(b catalog.BucketID) string {
	return fmt.Sprintf("%s/%d/%d/%s", b.Partition, b.Bucket, r.id, r.tag)
}

// pkSourceSchema is the changelog schema services writes for pkColumns
// (kv.ChangelogSchema), with note after an AddColumns.
func pkSourceSchema(withNote bool) *arrow.Schema {
	fields := []arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "tag", Type: arrow.BinaryTypes.String},
		{Name: "day", Type: arrow.FixedWidthTypes.Date32},
		{Name: "small", Type: arrow.PrimitiveTypes.Int8, Nullable: true},
		{Name: "v", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
		{Name: "price", Type: &arrow.Decimal128Type{Precision: 10, Scale: 2}, Nullable: true},
		{Name: "ts", Type: &arrow.TimestampType{Unit: arrow.Millisecond}, Nullable: true},
		{Name: "msg", Type: arrow.BinaryTypes.String, Nullable: true},
	}
	if withNote {
		fields = append(fields, arrow.Field{Name: "note", Type: arrow.BinaryTypes.String, Nullable: true})
	}
	fields = append(fields, arrow.Field{Name: changelog.Column, Type: arrow.BinaryTypes.String})
	return arrow.NewSchema(fields, nil)
}

// addChanges appends changes to the changelog of bucket b.
func (s *fakeSource) addChanges(b catalog.BucketID, cs ...change) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.changelogs[b] = append(s.changelogs[b], cs...)
}

func (s *fakeSource) changes(b catalog.BucketID) []change {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.changelogs[b])
}

// changelogBatch returns offsets [from, to) of b's changelog, cut short at
// its end.
func (s *fakeSource) changelogBatch(b catalog.BucketID, from, to int64, withNote bool) (arrow.RecordBatch, error) {
	s.mu.Lock()
	cl := s.changelogs[b]
	s.mu.Unlock()
	if from >= int64(len(cl)) {
		return nil, fmt.Errorf("fake source: %s has no changelog at offset %d", b, from)
	}
	to = min(to, int64(len(cl)))
	rb := array.NewRecordBuilder(memory.DefaultAllocator, pkSourceSchema(withNote))
	defer rb.Release()
	for _, c := range cl[from:to] {
		r := c.row
		rb.Field(0).(*array.Int64Builder).Append(r.id)
		rb.Field(1).(*array.StringBuilder).Append(r.tag)
		rb.Field(2).(*array.Date32Builder).Append(arrow.Date32(r.day))
		rb.Field(3).(*array.Int8Builder).Append(r.small)
		if r.vNull {
			rb.Field(4).AppendNull()
		} else {
			rb.Field(4).(*array.Int32Builder).Append(r.v)
		}
		rb.Field(5).(*array.Decimal128Builder).Append(decimal128.FromI64(r.price))
		rb.Field(6).(*array.TimestampBuilder).Append(arrow.Timestamp(r.ts))
		if r.msgIsNull {
			rb.Field(7).AppendNull()
		} else {
			rb.Field(7).(*array.StringBuilder).Append(r.msg)
		}
		i := 8
		if withNote {
			if r.hasNote {
				rb.Field(i).(*array.StringBuilder).Append(r.note)
			} else {
				rb.Field(i).AppendNull()
			}
			i++
		}
		rb.Field(i).(*array.StringBuilder).Append(c.kind)
	}
	return rb.NewRecordBatch(), nil
}

// pkModel generates upserts and deletes over a bounded key space, writes
// their changelog to the fake source and commits it to the catalog, and
// knows the table's state at any offsets.
type pkModel struct {
	h       *harness
	tbl     catalog.Table
	buckets []catalog.BucketID
	keys    int // keys per bucket
	rnd     *rand.Rand
	state   map[catalog.BucketID]map[string]pkRow // at the changelog's end
	seq     int64
	// expiring: the tierer expires snapshots, so the one the catalog
	// names may be gone.
	expiring bool
}

func newPKModel(h *harness, tbl catalog.Table, buckets []catalog.BucketID, keys int, seed uint64) *pkModel {
	m := &pkModel{h: h, tbl: tbl, buckets: buckets, keys: keys, rnd: rand.New(rand.NewPCG(seed, seed)),
		state: map[catalog.BucketID]map[string]pkRow{}}
	for _, b := range buckets {
		m.state[b] = map[string]pkRow{}
	}
	return m
}

// createPKTable creates a lake-enabled primary-key table: key (id, tag),
// or (id, day) partitioned by day.
func (h *harness) createPKTable(name string, buckets int32, partitioned bool) catalog.Table {
	h.t.Helper()
	ctx := ctxT(h.t)
	if _, err := h.store.GetDatabase(ctx, "db"); errors.Is(err, catalog.ErrNotFound) {
		if _, err := h.store.CreateDatabase(ctx, "db"); err != nil {
			h.t.Fatal(err)
		}
	}
	spec := catalog.TableSpec{
		Database: "db", Name: name, Buckets: buckets,
		Schema:     catalog.Schema{Columns: slices.Clone(pkColumns), PrimaryKey: []string{"id", "tag"}},
		Properties: map[string]string{catalog.PropDatalakeEnabled: "true"},
	}
	if partitioned {
		spec.Schema.PrimaryKey = []string{"id", "day"}
		spec.PartitionKey = "day"
	}
	tbl, err := h.store.CreateTable(ctx, spec)
	if err != nil {
		h.t.Fatalf("CreateTable: %v", err)
	}
	return tbl
}

// step writes about ops operations per bucket: upserts (an insert, or an
// update of a key that exists) and deletes (of keys that exist; a delete
// of a missing key writes nothing, as in the KV), committed in a few
// segments.
func (m *pkModel) step(ops int) {
	for _, b := range m.buckets {
		var pending []change
		next := m.h.nextOffsets()[b]
		flush := func() {
			if len(pending) > 0 {
				m.h.src.addChanges(b, pending...)
				m.h.commit(b, int64(len(pending)))
				next += int64(len(pending))
				pending = nil
			}
		}
		for range ops {
			k := m.rnd.IntN(m.keys)
			row := pkRow{id: int64(k)*100 + int64(b.Bucket), tag: fmt.Sprintf("t%d", k%3), day: dayOf(b, int64(k))}
			key := row.key(b)
			old, exists := m.state[b][key]
			if m.rnd.IntN(4) == 0 { // delete
				if exists {
					pending = append(pending, change{"-D", old})
					delete(m.state[b], key)
				}
			} else {
				m.seq++
				row.small = int8(m.seq % 100)
				row.v, row.vNull = int32(m.seq*7), m.seq%5 == 0
				row.price = m.seq*13 - 400
				row.ts = epoch.UnixMilli() + m.seq*1001
				row.msg, row.msgIsNull = fmt.Sprintf("m%d", m.seq), m.seq%4 == 0
				off := next + int64(len(pending))
				if exists {
					off++ // after the -U
				}
				if off >= m.h.src.evolveAt.Load() {
					row.note, row.hasNote = fmt.Sprintf("n%d", m.seq), m.seq%3 != 0
				}
				if exists {
					pending = append(pending, change{"-U", old}, change{"+U", row})
				} else {
					pending = append(pending, change{"+I", row})
				}
				m.state[b][key] = row
			}
			if m.rnd.IntN(8) == 0 {
				flush()
			}
		}
		flush()
	}
}

// stateAt replays each bucket's changelog up to upTo and returns the lake
// rows it implies, by key, in the canonical form of canon.
func (m *pkModel) stateAt(upTo map[catalog.BucketID]int64, withNote bool) map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, b := range m.buckets {
		cl := m.h.src.changes(b)
		for o, c := range cl[:upTo[b]] {
			switch c.kind {
			case "+I", "+U":
				out[c.row.key(b)] = c.row.lakeRow(b, int64(o), withNote)
			case "-D":
				delete(out, c.row.key(b))
			}
		}
	}
	return out
}

// lakeRow is the row the lake should hold for r, produced by the change at
// offset o of bucket b.
func (r pkRow) lakeRow(b catalog.BucketID, o int64, withNote bool) map[string]any {
	out := map[string]any{
		"id":    r.id,
		"tag":   r.tag,
		"day":   int64(r.day),
		"small": int64(r.small),
		"v":     int64(r.v),
		"price": decimal128.FromI64(r.price).ToString(2),
		"ts":    r.ts * 1000,
		"msg":   r.msg,

		lake.ColumnBucket:    int64(b.Bucket),
		lake.ColumnOffset:    o,
		lake.ColumnTimestamp: commitTime(b, o/batchRows*batchRows).UnixMicro(),
	}
	if r.vNull {
		out["v"] = nil
	}
	if r.msgIsNull {
		out["msg"] = nil
	}
	if withNote {
		out["note"] = nil
		if r.hasNote {
			out["note"] = r.note
		}
	}
	return out
}

// lakeState scans the lake table (at snap, or the current snapshot if 0)
// with iceberg-go's scanner and returns its rows by key, failing on a
// duplicate key.
func (m *pkModel) lakeState(it *table.Table, snap int64) map[string]map[string]any {
	t := m.h.t
	t.Helper()
	var opts []table.ScanOption
	if snap != 0 {
		opts = append(opts, table.WithSnapshotID(snap))
	}
	at, err := it.Scan(opts...).ToArrowTable(ctxT(t))
	if err != nil {
		t.Fatalf("scan: %v", err)
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
				row[f.Name] = canon(t, rec.Column(j), i)
			}
			part := ""
			if m.tbl.PartitionKey != "" {
				part = time.Unix(row["day"].(int64)*86400, 0).UTC().Format(time.DateOnly)
			}
			key := fmt.Sprintf("%s/%d/%d/%s", part, row[lake.ColumnBucket], row["id"], row["tag"])
			if _, dup := out[key]; dup {
				t.Fatalf("key %s is in the lake twice (snapshot %d)", key, snap)
			}
			out[key] = row
		}
	}
	return out
}

// check compares the lake's current snapshot with the model at the lake's
// strom.offsets, and the catalog's tiered offsets with those; it returns
// the offsets.
func (m *pkModel) check(withNote bool) map[catalog.BucketID]int64 {
	t := m.h.t
	t.Helper()
	ctx := ctxT(t)
	it, err := m.h.lake.EnsureTable(ctx, m.tbl)
	if err != nil {
		t.Fatal(err)
	}
	inLake, snap, err := m.h.lake.Offsets(ctx, it)
	if err != nil {
		t.Fatal(err)
	}
	m.compare(m.lakeState(it, 0), m.stateAt(inLake, withNote), fmt.Sprintf("snapshot %d (offsets %s)", snap, lake.EncodeOffsets(inLake)))
	tiered, err := m.h.store.TieredOffsets(ctx, m.tbl.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(tiered) != len(inLake) {
		t.Fatalf("tiered offsets %+v, lake offsets %v", tiered, inLake)
	}
	for _, o := range tiered {
		// (The snapshot that recorded the offsets may have been expired
		// since, when a compaction followed it.)
		if inLake[o.Bucket] != o.Offset || (it.SnapshotByID(o.LakeSnapshotID) == nil && !m.expiring) {
			t.Fatalf("tiered offset %+v, lake %d (snapshot %d)", o, inLake[o.Bucket], snap)
		}
	}
	return inLake
}

// checkHistory scans every snapshot of the lake table and compares it
// with the model at that snapshot's strom.offsets: an Iceberg reader sees
// the table as it was at each snapshot. It returns the number of
// snapshots, and of compactions among them.
func (m *pkModel) checkHistory(withNote bool) (snapshots, compactions int) {
	t := m.h.t
	t.Helper()
	it, err := m.h.lake.Catalog().LoadTable(ctxT(t), lake.Identifier(m.tbl))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range it.Metadata().Snapshots() {
		offs, err := lake.DecodeOffsets(s.Summary.Properties[lake.SummaryOffsets], m.tbl.ID)
		if err != nil {
			t.Fatal(err)
		}
		// A snapshot reads with its own schema: with note from the
		// round after the column was added.
		hasNote := withNote
		if s.SchemaID != nil {
			for _, sc := range it.Metadata().Schemas() {
				if sc.ID == *s.SchemaID {
					_, hasNote = sc.FindFieldByName("note")
				}
			}
		}
		m.compare(m.lakeState(it, s.SnapshotID), m.stateAt(offs, hasNote),
			fmt.Sprintf("snapshot %d (%s, offsets %s)", s.SnapshotID, s.Summary.Operation, lake.EncodeOffsets(offs)))
		if s.Summary.Properties[lake.SummaryCompaction] == "true" {
			compactions++
		}
	}
	return len(it.Metadata().Snapshots()), compactions
}

func (m *pkModel) compare(got, want map[string]map[string]any, what string) {
	t := m.h.t
	t.Helper()
	for key, w := range want {
		g, ok := got[key]
		if !ok {
			t.Fatalf("%s: key %s is missing from the lake; want %v", what, key, w)
		}
		if len(g) != len(w) {
			t.Fatalf("%s: key %s has columns %v, want %v", what, key, g, w)
		}
		for c, wv := range w {
			if g[c] != wv {
				t.Fatalf("%s: key %s column %s = %#v, want %#v\n got %v\nwant %v", what, key, c, g[c], wv, g, w)
			}
		}
	}
	for key := range got {
		if _, ok := want[key]; !ok {
			t.Fatalf("%s: key %s is in the lake but was deleted or never written: %v", what, key, got[key])
		}
	}
}

// tierAll runs rounds until the table is caught up, checking the lake
// after each.
func (m *pkModel) tierAll(tr *tiering.Tierer, withNote bool) []tiering.TierStats {
	t := m.h.t
	t.Helper()
	var all []tiering.TierStats
	for range 100 {
		s, err := tr.Tier(ctxT(t), m.tbl.ID)
		if err != nil {
			t.Fatalf("Tier: %v", err)
		}
		all = append(all, s)
		m.check(withNote)
		if !s.More {
			return all
		}
	}
	t.Fatal("not caught up after 100 rounds")
	return nil
}

// TestTierPrimaryKey tiers the changelog of upserts, updates and deletes
// over a small key space in bounded rounds, with a column added midway and
// compactions, and compares the lake exactly with the model after every
// round and at every snapshot.
func TestTierPrimaryKey(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	tbl := h.createPKTable("users", 3, false)
	var buckets []catalog.BucketID
	for b := range int32(3) {
		buckets = append(buckets, catalog.BucketID{TableID: tbl.ID, Bucket: b})
	}
	m := newPKModel(h, tbl, buckets, 12, 1)
	tr := h.tierer(tiering.Config{MaxRoundRows: 40, CompactAfterDeltas: 4}, nil, nil)

	var rounds []tiering.TierStats
	withNote := false
	start := time.Now()
	for step := range 8 {
		if step == 4 {
			// The Strom table gains a column; later changelog rows carry it.
			var err error
			if m.tbl, err = h.store.AddColumns(ctx, "db", "users", []catalog.Column{noteColumn}); err != nil {
				t.Fatal(err)
			}
			end := int64(0)
			for _, o := range h.nextOffsets() {
				end = max(end, o)
			}
			h.src.evolve(end)
			withNote = true
		}
		m.step(15)
		rounds = append(rounds, m.tierAll(tr, withNote)...)
	}
	t.Logf("%d rounds in %s", len(rounds), time.Since(start))

	var upserted, deleted int64
	compacted := 0
	for _, s := range rounds {
		upserted += s.Upserted
		deleted += s.Deleted
		if s.Compaction != 0 {
			compacted++
		}
	}
	if upserted == 0 || deleted == 0 || compacted == 0 {
		t.Fatalf("rounds wrote %d rows and %d deletes, %d compactions; want some of each: %+v", upserted, deleted, compacted, rounds)
	}
	// Nothing new: nothing to do.
	if s, err := tr.Tier(ctx, tbl.ID); err != nil || s.Rows != 0 || s.SnapshotID != 0 {
		t.Fatalf("Tier with nothing new = %+v, %v", s, err)
	}
	start = time.Now()
	n, c := m.checkHistory(withNote)
	t.Logf("%d snapshots (%d compactions) read back as of their offsets in %s", n, c, time.Since(start))
}

// TestTierExpiresSnapshots: with a snapshot max age shorter than a round,
// every round expires all but the newest snapshots, compactions included,
// and the snapshots kept still read back as the model at their offsets
// (the files they need were not deleted with the others).
func TestTierExpiresSnapshots(t *testing.T) {
	h := newHarness(t)
	tbl := h.createPKTable("users", 2, false)
	buckets := []catalog.BucketID{{TableID: tbl.ID, Bucket: 0}, {TableID: tbl.ID, Bucket: 1}}
	m := newPKModel(h, tbl, buckets, 12, 3)
	m.expiring = true
	tr := h.tierer(tiering.Config{MaxRoundRows: 30, CompactAfterDeltas: 2, SnapshotMaxAge: time.Millisecond, SnapshotRetainLast: 2}, nil, nil)
	var rounds []tiering.TierStats
	for range 5 {
		m.step(15)
		rounds = append(rounds, m.tierAll(tr, false)...)
	}
	expired, compacted := 0, 0
	for _, s := range rounds {
		expired += s.ExpiredSnapshots
		if s.Compaction != 0 {
			compacted++
		}
	}
	snapshots, _ := m.checkHistory(false)
	if snapshots > 2 || expired == 0 || compacted == 0 {
		t.Fatalf("after %d rounds (%d compactions): %d snapshots kept, %d expired; want at most 2 kept", len(rounds), compacted, snapshots, expired)
	}
	t.Logf("%d rounds, %d compactions, %d snapshots expired, %d kept", len(rounds), compacted, expired, snapshots)
}

// TestTierPrimaryKeyPartitioned tiers a primary-key table partitioned by
// a key column: the equality deletes of a bucket apply within its
// partition.
func TestTierPrimaryKeyPartitioned(t *testing.T) {
	h := newHarness(t)
	tbl := h.createPKTable("visits", 2, true)
	var buckets []catalog.BucketID
	for _, p := range []string{"2024-05-01", "2024-05-02"} {
		for b := range int32(2) {
			buckets = append(buckets, catalog.BucketID{TableID: tbl.ID, Partition: p, Bucket: b})
		}
	}
	m := newPKModel(h, tbl, buckets, 8, 2)
	tr := h.tierer(tiering.Config{}, nil, nil)
	for range 3 {
		m.step(10)
		m.tierAll(tr, false)
	}
	m.checkHistory(false)
}

// TestTierPrimaryKeyReconcilesAfterCrash: a round that dies between the
// Iceberg commit and the catalog update is recorded by the next round,
// which tiers only what is new; the lake stays exact.
func TestTierPrimaryKeyReconcilesAfterCrash(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	tbl := h.createPKTable("users", 2, false)
	buckets := []catalog.BucketID{{TableID: tbl.ID, Bucket: 0}, {TableID: tbl.ID, Bucket: 1}}
	m := newPKModel(h, tbl, buckets, 10, 3)
	flaky := &flakyStore{Catalog: h.store}
	tr := h.tierer(tiering.Config{}, flaky, nil)

	m.step(12)
	m.tierAll(tr, false)
	m.step(12)
	flaky.failures.Store(1)
	s, err := tr.Tier(ctx, tbl.ID)
	if err == nil || s.SnapshotID == 0 {
		t.Fatalf("Tier with a failing catalog update = %+v, %v; want an error after the Iceberg commit", s, err)
	}
	m.step(12)
	tr2 := h.tierer(tiering.Config{}, h.store, h.openLake())
	s2, err := tr2.Tier(ctx, tbl.ID)
	if err != nil {
		t.Fatalf("Tier after the crash: %v", err)
	}
	if s2.Reconciled != 2 || s2.Rows == 0 {
		t.Fatalf("Tier after the crash: %+v; want 2 buckets reconciled and the new changes tiered", s2)
	}
	offs := m.check(false)
	for b, o := range h.nextOffsets() {
		if offs[b] != o {
			t.Fatalf("lake offsets %v, want %v", offs, h.nextOffsets())
		}
	}
	m.checkHistory(false)
}

// TestTierPrimaryKeyConcurrentTierers: two tierers with different bounds
// read the same lake snapshot and commit on it at once (raceTier holds
// their Iceberg catalog updates until both wait, then lets them go in a
// set order). The first commit wins. The second finds the table moved:
// when the winner's offsets do not cover its own, it gives the round up
// with lake.ErrConflict and its next round tiers the rest from the
// winner's offsets; when they do, it records the winner's snapshot and
// tiers nothing. Every snapshot, and the lake at the end, hold each change
// exactly once.
func TestTierPrimaryKeyConcurrentTierers(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	tbl := h.createPKTable("users", 3, false)
	var buckets []catalog.BucketID
	for b := range int32(3) {
		buckets = append(buckets, catalog.BucketID{TableID: tbl.ID, Bucket: b})
	}
	m := newPKModel(h, tbl, buckets, 10, 4)
	small := h.tierer(tiering.Config{MaxRoundRows: 25, CompactAfterDeltas: 3}, nil, nil)
	big := h.tierer(tiering.Config{MaxRoundRows: 10000, CompactAfterDeltas: 3}, nil, h.openLake())
	m.step(10)
	m.tierAll(small, false) // the lake table exists before the races

	for round := range 4 {
		m.step(10)
		first, second := small, big
		if round%2 == 1 {
			first, second = big, small
		}
		won, lost := raceTier(t, h, tbl, first, second)
		if won.Err != nil || won.Rows == 0 || won.SnapshotID == 0 {
			t.Fatalf("round %d: the first commit = %+v; want it to tier rows", round, won)
		}
		switch {
		case first == small:
			// big read every bucket to its end, beyond small's bound.
			if !errors.Is(lost.Err, lake.ErrConflict) {
				t.Fatalf("round %d: the second commit, not covered by the first = %+v; want lake.ErrConflict", round, lost)
			}
			m.check(false)
			m.tierAll(big, false) // the conflict resolves: big tiers the rest
		default:
			if lost.Err != nil || lost.Rows != 0 || lost.SnapshotID != won.SnapshotID {
				t.Fatalf("round %d: the second commit, covered by the first = %+v; want no rows and the first's snapshot %d", round, lost, won.SnapshotID)
			}
			m.check(false)
		}
		inLake, _, err := h.lake.Offsets(ctx, mustLoad(t, h, tbl))
		if err != nil {
			t.Fatal(err)
		}
		tiered, err := h.store.TieredOffsets(ctx, tbl.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range tiered {
			if o.Offset != inLake[o.Bucket] {
				t.Fatalf("round %d: the catalog says %s is tiered to %d, the lake holds %d", round, o.Bucket, o.Offset, inLake[o.Bucket])
			}
		}
	}
	m.tierAll(small, false)
	for b, o := range h.nextOffsets() {
		if got := m.check(false)[b]; got != o {
			t.Fatalf("%s tiered to %d, want %d", b, got, o)
		}
	}
	m.checkHistory(false)
}

// raceTier runs a round of first and then one of second on tbl so that
// both read the same lake snapshot before either commits, and first
// commits before second: a transaction holds the row of tbl in the
// Iceberg catalog (iceberg_tables, in the same PostgreSQL database) locked
// until both rounds wait for it in their commit, first in line. Row-lock
// waiters are served in order, so first's update lands, and second's,
// based on the old metadata, finds it moved. It returns both rounds'
// stats, with their errors in Err.
func raceTier(t *testing.T, h *harness, tbl catalog.Table, first, second *tiering.Tierer) (won, lost tiering.TierStats) {
	t.Helper()
	ctx := ctxT(t)
	conn, err := pgx.Connect(ctx, h.lakeCfg.PostgresURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	// pg_stat_activity holds still within a transaction: watch from
	// another session.
	watch, err := pgx.Connect(ctx, h.lakeCfg.PostgresURL)
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close(context.Background())
	tag, err := tx.Exec(ctx, `SELECT 1 FROM iceberg_tables WHERE table_namespace = $1 AND table_name = $2 FOR UPDATE`, tbl.Database, tbl.Name)
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("lock the Iceberg catalog row of %s: %v rows, %v", tbl.Name, tag.RowsAffected(), err)
	}
	// waiting waits until n sessions wait for a lock in their update of
	// the Iceberg catalog.
	waiting := func(n int, rounds ...<-chan tiering.TierStats) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			var got int
			if err := watch.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
				WHERE datname = current_database() AND wait_event_type = 'Lock' AND query ILIKE '%iceberg_tables%'`).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got == n {
				return
			}
			for _, r := range rounds {
				select {
				case s := <-r:
					t.Fatalf("a round ended before its commit: %+v", s)
				default:
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d sessions wait to update the Iceberg catalog after a minute, want %d", got, n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	round := func(tr *tiering.Tierer) <-chan tiering.TierStats {
		c := make(chan tiering.TierStats, 1)
		go func() {
			s, err := tr.Tier(ctx, tbl.ID)
			s.Err = err
			c <- s
		}()
		return c
	}
	r1 := round(first)
	waiting(1, r1)
	r2 := round(second)
	waiting(2, r1, r2)
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	return <-r1, <-r2
}

// The changelog's -U rows change nothing, and a key inserted and deleted
// within one round leaves no trace.
func TestTierPrimaryKeyWithinRound(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	tbl := h.createPKTable("users", 1, false)
	b := catalog.BucketID{TableID: tbl.ID}
	m := newPKModel(h, tbl, []catalog.BucketID{b}, 1, 5)
	r1 := pkRow{id: 1, tag: "a", day: dayOf(b, 0), msg: "one"}
	r2 := r1
	r2.msg = "two"
	r3 := pkRow{id: 2, tag: "b", day: dayOf(b, 0), msg: "gone"}
	h.src.addChanges(b, change{"+I", r1}, change{"-U", r1}, change{"+U", r2}, change{"+I", r3}, change{"-D", r3})
	h.commit(b, 5)
	tr := h.tierer(tiering.Config{}, nil, nil)
	s, err := tr.Tier(ctx, tbl.ID)
	if err != nil {
		t.Fatal(err)
	}
	// Both keys were inserted in this round: no earlier rows to delete.
	if s.Rows != 5 || s.Upserted != 1 || s.Deleted != 0 {
		t.Fatalf("stats %+v; want 5 changelog rows, 1 row, 0 deletes", s)
	}
	m.check(false)

	// A round whose changes cancel out still moves the offsets.
	h.src.addChanges(b, change{"+I", r3}, change{"-D", r3})
	h.commit(b, 2)
	if s, err = tr.Tier(ctx, tbl.ID); err != nil || s.Upserted != 0 || s.Deleted != 0 || s.SnapshotID == 0 {
		t.Fatalf("round of cancelled changes = %+v, %v", s, err)
	}
	if offs := m.check(false); offs[b] != 7 {
		t.Fatalf("lake offsets %v, want 7", offs)
	}

	// An update then a delete of an existing key: one delete, no row.
	h.src.addChanges(b, change{"-U", r2}, change{"+U", r1}, change{"-D", r1})
	h.commit(b, 3)
	if s, err = tr.Tier(ctx, tbl.ID); err != nil || s.Upserted != 0 || s.Deleted != 1 {
		t.Fatalf("update and delete round = %+v, %v", s, err)
	}
	m.check(false)
	if got := m.lakeState(mustLoad(t, h, tbl), 0); len(got) != 0 {
		t.Fatalf("lake holds %v, want nothing", got)
	}
	m.checkHistory(false)
}

func mustLoad(t *testing.T, h *harness, tbl catalog.Table) *table.Table {
	t.Helper()
	it, err := h.lake.Catalog().LoadTable(ctxT(t), lake.Identifier(tbl))
	if err != nil {
		t.Fatal(err)
	}
	return it
}
