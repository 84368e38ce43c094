package kv

import (
	"bytes"
	"math"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/decimal128"
)

// keyValue builds a value of the kind selected by k from the fuzz inputs.
func keyValue(k byte, i int64, f float64, s string) any {
	switch k % 6 {
	case 0:
		return i&1 == 1
	case 1:
		return i
	case 2:
		return f
	case 3:
		return decimal128.New(i>>20, uint64(i)*0x9E3779B97F4A7C15)
	case 4:
		return []byte(s)
	}
	return s
}

func compareTuples(a, b []any) int {
	for i := range a {
		if c := compareValues(a[i], b[i]); c != 0 {
			return c
		}
	}
	return 0
}

func sign(c int) int {
	switch {
	case c < 0:
		return -1
	case c > 0:
		return 1
	}
	return 0
}

func sameKeyValues(a, b []any) bool {
	return len(a) == len(b) && compareTuples(a, b) == 0
}

// FuzzKeyOrder checks that the key encoding orders two-column keys as their
// values order, that equal values encode equally, and that keys decode back.
//
//	go test ./kv -run '^$' -fuzz FuzzKeyOrder -fuzztime 30s
func FuzzKeyOrder(f *testing.F) {
	f.Add(byte(1), byte(5), int64(-1), 0.0, "a", int64(1), math.Copysign(0, -1), "a\x00")
	f.Add(byte(2), byte(4), int64(0), math.NaN(), "", int64(0), math.Inf(1), "\x00\xff")
	f.Add(byte(3), byte(0), int64(math.MinInt64), -1.5, "ab", int64(math.MaxInt64), 2.5, "abc")
	f.Add(byte(5), byte(1), int64(7), 0.0, "a\x00b", int64(7), 0.0, "a\x00")
	f.Fuzz(func(t *testing.T, k1, k2 byte, i1 int64, f1 float64, s1 string, i2 int64, f2 float64, s2 string) {
		a := []any{keyValue(k1, i1, f1, s1), keyValue(k2, i2, f2, s2)}
		b := []any{keyValue(k1, i2, f2, s2), keyValue(k2, i1, f1, s1)}
		ea, eb := EncodePrefix(nil, a), EncodePrefix(nil, b)
		if got, want := sign(bytes.Compare(ea, eb)), sign(compareTuples(a, b)); got != want {
			t.Fatalf("%v vs %v: keys compare %d, values %d\n%x\n%x", a, b, got, want, ea, eb)
		}
		if !bytes.HasPrefix(ea, EncodePrefix(nil, a[:1])) {
			t.Fatalf("encoding of %v does not start with that of its first value", a)
		}
		for _, e := range []struct {
			vals []any
			enc  []byte
		}{{a, ea}, {b, eb}} {
			got, err := DecodeKey(e.enc)
			if err != nil {
				t.Fatalf("DecodeKey(%x): %v", e.enc, err)
			}
			if !sameKeyValues(got, e.vals) {
				t.Fatalf("DecodeKey(EncodeKey(%v)) = %v", e.vals, got)
			}
		}
	})
}

// FuzzDecodeKey feeds arbitrary bytes to DecodeKey: it must not panic, and
// what it accepts must re-encode to the same bytes.
//
//	go test ./kv -run '^$' -fuzz FuzzDecodeKey -fuzztime 30s
func FuzzDecodeKey(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{tagString})
	f.Add([]byte{tagInt, 1, 2})
	f.Add(EncodePrefix(nil, []any{"a\x00", int64(-3), 1.5, true, []byte{0xFF}, decimal128.FromI64(-12)}))
	f.Add([]byte{tagString, 'a', 0, 7})
	f.Add([]byte{0x7F})
	f.Fuzz(func(t *testing.T, data []byte) {
		vals, err := DecodeKey(data)
		if err != nil {
			return
		}
		if enc := EncodePrefix(nil, vals); !bytes.Equal(enc, data) {
			t.Fatalf("DecodeKey(%x) = %v re-encodes to %x", data, vals, enc)
		}
	})
}

func TestKeyOrderExamples(t *testing.T) {
	// Each list is in strictly increasing order.
	lists := [][]any{
		{int64(math.MinInt64), int64(-1), int64(0), int64(1), int64(math.MaxInt64)},
		{math.Inf(-1), -1.5, -math.SmallestNonzeroFloat64, math.Copysign(0, -1), 0.0, 1e-300, 2.0, math.Inf(1), math.NaN()},
		{"", "\x00", "\x00\x00", "\x00\x01", "a", "a\x00", "a\x00b", "a\x01", "ab", "b"},
		{decimal128.FromI64(-100), decimal128.FromI64(-1), decimal128.FromI64(0), decimal128.FromI64(1), decimal128.New(1, 0)},
		{false, true},
	}
	for _, l := range lists {
		for i := 1; i < len(l); i++ {
			a, b := EncodePrefix(nil, l[i-1:i]), EncodePrefix(nil, l[i:i+1])
			if bytes.Compare(a, b) >= 0 {
				t.Errorf("key(%v) = %x is not below key(%v) = %x", l[i-1], a, l[i], b)
			}
		}
	}
	// A prefix of complete values never matches a longer string.
	p := EncodePrefix(nil, []any{"ab"})
	if bytes.HasPrefix(EncodePrefix(nil, []any{"abc", int64(1)}), p) {
		t.Error(`prefix "ab" matches key "abc"`)
	}
}

func TestPrefixEnd(t *testing.T) {
	for _, tc := range []struct{ in, want []byte }{
		{[]byte{1, 2}, []byte{1, 3}},
		{[]byte{1, 0xFF}, []byte{2}},
		{[]byte{0xFF}, nil},
	} {
		if got := prefixEnd(tc.in); !bytes.Equal(got, tc.want) {
			t.Errorf("prefixEnd(%x) = %x, want %x", tc.in, got, tc.want)
		}
	}
}
