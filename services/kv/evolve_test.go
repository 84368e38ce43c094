package kv

import (
	"errors"
	"testing"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/catalog/changelog"
)

// evolved is modelTable at schema version 2: a nullable column appended.
func evolved(props map[string]string) catalog.Table {
	t := modelTable(props)
	t.SchemaVersion = 2
	t.Schema.Columns = append(t.Schema.Columns, catalog.Column{Name: "added", Type: catalog.Double, Nullable: true})
	return t
}

// TestEvolve: after an AlterTable appended a column, rows stored under the
// old version read with NULL in it, upserts of either width work, pending
// changes of the old version still apply, partial updates of the new
// column keep the rest, and all of it holds across a reopen and a replay
// of the changelog under the new schema.
func TestEvolve(t *testing.T) {
	dir := t.TempDir()
	v1 := modelTable(nil)
	v1.SchemaVersion = 1
	b, err := Open(dir, v1, Options{})
	if err != nil {
		t.Fatal(err)
	}
	mustPrepareApply(t, b, 2, up(1, "a", 5, "x", 0), up(2, "a", 6, nil, 1))
	// Prepared under version 1, applied after the evolve.
	pend, err := b.Prepare([]Op{up(3, "b", 7, "y", 2)})
	if err != nil {
		t.Fatal(err)
	}
	if got := pend.Record().NumCols(); got != 6 {
		t.Fatalf("version 1 changelog has %d columns, want 6", got)
	}

	v2 := evolved(nil)
	if err := b.Evolve(v2); err != nil {
		t.Fatal(err)
	}
	if b.SchemaVersion() != 2 {
		t.Fatalf("SchemaVersion = %d", b.SchemaVersion())
	}
	if err := b.Evolve(v1); err != nil { // older: a no-op
		t.Fatalf("Evolve to an older version: %v", err)
	}
	if err := b.Apply(pend, 3); err != nil {
		t.Fatal(err)
	}
	// An update of a key with a version-1 pending value, and of one
	// stored under version 1: the old rows carry NULL in "added".
	c, err := b.Prepare([]Op{up(3, "b", 8, "y", 2, 1.5), {Kind: OpUpsert, Row: r(1, "a", nil, nil, nil, 2.5), TargetColumns: []int{0, 1, 5}}})
	if err != nil {
		t.Fatal(err)
	}
	cl := changesOf(t, c.Record(), 6)
	want := []change{
		{changelog.UpdateBefore.String(), r(3, "b", 7, "y", 2, nil)}, {changelog.UpdateAfter.String(), r(3, "b", 8, "y", 2, 1.5)},
		{changelog.UpdateBefore.String(), r(1, "a", 5, "x", 0, nil)}, {changelog.UpdateAfter.String(), r(1, "a", 5, "x", 0, 2.5)},
	}
	if len(cl) != len(want) {
		t.Fatalf("changelog %v, want %v", cl, want)
	}
	for i := range want {
		if cl[i].typ != want[i].typ || !rowsEqual(cl[i].row, want[i].row) {
			t.Fatalf("changelog[%d] = %v, want %v", i, cl[i], want[i])
		}
	}
	if err := b.Apply(c, 7); err != nil {
		t.Fatal(err)
	}
	wantRows := map[int64]Row{1: r(1, "a", 5, "x", 0, 2.5), 2: r(2, "a", 6, nil, 1, nil), 3: r(3, "b", 8, "y", 2, 1.5)}
	check := func(what string, b *Bucket) {
		t.Helper()
		rows, err := b.Scan(0)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != len(wantRows) {
			t.Fatalf("%s: scan %v", what, rows)
		}
		for _, row := range rows {
			if w := wantRows[row[0].(int64)]; !rowsEqual(row, w) {
				t.Fatalf("%s: row %v, want %v", what, row, w)
			}
		}
		got, err := b.Lookup([]Row{{int64(2), "a"}})
		if err != nil || !rowsEqual(got[0], wantRows[2]) {
			t.Fatalf("%s: lookup = %v, %v", what, got, err)
		}
		rec, err := b.RowsToRecord(rows)
		if err != nil || rec.NumCols() != 6 || rec.NumRows() != 3 {
			t.Fatalf("%s: RowsToRecord = %v, %v", what, rec, err)
		}
		rec.Release()
	}
	check("evolved", b)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = openBucket(t, dir, v2, Options{})
	check("reopened", b)

	// A new bucket replaying the changelog read back under version 2 (old
	// batches with NULL in the added column) ends in the same state.
	r2 := openBucket(t, t.TempDir(), v2, Options{})
	for _, step := range []struct {
		rows []Row
		typ  []changelog.Kind
		end  int64
	}{
		{[]Row{r(1, "a", 5, "x", 0, nil), r(2, "a", 6, nil, 1, nil)}, []changelog.Kind{changelog.Insert, changelog.Insert}, 2},
		{[]Row{r(3, "b", 7, "y", 2, nil)}, []changelog.Kind{changelog.Insert}, 3},
		{[]Row{r(3, "b", 7, "y", 2, nil), r(3, "b", 8, "y", 2, 1.5), r(1, "a", 5, "x", 0, nil), r(1, "a", 5, "x", 0, 2.5)},
			[]changelog.Kind{changelog.UpdateBefore, changelog.UpdateAfter, changelog.UpdateBefore, changelog.UpdateAfter}, 7},
	} {
		var chs []changeRow
		for i, row := range step.rows {
			chs = append(chs, changeRow{row, step.typ[i]})
		}
		rec := r2.changelogRecord(r2.st.Load(), chs)
		if err := r2.ApplyChangelog(rec, step.end); err != nil {
			t.Fatal(err)
		}
		rec.Release()
	}
	check("replayed", r2)
}

func TestEvolveRefusesWhatIsNotAnAppend(t *testing.T) {
	for name, mutate := range map[string]func(*catalog.Table){
		"dropped column":  func(t *catalog.Table) { t.Schema.Columns = t.Schema.Columns[:3] },
		"renamed column":  func(t *catalog.Table) { t.Schema.Columns[2].Name = "w" },
		"retyped column":  func(t *catalog.Table) { t.Schema.Columns[2].Type = catalog.Int },
		"NOT NULL append": func(t *catalog.Table) { t.Schema.Columns[5].Nullable = false },
		"other key":       func(t *catalog.Table) { t.Schema.PrimaryKey = []string{"id"} },
	} {
		t.Run(name, func(t *testing.T) {
			b := openBucket(t, t.TempDir(), modelTable(nil), Options{})
			next := evolved(nil)
			next.Schema.Columns = append([]catalog.Column(nil), next.Schema.Columns...)
			mutate(&next)
			if err := b.Evolve(next); !errors.Is(err, ErrInvalidOp) {
				t.Fatalf("Evolve = %v, want ErrInvalidOp", err)
			}
			if b.SchemaVersion() != 0 {
				t.Fatalf("SchemaVersion = %d after a refused Evolve", b.SchemaVersion())
			}
		})
	}
}
