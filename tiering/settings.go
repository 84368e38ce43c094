// Package tiering turns Strom's streams into Apache Iceberg tables. The
// Tierer copies the committed records of every table with
// table.datalake.enabled into its Iceberg table (package lake), often enough
// to keep the lake within the table's table.datalake.freshness, and exactly
// once: the Iceberg snapshot records the offsets it holds, and the catalog's
// tiered offsets follow it. docs/lake.md describes the mapping and the
// argument.
//
// This file reads the lake settings from the table properties.
package tiering

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/strom-io/strom/catalog"
)

// DefaultFreshness is the lake's target lag behind the stream when a table
// enables tiering without table.datalake.freshness (Fluss's default).
const DefaultFreshness = 3 * time.Minute

// Settings are a table's lake settings.
type Settings struct {
	// Enabled: the tiering role keeps an Iceberg copy of the table.
	Enabled bool
	// Freshness: how far the Iceberg copy may lag behind the stream.
	Freshness time.Duration
}

// SettingsOf reads the lake settings from a table's properties. Values were
// validated when the table was created; an error here means the catalog
// holds a value this version does not understand.
func SettingsOf(t catalog.Table) (Settings, error) {
	s := Settings{Freshness: DefaultFreshness}
	if v, ok := t.Properties[catalog.PropDatalakeEnabled]; ok {
		enabled, err := strconv.ParseBool(v)
		if err != nil {
			return Settings{}, fmt.Errorf("table %s.%s: %s: %w", t.Database, t.Name, catalog.PropDatalakeEnabled, err)
		}
		s.Enabled = enabled
	}
	if v, ok := t.Properties[catalog.PropDatalakeFreshness]; ok {
		d, err := catalog.ParseDuration(v)
		if err != nil {
			return Settings{}, fmt.Errorf("table %s.%s: %s: %w", t.Database, t.Name, catalog.PropDatalakeFreshness, err)
		}
		s.Freshness = d
	}
	return s, nil
}

// TableLister is the part of the catalog the tiering role reads tables from.
type TableLister interface {
	ListDatabases(ctx context.Context) ([]catalog.Database, error)
	ListTables(ctx context.Context, database string) ([]catalog.Table, error)
}

// LakeTable is a table to tier with its settings.
type LakeTable struct {
	Table    catalog.Table
	Settings Settings
}

// LakeTables returns every table that has tiering enabled, ordered by
// database and name. A table with unreadable settings is an error, not
// silently skipped.
func LakeTables(ctx context.Context, store TableLister) ([]LakeTable, error) {
	dbs, err := store.ListDatabases(ctx)
	if err != nil {
		return nil, fmt.Errorf("tiering: list databases: %w", err)
	}
	var out []LakeTable
	for _, db := range dbs {
		tables, err := store.ListTables(ctx, db.Name)
		if err != nil {
			return nil, fmt.Errorf("tiering: list tables of %s: %w", db.Name, err)
		}
		for _, t := range tables {
			s, err := SettingsOf(t)
			if err != nil {
				return nil, fmt.Errorf("tiering: %w", err)
			}
			if s.Enabled {
				out = append(out, LakeTable{Table: t, Settings: s})
			}
		}
	}
	return out, nil
}
