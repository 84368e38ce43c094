package lake

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"

	"github.com/strom-io/strom/catalog"
)

// Delta is one round of changes to a primary-key lake table, collapsed by
// key: for every key the round touched, at most one new row, and a delete
// of the key's earlier row where it may have one.
type Delta struct {
	// Rows are the final rows of the keys whose last change in the round
	// inserted or updated them, at most one per key, in the schema
	// ArrowSchema(tbl) (system columns filled: __offset is the offset of
	// the change that produced the row).
	Rows []arrow.RecordBatch
	// Deletes are the keys whose earlier rows (in earlier snapshots) are
	// deleted, in the schema DeleteSchema(tbl). A key whose last change
	// updates it is in Deletes and in Rows: the delete removes the old row,
	// not the new one, which the same snapshot adds.
	Deletes []arrow.RecordBatch
}

// DeleteSchema returns the Arrow schema of Delta.Deletes for the
// primary-key lake table tbl: the columns of the primary key (the Iceberg
// identifier fields) and those the table is partitioned by (__bucket), in
// the order of the table's schema, with Iceberg field ids.
func DeleteSchema(tbl *table.Table) (*arrow.Schema, error) {
	sc, err := deleteSchema(tbl)
	if err != nil {
		return nil, err
	}
	return table.SchemaToArrowSchema(sc, nil, true, false)
}

func deleteSchema(tbl *table.Table) (*iceberg.Schema, error) {
	sc := tbl.Schema()
	names := identifierNames(sc)
	if len(names) == 0 {
		return nil, fmt.Errorf("lake: %s has no identifier fields: not a primary-key table", strings.Join(tbl.Identifier(), "."))
	}
	spec := tbl.Spec()
	for _, f := range spec.Fields() {
		name, ok := sc.FindColumnName(f.SourceID())
		if !ok {
			return nil, fmt.Errorf("lake: %s: partition field %s has no source column", strings.Join(tbl.Identifier(), "."), f.Name)
		}
		names = append(names, name)
	}
	return sc.Select(true, names...)
}

// CommitDelta writes d as Parquet data files and equality-delete files (on
// the primary-key columns, one per bucket and partition) of the
// primary-key lake table tbl, and commits them in one snapshot whose
// strom.offsets is the current snapshot's with offsets merged in, and
// returns the snapshot's id. It is Iceberg v2 merge-on-read: a reader
// drops every row of an older snapshot whose key is in the deletes, and
// keeps the rows this snapshot adds (Iceberg applies equality deletes only
// to data files of lower sequence numbers).
//
// d must hold the collapsed changes of exactly the changelog records that
// Append's recs would hold for offsets. Rows and Deletes may both be empty
// (the round's changes cancelled out): the snapshot then only moves
// strom.offsets. Commit, conflicts and failures are handled as by Append.
// CommitDelta does not take ownership of d's batches.
func (l *Lake) CommitDelta(ctx context.Context, tbl *table.Table, d Delta, offsets map[catalog.BucketID]int64) (int64, error) {
	const op = "commit delta to"
	ident := strings.Join(tbl.Identifier(), ".")
	if len(offsets) == 0 {
		return 0, fmt.Errorf("lake: %s %s: no offsets", op, ident)
	}
	base, baseSnap, err := checkOffsets(tbl, op, offsets)
	if err != nil {
		return 0, err
	}
	delSchema, err := deleteSchema(tbl)
	if err != nil {
		return 0, err
	}
	rows, deletes := nonEmpty(d.Rows), nonEmpty(d.Deletes)
	if len(rows) > 0 {
		if err := checkRecords(tbl, rows); err != nil {
			return 0, fmt.Errorf("lake: %s %s: rows: %w", op, ident, err)
		}
	}
	if len(deletes) > 0 {
		if err := checkDeletes(delSchema, deletes); err != nil {
			return 0, fmt.Errorf("lake: %s %s: deletes: %w", op, ident, err)
		}
	}

	var files staged
	if len(rows) > 0 {
		if files.data, err = writeFiles(ctx, tbl, rows); err != nil {
			return 0, fmt.Errorf("lake: %s %s: write data files: %w", op, ident, err)
		}
	}
	if len(deletes) > 0 {
		if files.deletes, err = writeDeleteFiles(ctx, tbl, deletes); err != nil {
			return 0, abandon(tbl, files.data, fmt.Errorf("lake: %s %s: write equality-delete files: %w", op, ident, err))
		}
	}
	return l.commit(ctx, tbl, op, files, base, baseSnap, offsets)
}

func nonEmpty(recs []arrow.RecordBatch) []arrow.RecordBatch {
	var out []arrow.RecordBatch
	for _, r := range recs {
		if r.NumRows() > 0 {
			out = append(out, r)
		}
	}
	return out
}

// checkDeletes validates delete records: the columns of sc by name and
// type, in order, without nulls (every key and partition column is
// required).
func checkDeletes(sc *iceberg.Schema, recs []arrow.RecordBatch) error {
	want, err := table.SchemaToArrowSchema(sc, nil, false, false)
	if err != nil {
		return err
	}
	for i, rec := range recs {
		got := rec.Schema()
		if got.NumFields() != want.NumFields() {
			return fmt.Errorf("record batch %d has %d columns, want %s", i, got.NumFields(), want)
		}
		for j, f := range want.Fields() {
			g := got.Field(j)
			if g.Name != f.Name || !arrow.TypeEqual(g.Type, f.Type) {
				return fmt.Errorf("record batch %d column %d is %s %s, want %s %s", i, j, g.Name, g.Type, f.Name, f.Type)
			}
			if n := rec.Column(j).NullN(); n > 0 {
				return fmt.Errorf("column %q has %d nulls in record batch %d", f.Name, n, i)
			}
		}
	}
	return nil
}

// writeDeleteFiles writes recs as equality-delete files of tbl on its
// identifier fields, one or more per partition. On failure it removes the
// files it wrote.
func writeDeleteFiles(ctx context.Context, tbl *table.Table, recs []arrow.RecordBatch) ([]iceberg.DataFile, error) {
	seq := func(yield func(arrow.RecordBatch, error) bool) {
		for _, rec := range recs {
			rec.Retain() // the writer may release what it consumes
			if !yield(rec, nil) {
				return
			}
		}
	}
	// The transaction only lends its metadata and file IO to the writer;
	// it is never committed.
	// On failure iceberg-go does not say which files it had written; they
	// are orphans for Iceberg's remove_orphan_files.
	files, err := tbl.NewTransaction().WriteEqualityDeletes(ctx, tbl.Schema().IdentifierFieldIDs, seq)
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, errors.New("no equality-delete files written")
	}
	return files, nil
}
