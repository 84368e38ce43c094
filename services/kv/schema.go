package kv

import (
	"slices"

	"github.com/strom-io/strom/catalog"
)

// KeySchema is the table's schema with every non-key column nullable: the
// shape of a row that holds only a key (lookups and deletes).
func KeySchema(t catalog.Table) catalog.Schema {
	return relaxed(t.Schema, func(i int) bool { return !slices.Contains(t.Schema.PrimaryKey, t.Schema.Columns[i].Name) })
}

// UpsertSchema is the shape of the rows of an upsert: the table's schema,
// with every column outside targets nullable for a partial update (it need
// not send them, NOT NULL or not). targets nil means every column.
func UpsertSchema(s catalog.Schema, targets []int) catalog.Schema {
	if targets == nil {
		return s
	}
	return relaxed(s, func(i int) bool { return !slices.Contains(targets, i) })
}

// relaxed returns s with the columns for which nullable says so made
// nullable.
func relaxed(s catalog.Schema, nullable func(int) bool) catalog.Schema {
	cols := slices.Clone(s.Columns)
	for i := range cols {
		if nullable(i) {
			cols[i].Nullable = true
		}
	}
	return catalog.Schema{Columns: cols, PrimaryKey: s.PrimaryKey}
}
