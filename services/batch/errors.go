package batch

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors of DecodeIPC; wrapped with detail, classified with
// errors.Is.
var (
	// ErrMalformed: the bytes are not a valid Arrow IPC stream, or a batch
	// in it is internally inconsistent. Invalid input (invalid_argument).
	ErrMalformed = errors.New("batch: malformed Arrow IPC stream")
	// ErrTooLarge: the stream, or the memory its batches need once
	// decompressed, exceeds the caller's limit (resource_exhausted).
	ErrTooLarge = errors.New("batch: Arrow IPC stream too large")
)

// RowError reports one bad value: the row (zero-based index into the rows
// given to FromJSON, or into the concatenated batches of an IPC stream), the
// column, and what is wrong. Its message reads
//
//	row 17, column "price": want DECIMAL(10,2), got string "abc"
//
// and is meant for the end user. It is invalid input (invalid_argument).
type RowError struct {
	Row    int
	Column string
	Reason string
}

// Error implements error.
func (e *RowError) Error() string {
	return fmt.Sprintf("row %d, column %q: %s", e.Row, e.Column, e.Reason)
}

// SchemaError reports a mismatch between a table's schema and an Arrow
// schema sent by a client, naming the column. Its message reads
//
//	column "price": want DECIMAL(10,2) as decimal(10, 2), got float64
//
// It is invalid input (invalid_argument).
type SchemaError struct {
	Column string
	Reason string
}

// Error implements error.
func (e *SchemaError) Error() string {
	return fmt.Sprintf("column %q: %s", e.Column, e.Reason)
}

// maxQuoted bounds how much of a bad value an error message repeats.
const maxQuoted = 64

// quote renders s for an error message, shortened to maxQuoted bytes.
func quote(s string) string {
	if len(s) <= maxQuoted {
		return fmt.Sprintf("%q", s)
	}
	cut := maxQuoted
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%q...", s[:cut])
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// describe renders a JSON-ish value for an error message: its JSON kind and
// the value, e.g. `string "abc"`, `number 1.5`, `boolean true`, `object`.
func describe(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case bool:
		return fmt.Sprintf("boolean %t", v)
	case string:
		return "string " + quote(v)
	case []byte:
		return fmt.Sprintf("bytes (%d)", len(v))
	case map[string]any:
		return "object"
	case []any:
		return "array"
	}
	if s, ok := numberText(v); ok {
		if len(s) > maxQuoted {
			s = s[:maxQuoted] + "..."
		}
		return "number " + s
	}
	return strings.TrimPrefix(fmt.Sprintf("%T", v), "*")
}
