package batch

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/strom-io/strom/catalog"
)

// FromJSON builds one record batch, with schema ArrowSchema(s), from rows of
// JSON objects keyed by column name, as decoded by encoding/json (ideally
// with Decoder.UseNumber) or by structpb.Struct.AsMap. The package doc lists
// the accepted encoding of each type.
//
// A row may omit a nullable column or give it as nil; every key must name a
// column (exactly, case-sensitively). The first bad value aborts the
// conversion with a *RowError naming its row and column; then nothing is
// allocated from mem and the batch is nil. The caller releases the batch.
// Rows are checked in order; within a row, columns in table order, then
// unknown keys. An error that is not a *RowError means s is invalid.
func FromJSON(mem memory.Allocator, s catalog.Schema, rows []map[string]any) (arrow.RecordBatch, error) {
	as, err := arrowSchema(s)
	if err != nil {
		return nil, err
	}
	rb := array.NewRecordBuilder(mem, as)
	defer rb.Release()
	cols := make([]jsonColumn, len(s.Columns))
	for i, c := range s.Columns {
		cols[i] = newJSONColumn(c, rb.Field(i))
		rb.Field(i).Reserve(len(rows))
	}
	for r, row := range rows {
		present := 0
		for i := range cols {
			c := &cols[i]
			v, ok := row[c.name]
			if ok {
				present++
			}
			if v == nil {
				if !c.nullable {
					reason := "missing value; the column is NOT NULL"
					if ok {
						reason = "null value; the column is NOT NULL"
					}
					return nil, &RowError{Row: r, Column: c.name, Reason: reason}
				}
				c.b.AppendNull()
				continue
			}
			if reason := c.append(v); reason != "" {
				return nil, &RowError{Row: r, Column: c.name, Reason: reason}
			}
		}
		if present != len(row) {
			return nil, unknownColumn(r, slices.Collect(maps.Keys(row)), cols)
		}
	}
	return rb.NewRecordBatch(), nil
}

// unknownColumn reports the first (by name) of the keys of row r that is
// not a column.
func unknownColumn(r int, keys []string, cols []jsonColumn) error {
	var unknown []string
	for _, k := range keys {
		if !slices.ContainsFunc(cols, func(c jsonColumn) bool { return c.name == k }) {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)
	name := unknown[0]
	reason := "unknown column"
	for _, c := range cols {
		if strings.EqualFold(c.name, name) {
			reason = fmt.Sprintf("unknown column (did you mean %q?)", c.name)
			break
		}
	}
	return &RowError{Row: r, Column: name, Reason: reason}
}

// jsonColumn appends JSON values to one column's builder.
type jsonColumn struct {
	name     string
	nullable bool
	typ      catalog.Type
	b        array.Builder
	ts       tsSpec
}

func newJSONColumn(c catalog.Column, b array.Builder) jsonColumn {
	jc := jsonColumn{name: c.Name, nullable: c.Nullable, typ: c.Type, b: b}
	if c.Type.IsTimestamp() {
		jc.ts = tsSpec{
			unit:      timestampUnit(c.Type.Precision),
			precision: c.Type.Precision,
			ltz:       c.Type.Kind == catalog.KindTimestampLTZ,
		}
	}
	return jc
}

// want explains a value that does not fit the column's type; detail may be
// empty.
func (c *jsonColumn) want(v any, detail string) string {
	s := "want " + c.typ.String() + ", got " + describe(v)
	if detail != "" {
		s += ": " + detail
	}
	return s
}

// intRange returns the value range of an integer kind.
func intRange(k catalog.Kind) (int64, int64) {
	switch k {
	case catalog.KindTinyInt:
		return math.MinInt8, math.MaxInt8
	case catalog.KindSmallInt:
		return math.MinInt16, math.MaxInt16
	case catalog.KindInt:
		return math.MinInt32, math.MaxInt32
	}
	return math.MinInt64, math.MaxInt64
}

// append converts v (not nil) and appends it, or returns why it does not fit.
func (c *jsonColumn) append(v any) string {
	switch c.typ.Kind {
	case catalog.KindBoolean:
		b, ok := v.(bool)
		if !ok {
			return c.want(v, "")
		}
		c.b.(*array.BooleanBuilder).Append(b)
	case catalog.KindTinyInt, catalog.KindSmallInt, catalog.KindInt, catalog.KindBigInt:
		lo, hi := intRange(c.typ.Kind)
		n, reason := c.integer(v, lo, hi)
		if reason != "" {
			return reason
		}
		switch b := c.b.(type) {
		case *array.Int8Builder:
			b.Append(int8(n))
		case *array.Int16Builder:
			b.Append(int16(n))
		case *array.Int32Builder:
			b.Append(int32(n))
		case *array.Int64Builder:
			b.Append(n)
		}
	case catalog.KindFloat, catalog.KindDouble:
		f, reason := c.float(v, c.floatBits())
		if reason != "" {
			return reason
		}
		if c.typ.Kind == catalog.KindFloat {
			c.b.(*array.Float32Builder).Append(float32(f))
		} else {
			c.b.(*array.Float64Builder).Append(f)
		}
	case catalog.KindDecimal:
		n, reason := c.decimal(v)
		if reason != "" {
			return reason
		}
		c.b.(*array.Decimal128Builder).Append(n)
	case catalog.KindString:
		s, reason := c.string(v)
		if reason != "" {
			return reason
		}
		c.b.(*array.StringBuilder).Append(s)
	case catalog.KindBytes:
		raw, reason := c.bytes(v)
		if reason != "" {
			return reason
		}
		c.b.(*array.BinaryBuilder).Append(raw)
	case catalog.KindDate:
		days, reason := c.date(v)
		if reason != "" {
			return reason
		}
		c.b.(*array.Date32Builder).Append(arrow.Date32(days))
	case catalog.KindTime:
		us, reason := c.time(v)
		if reason != "" {
			return reason
		}
		c.b.(*array.Time64Builder).Append(arrow.Time64(us))
	case catalog.KindTimestamp, catalog.KindTimestampLTZ:
		ts, reason := c.timestamp(v)
		if reason != "" {
			return reason
		}
		c.b.(*array.TimestampBuilder).Append(arrow.Timestamp(ts))
	default:
		return "unsupported type " + c.typ.String()
	}
	return ""
}

// value converts v (not nil) to the Go value of the column's Arrow type
// as a primary-key table's rows hold them (kv.Row): bool; int64 for every
// integer, DATE (days), TIME (µs) and TIMESTAMP (in its Arrow unit);
// float64 for DOUBLE and FLOAT (a float32 value); decimal128.Num
// (unscaled); string; []byte. It returns why v does not fit, as append
// does.
func (c *jsonColumn) value(v any) (any, string) {
	var (
		out    any
		reason string
	)
	switch c.typ.Kind {
	case catalog.KindBoolean:
		b, ok := v.(bool)
		if !ok {
			return nil, c.want(v, "")
		}
		out = b
	case catalog.KindTinyInt, catalog.KindSmallInt, catalog.KindInt, catalog.KindBigInt:
		lo, hi := intRange(c.typ.Kind)
		out, reason = c.integer(v, lo, hi)
	case catalog.KindFloat, catalog.KindDouble:
		out, reason = c.float(v, c.floatBits())
	case catalog.KindDecimal:
		out, reason = c.decimal(v)
	case catalog.KindString:
		out, reason = c.string(v)
	case catalog.KindBytes:
		out, reason = c.bytes(v)
	case catalog.KindDate:
		out, reason = c.date(v)
	case catalog.KindTime:
		out, reason = c.time(v)
	case catalog.KindTimestamp, catalog.KindTimestampLTZ:
		out, reason = c.timestamp(v)
	default:
		return nil, "unsupported type " + c.typ.String()
	}
	if reason != "" {
		return nil, reason
	}
	return out, ""
}

// floatBits is 32 for FLOAT, 64 for DOUBLE.
func (c *jsonColumn) floatBits() int {
	if c.typ.Kind == catalog.KindFloat {
		return 32
	}
	return 64
}

// decimal converts v to the column's DECIMAL, unscaled.
func (c *jsonColumn) decimal(v any) (decimal128.Num, string) {
	var text string
	if s, ok := v.(string); ok {
		text = s
	} else if s, ok := numberText(v); ok {
		text = s
	} else {
		return decimal128.Num{}, c.want(v, "")
	}
	l, ok := parseLiteral(text)
	if !ok {
		return decimal128.Num{}, c.want(v, "")
	}
	n, reason := l.decimalValue(c.typ.Precision, c.typ.Scale)
	if reason != "" {
		return decimal128.Num{}, c.want(v, reason)
	}
	return n, ""
}

// string converts v to a STRING: valid UTF-8.
func (c *jsonColumn) string(v any) (string, string) {
	s, ok := v.(string)
	if !ok {
		return "", c.want(v, "")
	}
	if !utf8.ValidString(s) {
		return "", c.want(v, "not valid UTF-8")
	}
	return s, ""
}

// bytes converts v, standard base64 text or raw bytes, to BYTES.
func (c *jsonColumn) bytes(v any) ([]byte, string) {
	switch s := v.(type) {
	case string:
		raw, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, c.want(v, "not standard base64 (with padding)")
		}
		return raw, ""
	case []byte:
		return s, ""
	}
	return nil, c.want(v, "")
}

// date converts v, "YYYY-MM-DD", to days since 1970-01-01.
func (c *jsonColumn) date(v any) (int64, string) {
	s, ok := v.(string)
	if !ok {
		return 0, c.want(v, `want a string "YYYY-MM-DD"`)
	}
	days, n, reason := parseDate(s)
	if reason == "" && n != len(s) {
		reason = `want "YYYY-MM-DD"`
	}
	if reason != "" {
		return 0, c.want(v, reason)
	}
	return int64(days), ""
}

// time converts v, "HH:MM:SS[.ffffff]", to microseconds since midnight.
func (c *jsonColumn) time(v any) (int64, string) {
	s, ok := v.(string)
	if !ok {
		return 0, c.want(v, `want a string "HH:MM:SS[.ffffff]"`)
	}
	us, reason := parseTime(s)
	if reason != "" {
		return 0, c.want(v, reason)
	}
	return int64(us), ""
}

// timestamp converts v, "YYYY-MM-DDTHH:MM:SS[.fff]", to the column's
// Arrow unit.
func (c *jsonColumn) timestamp(v any) (int64, string) {
	s, ok := v.(string)
	if !ok {
		return 0, c.want(v, `want a string "YYYY-MM-DDTHH:MM:SS[.fff]"`)
	}
	ts, reason := parseTimestamp(s, c.ts)
	if reason != "" {
		return 0, c.want(v, reason)
	}
	return int64(ts), ""
}

// integer converts v to an integer in [lo, hi].
func (c *jsonColumn) integer(v any, lo, hi int64) (int64, string) {
	var text string
	switch x := v.(type) {
	case int64: // fast paths for the common inputs
		if x < lo || x > hi {
			return 0, c.want(v, rangeReason(lo, hi))
		}
		return x, ""
	case float64:
		if math.Abs(x) >= maxExactJSONInt && x == math.Trunc(x) {
			// A JSON number decoded as a float64 (protobuf's Struct does
			// that) is exact only up to 2^53: past it the value may
			// already be another integer than the one sent.
			return 0, c.want(v, "an integer of magnitude 2^53 or more sent as a JSON number may have lost precision; send it as a string")
		}
		if x == math.Trunc(x) && x >= -(1<<63) && x < 1<<63 {
			n := int64(x)
			if n < lo || n > hi {
				return 0, c.want(v, rangeReason(lo, hi))
			}
			return n, ""
		}
		text, _ = numberText(x)
	case json.Number:
		if n, err := strconv.ParseInt(string(x), 10, 64); err == nil && plainInt(string(x)) {
			if n < lo || n > hi {
				return 0, c.want(v, rangeReason(lo, hi))
			}
			return n, ""
		}
		text = string(x)
	case string:
		text = x
	default:
		var ok bool
		if text, ok = numberText(v); !ok {
			return 0, c.want(v, "")
		}
	}
	l, ok := parseLiteral(text)
	if !ok {
		return 0, c.want(v, "")
	}
	n, reason := l.int64Value(lo, hi)
	switch reason {
	case "":
		return n, ""
	case reasonRange:
		return 0, c.want(v, rangeReason(lo, hi))
	}
	return 0, c.want(v, reason)
}

// plainInt reports whether s is in the canonical JSON integer form (no '+',
// no leading zeros), the form ParseInt's fast path may accept.
func plainInt(s string) bool {
	s = strings.TrimPrefix(s, "-")
	return s != "" && s[0] != '+' && (s[0] != '0' || len(s) == 1)
}

func rangeReason(lo, hi int64) string {
	return "out of range " + strconv.FormatInt(lo, 10) + ".." + strconv.FormatInt(hi, 10)
}

// Float spellings of the non-finite values, as in protobuf's JSON mapping.
const (
	textNaN    = "NaN"
	textInf    = "Infinity"
	textNegInf = "-Infinity"
)

// float converts v to a float64 that, for bits 32, is exactly a float32.
func (c *jsonColumn) float(v any, bitSize int) (float64, string) {
	var text string
	switch x := v.(type) {
	case float64:
		if bitSize == 32 {
			f := float32(x)
			if math.IsInf(float64(f), 0) && !math.IsInf(x, 0) {
				return 0, c.want(v, "out of range")
			}
			return float64(f), ""
		}
		return x, ""
	case float32:
		return float64(x), ""
	case string:
		switch x {
		case textNaN:
			return math.NaN(), ""
		case textInf:
			return math.Inf(1), ""
		case textNegInf:
			return math.Inf(-1), ""
		}
		text = x
	default:
		var ok bool
		if text, ok = numberText(v); !ok {
			return 0, c.want(v, "")
		}
	}
	if !isJSONNumber(text) {
		return 0, c.want(v, "")
	}
	f, err := strconv.ParseFloat(text, bitSize)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) && math.IsInf(f, 0) {
			return 0, c.want(v, "out of range")
		}
		if !errors.Is(err, strconv.ErrRange) {
			return 0, c.want(v, "")
		}
	}
	return f, ""
}

// isJSONNumber reports whether s has the JSON number grammar.
func isJSONNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		j := i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		if i == j {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		j := i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		if i == j {
			return false
		}
	}
	return i == len(s)
}
