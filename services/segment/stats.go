package segment

import (
	"cmp"
	"encoding/binary"
	"math"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
)

// columnStats returns the encoded min and max of col's non-null values, and
// ok=false when the type has no stats (BINARY, nested, ...), every value is
// null, or a floating point column holds NaN. The encoding is documented on
// [ColumnMeta] and in docs/segment.md.
func columnStats(col arrow.Array) (lo, hi []byte, ok bool) {
	if col.Len() == 0 || col.NullN() == col.Len() {
		return nil, nil, false
	}
	switch a := col.(type) {
	case *array.Boolean:
		var sawF, sawT bool
		for i := 0; i < a.Len(); i++ {
			if a.IsValid(i) {
				if a.Value(i) {
					sawT = true
				} else {
					sawF = true
				}
			}
		}
		lo, hi = []byte{1}, []byte{0}
		if sawF {
			lo = []byte{0}
		}
		if sawT {
			hi = []byte{1}
		}
		return lo, hi, true
	case *array.Int8:
		return fixedStats(a, a.Int8Values(), 1, func(b []byte, v int8) []byte { return append(b, byte(v)) })
	case *array.Int16:
		return fixedStats(a, a.Int16Values(), 2, func(b []byte, v int16) []byte { return binary.LittleEndian.AppendUint16(b, uint16(v)) })
	case *array.Int32:
		return fixedStats(a, a.Int32Values(), 4, func(b []byte, v int32) []byte { return binary.LittleEndian.AppendUint32(b, uint32(v)) })
	case *array.Int64:
		return fixedStats(a, a.Int64Values(), 8, le64[int64])
	case *array.Uint8:
		return fixedStats(a, a.Uint8Values(), 1, func(b []byte, v uint8) []byte { return append(b, v) })
	case *array.Uint16:
		return fixedStats(a, a.Uint16Values(), 2, func(b []byte, v uint16) []byte { return binary.LittleEndian.AppendUint16(b, v) })
	case *array.Uint32:
		return fixedStats(a, a.Uint32Values(), 4, func(b []byte, v uint32) []byte { return binary.LittleEndian.AppendUint32(b, v) })
	case *array.Uint64:
		return fixedStats(a, a.Uint64Values(), 8, le64[uint64])
	case *array.Float32:
		for i := 0; i < a.Len(); i++ {
			if a.IsValid(i) && math.IsNaN(float64(a.Value(i))) {
				return nil, nil, false
			}
		}
		return fixedStats(a, a.Float32Values(), 4, func(b []byte, v float32) []byte { return binary.LittleEndian.AppendUint32(b, math.Float32bits(v)) })
	case *array.Float64:
		for i := 0; i < a.Len(); i++ {
			if a.IsValid(i) && math.IsNaN(a.Value(i)) {
				return nil, nil, false
			}
		}
		return fixedStats(a, a.Float64Values(), 8, func(b []byte, v float64) []byte { return binary.LittleEndian.AppendUint64(b, math.Float64bits(v)) })
	case *array.Date32:
		return fixedStats(a, a.Date32Values(), 4, func(b []byte, v arrow.Date32) []byte { return binary.LittleEndian.AppendUint32(b, uint32(v)) })
	case *array.Date64:
		return fixedStats(a, a.Date64Values(), 8, le64[arrow.Date64])
	case *array.Time32:
		return fixedStats(a, a.Time32Values(), 4, func(b []byte, v arrow.Time32) []byte { return binary.LittleEndian.AppendUint32(b, uint32(v)) })
	case *array.Time64:
		return fixedStats(a, a.Time64Values(), 8, le64[arrow.Time64])
	case *array.Timestamp:
		return fixedStats(a, a.TimestampValues(), 8, le64[arrow.Timestamp])
	case *array.Duration:
		return fixedStats(a, a.DurationValues(), 8, le64[arrow.Duration])
	case *array.Decimal128:
		var mn, mx decimal128.Num
		first := true
		for i := 0; i < a.Len(); i++ {
			if !a.IsValid(i) {
				continue
			}
			v := a.Value(i)
			if first || v.Less(mn) {
				mn = v
			}
			if first || mx.Less(v) {
				mx = v
			}
			first = false
		}
		return dec128(mn), dec128(mx), true
	case *array.String:
		return stringStats(a.Len(), validity(a), a.Value)
	case *array.LargeString:
		return stringStats(a.Len(), validity(a), a.Value)
	}
	return nil, nil, false
}

// lessString is a < b, deciding on the first byte where it differs, which
// settles most comparisons without a call to the runtime's compare.
func lessString(a, b string) bool {
	if len(a) > 0 && len(b) > 0 && a[0] != b[0] {
		return a[0] < b[0]
	}
	return a < b
}

// validity returns a's IsValid, or nil when a has no nulls.
func validity(a arrow.Array) func(int) bool {
	if a.NullN() == 0 {
		return nil
	}
	return a.IsValid
}

func le64[T ~int64 | ~uint64](b []byte, v T) []byte {
	return binary.LittleEndian.AppendUint64(b, uint64(v))
}

func dec128(n decimal128.Num) []byte {
	b := binary.LittleEndian.AppendUint64(make([]byte, 0, 16), n.LowBits())
	return binary.LittleEndian.AppendUint64(b, uint64(n.HighBits()))
}

func fixedStats[T cmp.Ordered](a arrow.Array, values []T, width int, put func([]byte, T) []byte) ([]byte, []byte, bool) {
	var mn, mx T
	if a.NullN() == 0 { // the common case: a tight loop over the values
		mn, mx = values[0], values[0]
		for _, v := range values[1:] {
			mn, mx = min(mn, v), max(mx, v)
		}
	} else {
		first := true
		for i, v := range values {
			if !a.IsValid(i) {
				continue
			}
			if first {
				mn, mx, first = v, v, false
			}
			mn, mx = min(mn, v), max(mx, v)
		}
	}
	return put(make([]byte, 0, width), mn), put(make([]byte, 0, width), mx), true
}

// stringStats computes byte-wise min and max. Values longer than maxStatLen
// are truncated: a truncated min is still a lower bound; a truncated max is
// rounded up (last byte below 0xFF incremented, the rest dropped) and if that
// is impossible the column gets no stats.
func stringStats(n int, valid func(int) bool, value func(int) string) ([]byte, []byte, bool) {
	var mn, mx string
	first := true
	for i := 0; i < n; i++ {
		if valid != nil && !valid(i) {
			continue
		}
		v := value(i)
		switch {
		case first:
			mn, mx, first = v, v, false
		case lessString(v, mn):
			mn = v
		case lessString(mx, v):
			mx = v
		}
	}
	lo := []byte(mn[:min(len(mn), maxStatLen)])
	if len(mx) <= maxStatLen {
		return lo, []byte(mx), true
	}
	hi := []byte(mx[:maxStatLen])
	for len(hi) > 0 && hi[len(hi)-1] == 0xFF {
		hi = hi[:len(hi)-1]
	}
	if len(hi) == 0 {
		return nil, nil, false
	}
	hi[len(hi)-1]++
	return lo, hi, true
}
