package lake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"
	"github.com/google/uuid"

	"github.com/strom-io/strom/catalog"
)

// maxCommitAttempts bounds Append's commits when other writers keep
// committing to the table (conflicts on other buckets, maintenance).
const maxCommitAttempts = 5

// offsetEntry is one bucket in the JSON of strom.offsets.
type offsetEntry struct {
	Partition string `json:"partition,omitempty"`
	Bucket    int32  `json:"bucket"`
	Offset    int64  `json:"offset"`
}

// EncodeOffsets returns the strom.offsets JSON of per-bucket next offsets:
// an array of {"partition": p, "bucket": b, "offset": o} ordered by
// partition then bucket, "partition" omitted for the default partition.
// TableID is not encoded (the table is implied).
func EncodeOffsets(offsets map[catalog.BucketID]int64) string {
	keys := slices.SortedFunc(maps.Keys(offsets), catalog.BucketID.Compare)
	entries := make([]offsetEntry, 0, len(keys))
	for _, b := range keys {
		entries = append(entries, offsetEntry{Partition: b.Partition, Bucket: b.Bucket, Offset: offsets[b]})
	}
	out, _ := json.Marshal(entries) // cannot fail: strings and integers
	return string(out)
}

// DecodeOffsets parses strom.offsets JSON (see EncodeOffsets), setting
// TableID on every bucket.
func DecodeOffsets(s string, tableID int64) (map[catalog.BucketID]int64, error) {
	var entries []offsetEntry
	if err := json.Unmarshal([]byte(s), &entries); err != nil {
		return nil, fmt.Errorf("lake: %s %q: %w", SummaryOffsets, s, err)
	}
	out := make(map[catalog.BucketID]int64, len(entries))
	for _, e := range entries {
		if e.Offset < 0 || e.Bucket < 0 {
			return nil, fmt.Errorf("lake: %s: bucket %d offset %d out of range", SummaryOffsets, e.Bucket, e.Offset)
		}
		out[catalog.BucketID{TableID: tableID, Partition: e.Partition, Bucket: e.Bucket}] = e.Offset
	}
	return out, nil
}

// tableID returns the Strom table id recorded on a lake table.
func tableID(tbl *table.Table) (int64, error) {
	v := tbl.Properties()[PropTableID]
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %s has no valid %s (%q)", ErrForeignTable, strings.Join(tbl.Identifier(), "."), PropTableID, v)
	}
	return id, nil
}

// offsetsOf returns strom.offsets of tbl's current snapshot and its id; an
// empty map and 0 when the table has no snapshot.
func offsetsOf(tbl *table.Table) (map[catalog.BucketID]int64, int64, error) {
	return snapshotOffsets(tbl, tbl.CurrentSnapshot())
}

// snapshotOffsets returns strom.offsets of snap, a snapshot of tbl, and
// its id; an empty map and 0 when snap is nil.
func snapshotOffsets(tbl *table.Table, snap *table.Snapshot) (map[catalog.BucketID]int64, int64, error) {
	id, err := tableID(tbl)
	if err != nil {
		return nil, 0, err
	}
	if snap == nil {
		return map[catalog.BucketID]int64{}, 0, nil
	}
	if snap.Summary == nil || snap.Summary.Properties[SummaryOffsets] == "" {
		return map[catalog.BucketID]int64{}, snap.SnapshotID, nil
	}
	offsets, err := DecodeOffsets(snap.Summary.Properties[SummaryOffsets], id)
	if err != nil {
		return nil, 0, fmt.Errorf("%s snapshot %d: %w", strings.Join(tbl.Identifier(), "."), snap.SnapshotID, err)
	}
	return offsets, snap.SnapshotID, nil
}

// Offsets returns strom.offsets of tbl's current snapshot: for every bucket
// ever tiered, the offset of its first record not in the lake; and the
// snapshot's id. Both are empty (an empty map, 0) for a table without
// snapshots. tbl is used as loaded; reload it (LoadTable or EnsureTable) to
// see newer commits.
func (l *Lake) Offsets(_ context.Context, tbl *table.Table) (map[catalog.BucketID]int64, int64, error) {
	return offsetsOf(tbl)
}

// Append writes recs as Parquet data files of tbl and commits them in one
// snapshot whose strom.offsets is the current snapshot's with offsets
// merged in, and returns the snapshot's id.
//
// recs must have the schema ArrowSchema(tbl) (__bucket, __offset and
// __timestamp filled) and hold, for each bucket b in offsets, exactly the
// records from b's offset in tbl's strom.offsets (Offsets) — or a later
// one, if the catalog knows the records in between to be tiered already —
// up to, not including, offsets[b]: no record twice and none missing.
// Append does not take ownership of recs.
//
// Append commits once. If another writer committed meanwhile, Append
// reloads the table: if the offsets now committed already cover offsets
// (another tierer, or an earlier attempt whose outcome was unknown, tiered
// the same records), it removes the files it wrote and returns the current
// snapshot's id with ErrAlreadyCommitted; if the other commit left the
// buckets of offsets untouched, it commits again on top of it (at most 5
// times in all); otherwise it removes its files and returns ErrConflict. A failure that leaves the
// outcome unknown keeps the data files (they may belong to a commit) and
// names them in the error; the next Offsets tells what was committed.
func (l *Lake) Append(ctx context.Context, tbl *table.Table, recs []arrow.RecordBatch, offsets map[catalog.BucketID]int64) (int64, error) {
	const op = "append to"
	ident := strings.Join(tbl.Identifier(), ".")
	if len(recs) == 0 || len(offsets) == 0 {
		return 0, fmt.Errorf("lake: %s %s: no records or no offsets", op, ident)
	}
	base, baseSnap, err := checkOffsets(tbl, op, offsets)
	if err != nil {
		return 0, err
	}
	if err := checkRecords(tbl, recs); err != nil {
		return 0, fmt.Errorf("lake: %s %s: %w", op, ident, err)
	}
	files, err := writeFiles(ctx, tbl, recs)
	if err != nil {
		return 0, fmt.Errorf("lake: %s %s: write data files: %w", op, ident, err)
	}
	return l.commit(ctx, tbl, op, staged{data: files}, base, baseSnap, offsets)
}

// checkOffsets checks that offsets name buckets of tbl's Strom table and
// advance every one of them beyond tbl's strom.offsets, and returns those
// and the current snapshot's id.
func checkOffsets(tbl *table.Table, op string, offsets map[catalog.BucketID]int64) (map[catalog.BucketID]int64, int64, error) {
	ident := strings.Join(tbl.Identifier(), ".")
	tid, err := tableID(tbl)
	if err != nil {
		return nil, 0, err
	}
	base, baseSnap, err := offsetsOf(tbl)
	if err != nil {
		return nil, 0, err
	}
	for b, o := range offsets {
		if b.TableID != tid {
			return nil, 0, fmt.Errorf("lake: %s %s: %s is not a bucket of table %d", op, ident, b, tid)
		}
		if o <= base[b] {
			return nil, 0, fmt.Errorf("lake: %s %s: %s: offset %d does not advance the lake's %d", op, ident, b, o, base[b])
		}
	}
	return base, baseSnap, nil
}

// staged are the files of one commit, written but not committed.
type staged struct {
	data    []iceberg.DataFile // data files
	deletes []iceberg.DataFile // equality-delete files
}

func (s staged) all() []iceberg.DataFile { return slices.Concat(s.data, s.deletes) }

// commit commits files in one snapshot on top of tbl, whose strom.offsets
// are base (snapshot baseSnap), with the offsets merged in; see Append for
// what happens when another writer committed meanwhile. op names the
// operation in errors.
func (l *Lake) commit(ctx context.Context, tbl *table.Table, op string, files staged, base map[catalog.BucketID]int64, baseSnap int64, offsets map[catalog.BucketID]int64) (int64, error) {
	ident := strings.Join(tbl.Identifier(), ".")
	all := files.all()
	commitID := uuid.NewString()
	cur := tbl
	for attempt := 1; ; attempt++ {
		curOffsets, _, err := offsetsOf(cur)
		if err != nil {
			return 0, abandon(tbl, all, err)
		}
		merged := maps.Clone(curOffsets)
		for b, o := range offsets {
			merged[b] = max(merged[b], o)
		}
		props := iceberg.Properties{SummaryOffsets: EncodeOffsets(merged), SummaryCommitID: commitID}
		snapID, commitErr := commitFiles(ctx, cur, files, props)
		if commitErr == nil {
			return snapID, nil
		}
		// The outcome is unknown until the table says otherwise.
		fresh, err := l.load(ctx, cur.Identifier())
		if err != nil {
			return 0, fmt.Errorf("lake: %s %s: commit: %w; reload: %w; files %v are orphans unless the commit landed",
				op, ident, commitErr, err, paths(all))
		}
		if id, ok := findCommit(fresh, commitID, baseSnap); ok {
			return id, nil // the commit landed after all
		}
		if sameHead(fresh, cur) {
			// Nothing changed, so this was no conflict: keep the files, the
			// commit's fate may yet be unknown (a lost connection).
			return 0, fmt.Errorf("lake: %s %s: commit: %w (files %v may be orphans)", op, ident, commitErr, paths(all))
		}
		// Another writer moved the table; ours cannot land any more (the
		// catalog compares metadata locations) and is not in the history.
		freshOffsets, _, err := offsetsOf(fresh)
		if err != nil {
			return 0, abandon(tbl, all, err)
		}
		switch classify(freshOffsets, base, offsets) {
		case covered:
			if head := fresh.CurrentSnapshot(); head != nil {
				if err := removeFiles(tbl, all); err != nil {
					l.log.Warn("lake: could not remove the files of a superseded commit", "table", ident, "files", paths(all), "err", err)
				}
				return head.SnapshotID, ErrAlreadyCommitted
			}
			return 0, abandon(tbl, all, fmt.Errorf("lake: %s %s: table lost its snapshots", op, ident))
		case partial:
			return 0, abandon(tbl, all, fmt.Errorf("%w: %s: committed offsets %s overlap the %s's %s (based on %s)",
				ErrConflict, ident, EncodeOffsets(freshOffsets), strings.TrimSuffix(op, " to"), EncodeOffsets(offsets), EncodeOffsets(base)))
		}
		if attempt == maxCommitAttempts {
			return 0, abandon(tbl, all, fmt.Errorf("lake: %s %s: gave up after %d conflicting commits: %w", op, ident, attempt, commitErr))
		}
		// The other writer left these buckets alone. Equality deletes
		// stay right on top of its snapshot too: they are scoped to the
		// partitions (buckets) of this commit.
		cur = fresh
	}
}

// commitFiles commits one snapshot of files on top of tbl's current
// snapshot, failing, without iceberg-go's refresh-and-replay retry, if the
// main branch moved: a replayed commit would carry stale strom.offsets.
// Without delete files it is an append; with them a row delta (Iceberg's
// RowDelta: the data files and the delete files get the new snapshot's
// sequence number, so the deletes apply to older data files only).
func commitFiles(ctx context.Context, tbl *table.Table, files staged, props iceberg.Properties) (int64, error) {
	txn := tbl.NewTransaction()
	if err := txn.AssertRefSnapshotID(table.MainBranch); err != nil {
		return 0, err
	}
	switch {
	case len(files.data) == 0 && len(files.deletes) == 0:
		// An empty append: a snapshot that only moves strom.offsets
		// (AddDataFiles of nothing commits nothing). AddFiles sets the
		// table's default name mapping if it has none.
		if err := txn.AddFiles(ctx, nil, props, true); err != nil {
			return 0, err
		}
	case len(files.deletes) == 0:
		if err := txn.AddDataFiles(ctx, files.data, props, table.WithoutDuplicateCheck(), table.WithoutAutoNameMapping()); err != nil {
			return 0, err
		}
	default:
		if err := txn.NewRowDelta(props).AddRows(files.data...).AddDeletes(files.deletes...).Commit(ctx); err != nil {
			return 0, err
		}
	}
	committed, err := txn.Commit(ctx)
	if err != nil {
		return 0, err
	}
	snap := committed.CurrentSnapshot()
	if snap == nil {
		return 0, errors.New("commit left no current snapshot")
	}
	return snap.SnapshotID, nil
}

// checkRecords validates recs against the table: one schema that the
// table accepts (iceberg-go checks the types when writing) and no nulls in
// required columns (which iceberg-go would write).
func checkRecords(tbl *table.Table, recs []arrow.RecordBatch) error {
	sc := recs[0].Schema()
	icSchema := tbl.Schema()
	for i, rec := range recs {
		if !rec.Schema().Equal(sc) {
			return fmt.Errorf("record batch %d has schema %s, batch 0 has %s", i, rec.Schema(), sc)
		}
	}
	for j, f := range sc.Fields() {
		field, ok := icSchema.FindFieldByName(f.Name)
		if !ok {
			return fmt.Errorf("column %q is not in the Iceberg table", f.Name)
		}
		if !field.Required {
			continue
		}
		for i, rec := range recs {
			if n := rec.Column(j).NullN(); n > 0 {
				return fmt.Errorf("column %q is required but has %d nulls in record batch %d", f.Name, n, i)
			}
		}
	}
	for _, field := range icSchema.Fields() {
		if field.Required && len(sc.FieldIndices(field.Name)) == 0 {
			return fmt.Errorf("required column %q is missing", field.Name)
		}
	}
	return nil
}

// writeFiles writes recs as data files of tbl. On failure it removes the
// files it wrote.
func writeFiles(ctx context.Context, tbl *table.Table, recs []arrow.RecordBatch) ([]iceberg.DataFile, error) {
	seq := func(yield func(arrow.RecordBatch, error) bool) {
		for _, rec := range recs {
			rec.Retain() // WriteRecords releases what it consumes
			if !yield(rec, nil) {
				return
			}
		}
	}
	var files []iceberg.DataFile
	for df, err := range table.WriteRecords(ctx, tbl, recs[0].Schema(), iter.Seq2[arrow.RecordBatch, error](seq)) {
		if err != nil {
			return nil, abandon(tbl, files, err)
		}
		files = append(files, df)
	}
	if len(files) == 0 {
		return nil, errors.New("no data files written")
	}
	return files, nil
}

// abandon removes files that no commit references and returns err, joined
// with a removal failure.
func abandon(tbl *table.Table, files []iceberg.DataFile, err error) error {
	if rmErr := removeFiles(tbl, files); rmErr != nil {
		return errors.Join(err, fmt.Errorf("lake: remove orphan data files: %w", rmErr))
	}
	return err
}

// removeFiles deletes data files; it runs even when the caller's context
// has ended.
func removeFiles(tbl *table.Table, files []iceberg.DataFile) error {
	fs, err := tbl.FS(context.Background())
	if err != nil {
		return err
	}
	var errs []error
	for _, f := range files {
		if err := fs.Remove(f.FilePath()); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func paths(files []iceberg.DataFile) []string {
	out := make([]string, len(files))
	for i, f := range files {
		out[i] = f.FilePath()
	}
	return out
}

// findCommit looks for the snapshot with strom.commit-id = commitID among
// the ancestors of tbl's current snapshot newer than stopAt.
func findCommit(tbl *table.Table, commitID string, stopAt int64) (int64, bool) {
	snap := tbl.CurrentSnapshot()
	for steps := 0; snap != nil && snap.SnapshotID != stopAt && steps < 10000; steps++ {
		if snap.Summary != nil && snap.Summary.Properties[SummaryCommitID] == commitID {
			return snap.SnapshotID, true
		}
		if snap.ParentSnapshotID == nil {
			break
		}
		snap = tbl.SnapshotByID(*snap.ParentSnapshotID)
	}
	return 0, false
}

func sameHead(a, b *table.Table) bool {
	sa, sb := a.CurrentSnapshot(), b.CurrentSnapshot()
	if sa == nil || sb == nil {
		return sa == nil && sb == nil
	}
	return sa.SnapshotID == sb.SnapshotID
}

type overlap int

const (
	untouched overlap = iota // no bucket of the append moved since its base
	covered                  // every bucket of the append is committed up to its offset
	partial                  // anything else
)

// classify compares the committed offsets with an append of
// [base[b], offsets[b]) for every b in offsets.
func classify(committed, base, offsets map[catalog.BucketID]int64) overlap {
	var nCovered, nUntouched int
	for b, o := range offsets {
		switch c := committed[b]; {
		case c >= o:
			nCovered++
		case c == base[b]:
			nUntouched++
		}
	}
	switch {
	case nCovered == len(offsets):
		return covered
	case nUntouched == len(offsets):
		return untouched
	}
	return partial
}
