// Package changelog is the contract of a primary-key table's changelog,
// shared by everything that writes or reads it (the KV state that makes it,
// readers that replay it, the tiering that turns it into Iceberg deletes):
// every change is a whole row with a change type in the column Column.
//
//   - Insert ("+I"): the row of a key that had none;
//   - UpdateBefore ("-U"): a key's row before an update, right before its
//     UpdateAfter;
//   - UpdateAfter ("+U"): the key's row after the update;
//   - Delete ("-D"): the row of a key that was deleted, whole.
//
// Replaying a changelog in offset order, Insert and UpdateAfter put the row,
// Delete removes the key, UpdateBefore changes nothing.
package changelog

import "fmt"

// Column names the change type column that follows a table's columns in
// a changelog record (utf8, not null).
const Column = "_change_type"

// Kind is a change type.
type Kind uint8

// Change types; their text in Column is Kind.String.
const (
	Insert       Kind = iota + 1 // +I
	UpdateBefore                 // -U
	UpdateAfter                  // +U
	Delete                       // -D
)

var texts = [...]string{Insert: "+I", UpdateBefore: "-U", UpdateAfter: "+U", Delete: "-D"}

// String returns the change type's text in Column: "+I", "-U", "+U" or
// "-D".
func (k Kind) String() string {
	if k < Insert || k > Delete {
		return fmt.Sprintf("changelog.Kind(%d)", uint8(k))
	}
	return texts[k]
}

// Parse returns the change type whose text is s.
func Parse(s string) (Kind, error) {
	switch s {
	case "+I":
		return Insert, nil
	case "-U":
		return UpdateBefore, nil
	case "+U":
		return UpdateAfter, nil
	case "-D":
		return Delete, nil
	}
	return 0, fmt.Errorf("changelog: unknown change type %q: want +I, -U, +U or -D", s)
}

// Puts reports whether replaying the change puts its row: Insert and
// UpdateAfter.
func (k Kind) Puts() bool { return k == Insert || k == UpdateAfter }
