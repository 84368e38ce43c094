package rest_test

import (
	"log/slog"
	"net/http"
	"os"

	icebergcatalog "github.com/apache/iceberg-go/catalog"

	"github.com/strom-io/strom/tiering/rest"
)

// Strom mounts the catalog at /iceberg/, so engines are given the catalog
// URI http://host:9123/iceberg. cat is iceberg-go's SQL catalog on Strom's
// PostgreSQL, the one the tiering role writes through.
func ExampleNewHandler() {
	var cat icebergcatalog.Catalog // e.g. sql.NewCatalog("strom", db, sql.Postgres, props)
	cfg := rest.Config{
		Warehouse:   "s3://strom/lake",
		S3Endpoint:  "http://minio:9000",
		S3Region:    "us-east-1",
		S3PathStyle: true,
	}
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	mux := http.NewServeMux()
	mux.Handle("/iceberg/", http.StripPrefix("/iceberg", rest.NewHandler(cat, cfg, logger)))
	_ = &http.Server{Addr: ":9123", Handler: mux}
}
