package lake

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"
	"github.com/apache/iceberg-go/table/compaction"
	"github.com/google/uuid"
)

// SummaryCompaction is the snapshot summary key that marks a snapshot of
// Compact ("true").
const SummaryCompaction = "strom.compaction"

// DeltasSinceCompaction returns how many snapshots since tbl's last
// compaction (Compact), or since its first snapshot, added delete files:
// every one of them is a set of equality-delete files that readers apply.
// It reads only the table metadata.
func DeltasSinceCompaction(tbl *table.Table) int {
	n := 0
	snap := tbl.CurrentSnapshot()
	for steps := 0; snap != nil && steps < 100000; steps++ {
		if snap.Summary != nil {
			if snap.Summary.Properties[SummaryCompaction] == "true" {
				break
			}
			if v, _ := strconv.Atoi(snap.Summary.Properties["added-delete-files"]); v > 0 {
				n++
			}
		}
		if snap.ParentSnapshotID == nil {
			break
		}
		snap = tbl.SnapshotByID(*snap.ParentSnapshotID)
	}
	return n
}

// CompactStats describes a compaction.
type CompactStats struct {
	// SnapshotID is the compaction's snapshot; 0 when there was nothing
	// to compact.
	SnapshotID int64
	// Partitions rewritten (a partition is one bucket of one Strom
	// partition).
	Partitions int
	// RemovedDataFiles and AddedDataFiles count the data files replaced
	// and written; RemovedDeleteFiles the delete files dropped.
	RemovedDataFiles, AddedDataFiles, RemovedDeleteFiles int
	// BytesBefore and BytesAfter are the sizes of the data files replaced
	// and written.
	BytesBefore, BytesAfter int64
}

// Compact rewrites every partition of tbl whose data files have delete
// files into fresh data files that hold the partition's current rows (the
// deletes applied), and drops the delete files that then apply to no data
// file, in one "replace" snapshot with the same strom.offsets and
// SummaryCompaction set. Readers see the same rows before and after; they
// only stop paying for the deletes.
//
// Compact commits on top of tbl's current snapshot as loaded, like
// Append: if another writer committed meanwhile it removes the files it
// wrote and returns ErrConflict (the next compaction starts over); a
// failure that leaves the outcome unknown keeps the files and names them.
func (l *Lake) Compact(ctx context.Context, tbl *table.Table) (CompactStats, error) {
	var stats CompactStats
	ident := strings.Join(tbl.Identifier(), ".")
	snap := tbl.CurrentSnapshot()
	if snap == nil {
		return stats, nil
	}
	tasks, err := tbl.Scan(table.WithSnapshotID(snap.SnapshotID)).PlanFiles(ctx)
	if err != nil {
		return stats, fmt.Errorf("lake: compact %s: plan: %w", ident, err)
	}
	groups := map[string]*table.CompactionTaskGroup{}
	var dirty []string
	for _, task := range tasks {
		key := fmt.Sprintf("%d/%v", task.File.SpecID(), task.File.Partition()) // fmt sorts map keys
		g, ok := groups[key]
		if !ok {
			g = &table.CompactionTaskGroup{PartitionKey: key}
			groups[key] = g
		}
		g.Tasks = append(g.Tasks, task)
		g.TotalSizeBytes += task.File.FileSizeBytes()
		if len(task.EqualityDeleteFiles)+len(task.DeleteFiles)+len(task.DeletionVectorFiles) > 0 && !slices.Contains(dirty, key) {
			dirty = append(dirty, key)
		}
	}
	rewritten := map[string]struct{}{}
	for _, key := range dirty {
		for _, task := range groups[key].Tasks {
			rewritten[task.File.FilePath()] = struct{}{}
		}
	}
	fs, err := tbl.FS(ctx)
	if err != nil {
		return stats, fmt.Errorf("lake: compact %s: %w", ident, err)
	}
	// Equality deletes that no data file left after the rewrite is old
	// enough to be affected by (or of a partition with no data left).
	dead, err := compaction.CollectDeadEqualityDeletesWithSpecs(ctx, fs, tbl.Metadata(), snap, rewritten)
	if err != nil {
		return stats, fmt.Errorf("lake: compact %s: find dead equality deletes: %w", ident, err)
	}
	if len(dirty) == 0 && len(dead) == 0 {
		return stats, nil
	}

	var (
		results []table.CompactionGroupResult
		written []iceberg.DataFile
	)
	for _, key := range dirty {
		gr, err := table.ExecuteCompactionGroup(ctx, tbl, *groups[key])
		written = append(written, gr.NewDataFiles...)
		if err != nil {
			return stats, abandon(tbl, written, fmt.Errorf("lake: compact %s: %w", ident, err))
		}
		results = append(results, gr)
		stats.Partitions++
		stats.RemovedDataFiles += len(gr.OldDataFiles)
		stats.AddedDataFiles += len(gr.NewDataFiles)
		stats.BytesBefore += gr.BytesBefore
		stats.BytesAfter += gr.BytesAfter
	}

	commitID := uuid.NewString()
	props := iceberg.Properties{SummaryCommitID: commitID, SummaryCompaction: "true"}
	if snap.Summary != nil {
		if o, ok := snap.Summary.Properties[SummaryOffsets]; ok {
			props[SummaryOffsets] = o
		}
	}
	snapID, commitErr := commitRewrite(ctx, tbl, results, dead, props)
	if commitErr == nil {
		stats.SnapshotID = snapID
		stats.RemovedDeleteFiles = countRemovedDeletes(results, dead)
		return stats, nil
	}
	fresh, err := l.load(ctx, tbl.Identifier())
	if err != nil {
		return stats, fmt.Errorf("lake: compact %s: commit: %w; reload: %w; data files %v are orphans unless the commit landed",
			ident, commitErr, err, paths(written))
	}
	if id, ok := findCommit(fresh, commitID, snap.SnapshotID); ok {
		stats.SnapshotID = id
		stats.RemovedDeleteFiles = countRemovedDeletes(results, dead)
		return stats, nil
	}
	if sameHead(fresh, tbl) {
		return stats, fmt.Errorf("lake: compact %s: commit: %w (data files %v may be orphans)", ident, commitErr, paths(written))
	}
	return stats, abandon(tbl, written, fmt.Errorf("%w: compact %s: the table moved: %w", ErrConflict, ident, commitErr))
}

// commitRewrite commits the compaction of results and the removal of the
// dead delete files on top of tbl's current snapshot, failing if the main
// branch moved.
func commitRewrite(ctx context.Context, tbl *table.Table, results []table.CompactionGroupResult, dead []iceberg.DataFile, props iceberg.Properties) (int64, error) {
	txn := tbl.NewTransaction()
	if err := txn.AssertRefSnapshotID(table.MainBranch); err != nil {
		return 0, err
	}
	rw := txn.NewRewrite(props)
	removed := map[string]bool{}
	for _, gr := range results {
		rw.ApplyResult(gr)
		for _, f := range slices.Concat(gr.SafePosDeletes, gr.SafeDeletionVectors) {
			removed[f.FilePath()] = true
		}
	}
	for _, f := range dead {
		if !removed[f.FilePath()] {
			removed[f.FilePath()] = true
			rw.DeleteFile(f)
		}
	}
	if err := rw.Commit(ctx); err != nil {
		return 0, err
	}
	committed, err := txn.Commit(ctx)
	if err != nil {
		return 0, err
	}
	return committed.CurrentSnapshot().SnapshotID, nil
}

func countRemovedDeletes(results []table.CompactionGroupResult, dead []iceberg.DataFile) int {
	seen := map[string]bool{}
	for _, gr := range results {
		for _, f := range slices.Concat(gr.SafePosDeletes, gr.SafeDeletionVectors) {
			seen[f.FilePath()] = true
		}
	}
	for _, f := range dead {
		seen[f.FilePath()] = true
	}
	return len(seen)
}
