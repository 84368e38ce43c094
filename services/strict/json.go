package strict

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// UnmarshalJSON decodes the protobuf JSON data into m, refusing unknown
// fields and enum values with an *Error. Field names may be the proto
// names (snake_case) or the JSON names (camelCase).
func UnmarshalJSON(data []byte, m proto.Message) error {
	if err := protojson.Unmarshal(data, m); err != nil {
		// protojson names neither the message nor a close name: find
		// what it refused again, to say so.
		if e := findJSON(data, m.ProtoReflect().Descriptor()); e != nil {
			return e
		}
		return fmt.Errorf("%s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	// Enum numbers the schema does not define pass protojson.
	return Check(m)
}

// findJSON walks the JSON data along md and returns the first unknown
// field or enum value name; nil when it finds none (or data is not JSON).
func findJSON(data []byte, md protoreflect.MessageDescriptor) *Error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil
	}
	w := walker{}
	return w.jsonMessage(md, v)
}

// jsonMessage checks v, the JSON of a message of type md. Well-known
// types (Struct, Timestamp, ...) have JSON forms of their own, which
// protojson checks.
func (w *walker) jsonMessage(md protoreflect.MessageDescriptor, v any) *Error {
	obj, ok := v.(map[string]any)
	if !ok || strings.HasPrefix(string(md.FullName()), "google.protobuf.") {
		return nil
	}
	fields := md.Fields()
	for _, name := range sortedKeys(obj) {
		fd := fields.ByJSONName(name)
		if fd == nil {
			fd = fields.ByTextName(name)
		}
		if fd == nil {
			return &Error{Message: md.FullName(), Path: w.format(name), Field: name, Suggestion: closest(name, fieldNames(md), false)}
		}
		val := obj[name]
		if val == nil {
			continue
		}
		w.path = append(w.path, step{name: string(fd.Name()), index: -1})
		var e *Error
		switch {
		case fd.IsList():
			if arr, ok := val.([]any); ok {
				for i := 0; i < len(arr) && e == nil; i++ {
					w.path[len(w.path)-1].index = i
					e = w.jsonValue(md, fd, fd, arr[i])
				}
			}
		case fd.IsMap():
			if m, ok := val.(map[string]any); ok {
				for _, k := range sortedKeys(m) {
					w.path[len(w.path)-1].key, w.path[len(w.path)-1].hasKey = k, true
					if e = w.jsonValue(md, fd, fd.MapValue(), m[k]); e != nil {
						break
					}
				}
			}
		default:
			e = w.jsonValue(md, fd, fd, val)
		}
		w.path = w.path[:len(w.path)-1]
		if e != nil {
			return e
		}
	}
	return nil
}

// jsonValue checks v, the JSON of one value of field fd of md; vd
// describes the value (fd, or a map's value field).
func (w *walker) jsonValue(md protoreflect.MessageDescriptor, fd, vd protoreflect.FieldDescriptor, v any) *Error {
	switch {
	case vd.Enum() != nil:
		ed := vd.Enum()
		if ed.FullName() == "google.protobuf.NullValue" {
			return nil
		}
		var sent string
		switch x := v.(type) {
		case string:
			if ed.Values().ByName(protoreflect.Name(x)) != nil {
				return nil
			}
			sent = strconv.Quote(x)
		case json.Number:
			n, err := strconv.ParseInt(string(x), 10, 32)
			if err != nil || ed.Values().ByNumber(protoreflect.EnumNumber(n)) != nil {
				return nil // not an int32: protojson says so
			}
			sent = string(x)
		default:
			return nil
		}
		e := &Error{Message: md.FullName(), Path: w.format(""), Field: string(fd.Name()), Enum: ed.FullName(), Value: sent, Known: enumNames(ed)}
		if s, ok := v.(string); ok {
			e.Suggestion = closest(s, e.Known, true)
		}
		return e
	case vd.Message() != nil:
		return w.jsonMessage(vd.Message(), v)
	}
	return nil
}
