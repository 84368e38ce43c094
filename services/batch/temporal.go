package batch

import (
	"math"
	"strconv"

	"github.com/apache/arrow-go/v18/arrow"
)

// Calendar range of DATE and TIMESTAMP values: years 0000..9999.
var (
	minDays = daysFromCivil(0, 1, 1)      // 0000-01-01
	maxDays = daysFromCivil(9999, 12, 31) // 9999-12-31
)

const (
	secondsPerDay = 86400
	microsPerDay  = secondsPerDay * 1_000_000
)

// daysFromCivil returns the days since 1970-01-01 of a proleptic Gregorian
// date (Howard Hinnant's algorithm).
func daysFromCivil(y, m, d int64) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era = (y - 399) / 400
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

// civilFromDays is the inverse of daysFromCivil.
func civilFromDays(z int64) (y, m, d int64) {
	z += 719468
	era := z / 146097
	if z < 0 && z%146097 != 0 {
		era = (z - 146096) / 146097
	}
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y = yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = doy - (153*mp+2)/5 + 1
	m = mp + 3
	if m > 12 {
		m -= 12
	}
	if m <= 2 {
		y++
	}
	return y, m, d
}

func isLeap(y int64) bool { return y%4 == 0 && (y%100 != 0 || y%400 == 0) }

func daysInMonth(y, m int64) int64 {
	switch m {
	case 2:
		if isLeap(y) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// digits parses s[i:i+n] as an unsigned decimal; ok is false unless all n
// bytes are digits.
func digits(s string, i, n int) (int64, bool) {
	if i+n > len(s) {
		return 0, false
	}
	var v int64
	for _, c := range []byte(s[i : i+n]) {
		if !isDigit(c) {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	return v, true
}

// parseDate parses "YYYY-MM-DD" at the start of s, returning days since the
// epoch and the bytes consumed.
func parseDate(s string) (days int64, n int, reason string) {
	const bad = `want "YYYY-MM-DD"`
	y, ok1 := digits(s, 0, 4)
	m, ok2 := digits(s, 5, 2)
	d, ok3 := digits(s, 8, 2)
	if !ok1 || !ok2 || !ok3 || s[4] != '-' || s[7] != '-' {
		return 0, 0, bad
	}
	if m < 1 || m > 12 || d < 1 || d > daysInMonth(y, m) {
		return 0, 0, "no such date"
	}
	return daysFromCivil(y, m, d), 10, ""
}

// parseClock parses "HH:MM:SS[.fffffffff]" at the start of s, returning the
// nanoseconds since midnight and the bytes consumed.
func parseClock(s string) (nanos int64, n int, reason string) {
	const bad = `want "HH:MM:SS" with up to 9 fractional digits`
	h, ok1 := digits(s, 0, 2)
	mi, ok2 := digits(s, 3, 2)
	sec, ok3 := digits(s, 6, 2)
	if !ok1 || !ok2 || !ok3 || s[2] != ':' || s[5] != ':' {
		return 0, 0, bad
	}
	if h > 23 || mi > 59 || sec > 59 {
		return 0, 0, "no such time of day"
	}
	nanos = ((h*60+mi)*60 + sec) * 1e9
	n = 8
	if n < len(s) && s[n] == '.' {
		n++
		start := n
		var frac int64
		for n < len(s) && isDigit(s[n]) {
			if n-start >= 9 {
				return 0, 0, "more than 9 fractional digits"
			}
			frac = frac*10 + int64(s[n]-'0')
			n++
		}
		if n == start {
			return 0, 0, bad
		}
		for range 9 - (n - start) {
			frac *= 10
		}
		nanos += frac
	}
	return nanos, n, ""
}

// unitNanos returns the nanoseconds in one unit.
func unitNanos(u arrow.TimeUnit) int64 {
	switch u {
	case arrow.Second:
		return 1e9
	case arrow.Millisecond:
		return 1e6
	case arrow.Microsecond:
		return 1e3
	}
	return 1
}

// precisionNanos returns the nanoseconds in the last digit of precision p
// (0..9): 10^(9-p).
func precisionNanos(p int32) int64 {
	n := int64(1)
	for range 9 - p {
		n *= 10
	}
	return n
}

// fracReason explains a time whose sub-second part has digits beyond p.
func fracReason(p int32) string {
	return "more than " + strconv.Itoa(int(p)) + " fractional digits"
}

// parseTime parses a TIME value ("HH:MM:SS[.ffffff]") to microseconds.
func parseTime(s string) (int64, string) {
	nanos, n, reason := parseClock(s)
	if reason != "" {
		return 0, reason
	}
	if n != len(s) {
		return 0, `want "HH:MM:SS" with up to 9 fractional digits`
	}
	if nanos%1000 != 0 {
		return 0, fracReason(6)
	}
	return nanos / 1000, ""
}

// tsSpec describes how a TIMESTAMP or TIMESTAMP_LTZ column stores values.
type tsSpec struct {
	unit      arrow.TimeUnit
	precision int32
	ltz       bool
}

// Seconds since the epoch whose every nanosecond fits an int64.
const (
	maxNanoSeconds = math.MaxInt64/1_000_000_000 - 1
	minNanoSeconds = math.MinInt64/1_000_000_000 + 1
)

// Timestamp limits in seconds since the epoch (years 0000..9999).
var (
	minTSSeconds = minDays * secondsPerDay
	maxTSSeconds = maxDays*secondsPerDay + secondsPerDay - 1
)

// parseTimestamp parses "YYYY-MM-DD[T ]HH:MM:SS[.f]" followed, for
// TIMESTAMP_LTZ, by "Z" or "±HH:MM", to a value in spec's unit.
func parseTimestamp(s string, spec tsSpec) (int64, string) {
	badForm := `want "YYYY-MM-DDTHH:MM:SS[.fff]"`
	if spec.ltz {
		badForm = `want "YYYY-MM-DDTHH:MM:SS[.fff]" with "Z" or an offset like "+02:00"`
	}
	days, _, reason := parseDate(s)
	if reason != "" {
		if len(s) < 10 {
			return 0, badForm
		}
		return 0, reason
	}
	if len(s) < 11 || (s[10] != 'T' && s[10] != ' ' && s[10] != 't') {
		return 0, badForm
	}
	nanos, n, reason := parseClock(s[11:])
	if reason != "" {
		return 0, reason
	}
	rest := s[11+n:]
	var offset int64 // seconds east of UTC
	switch {
	case !spec.ltz:
		if rest != "" {
			if rest[0] == 'Z' || rest[0] == 'z' || rest[0] == '+' || rest[0] == '-' {
				return 0, "TIMESTAMP takes no time zone offset (use TIMESTAMP_LTZ for instants)"
			}
			return 0, badForm
		}
	case rest == "Z" || rest == "z":
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		oh, ok1 := digits(rest, 1, 2)
		om, ok2 := digits(rest, 4, 2)
		if !ok1 || !ok2 || oh > 23 || om > 59 {
			return 0, "bad time zone offset " + quote(rest)
		}
		offset = (oh*60 + om) * 60
		if rest[0] == '-' {
			offset = -offset
		}
	case rest == "":
		return 0, "missing time zone offset: TIMESTAMP_LTZ needs \"Z\" or an offset like \"+02:00\""
	default:
		return 0, badForm
	}
	if nanos%precisionNanos(spec.precision) != 0 {
		return 0, fracReason(spec.precision)
	}
	secs := days*secondsPerDay + nanos/1e9 - offset
	if secs < minTSSeconds || secs > maxTSSeconds {
		return 0, "out of range 0000-01-01 .. 9999-12-31 (UTC)"
	}
	sub := nanos % 1e9
	un := unitNanos(spec.unit)
	perSec := 1e9 / un
	if spec.unit == arrow.Nanosecond {
		// int64 nanoseconds span 1677-09-21 .. 2262-04-11.
		if secs > maxNanoSeconds || secs < minNanoSeconds {
			return 0, "out of range for nanosecond precision (about 1677-09-21 .. 2262-04-11)"
		}
	}
	return secs*perSec + sub/un, ""
}

// timestampInDomain reports whether v, in spec's unit, is a value
// parseTimestamp can produce (see the package doc's value domains).
func timestampInDomain(v int64, spec tsSpec) bool {
	un := unitNanos(spec.unit)
	perSec := 1e9 / un
	secs, sub := floorDiv(v, perSec)
	if secs < minTSSeconds || secs > maxTSSeconds {
		return false
	}
	if spec.unit == arrow.Nanosecond && (secs > maxNanoSeconds || secs < minNanoSeconds) {
		return false
	}
	return (sub*un)%precisionNanos(spec.precision) == 0
}

// floorDiv returns q, r with a = q*b + r and 0 <= r < b (b > 0).
func floorDiv(a, b int64) (int64, int64) {
	q, r := a/b, a%b
	if r < 0 {
		q--
		r += b
	}
	return q, r
}

func append2(dst []byte, v int64) []byte {
	return append(dst, byte('0'+v/10), byte('0'+v%10))
}

func appendDate(dst []byte, days int64) []byte {
	y, m, d := civilFromDays(days)
	dst = append(dst, byte('0'+y/1000), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10), '-')
	dst = append2(dst, m)
	dst = append(dst, '-')
	return append2(dst, d)
}

// appendClock writes "HH:MM:SS" and, for p > 0, exactly p fractional digits
// of nanos (nanoseconds since midnight).
func appendClock(dst []byte, nanos int64, p int32) []byte {
	secs := nanos / 1e9
	dst = append2(dst, secs/3600)
	dst = append(dst, ':')
	dst = append2(dst, secs/60%60)
	dst = append(dst, ':')
	dst = append2(dst, secs%60)
	if p > 0 {
		dst = append(dst, '.')
		frac := nanos % 1e9
		div := int64(1e8)
		for range p {
			dst = append(dst, byte('0'+frac/div%10))
			div /= 10
		}
	}
	return dst
}

// dateInDomain reports whether days lies in 0000-01-01 .. 9999-12-31.
func dateInDomain(days int64) bool { return days >= minDays && days <= maxDays }

// appendTimestamp writes v (in spec's unit) in the TIMESTAMP or
// TIMESTAMP_LTZ text form; v must be in the domain.
func appendTimestamp(dst []byte, v int64, spec tsSpec) []byte {
	un := unitNanos(spec.unit)
	secs, sub := floorDiv(v, 1e9/un)
	days, sod := floorDiv(secs, secondsPerDay)
	dst = appendDate(dst, days)
	dst = append(dst, 'T')
	dst = appendClock(dst, sod*1e9+sub*un, spec.precision)
	if spec.ltz {
		dst = append(dst, 'Z')
	}
	return dst
}
