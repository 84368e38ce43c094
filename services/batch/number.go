package batch

import (
	"encoding/json"
	"math"
	"math/bits"
	"strconv"

	"github.com/apache/arrow-go/v18/arrow/decimal128"
)

// literal is an exact decimal number: (-1)^neg × digits × 10^exp, with digits
// free of leading and trailing zeros ("" is zero).
type literal struct {
	neg    bool
	digits string
	exp    int
}

// maxExp clamps parsed exponents. Any |exponent| beyond it classifies the
// same way (out of range or too many fractional digits) for every type, and
// clamping keeps hostile input like "1e999999999999" cheap.
const maxExp = 1 << 20

// parseLiteral parses s as a JSON number (RFC 8259 grammar: no leading '+',
// no leading zeros, digits on both sides of '.'), exactly.
func parseLiteral(s string) (literal, bool) {
	var l literal
	i := 0
	if i < len(s) && s[i] == '-' {
		l.neg = true
		i++
	}
	intStart := i
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	intPart := s[intStart:i]
	if len(intPart) == 0 || (len(intPart) > 1 && intPart[0] == '0') {
		return literal{}, false
	}
	var frac string
	if i < len(s) && s[i] == '.' {
		i++
		fs := i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		frac = s[fs:i]
		if len(frac) == 0 {
			return literal{}, false
		}
	}
	exp := 0
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		eneg := false
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			eneg = s[i] == '-'
			i++
		}
		es := i
		for i < len(s) && isDigit(s[i]) {
			if exp < maxExp {
				exp = exp*10 + int(s[i]-'0')
			}
			i++
		}
		if i == es {
			return literal{}, false
		}
		if exp > maxExp {
			exp = maxExp
		}
		if eneg {
			exp = -exp
		}
	}
	if i != len(s) {
		return literal{}, false
	}
	// digits = intPart+frac without leading/trailing zeros; value exponent is
	// exp - len(frac).
	all := intPart + frac
	exp -= len(frac)
	start := 0
	for start < len(all) && all[start] == '0' {
		start++
	}
	end := len(all)
	for end > start && all[end-1] == '0' {
		end--
		exp++
	}
	l.digits = all[start:end]
	if l.digits == "" {
		return literal{neg: l.neg}, true
	}
	l.exp = exp
	return l, true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// Reasons a literal does not fit a type.
const (
	reasonNotNumber   = "not a number"
	reasonNotIntegral = "not an integer"
	reasonRange       = "out of range"
)

// int64Value returns l as an int64 within [lo, hi], or why not.
func (l literal) int64Value(lo, hi int64) (int64, string) {
	if l.digits == "" {
		return 0, ""
	}
	if l.exp < 0 {
		return 0, reasonNotIntegral
	}
	if len(l.digits)+l.exp > 19 {
		return 0, reasonRange
	}
	var u uint64
	for i := 0; i < len(l.digits); i++ {
		u = u*10 + uint64(l.digits[i]-'0')
	}
	for range l.exp {
		u *= 10 // at most 19 digits: fits uint64
	}
	var v int64
	if l.neg {
		if u > 1<<63 {
			return 0, reasonRange
		}
		v = int64(-u) //nolint:gosec // two's complement of u ≤ 2^63
	} else {
		if u > math.MaxInt64 {
			return 0, reasonRange
		}
		v = int64(u)
	}
	if v < lo || v > hi {
		return 0, reasonRange
	}
	return v, ""
}

// decimalValue returns l as the unscaled value of a DECIMAL(p,s), or why not.
func (l literal) decimalValue(p, s int32) (decimal128.Num, string) {
	if l.digits == "" {
		return decimal128.Num{}, ""
	}
	if l.exp < -int(s) {
		return decimal128.Num{}, "more than " + strconv.Itoa(int(s)) + " fractional digits"
	}
	shift := l.exp + int(s) // ≥ 0
	if len(l.digits)+shift > int(p) {
		return decimal128.Num{}, "more than " + strconv.Itoa(int(p)) + " digits"
	}
	var n decimal128.Num
	d := l.digits
	for len(d) > 0 {
		k := min(len(d), 18)
		var chunk uint64
		for i := 0; i < k; i++ {
			chunk = chunk*10 + uint64(d[i]-'0')
		}
		n = n.Mul(decimal128.GetScaleMultiplier(k)).Add(decimal128.FromU64(chunk))
		d = d[k:]
	}
	if shift > 0 {
		n = n.Mul(decimal128.GetScaleMultiplier(shift))
	}
	if l.neg {
		n = n.Negate()
	}
	return n, ""
}

// formatDecimal writes the unscaled value n of scale s as a decimal string
// with exactly s fractional digits ("-0.05", "12", "0.10").
func formatDecimal(dst []byte, n decimal128.Num, s int32) []byte {
	hi, lo := uint64(n.HighBits()), n.LowBits()
	neg := n.HighBits() < 0
	if neg { // two's complement magnitude; also right for the minimum
		lo = ^lo + 1
		hi = ^hi
		if lo == 0 {
			hi++
		}
	}
	// Up to 39 digits: split by 10^19 twice.
	var buf [40]byte
	pos := len(buf)
	const e19 = 10_000_000_000_000_000_000
	for hi != 0 || lo != 0 {
		var rem uint64
		hi, rem = bits.Div64(0, hi, e19)
		lo, rem = bits.Div64(rem, lo, e19)
		// rem < 10^19: emit 19 digits (fewer on the last, leading chunk)
		for k := 0; k < 19; k++ {
			pos--
			buf[pos] = byte('0' + rem%10)
			rem /= 10
			if rem == 0 && hi == 0 && lo == 0 {
				break
			}
		}
	}
	digits := buf[pos:]
	if neg {
		dst = append(dst, '-')
	}
	scale := int(s)
	if len(digits) <= scale {
		dst = append(dst, '0')
		if scale > 0 {
			dst = append(dst, '.')
			for range scale - len(digits) {
				dst = append(dst, '0')
			}
			dst = append(dst, digits...)
		}
		return dst
	}
	at := len(digits) - scale
	dst = append(dst, digits[:at]...)
	if scale > 0 {
		dst = append(dst, '.')
		dst = append(dst, digits[at:]...)
	}
	return dst
}

// numberText returns the decimal text of a Go numeric value as a JSON
// decoder or a Go caller may hand it to FromJSON, and whether v is numeric.
// Floats give their shortest round-trip text ("0.1"); NaN and ±Inf give
// "NaN", "+Inf", "-Inf", which parseLiteral rejects.
func numberText(v any) (string, bool) {
	switch v := v.(type) {
	case json.Number:
		return string(v), true
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64), true
	case float32:
		return strconv.FormatFloat(float64(v), 'g', -1, 32), true
	case int:
		return strconv.FormatInt(int64(v), 10), true
	case int8:
		return strconv.FormatInt(int64(v), 10), true
	case int16:
		return strconv.FormatInt(int64(v), 10), true
	case int32:
		return strconv.FormatInt(int64(v), 10), true
	case int64:
		return strconv.FormatInt(v, 10), true
	case uint:
		return strconv.FormatUint(uint64(v), 10), true
	case uint8:
		return strconv.FormatUint(uint64(v), 10), true
	case uint16:
		return strconv.FormatUint(uint64(v), 10), true
	case uint32:
		return strconv.FormatUint(uint64(v), 10), true
	case uint64:
		return strconv.FormatUint(v, 10), true
	}
	return "", false
}
