package kv

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/catalog/changelog"
	"github.com/strom-io/strom/services/batch"
)

func mustPrepareApply(t *testing.T, b *Bucket, offset int64, ops ...Op) []change {
	t.Helper()
	c, err := b.Prepare(ops)
	if err != nil {
		t.Fatal(err)
	}
	cl := changesOf(t, c.Record(), len(b.st.Load().schema.Columns))
	if err := b.Apply(c, offset); err != nil {
		t.Fatal(err)
	}
	return cl
}

func up(row ...any) Op  { return Op{Kind: OpUpsert, Row: r(row...)} }
func del(row ...any) Op { return Op{Kind: OpDelete, Row: r(row...)} }

func types(cl []change) string {
	var s []string
	for _, c := range cl {
		s = append(s, c.typ)
	}
	return strings.Join(s, " ")
}

func TestReopenKeepsRowsCountAndOffset(t *testing.T) {
	dir := t.TempDir()
	tbl := modelTable(nil)
	b, err := Open(dir, tbl, Options{})
	if err != nil {
		t.Fatal(err)
	}
	mustPrepareApply(t, b, 10, up(1, "a", 5, "x", 0), up(2, "a", nil, nil, 0), up(1, "b", 7, nil, 1))
	mustPrepareApply(t, b, 14, del(2, "a", nil, nil, nil))
	// Prepared but never applied: must not survive.
	if _, err := b.Prepare([]Op{up(9, "z", 1, nil, 1)}); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = openBucket(t, dir, tbl, Options{})
	if b.Count() != 2 || b.AppliedOffset() != 14 {
		t.Fatalf("after reopen: Count %d, AppliedOffset %d; want 2, 14", b.Count(), b.AppliedOffset())
	}
	rows, err := b.Lookup([]Row{{int64(1), "a"}, {int64(2), "a"}, {int64(9), "z"}})
	if err != nil {
		t.Fatal(err)
	}
	if !rowsEqual(rows[0], r(1, "a", 5, "x", 0)) || rows[1] != nil || rows[2] != nil {
		t.Fatalf("after reopen: %v", rows)
	}
}

func TestLookupsNeverSeePendingChanges(t *testing.T) {
	b := openBucket(t, t.TempDir(), modelTable(nil), Options{})
	c, err := b.Prepare([]Op{up(1, "a", 5, "x", 0)})
	if err != nil {
		t.Fatal(err)
	}
	rows, _ := b.Lookup([]Row{{int64(1), "a"}})
	if rows[0] != nil || b.Count() != 0 {
		t.Fatalf("pending change visible: %v, count %d", rows, b.Count())
	}
	// A later Prepare reads the pending value: an update, not an insert.
	c2, err := b.Prepare([]Op{up(1, "a", 6, "x", 0)})
	if err != nil {
		t.Fatal(err)
	}
	if got := types(changesOf(t, c2.Record(), 5)); got != "-U +U" {
		t.Fatalf("changelog %q, want -U +U", got)
	}
	if err := b.Apply(c2, 2); !errors.Is(err, ErrOutOfOrder) {
		t.Fatalf("Apply out of order: %v", err)
	}
	if err := b.ApplyChangelog(c.Record(), 5); !errors.Is(err, ErrOutOfOrder) {
		t.Fatalf("ApplyChangelog while pending: %v", err)
	}
	if err := b.Apply(c, 1); err != nil {
		t.Fatal(err)
	}
	if err := b.Apply(c2, 2); err != nil {
		t.Fatal(err)
	}
	rows, _ = b.Lookup([]Row{{int64(1), "a"}})
	if !rowsEqual(rows[0], r(1, "a", 6, "x", 0)) || b.Count() != 1 || b.PendingBytes() != 0 {
		t.Fatalf("after apply: %v, count %d, pending %d", rows, b.Count(), b.PendingBytes())
	}
}

func TestBufferFull(t *testing.T) {
	b := openBucket(t, t.TempDir(), modelTable(nil), Options{MaxPendingBytes: 300})
	big := strings.Repeat("x", 200)
	c, err := b.Prepare([]Op{up(1, "a", 1, big, 0), up(2, "a", 1, big, 0)}) // admitted: buffer empty
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Prepare([]Op{up(3, "a", 1, nil, 0)}); !errors.Is(err, ErrBufferFull) {
		t.Fatalf("err = %v, want ErrBufferFull", err)
	}
	if err := b.Apply(c, 3); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Prepare([]Op{up(3, "a", 1, nil, 0)}); err != nil {
		t.Fatalf("after Apply: %v", err)
	}
}

func TestDiscard(t *testing.T) {
	b := openBucket(t, t.TempDir(), modelTable(nil), Options{})
	c1, _ := b.Prepare([]Op{up(1, "a", 1, nil, 0)})
	c2, _ := b.Prepare([]Op{up(1, "a", 2, nil, 0)})
	c3, _ := b.Prepare([]Op{up(2, "a", 3, nil, 0)})
	if n, err := b.Discard(c2); n != 2 || err != nil {
		t.Fatalf("Discard = %d, %v", n, err)
	}
	if err := b.Apply(c3, 9); !errors.Is(err, ErrDiscarded) {
		t.Fatalf("Apply(c3) = %v", err)
	}
	// Re-prepared, c2's op reads c1's pending row again.
	c2, err := b.Prepare([]Op{up(1, "a", 2, nil, 0)})
	if err != nil {
		t.Fatal(err)
	}
	if got := types(changesOf(t, c2.Record(), 5)); got != "-U +U" {
		t.Fatalf("re-prepared changelog %q", got)
	}
	if err := b.Apply(c1, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Discard(c1); !errors.Is(err, ErrOutOfOrder) {
		t.Fatalf("Discard applied: %v", err)
	}
}

func TestBadInput(t *testing.T) {
	b := openBucket(t, t.TempDir(), modelTable(nil), Options{})
	for _, tc := range []struct {
		name string
		ops  []Op
		err  error
		msg  string
	}{
		{"missing key column", []Op{{Kind: OpUpsert, Row: r(1, "a", 1, nil)}}, ErrInvalidOp, "4 values for 5 columns"},
		{"null key", []Op{up(1, nil, 1, nil, 0)}, ErrInvalidOp, `primary-key column "bk" is NULL`},
		{"null NOT NULL column", []Op{up(1, "a", 1, nil, nil)}, ErrInvalidOp, `column "req" is NOT NULL`},
		{"wrong type", []Op{up(1, "a", "1", nil, 0)}, ErrInvalidOp, `column "v": want int64, got string`},
		{"out of range", []Op{up(int64(1)<<40, "a", 1, nil, 0)}, ErrInvalidOp, `column "id": 1099511627776 out of range`},
		{"partial without key", []Op{{Kind: OpUpsert, Row: r(1, "a", 1, nil, 0), TargetColumns: []int{0, 2}}}, ErrInvalidOp, `must include primary-key column "bk"`},
		{"unknown target column", []Op{{Kind: OpUpsert, Row: r(1, "a", 1, nil, 0), TargetColumns: []int{0, 1, 7}}}, ErrInvalidOp, "target column index 7"},
		{"partial new key without NOT NULL", []Op{{Kind: OpUpsert, Row: r(1, "a", 1, nil, 0), TargetColumns: []int{0, 1, 2}}}, ErrInvalidOp, `NOT NULL column "req"`},
		{"second op bad, first not staged", []Op{up(5, "a", 1, nil, 0), up(1, nil, 1, nil, 0)}, ErrInvalidOp, "op 1:"},
	} {
		_, err := b.Prepare(tc.ops)
		if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: err = %v, want %v with %q", tc.name, err, tc.err, tc.msg)
		}
	}
	if b.PendingBytes() != 0 {
		t.Fatalf("a failed Prepare staged %d bytes", b.PendingBytes())
	}
	if _, err := TargetColumns(b.st.Load().schema, []string{"id", "nope"}); !errors.Is(err, ErrInvalidOp) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("TargetColumns unknown: %v", err)
	}
	if _, err := b.Lookup([]Row{{int64(1)}}); !errors.Is(err, ErrInvalidOp) {
		t.Errorf("Lookup short key: %v", err)
	}
	// Opening with a merge engine that cannot apply names the column.
	tbl := modelTable(map[string]string{catalog.PropMergeEngine: "aggregation", PropAggregatePrefix + "s": "sum"})
	if _, err := Open(t.TempDir(), tbl, Options{}); !errors.Is(err, ErrMergeEngine) || !strings.Contains(err.Error(), `"s"`) {
		t.Errorf("Open sum on string: %v", err)
	}
	log := modelTable(nil)
	log.Schema.PrimaryKey = nil
	if _, err := Open(t.TempDir(), log, Options{}); !errors.Is(err, ErrNoPrimaryKey) {
		t.Errorf("Open log table: %v", err)
	}
}

func TestEnginesThroughBucket(t *testing.T) {
	for _, tc := range []struct {
		props map[string]string
		want  string // changelog types of the three batches, "|"-separated
		final Row
	}{
		{nil, "+I|-U +U|-D", nil},
		{map[string]string{catalog.PropMergeEngine: "first_row"}, "+I||-D", nil},
		{map[string]string{catalog.PropMergeEngine: "versioned", catalog.PropMergeEngineVersionColumn: "req"}, "+I||-D", nil},
		{map[string]string{catalog.PropMergeEngine: "aggregation", PropAggregatePrefix + "v": "sum"}, "+I|-U +U|-D", nil},
	} {
		b := openBucket(t, t.TempDir(), modelTable(tc.props), Options{})
		var got []string
		got = append(got, types(mustPrepareApply(t, b, 1, up(1, "a", 5, nil, 2))))
		got = append(got, types(mustPrepareApply(t, b, 2, up(1, "a", 6, nil, 1))))
		got = append(got, types(mustPrepareApply(t, b, 3, del(1, "a", nil, nil, nil), del(2, "a", nil, nil, nil))))
		if s := strings.Join(got, "|"); s != tc.want || b.Count() != 0 {
			t.Errorf("%v: changelog %q, count %d; want %q, 0", tc.props, s, b.Count(), tc.want)
		}
	}
	// Aggregation sums across batches.
	b := openBucket(t, t.TempDir(), modelTable(map[string]string{catalog.PropMergeEngine: "aggregation", PropAggregatePrefix + "v": "sum"}), Options{})
	mustPrepareApply(t, b, 1, up(1, "a", 5, nil, 2), up(1, "a", 6, "s", 3))
	rows, _ := b.Lookup([]Row{{int64(1), "a"}})
	if !rowsEqual(rows[0], r(1, "a", 11, "s", 3)) {
		t.Fatalf("aggregated row %v", rows[0])
	}
}

func TestArrowRoundTrip(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(t, 0)
	tbl := modelTable(nil)
	b := openBucket(t, t.TempDir(), tbl, Options{Allocator: mem})
	rec, err := batch.FromJSON(mem, tbl.Schema, []map[string]any{
		{"id": 1, "bk": "a", "v": 10, "s": "x", "req": 0},
		{"id": 2, "bk": "a", "v": nil, "s": nil, "req": 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	ops, err := OpsFromRecord(tbl.Schema, rec, OpUpsert, nil)
	rec.Release()
	if err != nil {
		t.Fatal(err)
	}
	mustPrepareApply(t, b, 2, ops...)
	rows, err := b.PrefixLookup([]any{"a"})
	if err != nil {
		t.Fatal(err)
	}
	out, err := b.RowsToRecord(append(rows, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Release()
	js, err := batch.ToJSON(out)
	if err != nil {
		t.Fatal(err)
	}
	want := []map[string]any{
		{"id": int64(1), "bk": "a", "v": int64(10), "s": "x", "req": int64(0)},
		{"id": int64(2), "bk": "a", "v": nil, "s": nil, "req": int64(1)},
	}
	if len(js) != 2 {
		t.Fatalf("ToJSON = %v", js)
	}
	for i := range js {
		for k, v := range want[i] {
			if g := js[i][k]; !reflect.DeepEqual(normalize(g), v) {
				t.Errorf("row %d %s = %#v, want %#v", i, k, g, v)
			}
		}
	}
	if got := ChangelogSchema(tbl.Schema).Field(5).Name; got != changelog.Column {
		t.Errorf("changelog schema last field %q", got)
	}
}

// normalize maps JSON numbers of any Go integer type to int64.
func normalize(v any) any {
	switch v := v.(type) {
	case int:
		return int64(v)
	case int32:
		return int64(v)
	case float64:
		return int64(v)
	}
	return v
}

// TestConcurrentReads runs lookups, prefix lookups and scans while writes
// are prepared and applied and the bucket is closed; run it with -race.
func TestConcurrentReads(t *testing.T) {
	b := openBucket(t, t.TempDir(), modelTable(nil), Options{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 300 {
			c, err := b.Prepare([]Op{up(i%7, "a", i, nil, 0), del((i+3)%7, "a", nil, nil, nil)})
			if err != nil {
				t.Error(err)
				return
			}
			if err := b.Apply(c, int64(i+1)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for {
		select {
		case <-done:
			b.Close()
			if _, err := b.Lookup([]Row{{int64(1), "a"}}); !errors.Is(err, ErrClosed) {
				t.Fatalf("Lookup after Close: %v", err)
			}
			if _, err := b.Prepare(nil); !errors.Is(err, ErrClosed) {
				t.Fatalf("Prepare after Close: %v", err)
			}
			return
		default:
		}
		if _, err := b.Lookup([]Row{{int64(1), "a"}}); err != nil {
			t.Fatal(err)
		}
		rows, err := b.PrefixLookup([]any{"a"})
		if err != nil || len(rows) > 7 {
			t.Fatalf("PrefixLookup: %d rows, %v", len(rows), err)
		}
		if n := b.Count(); n < 0 || n > 7 {
			t.Fatalf("Count %d", n)
		}
	}
}
