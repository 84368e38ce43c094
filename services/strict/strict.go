// Package strict decodes API requests strictly: an unknown field or an
// enum value the schema does not define is an error naming it, where it
// is, and the closest known name. Connect's codecs discard unknown JSON
// fields, and proto3 keeps unknown binary fields and undefined enum
// numbers; either way a typo would silently change what a request does
// (a misspelled target_columns turns a partial update into a full one).
//
// HandlerOptions installs the strict codecs on a Connect handler; they
// serve the Connect protocol (POST and GET), gRPC and gRPC-Web, in JSON and
// binary.
package strict

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Error is an unknown field or an undefined enum value in a request.
// connect-go answers it with invalid_argument.
type Error struct {
	// Message is the full name of the message that holds the field.
	Message protoreflect.FullName
	// Path locates the field from the request's top level, in the API's
	// snake_case spelling: "colums", "schema.primarykey",
	// "add_columns[1].type", `properties["k"]`; "#7" for the unknown
	// binary field number 7.
	Path string
	// Field is the field's name as sent (an unknown JSON name, or "#7"),
	// or the name of the enum field whose value is unknown.
	Field string
	// Enum is the enum's full name when the value is unknown; empty for an
	// unknown field.
	Enum protoreflect.FullName
	// Value is the unknown enum value as sent: a quoted name or a number.
	Value string
	// Suggestion is the closest known field or value name; empty when
	// none is close.
	Suggestion string
	// Known lists the enum's value names, for an unknown enum value.
	Known []string
}

// Error returns, for example, `unknown field "colums" in
// strom.v1.FetchRequest; did you mean "columns"?`.
func (e *Error) Error() string {
	var b strings.Builder
	if e.Enum == "" {
		if n, ok := strings.CutPrefix(e.Field, "#"); ok {
			fmt.Fprintf(&b, "unknown field number %s in %s", n, e.Message)
		} else {
			fmt.Fprintf(&b, "unknown field %q in %s", e.Field, e.Message)
		}
	} else {
		fmt.Fprintf(&b, "unknown value %s for field %s of %s (enum %s)", e.Value, e.Field, e.Message, e.Enum)
	}
	if e.Path != e.Field {
		fmt.Fprintf(&b, " at %s", e.Path)
	}
	switch {
	case e.Suggestion != "":
		fmt.Fprintf(&b, "; did you mean %q?", e.Suggestion)
	case len(e.Known) > 0:
		fmt.Fprintf(&b, "; want one of %s", strings.Join(e.Known, ", "))
	}
	return b.String()
}

// Check returns an *Error for the first unknown field (binary fields the
// schema does not define, kept in the message's unknown fields) or enum
// number the schema does not define in m, at any depth; nil when there is
// none.
func Check(m proto.Message) error {
	w := walker{}
	return w.message(m.ProtoReflect())
}

// walker checks a decoded message. path holds the steps to the message
// being checked; it is formatted only for an error.
type walker struct {
	path []step
}

// step is one step of a path: a field name, then optionally a list index
// or a map key.
type step struct {
	name   string
	index  int    // -1: none
	key    string // with hasKey
	hasKey bool
}

func (w *walker) message(m protoreflect.Message) error {
	md := m.Descriptor()
	if raw := m.GetUnknown(); len(raw) > 0 {
		num, _, _ := protowire.ConsumeField(raw)
		name := "#" + strconv.Itoa(int(num))
		return &Error{Message: md.FullName(), Path: w.format(name), Field: name}
	}
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		w.path = append(w.path, step{name: string(fd.Name()), index: -1})
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len() && err == nil; i++ {
				w.path[len(w.path)-1].index = i
				err = w.value(md, fd, fd, l.Get(i))
			}
		case fd.IsMap():
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				w.path[len(w.path)-1].key, w.path[len(w.path)-1].hasKey = k.String(), true
				err = w.value(md, fd, fd.MapValue(), mv)
				return err == nil
			})
		default:
			err = w.value(md, fd, fd, v)
		}
		w.path = w.path[:len(w.path)-1]
		return err == nil
	})
	return err
}

// value checks one value of field fd of message md; vd describes the
// value (fd itself, or for a map its value field).
func (w *walker) value(md protoreflect.MessageDescriptor, fd, vd protoreflect.FieldDescriptor, v protoreflect.Value) error {
	switch {
	case vd.Enum() != nil:
		ed := vd.Enum()
		n := v.Enum()
		if ed.Values().ByNumber(n) == nil {
			return &Error{
				Message: md.FullName(), Path: w.format(""), Field: string(fd.Name()),
				Enum: ed.FullName(), Value: strconv.Itoa(int(n)), Known: enumNames(ed),
			}
		}
	case vd.Message() != nil:
		return w.message(v.Message())
	}
	return nil
}

// format renders the path, with last appended as a final step when not
// empty.
func (w *walker) format(last string) string {
	var b strings.Builder
	for i, s := range w.path {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(s.name)
		switch {
		case s.hasKey:
			fmt.Fprintf(&b, "[%q]", s.key)
		case s.index >= 0:
			fmt.Fprintf(&b, "[%d]", s.index)
		}
	}
	if last != "" {
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(last)
	}
	return b.String()
}

// enumNames lists the names of ed's values in declaration order.
func enumNames(ed protoreflect.EnumDescriptor) []string {
	vals := ed.Values()
	out := make([]string, vals.Len())
	for i := range out {
		out[i] = string(vals.Get(i).Name())
	}
	return out
}

// fieldNames lists the names a JSON request may use for md's fields: the
// proto name and, where it differs, the camelCase JSON name.
func fieldNames(md protoreflect.MessageDescriptor) []string {
	fields := md.Fields()
	out := make([]string, 0, 2*fields.Len())
	for i := range fields.Len() {
		fd := fields.Get(i)
		out = append(out, fd.TextName())
		if fd.JSONName() != fd.TextName() {
			out = append(out, fd.JSONName())
		}
	}
	return out
}

// closest returns the candidate nearest to name (case-insensitive edit
// distance; for enum values also against the names without the values'
// common prefix, so "arrow" finds FORMAT_ARROW), or "" when none is
// close: at most one edit per four characters.
func closest(name string, candidates []string, enum bool) string {
	prefix := ""
	if enum {
		prefix = commonPrefix(candidates)
	}
	lname := strings.ToLower(name)
	best, bestD := "", len(name)
	for _, c := range candidates {
		lc := strings.ToLower(c)
		d := distance(lname, lc)
		if prefix != "" {
			d = min(d, distance(lname, strings.ToLower(strings.TrimPrefix(c, prefix))))
		}
		if d < bestD {
			best, bestD = c, d
		}
	}
	if bestD > max(1, len(name)/4) {
		return ""
	}
	return best
}

// commonPrefix is the longest prefix ending in '_' that every name shares
// ("FORMAT_" of FORMAT_JSON and FORMAT_ARROW).
func commonPrefix(names []string) string {
	if len(names) == 0 {
		return ""
	}
	p := names[0]
	for _, n := range names[1:] {
		for !strings.HasPrefix(n, p) {
			p = p[:len(p)-1]
		}
	}
	if i := strings.LastIndexByte(p, '_'); i >= 0 {
		return p[:i+1]
	}
	return ""
}

// distance is the Levenshtein distance of a and b, by bytes.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// sortedKeys returns m's keys in order, for a deterministic first error.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
