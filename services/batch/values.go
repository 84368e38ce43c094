package batch

import (
	"encoding/base64"
	"fmt"
	"maps"
	"slices"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strom-io/strom/catalog"
)

// Values converts rows of a table between JSON objects (as FromJSON reads
// them and ToJSON writes them) and Go values, without Arrow in between:
// one value per column, nil for NULL, of the Go type of the column's
// Arrow type as a primary-key table's rows hold them (kv.Row): bool;
// int64 for every integer, DATE (days), TIME (µs) and TIMESTAMP (in its
// Arrow unit); float64 for DOUBLE and FLOAT (a float32 value);
// decimal128.Num (unscaled) for DECIMAL; string; []byte. The rules and
// the error messages are FromJSON's and ToJSON's (the same code converts
// each value), so a lookup that decodes its keys and encodes its rows
// here answers exactly what it would through Arrow. A Values is safe for
// concurrent use.
type Values struct {
	cols []jsonColumn
	out  []arrow.DataType // each column's Arrow type (ArrowSchema)
}

// NewValues returns the converter of schema s. An error means s is
// invalid (as for FromJSON).
func NewValues(s catalog.Schema) (*Values, error) {
	as, err := arrowSchema(s)
	if err != nil {
		return nil, err
	}
	v := &Values{cols: make([]jsonColumn, len(s.Columns)), out: make([]arrow.DataType, len(s.Columns))}
	for i, c := range s.Columns {
		v.cols[i] = newJSONColumn(c, nil)
		v.out[i] = as.Field(i).Type
	}
	return v, nil
}

// FromStruct converts a JSON object, row r of a request, to one value per
// column, with FromJSON's checks and errors for that row (a *RowError
// naming row r): a NOT NULL column missing or null, a value that does not
// fit its column (columns in table order), then a key that names no
// column.
func (v *Values) FromStruct(r int, st *structpb.Struct) ([]any, error) {
	fields := st.GetFields()
	out := make([]any, len(v.cols))
	present := 0
	for i := range v.cols {
		c := &v.cols[i]
		var x any
		pv, ok := fields[c.name]
		if ok {
			present++
			x = pv.AsInterface()
		}
		if x == nil {
			if !c.nullable {
				reason := "missing value; the column is NOT NULL"
				if ok {
					reason = "null value; the column is NOT NULL"
				}
				return nil, &RowError{Row: r, Column: c.name, Reason: reason}
			}
			continue
		}
		val, reason := c.value(x)
		if reason != "" {
			return nil, &RowError{Row: r, Column: c.name, Reason: reason}
		}
		out[i] = val
	}
	if present != len(fields) {
		return nil, unknownColumn(r, slices.Collect(maps.Keys(fields)), v.cols)
	}
	return out, nil
}

// ToStruct returns row r of rows (one value per column, as FromStruct
// returns them) as the JSON object ToJSON and structpb.NewStruct make of
// it: the columns at indexes columns, in that order, or every column when
// columns is nil. A value outside its type's domain is a *RowError naming
// row r, as in ToJSON.
func (v *Values) ToStruct(r int, row []any, columns []int) (*structpb.Struct, error) {
	n := len(columns)
	if columns == nil {
		n = len(v.cols)
	}
	st := &structpb.Struct{Fields: make(map[string]*structpb.Value, n)}
	var buf []byte
	for k := range n {
		i := k
		if columns != nil {
			i = columns[k]
		}
		name := v.cols[i].name
		if i >= len(row) || row[i] == nil {
			st.Fields[name] = structpb.NewNullValue()
			continue
		}
		js, err := v.json(r, i, row[i], &buf)
		if err != nil {
			return nil, err
		}
		if st.Fields[name], err = structpb.NewValue(js); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// json returns x, the value of column i in row r, as ToJSON writes it.
func (v *Values) json(r, i int, x any, buf *[]byte) (any, error) {
	c := &v.cols[i]
	bad := func(what string) error { return &RowError{Row: r, Column: c.name, Reason: what} }
	wrong := func() error {
		return fmt.Errorf("batch: column %q: value %v of Go type %T is not a %s", c.name, x, x, c.typ)
	}
	switch c.typ.Kind {
	case catalog.KindBoolean:
		if b, ok := x.(bool); ok {
			return b, nil
		}
	case catalog.KindTinyInt, catalog.KindSmallInt, catalog.KindInt:
		if n, ok := x.(int64); ok {
			return n, nil
		}
	case catalog.KindBigInt:
		if n, ok := x.(int64); ok {
			return jsonInt64(n), nil
		}
	case catalog.KindFloat:
		if f, ok := x.(float64); ok {
			if s, ok := nonFinite(f); ok {
				return s, nil
			}
			return float32Decimal(float32(f)), nil
		}
	case catalog.KindDouble:
		if f, ok := x.(float64); ok {
			if s, ok := nonFinite(f); ok {
				return s, nil
			}
			return f, nil
		}
	case catalog.KindDecimal:
		if n, ok := x.(decimal128.Num); ok {
			*buf = formatDecimal((*buf)[:0], n, c.typ.Scale)
			return string(*buf), nil
		}
	case catalog.KindString:
		if s, ok := x.(string); ok {
			return s, nil
		}
	case catalog.KindBytes:
		if b, ok := x.([]byte); ok {
			return base64.StdEncoding.EncodeToString(b), nil
		}
	case catalog.KindDate:
		if days, ok := x.(int64); ok {
			if !dateInDomain(days) {
				return nil, bad(fmt.Sprintf("DATE %d days from 1970-01-01 is outside 0000-01-01 .. 9999-12-31", int32(days)))
			}
			*buf = appendDate((*buf)[:0], days)
			return string(*buf), nil
		}
	case catalog.KindTime:
		if us, ok := x.(int64); ok {
			if us < 0 || us >= microsPerDay {
				return nil, bad(fmt.Sprintf("TIME %d microseconds is outside one day", us))
			}
			*buf = appendClock((*buf)[:0], us*1000, 6)
			return string(*buf), nil
		}
	case catalog.KindTimestamp, catalog.KindTimestampLTZ:
		if ts, ok := x.(int64); ok {
			dt := v.out[i].(*arrow.TimestampType)
			spec := tsSpec{unit: dt.Unit, ltz: dt.TimeZone != "", precision: unitPrecision(dt.Unit)}
			if !timestampInDomain(ts, spec) {
				return nil, bad(fmt.Sprintf("%s value %d is outside 0000-01-01 .. 9999-12-31", dt, ts))
			}
			*buf = appendTimestamp((*buf)[:0], ts, spec)
			return string(*buf), nil
		}
	default:
		return nil, fmt.Errorf("batch: column %q: unsupported type %s", c.name, v.out[i])
	}
	return nil, wrong()
}
