package kv

import (
	"encoding/binary"
	"fmt"
	"math"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow/decimal128"

	"github.com/strom-io/strom/catalog"
)

// Row is one row of a table: one value per schema column, in schema order;
// nil is SQL NULL. Non-null values have these Go types:
//
//	BOOLEAN                                   bool
//	TINYINT, SMALLINT, INT, BIGINT            int64
//	DATE (days since 1970-01-01)              int64
//	TIME (microseconds since midnight)        int64
//	TIMESTAMP, TIMESTAMP_LTZ (Arrow unit)     int64
//	FLOAT (a float32 value), DOUBLE           float64
//	DECIMAL(p,s) (unscaled)                   decimal128.Num
//	STRING                                    string
//	BYTES                                     []byte
//
// the same values the table's Arrow columns hold (batch.ArrowSchema).
type Row []any

// Resize returns r with exactly n columns: a row of an older schema
// version gets NULLs in the columns added since, a row of a newer one loses
// the columns an older version lacks (columns are only ever appended). It
// returns r itself when it has n columns already.
func (r Row) Resize(n int) Row {
	if len(r) == n {
		return r
	}
	out := make(Row, n)
	copy(out, r)
	return out
}

// checkValue reports why v cannot be a non-null value of type t, or "".
func checkValue(t catalog.Type, v any) string {
	switch t.Kind {
	case catalog.KindBoolean:
		if _, ok := v.(bool); !ok {
			return fmt.Sprintf("want bool, got %T", v)
		}
	case catalog.KindTinyInt, catalog.KindSmallInt, catalog.KindInt, catalog.KindBigInt,
		catalog.KindDate, catalog.KindTime, catalog.KindTimestamp, catalog.KindTimestampLTZ:
		n, ok := v.(int64)
		if !ok {
			return fmt.Sprintf("want int64, got %T", v)
		}
		if lo, hi := intRange(t.Kind); n < lo || n > hi {
			return fmt.Sprintf("%d out of range %d..%d of %s", n, lo, hi, t)
		}
	case catalog.KindFloat:
		f, ok := v.(float64)
		if !ok {
			return fmt.Sprintf("want float64, got %T", v)
		}
		if float64(float32(f)) != f && f == f {
			return fmt.Sprintf("%v is not a FLOAT (float32) value", f)
		}
	case catalog.KindDouble:
		if _, ok := v.(float64); !ok {
			return fmt.Sprintf("want float64, got %T", v)
		}
	case catalog.KindDecimal:
		d, ok := v.(decimal128.Num)
		if !ok {
			return fmt.Sprintf("want decimal128.Num, got %T", v)
		}
		if !d.FitsInPrecision(t.Precision) {
			return fmt.Sprintf("unscaled value %s has more than %d digits", d.BigInt(), t.Precision)
		}
	case catalog.KindString:
		s, ok := v.(string)
		if !ok {
			return fmt.Sprintf("want string, got %T", v)
		}
		if !utf8.ValidString(s) {
			return "invalid UTF-8"
		}
	case catalog.KindBytes:
		if _, ok := v.([]byte); !ok {
			return fmt.Sprintf("want []byte, got %T", v)
		}
	default:
		return fmt.Sprintf("unsupported type %s", t)
	}
	return ""
}

// intRange is the range of the int64 values of an int64-valued kind.
func intRange(k catalog.Kind) (int64, int64) {
	switch k {
	case catalog.KindTinyInt:
		return math.MinInt8, math.MaxInt8
	case catalog.KindSmallInt:
		return math.MinInt16, math.MaxInt16
	case catalog.KindInt, catalog.KindDate:
		return math.MinInt32, math.MaxInt32
	case catalog.KindTime:
		return 0, 86_400_000_000 - 1
	}
	return math.MinInt64, math.MaxInt64
}

// Row value encoding, version 1:
//
//	0x01                      version
//	uvarint n                 number of columns encoded
//	ceil(n/8) bytes           null bitmap, bit i%8 of byte i/8 set = column i NULL
//	for each non-null column, in order:
//	  BOOLEAN                 1 byte, 0 or 1
//	  int64-valued kinds      zig-zag varint
//	  FLOAT                   4 bytes little-endian float32 bits
//	  DOUBLE                  8 bytes little-endian float64 bits
//	  DECIMAL                 16 bytes little-endian (low 64 bits, then high)
//	  STRING, BYTES           uvarint length, then the bytes
//
// A row with fewer columns than the schema decodes with the missing trailing
// columns NULL (columns added by a later schema version).
const rowVersion = 1

// EncodeRow appends the value encoding of row (valid for schema s) to dst.
func EncodeRow(dst []byte, s catalog.Schema, row Row) []byte {
	n := len(row)
	dst = append(dst, rowVersion)
	dst = binary.AppendUvarint(dst, uint64(n))
	bm := len(dst)
	dst = append(dst, make([]byte, (n+7)/8)...)
	for i, v := range row {
		if v == nil {
			dst[bm+i/8] |= 1 << (i % 8)
			continue
		}
		switch s.Columns[i].Type.Kind {
		case catalog.KindBoolean:
			b := byte(0)
			if v.(bool) {
				b = 1
			}
			dst = append(dst, b)
		case catalog.KindFloat:
			dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(float32(v.(float64))))
		case catalog.KindDouble:
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(v.(float64)))
		case catalog.KindDecimal:
			d := v.(decimal128.Num)
			dst = binary.LittleEndian.AppendUint64(dst, d.LowBits())
			dst = binary.LittleEndian.AppendUint64(dst, uint64(d.HighBits()))
		case catalog.KindString:
			s := v.(string)
			dst = binary.AppendUvarint(dst, uint64(len(s)))
			dst = append(dst, s...)
		case catalog.KindBytes:
			b := v.([]byte)
			dst = binary.AppendUvarint(dst, uint64(len(b)))
			dst = append(dst, b...)
		default:
			dst = binary.AppendVarint(dst, v.(int64))
		}
	}
	return dst
}

// DecodeRow decodes a value made by EncodeRow for schema s. Strings and
// byte slices are copied; the result does not alias data. Bytes that are not
// such an encoding (truncated, trailing bytes, more columns than s, values
// out of their type's range, invalid UTF-8) fail with ErrCorrupt.
func DecodeRow(s catalog.Schema, data []byte) (Row, error) {
	corrupt := func(format string, args ...any) (Row, error) {
		return nil, fmt.Errorf("%w: row value: "+format, append([]any{ErrCorrupt}, args...)...)
	}
	if len(data) == 0 || data[0] != rowVersion {
		return corrupt("unknown version")
	}
	p := data[1:]
	n64, k := binary.Uvarint(p)
	if k <= 0 {
		return corrupt("bad column count")
	}
	if n64 > uint64(len(s.Columns)) {
		return corrupt("%d columns, schema has %d", n64, len(s.Columns))
	}
	n := int(n64)
	p = p[k:]
	if len(p) < (n+7)/8 {
		return corrupt("truncated null bitmap")
	}
	bitmap := p[:(n+7)/8]
	p = p[(n+7)/8:]
	if n%8 != 0 && bitmap[len(bitmap)-1]>>(n%8) != 0 {
		return corrupt("null bitmap has bits past the last column")
	}
	row := make(Row, len(s.Columns))
	for i := 0; i < n; i++ {
		if bitmap[i/8]&(1<<(i%8)) != 0 {
			continue
		}
		t := s.Columns[i].Type
		switch t.Kind {
		case catalog.KindBoolean:
			if len(p) < 1 || p[0] > 1 {
				return corrupt("column %d: bad boolean", i)
			}
			row[i] = p[0] == 1
			p = p[1:]
		case catalog.KindFloat:
			if len(p) < 4 {
				return corrupt("column %d: truncated", i)
			}
			row[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(p)))
			p = p[4:]
		case catalog.KindDouble:
			if len(p) < 8 {
				return corrupt("column %d: truncated", i)
			}
			row[i] = math.Float64frombits(binary.LittleEndian.Uint64(p))
			p = p[8:]
		case catalog.KindDecimal:
			if len(p) < 16 {
				return corrupt("column %d: truncated", i)
			}
			d := decimal128.New(int64(binary.LittleEndian.Uint64(p[8:])), binary.LittleEndian.Uint64(p))
			if !d.FitsInPrecision(t.Precision) {
				return corrupt("column %d: decimal out of precision %d", i, t.Precision)
			}
			row[i] = d
			p = p[16:]
		case catalog.KindString, catalog.KindBytes:
			l, k := binary.Uvarint(p)
			if k <= 0 || l > uint64(len(p)-k) {
				return corrupt("column %d: bad length", i)
			}
			b := p[k : k+int(l)]
			p = p[k+int(l):]
			if t.Kind == catalog.KindString {
				if !utf8.Valid(b) {
					return corrupt("column %d: invalid UTF-8", i)
				}
				row[i] = string(b)
			} else {
				row[i] = append([]byte{}, b...)
			}
		default:
			v, k := binary.Varint(p)
			if k <= 0 {
				return corrupt("column %d: bad integer", i)
			}
			if lo, hi := intRange(t.Kind); v < lo || v > hi {
				return corrupt("column %d: %d out of range of %s", i, v, t)
			}
			row[i] = v
			p = p[k:]
		}
	}
	if len(p) != 0 {
		return corrupt("%d trailing bytes", len(p))
	}
	return row, nil
}
