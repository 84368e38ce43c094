package kv

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/apache/arrow-go/v18/arrow/decimal128"

	"github.com/strom-io/strom/catalog"
)

// PropAggregatePrefix starts the per-column aggregation properties of the
// aggregation merge engine: "table.merge-engine.aggregate.<column>" = sum,
// max, min, last_value, last_non_null_value, first_value or count. A
// non-key column without one aggregates with last_non_null_value.
const PropAggregatePrefix = catalog.PropMergeEngine + ".aggregate."

// Engine is a merge engine: how an upsert combines with the row its key
// already has.
type Engine uint8

// Merge engines; see docs/kv.md.
const (
	LastRow     Engine = iota // the new row replaces the old one
	FirstRow                  // the old row stays; upserts of a present key are no-ops
	Versioned                 // the row with the greater version stays; a tie goes to the new row
	Aggregation               // each non-key column combines old and new by its AggFunc
)

var engineNames = [...]string{LastRow: "last_row", FirstRow: "first_row", Versioned: "versioned", Aggregation: "aggregation"}

// String returns the property value naming e, e.g. "first_row".
func (e Engine) String() string { return engineNames[e] }

// AggFunc is the aggregation of one column under the Aggregation engine.
type AggFunc uint8

// Aggregation functions. In each, old is the column's stored value and new
// the upserted one; NULL inputs are skipped by sum, max and min (both NULL
// gives NULL).
const (
	AggNone             AggFunc = iota // key columns
	AggLastNonNullValue                // new unless NULL, else old (the default)
	AggLastValue                       // new, even NULL
	AggFirstValue                      // old (even NULL) once the row exists
	AggSum                             // old + new; numeric columns; overflow is an error
	AggMax                             // the greater
	AggMin                             // the smaller
	AggCount                           // rows merged into the key: 1, then old + 1; integer columns; the value sent is ignored
)

var aggNames = map[string]AggFunc{
	"last_non_null_value": AggLastNonNullValue,
	"last_value":          AggLastValue,
	"first_value":         AggFirstValue,
	"sum":                 AggSum,
	"max":                 AggMax,
	"min":                 AggMin,
	"count":               AggCount,
}

// Merger applies a table's merge engine. It is immutable and safe for
// concurrent use.
type Merger struct {
	schema  catalog.Schema
	engine  Engine
	version int       // Versioned: index of the version column
	aggs    []AggFunc // Aggregation: per column, AggNone for key columns
	isKey   []bool
}

// NewMerger reads the merge engine of a primary-key table from its
// properties and checks that it can apply. Errors wrap ErrMergeEngine and
// name the property and column: an unknown engine, versioned without a
// usable version column, an aggregation property without the aggregation
// engine, on an unknown or key column, with an unknown function, sum on a
// non-numeric column or count on a non-integer one.
func NewMerger(t catalog.Table) (*Merger, error) {
	s := t.Schema
	if len(s.PrimaryKey) == 0 {
		return nil, fmt.Errorf("%w: table %q", ErrNoPrimaryKey, t.Name)
	}
	m := &Merger{schema: s, version: -1, isKey: make([]bool, len(s.Columns))}
	for _, k := range s.PrimaryKey {
		i := columnIndex(s, k)
		if i < 0 {
			return nil, fmt.Errorf("%w: primary-key column %q is not in the schema", ErrInvalidOp, k)
		}
		m.isKey[i] = true
	}
	fail := func(format string, args ...any) (*Merger, error) {
		return nil, fmt.Errorf("%w: "+format, append([]any{ErrMergeEngine}, args...)...)
	}
	props := t.Properties
	switch v := props[catalog.PropMergeEngine]; v {
	case "", "last_row":
		m.engine = LastRow
	case "first_row":
		m.engine = FirstRow
	case "versioned":
		m.engine = Versioned
		col, ok := props[catalog.PropMergeEngineVersionColumn]
		if !ok {
			return fail("the versioned merge engine needs a version column (%s)", catalog.PropMergeEngineVersionColumn)
		}
		m.version = columnIndex(s, col)
		if m.version < 0 {
			return fail("%s: no column %q", catalog.PropMergeEngineVersionColumn, col)
		}
		if typ := s.Columns[m.version].Type; !typ.IsInteger() && !typ.IsTimestamp() {
			return fail("version column %q has type %s; want an integer or timestamp type", col, typ)
		}
	case "aggregation":
		m.engine = Aggregation
	default:
		return fail("%s: unknown merge engine %q; want last_row, first_row, versioned or aggregation", catalog.PropMergeEngine, v)
	}
	if m.engine == Aggregation {
		m.aggs = make([]AggFunc, len(s.Columns))
		for i := range m.aggs {
			if !m.isKey[i] {
				m.aggs[i] = AggLastNonNullValue
			}
		}
	}
	keys := make([]string, 0, len(props))
	for k := range props {
		if strings.HasPrefix(k, PropAggregatePrefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		col, fn := strings.TrimPrefix(k, PropAggregatePrefix), props[k]
		if m.engine != Aggregation {
			return fail("%s is only allowed with %s=aggregation", k, catalog.PropMergeEngine)
		}
		i := columnIndex(s, col)
		if i < 0 {
			return fail("%s: no column %q", k, col)
		}
		if m.isKey[i] {
			return fail("%s: column %q is a primary-key column; key columns are not aggregated", k, col)
		}
		f, ok := aggNames[fn]
		if !ok {
			return fail("%s: unknown aggregation %q; want sum, max, min, last_value, last_non_null_value, first_value or count", k, fn)
		}
		typ := s.Columns[i].Type
		switch f {
		case AggSum:
			if !isNumeric(typ) {
				return fail("column %q: sum needs a numeric column, not %s", col, typ)
			}
		case AggCount:
			if !typ.IsInteger() {
				return fail("column %q: count needs an integer column, not %s", col, typ)
			}
		}
		m.aggs[i] = f
	}
	return m, nil
}

func isNumeric(t catalog.Type) bool {
	switch t.Kind {
	case catalog.KindFloat, catalog.KindDouble, catalog.KindDecimal:
		return true
	}
	return t.IsInteger()
}

func columnIndex(s catalog.Schema, name string) int {
	return slices.IndexFunc(s.Columns, func(c catalog.Column) bool { return c.Name == name })
}

// Engine returns the merge engine.
func (m *Merger) Engine() Engine { return m.engine }

// SupportsPartialUpdate reports whether upserts may name target columns:
// under last_row and aggregation, not under first_row or versioned (whose
// decision needs whole rows).
func (m *Merger) SupportsPartialUpdate() bool { return m.engine == LastRow || m.engine == Aggregation }

// Merge combines an upsert of row new into old, the key's current row (nil
// if the key has none). target is nil for a whole-row upsert, or the
// indexes of the columns a partial update sets (including every key column;
// the caller checks); the other columns keep old's values, or are NULL for a
// new key. It returns the resulting row and whether it differs from old (a
// key without a row always changes). new and old must be valid rows of the
// schema; Merge does not modify them.
//
// Errors: a partial update of a new key that leaves a NOT NULL column
// without a value, a NULL version under versioned, and a sum overflowing
// its column type wrap ErrInvalidOp; a partial update under first_row or
// versioned wraps ErrMergeEngine.
func (m *Merger) Merge(old, new Row, target []int) (Row, bool, error) {
	if target != nil && !m.SupportsPartialUpdate() {
		return nil, false, fmt.Errorf("%w: partial updates are not supported by the %s merge engine", ErrMergeEngine, m.engine)
	}
	var res Row
	switch m.engine {
	case LastRow:
		res = overlay(old, new, target)
	case FirstRow:
		if old != nil {
			return old, false, nil
		}
		res = new
	case Versioned:
		v := new[m.version]
		if v == nil {
			return nil, false, fmt.Errorf("%w: version column %q is NULL", ErrInvalidOp, m.schema.Columns[m.version].Name)
		}
		if old != nil && old[m.version] != nil && v.(int64) < old[m.version].(int64) {
			return old, false, nil
		}
		res = new
	case Aggregation:
		res = overlay(old, new, target)
		if old != nil || m.hasCount() {
			if err := m.aggregate(res, old, new, target); err != nil {
				return nil, false, err
			}
		}
	}
	if old == nil && target != nil {
		for i, c := range m.schema.Columns {
			if res[i] == nil && !c.Nullable && !slices.Contains(target, i) {
				return nil, false, fmt.Errorf("%w: partial update of a new key leaves NOT NULL column %q without a value; include it in the target columns", ErrInvalidOp, c.Name)
			}
		}
	}
	return res, old == nil || !rowsEqual(old, res), nil
}

func (m *Merger) hasCount() bool { return slices.Contains(m.aggs, AggCount) }

// overlay returns a new row: new where target (nil: all columns), old (or
// NULL) elsewhere.
func overlay(old, new Row, target []int) Row {
	if target == nil {
		return slices.Clone(new)
	}
	res := make(Row, len(new))
	if old != nil {
		copy(res, old)
	}
	for _, c := range target {
		res[c] = new[c]
	}
	return res
}

// aggregate sets res's target columns to the aggregation of old (nil: no
// row) and new.
func (m *Merger) aggregate(res, old, new Row, target []int) error {
	for i, f := range m.aggs {
		if f == AggNone || (target != nil && !slices.Contains(target, i)) {
			continue
		}
		var o any
		if old != nil {
			o = old[i]
		}
		n := new[i]
		switch f {
		case AggLastValue:
			res[i] = n
		case AggLastNonNullValue:
			if n == nil {
				n = o
			}
			res[i] = n
		case AggFirstValue:
			if old != nil {
				res[i] = o
			} else {
				res[i] = n
			}
		case AggCount:
			c := int64(1)
			if o != nil {
				c = o.(int64) + 1
				if _, hi := intRange(m.schema.Columns[i].Type.Kind); c > hi || c < 1 {
					return fmt.Errorf("%w: column %q: count overflows %s", ErrInvalidOp, m.schema.Columns[i].Name, m.schema.Columns[i].Type)
				}
			}
			res[i] = c
		case AggMax, AggMin:
			switch {
			case o == nil:
				res[i] = n
			case n == nil:
				res[i] = o
			default:
				c := compareValues(n, o)
				if (f == AggMax) == (c > 0) && c != 0 {
					res[i] = n
				} else {
					res[i] = o
				}
			}
		case AggSum:
			switch {
			case o == nil:
				res[i] = n
			case n == nil:
				res[i] = o
			default:
				v, ok := add(m.schema.Columns[i].Type, o, n)
				if !ok {
					return fmt.Errorf("%w: column %q: sum overflows %s", ErrInvalidOp, m.schema.Columns[i].Name, m.schema.Columns[i].Type)
				}
				res[i] = v
			}
		}
	}
	return nil
}

// add adds two non-null values of numeric type t; ok is false on overflow.
func add(t catalog.Type, a, b any) (any, bool) {
	switch t.Kind {
	case catalog.KindFloat, catalog.KindDouble:
		x, y := a.(float64), b.(float64)
		s := x + y
		if t.Kind == catalog.KindFloat {
			s = float64(float32(s))
		}
		// Finite inputs whose sum is infinite overflowed; an infinite
		// input (a value sent as Infinity) stays infinite.
		return s, !math.IsInf(s, 0) || math.IsInf(x, 0) || math.IsInf(y, 0)
	case catalog.KindDecimal:
		s := a.(decimal128.Num).Add(b.(decimal128.Num))
		return s, s.FitsInPrecision(t.Precision)
	}
	x, y := a.(int64), b.(int64)
	s := x + y
	if (x > 0 && y > 0 && s < 0) || (x < 0 && y < 0 && s >= 0) {
		return nil, false
	}
	lo, hi := intRange(t.Kind)
	return s, s >= lo && s <= hi
}

// rowsEqual reports whether two rows hold the same values (NaN equals NaN).
func rowsEqual(a, b Row) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if (a[i] == nil) != (b[i] == nil) {
			return false
		}
		if a[i] != nil && compareValues(a[i], b[i]) != 0 {
			return false
		}
	}
	return true
}
