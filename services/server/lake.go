package server

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/services/objstore"
	"github.com/strom-io/strom/services/reader"
	"github.com/strom-io/strom/tiering"
	"github.com/strom-io/strom/tiering/lake"
	"github.com/strom-io/strom/tiering/rest"
)

// LakeConfig configures the Iceberg lake: where its tables live, the
// tiering role, and the REST catalog served at /iceberg. The lake uses
// the deployment's own PostgreSQL (its Iceberg JDBC catalog tables) and S3
// bucket, so it needs catalog.backend=postgres and objstore.backend=s3.
type LakeConfig struct {
	// CatalogName is the Iceberg catalog name; engines must use the same.
	CatalogName string `yaml:"catalog_name"`
	// Warehouse is where lake tables live; default s3://<bucket>/<prefix>/lake.
	Warehouse string         `yaml:"warehouse"`
	Tiering   tiering.Config `yaml:"tiering"`
	REST      LakeRESTConfig `yaml:"rest"`
}

// LakeRESTConfig configures the Iceberg REST catalog.
type LakeRESTConfig struct {
	Enabled bool `yaml:"enabled"`
	// S3Endpoint is the endpoint engines read data files from, when it
	// differs from objstore.s3.endpoint (another network, a proxy).
	S3Endpoint      string `yaml:"s3_endpoint"`
	VendCredentials bool   `yaml:"vend_credentials"`
}

// RegisterFlags registers the lake settings under prefix.
func (c *LakeConfig) RegisterFlags(prefix string, f *flag.FlagSet) {
	f.StringVar(&c.CatalogName, prefix+"catalog-name", lake.DefaultCatalogName, "Iceberg catalog name of the lake tables (the catalog_name of their rows in the JDBC catalog tables); engines must use the same name.")
	f.StringVar(&c.Warehouse, prefix+"warehouse", "", "Root location of the lake tables (default s3://<objstore.s3.bucket>/<objstore.s3.prefix>/lake).")
	c.Tiering.RegisterFlags(prefix+"tiering.", f)
	f.BoolVar(&c.REST.Enabled, prefix+"rest.enabled", true, "Serve the read-only Iceberg REST catalog at /iceberg on the API port (engines use the catalog URI http://<host>:<port>/iceberg).")
	f.StringVar(&c.REST.S3Endpoint, prefix+"rest.s3-endpoint", "", "S3 endpoint engines read the lake's data files from (default objstore.s3.endpoint).")
	f.BoolVar(&c.REST.VendCredentials, prefix+"rest.vend-credentials", false, "Hand objstore.s3's keys to engines that ask for vended credentials. WARNING: only with read-only keys behind a trusted network.")
}

// lakeUnavailable says why this deployment has no lake, or "" when it has.
func (c *Config) lakeUnavailable() string {
	switch {
	case c.Catalog.Backend != CatalogPostgres:
		return "the lake keeps its Iceberg catalog in PostgreSQL: use catalog.backend=postgres"
	case c.ObjStore.Backend != objstore.BackendS3:
		return "the lake keeps its files in S3: use objstore.backend=s3"
	}
	return ""
}

// lakeConfig derives the lake's settings from the catalog and object store
// settings.
func (c *Config) lakeConfig(logger *slog.Logger) lake.Config {
	s3 := c.ObjStore.S3
	warehouse := c.Lake.Warehouse
	if warehouse == "" {
		warehouse = "s3://" + s3.Bucket + "/"
		if p := strings.Trim(s3.Prefix, "/"); p != "" {
			warehouse += p + "/"
		}
		warehouse += "lake"
	}
	pathStyle := s3.Endpoint != ""
	if s3.ForcePathStyle != nil {
		pathStyle = *s3.ForcePathStyle
	}
	region := s3.Region
	if region == "" {
		region = "us-east-1"
	}
	return lake.Config{
		PostgresURL: c.Catalog.Postgres.URL,
		CatalogName: c.Lake.CatalogName,
		Warehouse:   warehouse,
		S3: lake.S3Config{
			Endpoint: s3.Endpoint, Region: region,
			AccessKey: s3.AccessKeyID, SecretKey: s3.SecretAccessKey, PathStyle: pathStyle,
		},
		Logger: logger,
	}
}

// restConfig derives what the REST catalog tells engines.
func (c *Config) restConfig(lc lake.Config) rest.Config {
	endpoint := c.Lake.REST.S3Endpoint
	if endpoint == "" {
		endpoint = lc.S3.Endpoint
	}
	rc := rest.Config{
		Warehouse: lc.Warehouse, S3Endpoint: endpoint, S3Region: lc.S3.Region, S3PathStyle: lc.S3.PathStyle,
		VendCredentials: c.Lake.REST.VendCredentials,
	}
	if rc.VendCredentials {
		rc.S3AccessKeyID, rc.S3SecretAccessKey = lc.S3.AccessKey, lc.S3.SecretKey
	}
	return rc
}

// openLake opens the lake, the REST catalog handler and, with the tiering
// role, the Tierer. Without PostgreSQL and S3 it returns no lake, and the
// REST routes answer why.
func (s *Server) openLake(ctx context.Context, mux *http.ServeMux, rd *reader.Reader, cm *clusterMetrics) error {
	if why := s.cfg.lakeUnavailable(); why != "" {
		mux.Handle("/iceberg/", s.auth.requireToken(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotImplemented)
			fmt.Fprintf(w, `{"error":{"message":%q,"type":"NotImplementedException","code":501}}`+"\n", "this Strom deployment has no lake: "+why)
		})))
		s.lakeWhy = why
		return nil
	}
	lc := s.cfg.lakeConfig(s.logger.With(slog.String("component", "lake")))
	lk, err := lake.Open(ctx, lc)
	if err != nil {
		return fmt.Errorf("lake: %w", err)
	}
	s.lake = lk
	if s.cfg.Lake.REST.Enabled {
		h := rest.NewHandler(lk.Catalog(), s.cfg.restConfig(lc), s.logger.With(slog.String("component", "iceberg-rest")), s.auth.restOptions()...)
		mux.Handle("/iceberg/", http.StripPrefix("/iceberg", h))
	}
	if !s.roles.Has("tiering") {
		return nil
	}
	tc := s.cfg.Lake.Tiering
	tc.Claims = tableClaims{s.cluster}
	tc.Logger = s.logger.With(slog.String("component", "tiering"))
	tc.OnTier = cm.onTier
	s.tierer, err = tiering.New(tc, s.store, lk, readerSource{rd})
	if err != nil {
		_ = lk.Close()
		return fmt.Errorf("tiering: %w", err)
	}
	return nil
}

// tableClaims lets the cluster decide which tables this process tiers.
type tableClaims struct {
	c interface{ OwnsTable(id int64) bool }
}

func (t tableClaims) Owns(id int64) bool { return t.c.OwnsTable(id) }

// readerSource reads committed records for tiering.
type readerSource struct{ r *reader.Reader }

func (s readerSource) Read(ctx context.Context, t catalog.Table, b catalog.BucketID, from, to int64, fn func(rec arrow.RecordBatch, base int64, ts time.Time) error) error {
	return s.r.ReadBatches(ctx, t, b, from, to, fn)
}

// warnNoLake logs once at start when lake-enabled tables exist in a
// deployment without a lake, so the silence of the tiering role is
// explained.
func (s *Server) warnNoLake(ctx context.Context) {
	if s.lakeWhy == "" || !s.roles.Has("tiering") {
		return
	}
	tables, err := tiering.LakeTables(ctx, s.store)
	if err != nil || len(tables) == 0 {
		return
	}
	names := make([]string, len(tables))
	for i, t := range tables {
		names[i] = t.Table.Database + "." + t.Table.Name
	}
	s.logger.Warn("lake-enabled tables are not tiered: "+s.lakeWhy, slog.Any("tables", names))
}
