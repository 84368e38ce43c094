package kv

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/catalog/changelog"
)

// modelTable has a two-column primary key (id, bk) whose bucket key bk is
// its second column, so storage order differs from primary-key order.
func modelTable(props map[string]string) catalog.Table {
	return catalog.Table{TableSpec: catalog.TableSpec{
		Name: "m",
		Schema: catalog.Schema{
			Columns: []catalog.Column{
				{Name: "id", Type: catalog.Int},
				{Name: "bk", Type: catalog.String},
				{Name: "v", Type: catalog.BigInt, Nullable: true},
				{Name: "s", Type: catalog.String, Nullable: true},
				{Name: "req", Type: catalog.Int},
			},
			PrimaryKey: []string{"id", "bk"},
		},
		BucketKey:  []string{"bk"},
		Properties: props,
	}}
}

func openBucket(t testing.TB, dir string, tbl catalog.Table, opts Options) *Bucket {
	t.Helper()
	b, err := Open(dir, tbl, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

type change struct {
	typ string
	row Row
}

func changesOf(t testing.TB, rec arrow.RecordBatch, n int) []change {
	t.Helper()
	ct := rec.Column(n).(*array.String)
	var out []change
	for i := range int(rec.NumRows()) {
		row, err := rowAt(rec, n, i)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, change{ct.Value(i), row})
	}
	return out
}

type model map[string]Row // "bk/id" → row

func mkey(bk string, id int64) string { return fmt.Sprintf("%s/%d", bk, id) }
func rowKeyOf(r Row) string           { return mkey(r[1].(string), r[0].(int64)) }

func (m model) clone() model {
	c := make(model, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// apply applies ops to a copy of m with last_row semantics and returns it
// with the expected changelog, or ok=false if the batch must fail.
func (m model) apply(ops []Op) (model, []change, bool) {
	m = m.clone()
	var cl []change
	for _, op := range ops {
		k := rowKeyOf(op.Row)
		old, had := m[k]
		if op.Kind == OpDelete {
			if had {
				cl = append(cl, change{changelog.Delete.String(), old})
				delete(m, k)
			}
			continue
		}
		nw := slices.Clone(op.Row)
		if op.TargetColumns != nil {
			if had {
				nw = slices.Clone(old)
			} else {
				nw = make(Row, len(op.Row))
				if !slices.Contains(op.TargetColumns, 4) {
					return nil, nil, false // req is NOT NULL
				}
			}
			for _, c := range op.TargetColumns {
				nw[c] = op.Row[c]
			}
		}
		switch {
		case !had:
			cl = append(cl, change{changelog.Insert.String(), nw})
		case rowsEqual(old, nw):
			continue
		default:
			cl = append(cl, change{changelog.UpdateBefore.String(), old}, change{changelog.UpdateAfter.String(), nw})
		}
		m[k] = nw
	}
	return m, cl, true
}

var bks = []string{"a", "b\x00", "c", "d"}

func randomOp(rng *rand.Rand) Op {
	bk, id := bks[rng.IntN(len(bks))], int64(rng.IntN(5)-2)
	row := Row{id, bk, nil, nil, int64(rng.IntN(3))}
	if rng.IntN(4) > 0 {
		row[2] = int64(rng.IntN(4))
	}
	if rng.IntN(2) == 0 {
		row[3] = strings.Repeat("x", rng.IntN(3))
	}
	switch p := rng.IntN(10); {
	case p < 3:
		return Op{Kind: OpDelete, Row: Row{id, bk, nil, nil, nil}}
	case p < 6:
		target := []int{1, 0}
		for _, c := range []int{2, 3, 4} {
			if rng.IntN(2) == 0 {
				target = append(target, c)
			}
		}
		return Op{Kind: OpUpsert, Row: row, TargetColumns: target}
	}
	return Op{Kind: OpUpsert, Row: row}
}

type pendingStep struct {
	c     *Changes
	after model
}

// TestModel runs random upserts, partial updates and deletes over 20 keys,
// interleaving Prepare, Apply and Discard, and checks after every step
// Lookup, PrefixLookup, Count and the changelog against an in-test model;
// at the end the whole changelog is replayed into a fresh bucket.
func TestModel(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { runModel(t, seed, 2000) })
	}
}

func runModel(t *testing.T, seed uint64, steps int) {
	rng := rand.New(rand.NewPCG(seed, 42))
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	tbl := modelTable(nil)
	n := len(tbl.Schema.Columns)
	b := openBucket(t, t.TempDir(), tbl, Options{MaxPendingBytes: 2048, Allocator: mem})
	committed, replayed := model{}, model{}
	var pending []pendingStep
	var log []arrow.RecordBatch // applied changelogs, retained
	var offset int64
	projected := func() model {
		if len(pending) > 0 {
			return pending[len(pending)-1].after
		}
		return committed
	}
	applyOldest := func() {
		p := pending[0]
		p.c.Record().Retain()
		log = append(log, p.c.Record())
		offset += int64(p.c.Len()) + 1
		if err := b.Apply(p.c, offset); err != nil {
			t.Fatalf("Apply: %v", err)
		}
		pending, committed = pending[1:], p.after
		// Replaying the changelog needs no dedup: +I only for an absent
		// key, -U equal to the current row, -D only for a present key.
		for _, ch := range changesOf(t, log[len(log)-1], n) {
			k := rowKeyOf(ch.row)
			cur, had := replayed[k]
			switch ch.typ {
			case changelog.Insert.String():
				if had {
					t.Fatalf("+I for present key %s", k)
				}
				replayed[k] = ch.row
			case changelog.UpdateBefore.String():
				if !had || !rowsEqual(cur, ch.row) {
					t.Fatalf("-U %v, current %v", ch.row, cur)
				}
			case changelog.UpdateAfter.String():
				replayed[k] = ch.row
			case changelog.Delete.String():
				if !had || !rowsEqual(cur, ch.row) {
					t.Fatalf("-D %v, current %v", ch.row, cur)
				}
				delete(replayed, k)
			}
		}
	}
	for step := range steps {
		switch p := rng.IntN(10); {
		case p < 6:
			ops := make([]Op, 1+rng.IntN(4))
			for i := range ops {
				ops[i] = randomOp(rng)
			}
			want, wantCL, ok := projected().apply(ops)
			c, err := b.Prepare(ops)
			if errors.Is(err, ErrBufferFull) {
				if !ok {
					break // the error could be either; the model is unchanged
				}
				for errors.Is(err, ErrBufferFull) && len(pending) > 0 {
					applyOldest()
					c, err = b.Prepare(ops)
				}
			}
			if !ok {
				if !errors.Is(err, ErrInvalidOp) {
					t.Fatalf("step %d: Prepare(%v) err = %v, want ErrInvalidOp", step, ops, err)
				}
				break
			}
			if err != nil {
				t.Fatalf("step %d: Prepare(%v): %v", step, ops, err)
			}
			got := changesOf(t, c.Record(), n)
			if len(got) != len(wantCL) || c.Len() != len(wantCL) {
				t.Fatalf("step %d: changelog %v, want %v", step, got, wantCL)
			}
			for i := range got {
				if got[i].typ != wantCL[i].typ || !rowsEqual(got[i].row, wantCL[i].row) {
					t.Fatalf("step %d: changelog %v, want %v", step, got, wantCL)
				}
			}
			pending = append(pending, pendingStep{c, want})
		case p < 9:
			if len(pending) > 0 {
				applyOldest()
			}
		default:
			if len(pending) > 0 {
				i := rng.IntN(len(pending))
				dropped, err := b.Discard(pending[i].c)
				if err != nil || dropped != len(pending)-i {
					t.Fatalf("Discard: %d, %v", dropped, err)
				}
				for _, d := range pending[i:] {
					if err := b.Apply(d.c, offset); !errors.Is(err, ErrDiscarded) {
						t.Fatalf("Apply after Discard: %v", err)
					}
				}
				pending = pending[:i]
			}
		}
		checkBucket(t, step, b, committed)
		if len(replayed) != len(committed) {
			t.Fatalf("step %d: replayed changelog has %d rows, model %d", step, len(replayed), len(committed))
		}
		for k, row := range committed {
			if !rowsEqual(replayed[k], row) {
				t.Fatalf("step %d: replayed %s = %v, model %v", step, k, replayed[k], row)
			}
		}
	}
	for len(pending) > 0 {
		applyOldest()
	}
	checkBucket(t, steps, b, committed)
	if b.AppliedOffset() != offset {
		t.Fatalf("AppliedOffset = %d, want %d", b.AppliedOffset(), offset)
	}
	// Recovery: replay the whole changelog, each record twice (the second
	// time is a no-op), into a fresh bucket.
	fresh := openBucket(t, t.TempDir(), tbl, Options{})
	var end int64
	for _, rec := range log {
		end += rec.NumRows() + 1
		for range 2 {
			if err := fresh.ApplyChangelog(rec, end); err != nil {
				t.Fatal(err)
			}
		}
		rec.Release()
	}
	checkBucket(t, -1, fresh, committed)
	if fresh.AppliedOffset() != offset {
		t.Fatalf("replayed AppliedOffset = %d, want %d", fresh.AppliedOffset(), offset)
	}
	b.Close()
	mem.AssertSize(t, 0)
}

func checkBucket(t *testing.T, step int, b *Bucket, m model) {
	t.Helper()
	if got := b.Count(); got != int64(len(m)) {
		t.Fatalf("step %d: Count = %d, want %d", step, got, len(m))
	}
	var keys []Row
	var want []Row
	for _, bk := range bks {
		for id := int64(-2); id <= 2; id++ {
			keys = append(keys, Row{id, bk})
			want = append(want, m[mkey(bk, id)])
		}
	}
	got, err := b.Lookup(keys)
	if err != nil {
		t.Fatal(err)
	}
	for i := range keys {
		if (got[i] == nil) != (want[i] == nil) || (got[i] != nil && !rowsEqual(got[i], want[i])) {
			t.Fatalf("step %d: Lookup(%v) = %v, want %v", step, keys[i], got[i], want[i])
		}
	}
	total := 0
	for _, bk := range bks {
		rows, err := b.PrefixLookup([]any{bk})
		if err != nil {
			t.Fatal(err)
		}
		var wantRows []Row
		for id := int64(-2); id <= 2; id++ {
			if r, ok := m[mkey(bk, id)]; ok {
				wantRows = append(wantRows, r)
			}
		}
		if len(rows) != len(wantRows) {
			t.Fatalf("step %d: PrefixLookup(%q) = %v, want %v", step, bk, rows, wantRows)
		}
		for i := range rows {
			if !rowsEqual(rows[i], wantRows[i]) {
				t.Fatalf("step %d: PrefixLookup(%q) = %v, want %v", step, bk, rows, wantRows)
			}
		}
		total += len(rows)
	}
	all, err := b.Scan(0)
	if err != nil || len(all) != total {
		t.Fatalf("step %d: Scan = %d rows, %v; want %d", step, len(all), err, total)
	}
	// The same rows in pieces of 1..3 rows, each after the last key.
	var pieces []Row
	var after []byte
	for piece := 1; ; piece++ {
		rows, last, more, err := b.ScanAfter(after, 1+step%3)
		if err != nil {
			t.Fatalf("step %d: ScanAfter piece %d: %v", step, piece, err)
		}
		pieces = append(pieces, rows...)
		if more != (len(pieces) < total) || len(rows) > 0 && last == nil {
			t.Fatalf("step %d: ScanAfter piece %d: %d rows (%d of %d), last %q, more %v", step, piece, len(rows), len(pieces), total, last, more)
		}
		if !more {
			break
		}
		after = last
	}
	if len(pieces) != len(all) {
		t.Fatalf("step %d: ScanAfter in pieces = %d rows, Scan %d", step, len(pieces), len(all))
	}
	for i := range all {
		if !rowsEqual(pieces[i], all[i]) {
			t.Fatalf("step %d: ScanAfter in pieces row %d = %v, Scan %v", step, i, pieces[i], all[i])
		}
	}
}
