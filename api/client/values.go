package client

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
)

// maxExact is the largest integer magnitude a float64 holds exactly.
const maxExact = 1 << 53

// NewRow converts a row keyed by column name to the google.protobuf.Struct
// an AppendRequest carries, as Producer.Send does: integers beyond ±2^53
// and json.Number values beyond float64 become decimal strings, time.Time an
// RFC 3339 string. An unsupported value is an error naming the column.
func NewRow(row map[string]any) (*structpb.Struct, error) { return newStruct(row) }

// newStruct converts a row to a google.protobuf.Struct (see Producer.Send).
func newStruct(row map[string]any) (*structpb.Struct, error) {
	fields := make(map[string]*structpb.Value, len(row))
	for k, v := range row {
		val, err := newValue(v)
		if err != nil {
			return nil, fmt.Errorf("client: column %q: %w", k, err)
		}
		fields[k] = val
	}
	return &structpb.Struct{Fields: fields}, nil
}

func newValue(v any) (*structpb.Value, error) {
	switch v := v.(type) {
	case time.Time:
		return structpb.NewStringValue(v.Format(time.RFC3339Nano)), nil
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return intValue(i), nil
		}
		if strings.ContainsAny(v.String(), ".eE") {
			if f, err := v.Float64(); err == nil {
				return structpb.NewNumberValue(f), nil
			}
		}
		// An integer beyond int64 or a number beyond float64: let the server
		// parse the digits.
		return structpb.NewStringValue(v.String()), nil
	case int:
		return intValue(int64(v)), nil
	case int64:
		return intValue(v), nil
	case uint:
		return uintValue(uint64(v)), nil
	case uint64:
		return uintValue(v), nil
	case map[string]any:
		s, err := newStruct(v)
		if err != nil {
			return nil, err
		}
		return structpb.NewStructValue(s), nil
	case []any:
		list := &structpb.ListValue{Values: make([]*structpb.Value, len(v))}
		for i, e := range v {
			val, err := newValue(e)
			if err != nil {
				return nil, err
			}
			list.Values[i] = val
		}
		return structpb.NewListValue(list), nil
	default:
		return structpb.NewValue(v)
	}
}

func intValue(i int64) *structpb.Value {
	if i > maxExact || i < -maxExact {
		return structpb.NewStringValue(strconv.FormatInt(i, 10))
	}
	return structpb.NewNumberValue(float64(i))
}

func uintValue(u uint64) *structpb.Value {
	if u > maxExact {
		return structpb.NewStringValue(strconv.FormatUint(u, 10))
	}
	return structpb.NewNumberValue(float64(u))
}

// asInt64 reads an integer from a Struct value: a number or a decimal string.
func asInt64(v *structpb.Value) (int64, bool) {
	switch k := v.GetKind().(type) {
	case *structpb.Value_NumberValue:
		f := k.NumberValue
		if f != math.Trunc(f) || math.Abs(f) > maxExact {
			return 0, false
		}
		return int64(f), true
	case *structpb.Value_StringValue:
		i, err := strconv.ParseInt(k.StringValue, 10, 64)
		return i, err == nil
	}
	return 0, false
}
