package kv

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"strings"

	"github.com/apache/arrow-go/v18/arrow/decimal128"
)

// Key encoding.
//
// A key is the concatenation of its values, each a type tag byte followed by
// a body whose bytewise order is the value order:
//
//	tagBool    0x02  one byte, 0 (false) or 1 (true)
//	tagInt     0x03  8 bytes big-endian, sign bit flipped (all integer kinds,
//	                 DATE, TIME, TIMESTAMP and TIMESTAMP_LTZ)
//	tagFloat   0x04  8 bytes: the float64 bits, all flipped for a negative
//	                 number, only the sign bit otherwise (FLOAT widened to
//	                 float64 exactly; NaN canonicalised and sorting last)
//	tagDecimal 0x05  16 bytes: the 128-bit two's complement big-endian with
//	                 the sign bit flipped
//	tagBytes   0x06  escaped body (0x00 → 0x00 0xFF) terminated by 0x00 0x01
//	tagString  0x07  as tagBytes
//
// Every body is self-delimiting, so the encoding of a sequence of values is
// a byte prefix of the encoding of every longer sequence that starts with
// them, and of no other: a prefix lookup is a range scan.
const (
	tagBool    = 0x02
	tagInt     = 0x03
	tagFloat   = 0x04
	tagDecimal = 0x05
	tagBytes   = 0x06
	tagString  = 0x07
)

// canonicalNaN is the one NaN bit pattern keys hold.
const canonicalNaN = 0x7FF8000000000000

// EncodeKey appends to dst the key encoding of row's values at cols, in the
// order of cols, and returns the extended slice. The values must be non-null
// values of the Go types a valid Row holds (see Row); EncodeKey panics
// otherwise.
func EncodeKey(dst []byte, row Row, cols []int) []byte {
	for _, c := range cols {
		dst = appendKeyValue(dst, row[c])
	}
	return dst
}

// EncodePrefix appends the key encoding of values, in order, to dst: the
// prefix that every key whose first len(values) key values equal values
// starts with. The values follow the rules of EncodeKey.
func EncodePrefix(dst []byte, values []any) []byte {
	for _, v := range values {
		dst = appendKeyValue(dst, v)
	}
	return dst
}

func appendKeyValue(dst []byte, v any) []byte {
	switch v := v.(type) {
	case bool:
		b := byte(0)
		if v {
			b = 1
		}
		return append(dst, tagBool, b)
	case int64:
		dst = append(dst, tagInt)
		return binary.BigEndian.AppendUint64(dst, uint64(v)^(1<<63))
	case float64:
		dst = append(dst, tagFloat)
		return binary.BigEndian.AppendUint64(dst, floatKeyBits(v))
	case decimal128.Num:
		dst = append(dst, tagDecimal)
		dst = binary.BigEndian.AppendUint64(dst, uint64(v.HighBits())^(1<<63))
		return binary.BigEndian.AppendUint64(dst, v.LowBits())
	case []byte:
		return appendEscaped(append(dst, tagBytes), v)
	case string:
		return appendEscaped(append(dst, tagString), v)
	}
	panic(fmt.Sprintf("kv: cannot encode %T as a key value", v))
}

func floatKeyBits(f float64) uint64 {
	bits := math.Float64bits(f)
	if f != f {
		bits = canonicalNaN
	}
	if bits&(1<<63) != 0 {
		return ^bits
	}
	return bits | 1<<63
}

func appendEscaped[T string | []byte](dst []byte, s T) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			dst = append(dst, 0, 0xFF)
		} else {
			dst = append(dst, s[i])
		}
	}
	return append(dst, 0, 1)
}

// DecodeKey decodes a key made by EncodeKey or EncodePrefix back into its
// values (bool, int64, float64, decimal128.Num, []byte, string). It fails
// with ErrCorrupt on anything else.
func DecodeKey(key []byte) ([]any, error) {
	var out []any
	for len(key) > 0 {
		tag := key[0]
		key = key[1:]
		switch tag {
		case tagBool:
			if len(key) < 1 || key[0] > 1 {
				return nil, fmt.Errorf("%w: key: bad boolean", ErrCorrupt)
			}
			out = append(out, key[0] == 1)
			key = key[1:]
		case tagInt:
			if len(key) < 8 {
				return nil, fmt.Errorf("%w: key: truncated integer", ErrCorrupt)
			}
			out = append(out, int64(binary.BigEndian.Uint64(key)^(1<<63)))
			key = key[8:]
		case tagFloat:
			if len(key) < 8 {
				return nil, fmt.Errorf("%w: key: truncated float", ErrCorrupt)
			}
			bits := binary.BigEndian.Uint64(key)
			if bits&(1<<63) != 0 {
				bits &^= 1 << 63
			} else {
				bits = ^bits
			}
			f := math.Float64frombits(bits)
			if f != f && bits != canonicalNaN {
				return nil, fmt.Errorf("%w: key: non-canonical NaN", ErrCorrupt)
			}
			out = append(out, f)
			key = key[8:]
		case tagDecimal:
			if len(key) < 16 {
				return nil, fmt.Errorf("%w: key: truncated decimal", ErrCorrupt)
			}
			hi := int64(binary.BigEndian.Uint64(key) ^ (1 << 63))
			out = append(out, decimal128.New(hi, binary.BigEndian.Uint64(key[8:])))
			key = key[16:]
		case tagBytes, tagString:
			var body []byte
			i := 0
			for {
				j := bytes.IndexByte(key[i:], 0)
				if j < 0 || i+j+1 >= len(key) {
					return nil, fmt.Errorf("%w: key: unterminated string", ErrCorrupt)
				}
				body = append(body, key[i:i+j]...)
				i += j + 1
				if key[i] == 0xFF {
					body = append(body, 0)
					i++
					continue
				}
				if key[i] != 1 {
					return nil, fmt.Errorf("%w: key: bad string escape 0x00 0x%02x", ErrCorrupt, key[i])
				}
				i++
				break
			}
			key = key[i:]
			if tag == tagString {
				out = append(out, string(body))
			} else {
				if body == nil {
					body = []byte{}
				}
				out = append(out, body)
			}
		default:
			return nil, fmt.Errorf("%w: key: unknown type tag 0x%02x", ErrCorrupt, tag)
		}
	}
	return out, nil
}

// prefixEnd returns the smallest key greater than every key starting with
// prefix, or nil if there is none (prefix is all 0xFF).
func prefixEnd(prefix []byte) []byte {
	end := bytes.Clone(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] != 0xFF {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// compareValues orders two non-null values of the same Go type the way
// their key encodings order: false < true; numbers numerically with -0 < +0
// and NaN after +Inf; strings and bytes bytewise.
func compareValues(a, b any) int {
	switch a := a.(type) {
	case bool:
		b := b.(bool)
		switch {
		case a == b:
			return 0
		case !a:
			return -1
		}
		return 1
	case int64:
		b := b.(int64)
		switch {
		case a < b:
			return -1
		case a > b:
			return 1
		}
		return 0
	case float64:
		ka, kb := floatKeyBits(a), floatKeyBits(b.(float64))
		switch {
		case ka < kb:
			return -1
		case ka > kb:
			return 1
		}
		return 0
	case decimal128.Num:
		return a.Cmp(b.(decimal128.Num))
	case []byte:
		return bytes.Compare(a, b.([]byte))
	case string:
		return strings.Compare(a, b.(string))
	}
	panic(fmt.Sprintf("kv: cannot compare %T", a))
}
