package lake

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/iceberg-go"
	icecatalog "github.com/apache/iceberg-go/catalog"
	"github.com/apache/iceberg-go/table"

	"github.com/strom-io/strom/catalog"
)

// Snapshot is one Iceberg snapshot of a Strom table's lake copy, opened
// for reading (union reads: the snapshot, then the stream from Offsets
// on). It is immutable and safe for concurrent use; later commits to the
// lake do not change it.
type Snapshot struct {
	// ID is the Iceberg snapshot id; 0 when the lake holds nothing of the
	// table (no Iceberg table yet, or one without snapshots).
	ID int64
	// Offsets is the snapshot's strom.offsets: for every bucket ever
	// tiered, the offset of its first record not in the snapshot. The
	// snapshot holds each record below it exactly once. Empty when ID is 0.
	Offsets map[catalog.BucketID]int64

	t   catalog.Table
	tbl *table.Table // nil when ID is 0
	// groups are the snapshot's data files per bucket, grouped so that
	// the __offset ranges of different groups do not overlap, in offset
	// order.
	groups map[catalog.BucketID][]fileGroup
	mem    memory.Allocator
	// schema is the Iceberg schema of the snapshot's data; pinned: the
	// snapshot is not the table's current one (SnapshotAt), so scans
	// name it.
	schema *iceberg.Schema
	pinned bool
}

// fileGroup is data files of one bucket whose __offset ranges overlap
// (the files of one tiering round may interleave offsets), so that their
// rows are put in order together.
type fileGroup struct {
	tasks        []table.FileScanTask
	lower, upper int64 // __offset bounds of the files
}

// Snapshot loads the current snapshot of t's lake table and plans its data
// files by bucket. A table the lake does not hold yet (no Iceberg table,
// or one without snapshots) is an empty snapshot, not an error. An Iceberg
// table of t's name that belongs to another Strom table is ErrForeignTable.
func (l *Lake) Snapshot(ctx context.Context, t catalog.Table) (*Snapshot, error) {
	return l.snapshot(ctx, t, nil)
}

// SnapshotAt loads snapshot id of t's lake table, one a Snapshot had (for
// a read that continues where an earlier one stopped: the same snapshot
// yields the same rows in the same order). Id 0 is the empty snapshot. A
// snapshot the lake no longer has (expired, or the Iceberg table dropped)
// is ErrSnapshotGone.
func (l *Lake) SnapshotAt(ctx context.Context, t catalog.Table, id int64) (*Snapshot, error) {
	if id == 0 {
		return &Snapshot{Offsets: map[catalog.BucketID]int64{}, t: t, mem: memory.DefaultAllocator}, nil
	}
	return l.snapshot(ctx, t, &id)
}

// snapshot loads snapshot id (nil: the current one) of t's lake table.
func (l *Lake) snapshot(ctx context.Context, t catalog.Table, id *int64) (*Snapshot, error) {
	s := &Snapshot{Offsets: map[catalog.BucketID]int64{}, t: t, mem: memory.DefaultAllocator}
	ident := Identifier(t)
	name := strings.Join(ident, ".")
	tbl, err := l.load(ctx, ident)
	if errors.Is(err, icecatalog.ErrNoSuchTable) || errors.Is(err, icecatalog.ErrNoSuchNamespace) {
		if id != nil {
			return nil, fmt.Errorf("%w: %s has no Iceberg table", ErrSnapshotGone, name)
		}
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lake: load %s: %w", name, err)
	}
	if tid := tbl.Properties()[PropTableID]; tid != strconv.FormatInt(t.ID, 10) {
		return nil, fmt.Errorf("%w: %s has %s=%q, but the Strom table's id is %d; drop or rename the Iceberg table",
			ErrForeignTable, name, PropTableID, tid, t.ID)
	}
	snap := tbl.CurrentSnapshot()
	if id != nil {
		if snap = tbl.Metadata().SnapshotByID(*id); snap == nil {
			return nil, fmt.Errorf("%w: %s has no snapshot %d", ErrSnapshotGone, name, *id)
		}
		cur := tbl.CurrentSnapshot()
		s.pinned = cur == nil || cur.SnapshotID != snap.SnapshotID
	}
	offsets, snapID, err := snapshotOffsets(tbl, snap)
	if err != nil {
		return nil, err
	}
	if snapID == 0 {
		return s, nil
	}
	scan := tbl.Scan()
	if s.pinned {
		scan = tbl.Scan(table.WithSnapshotID(snapID))
	}
	tasks, err := scan.PlanFiles(ctx)
	if err != nil {
		return nil, fmt.Errorf("lake: plan %s snapshot %d: %w", name, snapID, err)
	}
	s.ID, s.Offsets, s.tbl = snapID, offsets, tbl
	if s.pinned {
		for _, sc := range tbl.Metadata().Schemas() {
			if snap.SchemaID != nil && sc.ID == *snap.SchemaID {
				s.schema = sc
			}
		}
	}
	if s.schema == nil {
		s.schema = tbl.Schema()
	}
	files := map[catalog.BucketID][]table.FileScanTask{}
	for _, task := range tasks {
		b, err := s.bucketOf(task.File)
		if err != nil {
			return nil, fmt.Errorf("lake: %s snapshot %d: %w", name, snapID, err)
		}
		files[b] = append(files[b], task)
	}
	offsetField, _ := s.schema.FindFieldByName(ColumnOffset)
	s.groups = make(map[catalog.BucketID][]fileGroup, len(files))
	for b, tasks := range files {
		s.groups[b] = groupFiles(tasks, offsetField.ID)
	}
	return s, nil
}

// groupFiles groups the data files of one bucket by their __offset
// ranges (from the manifests' lower and upper bounds of field offsetID):
// files whose ranges overlap share a group, and groups ascend. Without
// bounds for every file, all files are one group.
func groupFiles(tasks []table.FileScanTask, offsetID int) []fileGroup {
	type bounded struct {
		task         table.FileScanTask
		lower, upper int64
	}
	all := make([]bounded, 0, len(tasks))
	for _, task := range tasks {
		lo, okLo := task.File.LowerBoundValues()[offsetID]
		hi, okHi := task.File.UpperBoundValues()[offsetID]
		if !okLo || !okHi || len(lo) != 8 || len(hi) != 8 {
			// In a fixed order all the same (RowsFrom's positions).
			tasks = slices.Clone(tasks)
			slices.SortFunc(tasks, func(x, y table.FileScanTask) int {
				return cmp.Or(strings.Compare(x.File.FilePath(), y.File.FilePath()), cmp.Compare(x.Start, y.Start))
			})
			return []fileGroup{{tasks: tasks, lower: 0, upper: math.MaxInt64}}
		}
		all = append(all, bounded{task, int64(binary.LittleEndian.Uint64(lo)), int64(binary.LittleEndian.Uint64(hi))})
	}
	slices.SortFunc(all, func(x, y bounded) int {
		return cmp.Or(cmp.Compare(x.lower, y.lower), strings.Compare(x.task.File.FilePath(), y.task.File.FilePath()), cmp.Compare(x.task.Start, y.task.Start))
	})
	var groups []fileGroup
	for _, f := range all {
		if n := len(groups); n > 0 && f.lower <= groups[n-1].upper {
			g := &groups[n-1]
			g.tasks = append(g.tasks, f.task)
			g.upper = max(g.upper, f.upper)
			continue
		}
		groups = append(groups, fileGroup{tasks: []table.FileScanTask{f.task}, lower: f.lower, upper: f.upper})
	}
	return groups
}

// bucketOf returns the bucket whose records a data file holds, from its
// partition values (identity of the partition column, identity of
// __bucket).
func (s *Snapshot) bucketOf(f iceberg.DataFile) (catalog.BucketID, error) {
	b := catalog.BucketID{TableID: s.t.ID}
	spec := s.tbl.Metadata().PartitionSpecByID(int(f.SpecID()))
	if spec == nil {
		return b, fmt.Errorf("data file %s: unknown partition spec %d", f.FilePath(), f.SpecID())
	}
	values := f.Partition()
	var haveBucket, havePartition bool
	for _, pf := range spec.Fields() {
		col, _ := s.tbl.Schema().FindColumnName(pf.SourceID())
		v := values[pf.FieldID]
		switch {
		case col == ColumnBucket:
			n, ok := v.(int32)
			if !ok {
				return b, fmt.Errorf("data file %s: partition value %s=%v (%T), want an int", f.FilePath(), ColumnBucket, v, v)
			}
			b.Bucket, haveBucket = n, true
		case s.t.PartitionKey != "" && col == s.t.PartitionKey:
			p, err := partitionName(v)
			if err != nil {
				return b, fmt.Errorf("data file %s: partition column %s: %w", f.FilePath(), col, err)
			}
			b.Partition, havePartition = p, true
		}
	}
	if !haveBucket || (s.t.PartitionKey != "" && !havePartition) {
		return b, fmt.Errorf("data file %s is not partitioned by bucket (and partition column); it was not written by Strom", f.FilePath())
	}
	return b, nil
}

// partitionName renders an identity partition value as Strom names the
// partition (services/writer.PartitionValue): a string as is, an integer
// in decimal, a date as YYYY-MM-DD.
func partitionName(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case int32:
		return strconv.FormatInt(int64(v), 10), nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	case iceberg.Date:
		return v.ToTime().UTC().Format(time.DateOnly), nil
	case time.Time:
		return v.UTC().Format(time.DateOnly), nil
	}
	return "", fmt.Errorf("partition value %v of type %T is not a string, integer or date", v, v)
}

// Schema returns the Arrow schema of the batches Records yields for the
// projection columns (nil for every column of the table, in table order):
// the columns with the lake's Arrow types (see ArrowSchema: int32 for
// TINYINT, SMALLINT and INT; timestamps and times in microseconds), then
// __bucket (int32), __offset (int64) and __timestamp (timestamp[us, UTC]).
// A column unknown to the table, or named twice, is an error.
func (s *Snapshot) Schema(columns []string) (*arrow.Schema, error) {
	cols := s.t.Schema.Columns
	if columns != nil {
		cols = make([]catalog.Column, 0, len(columns))
		seen := make(map[string]bool, len(columns))
		for _, name := range columns {
			i := slices.IndexFunc(s.t.Schema.Columns, func(c catalog.Column) bool { return c.Name == name })
			if i < 0 {
				return nil, fmt.Errorf("lake: table %s.%s has no column %q", s.t.Database, s.t.Name, name)
			}
			if seen[name] {
				return nil, fmt.Errorf("lake: column %q named twice", name)
			}
			seen[name] = true
			cols = append(cols, s.t.Schema.Columns[i])
		}
	}
	fields := make([]arrow.Field, 0, len(cols)+len(systemColumns))
	for _, c := range cols {
		typ, err := IcebergType(c.Type)
		if err != nil {
			return nil, fmt.Errorf("lake: table %s.%s column %q: %w", s.t.Database, s.t.Name, c.Name, err)
		}
		at, err := table.TypeToArrowType(typ, false, false)
		if err != nil {
			return nil, fmt.Errorf("lake: table %s.%s column %q: %w", s.t.Database, s.t.Name, c.Name, err)
		}
		fields = append(fields, arrow.Field{Name: c.Name, Type: at, Nullable: c.Nullable})
	}
	for _, c := range systemColumns {
		at, err := table.TypeToArrowType(c.typ, false, false)
		if err != nil {
			return nil, err
		}
		fields = append(fields, arrow.Field{Name: c.name, Type: at})
	}
	return arrow.NewSchema(fields, nil), nil
}

// Records yields the snapshot's records of bucket b with offsets in
// [from, to) (and below Offsets[b]), in offset order, as batches of
// Schema(columns); the caller releases each batch. Columns the Iceberg
// table does not have yet (added to the Strom table after the last
// tiering round) are null.
//
// Data files need not hold their rows in offset order (the files of one
// tiering round may interleave them): Records reads files whose offset
// ranges overlap together, at most readChunk files at a time, and
// orders their rows. It checks what it yields: offsets ascend by one
// from the first row (which is from, when from > 0), and, when the
// iteration runs to the end, the last row is min(to, Offsets[b]) - 1. A
// lake that breaks this (a foreign writer, a rolled-back table) is an
// error, yielded last, instead of a duplicate or a gap. Breaking out of
// the loop stops reading.
//
// Records is for log tables; rows deleted by equality deletes (a
// primary-key table) break the check.
func (s *Snapshot) Records(ctx context.Context, b catalog.BucketID, from, to int64, columns []string) iter.Seq2[arrow.RecordBatch, error] {
	return func(yield func(arrow.RecordBatch, error) bool) {
		out, err := s.Schema(columns)
		if err != nil {
			yield(nil, err)
			return
		}
		from = max(from, 0)
		end := min(to, s.Offsets[b])
		groups := s.groups[b]
		for len(groups) > 0 && groups[0].upper < from {
			groups = groups[1:]
		}
		if from >= end || len(groups) == 0 {
			return
		}
		fail := func(err error) { yield(nil, s.readError(b, err)) }
		scan := s.scan(out)
		defer scan.Close()
		next := int64(-1) // the offset the next row must have; -1 before the first
		if from > 0 {
			next = from
		}
		for len(groups) > 0 && groups[0].lower < end {
			// A chunk: whole groups, up to readChunk files unless one
			// group has more.
			var tasks []table.FileScanTask
			for len(groups) > 0 && groups[0].lower < end && (len(tasks) == 0 || len(tasks)+len(groups[0].tasks) <= readChunk) {
				tasks = append(tasks, groups[0].tasks...)
				groups = groups[1:]
			}
			runs, err := s.readRuns(ctx, scan, tasks, from, end)
			if err != nil {
				fail(err)
				return
			}
			for i, r := range runs {
				if next >= 0 && r.first != next {
					releaseRuns(runs[i:])
					fail(fmt.Errorf("offset %d follows %d: the lake holds a record twice or misses one", r.first, next-1))
					return
				}
				n := r.rec.NumRows()
				next = r.first + n
				res, err := s.project(out, r.rec, n)
				r.rec.Release()
				if err != nil {
					releaseRuns(runs[i+1:])
					fail(err)
					return
				}
				if !yield(res, nil) {
					releaseRuns(runs[i+1:])
					return
				}
			}
		}
		if next >= 0 && next != end {
			fail(fmt.Errorf("the data files end at offset %d, want %d (%s %d, read before %d)", next, end, SummaryOffsets, s.Offsets[b], to))
		}
	}
}

// Rows yields the snapshot's rows of bucket b as batches of
// Schema(columns), in no particular order; the caller releases each
// batch. For a primary-key table these are the bucket's current rows as
// of Offsets[b], the equality deletes applied: one row per key, whose
// __offset is that of the change that wrote it. Breaking out of the loop
// stops reading.
func (s *Snapshot) Rows(ctx context.Context, b catalog.BucketID, columns []string) iter.Seq2[arrow.RecordBatch, error] {
	return func(yield func(arrow.RecordBatch, error) bool) {
		for rb, err := range s.RowsFrom(ctx, b, columns, RowsPos{}) {
			if !yield(rb.Rec, err) {
				return
			}
		}
	}
}

// RowsPos is a position in the rows Rows yields for one bucket: Row rows
// into chunk Chunk of its data files. Every read of one snapshot yields
// the rows in the same order, so a position found in one read holds for
// another (of a Snapshot of the same ID).
type RowsPos struct {
	Chunk int   `json:"c"`
	Row   int64 `json:"r"`
}

// RowsBatch is a batch RowsFrom yields and the position of its first row;
// the position after its row i is {At.Chunk, At.Row + i + 1}.
type RowsBatch struct {
	Rec arrow.RecordBatch
	At  RowsPos
}

// RowsFrom is Rows from position from on: it yields the bucket's rows
// after the first from.Row rows of chunk from.Chunk, each batch with its
// position. It reads one chunk (readChunk data files, in parallel) at a
// time; resuming in a chunk reads the rows of the chunk before the
// position again to skip them.
func (s *Snapshot) RowsFrom(ctx context.Context, b catalog.BucketID, columns []string, from RowsPos) iter.Seq2[RowsBatch, error] {
	return func(yield func(RowsBatch, error) bool) {
		out, err := s.Schema(columns)
		if err != nil {
			yield(RowsBatch{}, err)
			return
		}
		var tasks []table.FileScanTask
		for _, g := range s.groups[b] {
			tasks = append(tasks, g.tasks...)
		}
		if len(tasks) == 0 || from.Chunk*readChunk >= len(tasks) {
			return
		}
		scan := s.scan(out)
		defer scan.Close()
		for c := max(from.Chunk, 0); c*readChunk < len(tasks); c++ {
			chunk := tasks[c*readChunk : min((c+1)*readChunk, len(tasks))]
			_, recs, err := scan.ReadTasks(ctx, chunk)
			if err != nil {
				yield(RowsBatch{}, s.readError(b, err))
				return
			}
			var row, skip int64
			if c == from.Chunk {
				skip = from.Row
			}
			for rec, err := range recs {
				if err != nil {
					yield(RowsBatch{}, s.readError(b, err))
					return
				}
				n := rec.NumRows()
				first := min(n, max(skip-row, 0)) // rows of rec before from
				if first == n {
					row += n
					rec.Release()
					continue
				}
				rest := rec.NewSlice(first, n)
				rec.Release()
				res, err := s.project(out, rest, n-first)
				rest.Release()
				if err != nil {
					yield(RowsBatch{}, s.readError(b, err))
					return
				}
				if !yield(RowsBatch{Rec: res, At: RowsPos{Chunk: c, Row: row + first}}, nil) {
					return
				}
				row += n
			}
		}
	}
}

// scan returns a scan of the snapshot's columns of out that it has (a
// column added to the Strom table after the last tiering round is not in
// the Iceberg table yet).
func (s *Snapshot) scan(out *arrow.Schema) *table.Scan {
	var selected []string
	for _, f := range out.Fields() {
		if _, ok := s.schema.FindFieldByName(f.Name); ok {
			selected = append(selected, f.Name)
		}
	}
	opts := []table.ScanOption{table.WithSelectedFields(selected...), table.WithMaxConcurrency(readChunk)}
	if s.pinned {
		opts = append(opts, table.WithSnapshotID(s.ID))
	}
	return s.tbl.Scan(opts...)
}

func (s *Snapshot) readError(b catalog.BucketID, err error) error {
	return fmt.Errorf("lake: read %s.%s snapshot %d %s: %w", s.t.Database, s.t.Name, s.ID, b, err)
}

// readChunk is about how many data files Records reads at once (in
// parallel) and holds in memory to order their rows.
const readChunk = 16

// run is consecutive offsets of one batch.
type run struct {
	first int64
	rec   arrow.RecordBatch
}

func releaseRuns(runs []run) {
	for _, r := range runs {
		r.rec.Release()
	}
}

// readRuns reads the rows of tasks with offsets in [from, end) as runs of
// consecutive offsets, ordered by their first offset.
func (s *Snapshot) readRuns(ctx context.Context, scan *table.Scan, tasks []table.FileScanTask, from, end int64) ([]run, error) {
	_, recs, err := scan.ReadTasks(ctx, tasks)
	if err != nil {
		return nil, err
	}
	var runs []run
	for rec, err := range recs {
		if err != nil {
			releaseRuns(runs)
			return nil, err
		}
		offs, err := offsetColumn(rec)
		if err != nil {
			rec.Release()
			releaseRuns(runs)
			return nil, err
		}
		n := offs.Len()
		for i := 0; i < n; {
			if o := offs.Value(i); o < from || o >= end {
				i++
				continue
			}
			j := i + 1
			for j < n && offs.Value(j) == offs.Value(j-1)+1 && offs.Value(j) < end {
				j++
			}
			runs = append(runs, run{first: offs.Value(i), rec: rec.NewSlice(int64(i), int64(j))})
			i = j
		}
		rec.Release()
	}
	slices.SortStableFunc(runs, func(a, b run) int { return cmp.Compare(a.first, b.first) })
	return runs, nil
}

// offsetColumn returns the __offset column of a batch of the Iceberg scan.
func offsetColumn(rec arrow.RecordBatch) (*array.Int64, error) {
	idx := rec.Schema().FieldIndices(ColumnOffset)
	if len(idx) == 0 {
		return nil, fmt.Errorf("no %s column", ColumnOffset)
	}
	offs, ok := rec.Column(idx[0]).(*array.Int64)
	if !ok {
		return nil, fmt.Errorf("%s is %s, want int64", ColumnOffset, rec.Column(idx[0]).DataType())
	}
	return offs, nil
}

// project returns the first n rows of rec (a batch of the Iceberg scan)
// as a batch of schema out, filling columns the scan lacks with nulls.
func (s *Snapshot) project(out *arrow.Schema, rec arrow.RecordBatch, n int64) (arrow.RecordBatch, error) {
	cols := make([]arrow.Array, 0, out.NumFields())
	defer func() {
		for _, c := range cols {
			c.Release()
		}
	}()
	for _, f := range out.Fields() {
		idx := rec.Schema().FieldIndices(f.Name)
		if len(idx) == 0 {
			cols = append(cols, array.MakeArrayOfNull(s.mem, f.Type, int(n)))
			continue
		}
		col := rec.Column(idx[0])
		if !arrow.TypeEqual(col.DataType(), f.Type) {
			return nil, fmt.Errorf("column %q is %s in the data files, want %s", f.Name, col.DataType(), f.Type)
		}
		cols = append(cols, array.NewSlice(col, 0, n))
	}
	return array.NewRecordBatch(out, cols, n), nil
}
