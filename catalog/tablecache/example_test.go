package tablecache_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/catalog/embedded"
	"github.com/strom-io/strom/catalog/tablecache"
)

// A table cache over the embedded store: the first read of a table goes to
// the catalog, later ones are served from memory, and AddColumns through
// the cache drops the cached definition before it returns.
func Example() {
	dir, _ := os.MkdirTemp("", "tablecache")
	defer os.RemoveAll(dir)
	store, err := embedded.Open(filepath.Join(dir, "catalog.db"))
	if err != nil {
		panic(err)
	}
	defer store.Close()
	lookups := map[string]int{}
	tables := tablecache.New(store, tablecache.Config{
		MaxStaleness: time.Second,
		Shared:       false, // the embedded store: this process makes every change
		OnLookup:     func(result string) { lookups[result]++ },
	})
	// A server runs the store's watch with tables.Events() (notify.Hub.Follow).

	ctx := context.Background()
	if _, err := tables.CreateDatabase(ctx, "shop"); err != nil {
		panic(err)
	}
	if _, err := tables.CreateTable(ctx, catalog.TableSpec{Database: "shop", Name: "orders", Buckets: 1,
		Schema: catalog.Schema{Columns: []catalog.Column{{Name: "id", Type: catalog.BigInt}}}}); err != nil {
		panic(err)
	}
	for range 3 {
		if _, err := tables.GetTable(ctx, "shop", "orders"); err != nil {
			panic(err)
		}
	}
	if _, err := tables.AddColumns(ctx, "shop", "orders", []catalog.Column{{Name: "note", Type: catalog.String, Nullable: true}}); err != nil {
		panic(err)
	}
	t, err := tables.GetTable(ctx, "shop", "orders")
	if err != nil {
		panic(err)
	}
	fmt.Println("schema version", t.SchemaVersion, "columns", len(t.Schema.Columns))
	fmt.Println("hits", lookups[tablecache.Hit], "misses", lookups[tablecache.Miss])
	// Output:
	// schema version 2 columns 2
	// hits 2 misses 2
}
