package batch

import (
	"encoding/base64"
	"fmt"
	"math"
	"strconv"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// maxExactJSONInt is 2^53: integers below it in magnitude survive a float64
// (JavaScript, google.protobuf.Struct) exactly and unambiguously (2^53+1
// becomes 2^53 as a float64, so FromJSON refuses float64s of 2^53 or more).
const maxExactJSONInt = 1 << 53

// ToJSON converts a record batch to one JSON object per row, keyed by column
// name, with nulls as nil. Values have the Go types bool, int64, float64
// and string (see the package doc for each SQL type's encoding), so
// the rows marshal with encoding/json and convert with structpb.NewStruct.
// FromJSON reads them back to the identical batch, also after a trip
// through encoding/json (with or without UseNumber) or google.protobuf.Struct.
//
// rec must have the types ArrowSchema produces, holding values in their
// domains (as FromJSON and DecodeIPC guarantee); an unsupported type or a
// value outside its domain (a DATE beyond year 9999, say) is an error rather
// than text FromJSON would reject.
//
// Timestamps are written with the fractional digits of their Arrow unit
// (s: 0, ms: 3, us: 6, ns: 9), since the Arrow type does not carry the
// declared precision: a TIMESTAMP(2) value reads "12:00:00.120", which
// FromJSON accepts back because the third digit is zero.
func ToJSON(rec arrow.RecordBatch) ([]map[string]any, error) {
	n := int(rec.NumRows())
	ncols := int(rec.NumCols())
	rows := make([]map[string]any, n)
	for r := range rows {
		rows[r] = make(map[string]any, ncols)
	}
	schema := rec.Schema()
	var buf []byte
	for i := range ncols {
		name := schema.Field(i).Name
		col := rec.Column(i)
		if col.Len() < n {
			return nil, fmt.Errorf("batch: column %q has %d rows, the batch %d", name, col.Len(), n)
		}
		bad := func(r int, what string) error {
			return &RowError{Row: r, Column: name, Reason: what}
		}
		// fill stores get(r) for every non-null row r, nil for the others.
		fill := func(get func(r int) any) {
			for r := range n {
				if col.IsNull(r) {
					rows[r][name] = nil
				} else {
					rows[r][name] = get(r)
				}
			}
		}
		switch a := col.(type) {
		case *array.Boolean:
			fill(func(r int) any { return a.Value(r) })
		case *array.Int8:
			fill(func(r int) any { return int64(a.Value(r)) })
		case *array.Int16:
			fill(func(r int) any { return int64(a.Value(r)) })
		case *array.Int32:
			fill(func(r int) any { return int64(a.Value(r)) })
		case *array.Int64:
			fill(func(r int) any { return jsonInt64(a.Value(r)) })
		case *array.Float32:
			fill(func(r int) any {
				v := a.Value(r)
				if s, ok := nonFinite(float64(v)); ok {
					return s
				}
				return float32Decimal(v)
			})
		case *array.Float64:
			fill(func(r int) any {
				v := a.Value(r)
				if s, ok := nonFinite(v); ok {
					return s
				}
				return v
			})
		case *array.Decimal128:
			scale := a.DataType().(*arrow.Decimal128Type).Scale
			fill(func(r int) any {
				buf = formatDecimal(buf[:0], a.Value(r), scale)
				return string(buf)
			})
		case *array.String:
			fill(func(r int) any { return a.Value(r) })
		case *array.Binary:
			fill(func(r int) any { return base64.StdEncoding.EncodeToString(a.Value(r)) })
		case *array.Date32:
			for r := range n {
				if !a.IsNull(r) && !dateInDomain(int64(a.Value(r))) {
					return nil, bad(r, fmt.Sprintf("DATE %d days from 1970-01-01 is outside 0000-01-01 .. 9999-12-31", a.Value(r)))
				}
			}
			fill(func(r int) any {
				buf = appendDate(buf[:0], int64(a.Value(r)))
				return string(buf)
			})
		case *array.Time64:
			if a.DataType().(*arrow.Time64Type).Unit != arrow.Microsecond {
				return nil, fmt.Errorf("batch: column %q: unsupported type %s", name, a.DataType())
			}
			for r := range n {
				if us := int64(a.Value(r)); !a.IsNull(r) && (us < 0 || us >= microsPerDay) {
					return nil, bad(r, fmt.Sprintf("TIME %d microseconds is outside one day", us))
				}
			}
			fill(func(r int) any {
				buf = appendClock(buf[:0], int64(a.Value(r))*1000, 6)
				return string(buf)
			})
		case *array.Timestamp:
			dt := a.DataType().(*arrow.TimestampType)
			spec := tsSpec{unit: dt.Unit, ltz: dt.TimeZone != "", precision: unitPrecision(dt.Unit)}
			for r := range n {
				if v := int64(a.Value(r)); !a.IsNull(r) && !timestampInDomain(v, spec) {
					return nil, bad(r, fmt.Sprintf("%s value %d is outside 0000-01-01 .. 9999-12-31", dt, v))
				}
			}
			fill(func(r int) any {
				buf = appendTimestamp(buf[:0], int64(a.Value(r)), spec)
				return string(buf)
			})
		default:
			return nil, fmt.Errorf("batch: column %q: unsupported type %s", name, col.DataType())
		}
	}
	return rows, nil
}

// float32Decimal returns the float64 nearest to the shortest decimal that
// reads back as v: FLOAT 0.1 is 0.1, not 0.10000000149011612 (float64(v)),
// in every JSON encoder, google.protobuf.Struct included, and FromJSON
// rounds it back to exactly v.
func float32Decimal(v float32) float64 {
	f, err := strconv.ParseFloat(strconv.FormatFloat(float64(v), 'g', -1, 32), 64)
	if err != nil {
		return float64(v) // unreachable: FormatFloat's output parses
	}
	return f
}

// unitPrecision returns the fractional-second digits of a time unit.
func unitPrecision(u arrow.TimeUnit) int32 {
	switch u {
	case arrow.Second:
		return 0
	case arrow.Millisecond:
		return 3
	case arrow.Microsecond:
		return 6
	}
	return 9
}

// jsonInt64 returns v as a number if a float64 holds it exactly, else as a
// decimal string.
func jsonInt64(v int64) any {
	if v >= maxExactJSONInt || v <= -maxExactJSONInt {
		return fmt.Sprint(v)
	}
	return v
}

// nonFinite returns the JSON string of NaN and ±Inf.
func nonFinite(v float64) (string, bool) {
	switch {
	case math.IsNaN(v):
		return textNaN, true
	case math.IsInf(v, 1):
		return textInf, true
	case math.IsInf(v, -1):
		return textNegInf, true
	}
	return "", false
}
