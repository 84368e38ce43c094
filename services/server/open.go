package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/catalog/embedded"
	"github.com/strom-io/strom/catalog/postgres"
	"github.com/strom-io/strom/services/objstore"
)

// openCatalog opens the configured catalog; the embedded one is created
// under the data directory on first start.
func openCatalog(ctx context.Context, cfg Config) (catalog.Store, error) {
	switch cfg.Catalog.Backend {
	case CatalogPostgres:
		s, err := postgres.Open(ctx, cfg.Catalog.Postgres.URL)
		if err != nil {
			return nil, fmt.Errorf("catalog.postgres: %w", err)
		}
		return s, nil
	default:
		dir := cfg.embeddedCatalogDir()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("catalog.embedded.dir: %w", err)
		}
		s, err := embedded.Open(filepath.Join(dir, "catalog.db"))
		if err != nil {
			return nil, fmt.Errorf("catalog.embedded: %w", err)
		}
		return s, nil
	}
}

// openObjStore opens the configured object store.
func openObjStore(ctx context.Context, cfg Config) (objstore.Bucket, error) {
	b, err := objstore.New(ctx, cfg.ObjStore)
	if err != nil {
		return nil, fmt.Errorf("objstore: %w", err)
	}
	return b, nil
}
