package tiering_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/catalog/embedded"
	"github.com/strom-io/strom/tiering"
)

func TestSettingsOf(t *testing.T) {
	for _, tc := range []struct {
		props map[string]string
		want  tiering.Settings
	}{
		{nil, tiering.Settings{Freshness: tiering.DefaultFreshness}},
		{map[string]string{catalog.PropDatalakeEnabled: "true"}, tiering.Settings{Enabled: true, Freshness: tiering.DefaultFreshness}},
		{map[string]string{catalog.PropDatalakeEnabled: "true", catalog.PropDatalakeFreshness: "30s"}, tiering.Settings{Enabled: true, Freshness: 30 * time.Second}},
		{map[string]string{catalog.PropDatalakeEnabled: "false", catalog.PropDatalakeFreshness: "1d"}, tiering.Settings{Freshness: 24 * time.Hour}},
	} {
		got, err := tiering.SettingsOf(catalog.Table{TableSpec: catalog.TableSpec{Properties: tc.props}})
		if err != nil || got != tc.want {
			t.Errorf("SettingsOf(%v) = %+v, %v; want %+v", tc.props, got, err, tc.want)
		}
	}
	if _, err := tiering.SettingsOf(catalog.Table{TableSpec: catalog.TableSpec{Properties: map[string]string{catalog.PropDatalakeEnabled: "maybe"}}}); err == nil {
		t.Error("SettingsOf accepted enabled=maybe")
	}
}

func TestLakeTables(t *testing.T) {
	ctx := context.Background()
	store, err := embedded.Open(filepath.Join(t.TempDir(), "catalog"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for _, db := range []string{"b", "a"} {
		if _, err := store.CreateDatabase(ctx, db); err != nil {
			t.Fatal(err)
		}
	}
	create := func(db, name string, props map[string]string) {
		t.Helper()
		_, err := store.CreateTable(ctx, catalog.TableSpec{
			Database: db, Name: name, Buckets: 1, Properties: props,
			Schema: catalog.Schema{Columns: []catalog.Column{{Name: "id", Type: catalog.MustParseType("BIGINT")}}},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	create("b", "lake", map[string]string{catalog.PropDatalakeEnabled: "true", catalog.PropDatalakeFreshness: "30s"})
	create("a", "stream_only", nil)
	create("a", "lake", map[string]string{catalog.PropDatalakeEnabled: "true"})
	create("a", "off", map[string]string{catalog.PropDatalakeEnabled: "false"})

	got, err := tiering.LakeTables(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, lt := range got {
		names = append(names, lt.Table.Database+"."+lt.Table.Name+"@"+lt.Settings.Freshness.String())
	}
	if want := "[a.lake@3m0s b.lake@30s]"; want != fmt.Sprint(names) {
		t.Fatalf("LakeTables = %v, want %s", names, want)
	}
}
