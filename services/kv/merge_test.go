package kv

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/decimal128"

	"github.com/strom-io/strom/catalog"
)

func mergeTable(props map[string]string) catalog.Table {
	return catalog.Table{TableSpec: catalog.TableSpec{
		Name: "t",
		Schema: catalog.Schema{
			Columns: []catalog.Column{
				{Name: "id", Type: catalog.BigInt},
				{Name: "v", Type: catalog.BigInt, Nullable: true},
				{Name: "s", Type: catalog.String, Nullable: true},
				{Name: "ver", Type: catalog.Int, Nullable: true},
				{Name: "n", Type: catalog.BigInt, Nullable: true},
				{Name: "d", Type: catalog.Decimal(4, 1), Nullable: true},
				{Name: "req", Type: catalog.Int},
			},
			PrimaryKey: []string{"id"},
		},
		Properties: props,
	}}
}

func mustMerger(t *testing.T, props map[string]string) *Merger {
	t.Helper()
	m, err := NewMerger(mergeTable(props))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func r(v ...any) Row {
	for i, x := range v {
		switch x := x.(type) {
		case int:
			v[i] = int64(x)
		}
	}
	return Row(v)
}

func TestMergeEngines(t *testing.T) {
	agg := map[string]string{
		catalog.PropMergeEngine:     "aggregation",
		PropAggregatePrefix + "v":   "sum",
		PropAggregatePrefix + "s":   "max",
		PropAggregatePrefix + "ver": "first_value",
		PropAggregatePrefix + "n":   "count",
		PropAggregatePrefix + "d":   "sum",
		PropAggregatePrefix + "req": "last_value",
	}
	d := decimal128.FromI64
	for _, tc := range []struct {
		name     string
		props    map[string]string
		old, new Row
		target   []int
		want     Row
		emit     bool
		err      error
	}{
		{name: "last_row insert", old: nil, new: r(1, 2, "a", 3, 4, nil, 0), want: r(1, 2, "a", 3, 4, nil, 0), emit: true},
		{name: "last_row replace", old: r(1, 2, "a", 3, 4, nil, 0), new: r(1, nil, "b", 3, 4, nil, 0), want: r(1, nil, "b", 3, 4, nil, 0), emit: true},
		{name: "last_row identical is a no-op", old: r(1, 2, "a", 3, 4, nil, 0), new: r(1, 2, "a", 3, 4, nil, 0), want: r(1, 2, "a", 3, 4, nil, 0), emit: false},
		{name: "partial keeps the rest", old: r(1, 2, "a", 3, 4, nil, 0), new: r(1, 9, nil, nil, nil, nil, 0), target: []int{0, 1}, want: r(1, 9, "a", 3, 4, nil, 0), emit: true},
		{name: "partial of a new key nulls the rest", old: nil, new: r(1, 9, "x", nil, nil, nil, 5), target: []int{0, 1, 6}, want: r(1, 9, nil, nil, nil, nil, 5), emit: true},
		{name: "partial of a new key without a NOT NULL column", old: nil, new: r(1, 9, nil, nil, nil, nil, 0), target: []int{0, 1}, err: ErrInvalidOp},
		{name: "first_row keeps old", props: map[string]string{catalog.PropMergeEngine: "first_row"}, old: r(1, 2, "a", 3, 4, nil, 0), new: r(1, 5, "b", 3, 4, nil, 0), want: r(1, 2, "a", 3, 4, nil, 0), emit: false},
		{name: "first_row inserts", props: map[string]string{catalog.PropMergeEngine: "first_row"}, new: r(1, 5, "b", 3, 4, nil, 0), want: r(1, 5, "b", 3, 4, nil, 0), emit: true},
		{name: "first_row partial", props: map[string]string{catalog.PropMergeEngine: "first_row"}, new: r(1, 5, "b", 3, 4, nil, 0), target: []int{0, 1, 6}, err: ErrMergeEngine},
		{name: "versioned newer wins", props: versioned, old: r(1, 2, "a", 3, nil, nil, 0), new: r(1, 5, "b", 4, nil, nil, 0), want: r(1, 5, "b", 4, nil, nil, 0), emit: true},
		{name: "versioned tie: new wins", props: versioned, old: r(1, 2, "a", 3, nil, nil, 0), new: r(1, 5, "b", 3, nil, nil, 0), want: r(1, 5, "b", 3, nil, nil, 0), emit: true},
		{name: "versioned older loses", props: versioned, old: r(1, 2, "a", 3, nil, nil, 0), new: r(1, 5, "b", 2, nil, nil, 0), want: r(1, 2, "a", 3, nil, nil, 0), emit: false},
		{name: "versioned null version", props: versioned, old: nil, new: r(1, 5, "b", nil, nil, nil, 0), err: ErrInvalidOp},
		{name: "aggregation first row", props: agg, new: r(1, 5, "b", 7, 100, d(15), 1), want: r(1, 5, "b", 7, 1, d(15), 1), emit: true},
		{name: "aggregation merge", props: agg, old: r(1, 5, "b", 7, 1, d(15), 1), new: r(1, 6, "a", 8, 100, d(-5), 2), want: r(1, 11, "b", 7, 2, d(10), 2), emit: true},
		{name: "aggregation nulls skipped by sum and max", props: agg, old: r(1, 5, "b", 7, 1, nil, 1), new: r(1, nil, nil, 8, nil, d(3), 2), want: r(1, 5, "b", 7, 2, d(3), 2), emit: true},
		{name: "aggregation partial aggregates only targets", props: agg, old: r(1, 5, "b", 7, 1, d(1), 1), new: r(1, 6, "z", nil, nil, nil, 0), target: []int{0, 1, 2}, want: r(1, 11, "z", 7, 1, d(1), 1), emit: true},
		{name: "aggregation decimal overflow", props: agg, old: r(1, 5, "b", 7, 1, d(9000), 1), new: r(1, 6, "a", 8, 1, d(1000), 2), err: ErrInvalidOp},
		{name: "aggregation default last_non_null", props: map[string]string{catalog.PropMergeEngine: "aggregation"}, old: r(1, 5, "b", 7, 1, nil, 1), new: r(1, nil, "c", nil, 2, nil, 3), want: r(1, 5, "c", 7, 2, nil, 3), emit: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := mustMerger(t, tc.props)
			got, emit, err := m.Merge(tc.old, tc.new, tc.target)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !rowsEqual(got, tc.want) || emit != tc.emit {
				t.Fatalf("Merge = %v, %v; want %v, %v", got, emit, tc.want, tc.emit)
			}
		})
	}
}

var versioned = map[string]string{catalog.PropMergeEngine: "versioned", catalog.PropMergeEngineVersionColumn: "ver"}

func TestSumOverflow(t *testing.T) {
	m := mustMerger(t, map[string]string{catalog.PropMergeEngine: "aggregation", PropAggregatePrefix + "ver": "sum"})
	_, _, err := m.Merge(r(1, nil, nil, 2147483000, nil, nil, 0), r(1, nil, nil, 1000, nil, nil, 0), nil)
	if !errors.Is(err, ErrInvalidOp) || !strings.Contains(err.Error(), `"ver"`) {
		t.Fatalf("err = %v", err)
	}
}

// TestFloatSumOverflow: a FLOAT or DOUBLE sum of finite values that is
// infinite is refused like an integer overflow; an infinite input stays
// infinite, and NaN propagates.
func TestFloatSumOverflow(t *testing.T) {
	tbl := catalog.Table{TableSpec: catalog.TableSpec{
		Name: "t",
		Schema: catalog.Schema{
			Columns: []catalog.Column{
				{Name: "id", Type: catalog.BigInt},
				{Name: "f", Type: catalog.Float, Nullable: true},
				{Name: "d", Type: catalog.Double, Nullable: true},
			},
			PrimaryKey: []string{"id"},
		},
		Properties: map[string]string{catalog.PropMergeEngine: "aggregation", PropAggregatePrefix + "f": "sum", PropAggregatePrefix + "d": "sum"},
	}}
	m, err := NewMerger(tbl)
	if err != nil {
		t.Fatal(err)
	}
	maxF := float64(math.MaxFloat32)
	inf := math.Inf(1)
	for _, tc := range []struct {
		name     string
		old, new Row
		want     Row    // nil: refused
		col      string // named in the refusal
	}{
		{"float overflow", r(1, maxF, nil), r(1, maxF, nil), nil, `"f"`},
		{"float negative overflow", r(1, -maxF, nil), r(1, -maxF, nil), nil, `"f"`},
		{"double overflow", r(1, nil, math.MaxFloat64), r(1, nil, math.MaxFloat64), nil, `"d"`},
		{"float in range", r(1, 1.5, 2.5), r(1, 2.0, 0.5), r(1, 3.5, 3.0), ""},
		{"float near max", r(1, maxF, nil), r(1, -maxF, nil), r(1, 0.0, nil), ""},
		{"infinite input", r(1, inf, inf), r(1, 1.0, 1.0), r(1, inf, inf), ""},
		{"nan input", r(1, nil, math.NaN()), r(1, nil, 1.0), r(1, nil, math.NaN()), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _, err := m.Merge(tc.old, tc.new, nil)
			if tc.want == nil {
				if !errors.Is(err, ErrInvalidOp) || !strings.Contains(err.Error(), tc.col) || !strings.Contains(err.Error(), "sum overflows") {
					t.Fatalf("Merge = %v, %v; want ErrInvalidOp: column %s: sum overflows", got, err, tc.col)
				}
				return
			}
			if err != nil || !rowsEqual(got, tc.want) {
				t.Fatalf("Merge = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestNewMergerErrors(t *testing.T) {
	for _, tc := range []struct {
		props map[string]string
		want  string // in the message
	}{
		{map[string]string{catalog.PropMergeEngine: "aggregation", PropAggregatePrefix + "s": "sum"}, `column "s": sum needs a numeric column, not STRING`},
		{map[string]string{catalog.PropMergeEngine: "aggregation", PropAggregatePrefix + "s": "count"}, `column "s": count needs an integer column`},
		{map[string]string{catalog.PropMergeEngine: "aggregation", PropAggregatePrefix + "id": "sum"}, `column "id" is a primary-key column`},
		{map[string]string{catalog.PropMergeEngine: "aggregation", PropAggregatePrefix + "nope": "sum"}, `no column "nope"`},
		{map[string]string{catalog.PropMergeEngine: "aggregation", PropAggregatePrefix + "v": "avg"}, `unknown aggregation "avg"`},
		{map[string]string{PropAggregatePrefix + "v": "sum"}, `only allowed with table.merge-engine=aggregation`},
		{map[string]string{catalog.PropMergeEngine: "versioned"}, `needs a version column`},
		{map[string]string{catalog.PropMergeEngine: "versioned", catalog.PropMergeEngineVersionColumn: "s"}, `version column "s" has type STRING`},
		{map[string]string{catalog.PropMergeEngine: "newest"}, `unknown merge engine "newest"`},
	} {
		_, err := NewMerger(mergeTable(tc.props))
		if !errors.Is(err, ErrMergeEngine) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want ErrMergeEngine with %q", tc.props, err, tc.want)
		}
	}
	log := mergeTable(nil)
	log.Schema.PrimaryKey = nil
	if _, err := NewMerger(log); !errors.Is(err, ErrNoPrimaryKey) {
		t.Errorf("log table: err = %v", err)
	}
}
