// Package lake is the Iceberg side of tiering: it keeps one Apache Iceberg
// table per Strom table, in an Iceberg SQL catalog (the tables of the Java
// JDBC catalog, in Strom's PostgreSQL) with Parquet data files in S3, and
// commits appends (log tables) and row deltas of equality deletes and new
// rows (primary-key tables, merge-on-read; Compact rewrites them away)
// whose snapshot summary records up to which offset each bucket has been
// tiered ("strom.offsets").
//
// The mapping of names, types, system columns and partitioning is described
// in docs/lake.md; IcebergSchema and PartitionSpec implement it.
package lake

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"strings"
	"sync"

	"github.com/apache/iceberg-go"
	icecatalog "github.com/apache/iceberg-go/catalog"
	icesql "github.com/apache/iceberg-go/catalog/sql"
	iceio "github.com/apache/iceberg-go/io"
	_ "github.com/apache/iceberg-go/io/gocloud/s3" // registers the s3:// file IO
	"github.com/apache/iceberg-go/table"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver

	"github.com/strom-io/strom/catalog"
)

// DefaultCatalogName is the Iceberg catalog name the lake's tables are
// registered under (the catalog_name column of iceberg_tables). Spark,
// Trino and PyIceberg must use the same name for their JDBC/SQL catalog.
const DefaultCatalogName = "strom"

// Table properties that Strom sets on the Iceberg tables it creates.
const (
	// PropTableID holds the id of the Strom table an Iceberg table belongs
	// to; a Strom table dropped and created again under the same name has a
	// new id, and the old Iceberg table is then not silently reused.
	PropTableID = "strom.table-id"
	// SummaryOffsets is the snapshot summary key of the tiered offsets.
	SummaryOffsets = "strom.offsets"
	// SummaryCommitID is the snapshot summary key of the commit id, a random
	// UUID per Append call, by which Append recognises its own snapshot
	// after an ambiguous commit failure.
	SummaryCommitID = "strom.commit-id"
)

// Errors, classified with errors.Is.
var (
	// ErrForeignTable: an Iceberg table of the Strom table's name exists but
	// belongs to another (dropped) Strom table, or was not created by Strom.
	ErrForeignTable = errors.New("lake: iceberg table belongs to another strom table")
	// ErrSchemaMismatch: the Iceberg table has a column whose type differs
	// from the Strom column of that name.
	ErrSchemaMismatch = errors.New("lake: iceberg schema does not match the strom table")
	// ErrAlreadyCommitted: another writer had already committed the
	// records of an Append. Append returns it together with the id of the
	// current snapshot, which holds them; the caller treats the records as
	// tiered.
	ErrAlreadyCommitted = errors.New("lake: records already committed by another writer")
	// ErrConflict: another writer committed part, but not all, of the offset
	// range an Append was about to commit. Nothing was committed; the
	// caller re-reads the offsets (Offsets) and tiers from there.
	ErrConflict = errors.New("lake: conflicting commit by another tierer")
	// ErrUnsupportedKey: the table's primary key has a column that cannot
	// be an Iceberg identifier field and equality-delete key without
	// merging distinct keys: FLOAT, DOUBLE (Iceberg forbids them as
	// identifiers), or TIMESTAMP(7..9) and TIMESTAMP_LTZ(7..9) (truncated
	// to microseconds in the lake).
	ErrUnsupportedKey = errors.New("lake: primary key cannot be tiered")
	// ErrSnapshotGone: SnapshotAt was asked for a snapshot the lake no
	// longer has (expired by maintenance, or the Iceberg table dropped).
	ErrSnapshotGone = errors.New("lake: snapshot no longer exists")
)

// S3Config locates the object store that holds the lake's files.
type S3Config struct {
	// Endpoint is the S3 endpoint URL, e.g. http://127.0.0.1:9000; empty
	// for AWS S3.
	Endpoint string `yaml:"endpoint"`
	// Region of the bucket.
	Region string `yaml:"region"`
	// AccessKey and SecretKey are static credentials; empty to use the
	// default AWS credential chain.
	AccessKey string `yaml:"access_key"`
	SecretKey string `yaml:"secret_key"`
	// PathStyle addresses the bucket path-style (http://endpoint/bucket/key)
	// as MinIO, versitygw and most S3-compatible servers need; when false
	// the bucket is addressed virtual-host style (AWS S3).
	PathStyle bool `yaml:"path_style"`
}

// Config configures the lake.
type Config struct {
	// PostgresURL is the PostgreSQL DSN of the Iceberg catalog tables
	// (iceberg_tables, iceberg_namespace_properties); normally Strom's own
	// catalog database.
	PostgresURL string `yaml:"postgres_url"`
	// CatalogName is the catalog_name of the lake's rows in those tables;
	// default DefaultCatalogName.
	CatalogName string `yaml:"catalog_name"`
	// Warehouse is the root location of new tables, e.g.
	// s3://bucket/prefix/lake; a table lives at
	// <warehouse>/<database>.db/<table>.
	Warehouse string `yaml:"warehouse"`
	// S3 is the object store of the warehouse.
	S3 S3Config `yaml:"s3"`
	// TableProperties are set on every table the lake creates, over the
	// defaults (format-version 2, zstd Parquet, manifest merging).
	TableProperties map[string]string `yaml:"table_properties"`
	// Logger receives warnings (e.g. files left behind); nil discards them.
	Logger *slog.Logger `yaml:"-"`
}

// RegisterFlags registers the flags of Config, each name prefixed with
// prefix (e.g. "lake."), with the defaults.
func (c *Config) RegisterFlags(prefix string, fs *flag.FlagSet) {
	fs.StringVar(&c.PostgresURL, prefix+"postgres-url", "", "PostgreSQL DSN of the Iceberg JDBC catalog tables (usually the Strom catalog's database)")
	fs.StringVar(&c.CatalogName, prefix+"catalog-name", DefaultCatalogName, "Iceberg catalog name of the lake tables; engines must use the same name")
	fs.StringVar(&c.Warehouse, prefix+"warehouse", "", "root location of the lake tables, e.g. s3://bucket/lake")
	fs.StringVar(&c.S3.Endpoint, prefix+"s3.endpoint", "", "S3 endpoint URL of the warehouse; empty for AWS S3")
	fs.StringVar(&c.S3.Region, prefix+"s3.region", "us-east-1", "S3 region of the warehouse bucket")
	fs.StringVar(&c.S3.AccessKey, prefix+"s3.access-key", "", "S3 access key; empty for the default AWS credential chain")
	fs.StringVar(&c.S3.SecretKey, prefix+"s3.secret-key", "", "S3 secret key")
	fs.BoolVar(&c.S3.PathStyle, prefix+"s3.path-style", true, "address the bucket path-style (MinIO, versitygw); false for virtual-host style (AWS)")
}

// Validate checks the configuration; errors name the field.
func (c Config) Validate() error {
	if c.PostgresURL == "" {
		return errors.New("lake: postgres_url is required")
	}
	if c.Warehouse == "" {
		return errors.New("lake: warehouse is required, e.g. s3://bucket/lake")
	}
	if !strings.Contains(c.Warehouse, "://") {
		return fmt.Errorf("lake: warehouse %q: want a URL such as s3://bucket/lake", c.Warehouse)
	}
	if (c.S3.AccessKey == "") != (c.S3.SecretKey == "") {
		return errors.New("lake: s3.access_key and s3.secret_key must be set together")
	}
	if _, ok := c.TableProperties[PropTableID]; ok {
		return fmt.Errorf("lake: table_properties: %s is set by Strom", PropTableID)
	}
	return nil
}

// Lake is the set of Iceberg tables of one Strom deployment. It is safe for
// concurrent use.
type Lake struct {
	db        *sql.DB
	cat       *icesql.Catalog
	tableProp iceberg.Properties
	log       *slog.Logger

	fsMu sync.Mutex
	fs   map[string]iceio.IO // by scheme://bucket of table locations; see withFS
}

// load loads a lake table with the lake's shared file IO (withFS).
func (l *Lake) load(ctx context.Context, ident table.Identifier) (*table.Table, error) {
	tbl, err := l.cat.LoadTable(ctx, ident)
	if err != nil {
		return nil, err
	}
	return l.withFS(ctx, tbl)
}

// withFS returns tbl reading and writing through one file IO per bucket,
// shared by every table the lake loads: an iceberg-go table opens a new
// IO — an S3 client, its configuration loaded again (and a CA bundle
// read and parsed, when AWS_CA_BUNDLE is set) — on every FS call, which
// scans and commits make several times each.
func (l *Lake) withFS(ctx context.Context, tbl *table.Table) (*table.Table, error) {
	u, err := url.Parse(tbl.Location())
	if err != nil {
		return nil, fmt.Errorf("lake: %s: location %q: %w", strings.Join(tbl.Identifier(), "."), tbl.Location(), err)
	}
	key := u.Scheme + "://" + u.Host
	l.fsMu.Lock()
	fs, ok := l.fs[key]
	l.fsMu.Unlock()
	if !ok {
		// Not ctx itself: the IO keeps the context it was opened with
		// for its reads, and outlives the call that opens it.
		if fs, err = tbl.FS(context.WithoutCancel(ctx)); err != nil {
			return nil, fmt.Errorf("lake: %s: open file IO: %w", strings.Join(tbl.Identifier(), "."), err)
		}
		l.fsMu.Lock()
		if prev, ok := l.fs[key]; ok {
			fs = prev
		} else {
			if l.fs == nil {
				l.fs = map[string]iceio.IO{}
			}
			l.fs[key] = fs
		}
		l.fsMu.Unlock()
	}
	return table.New(tbl.Identifier(), tbl.Metadata(), tbl.MetadataLocation(),
		func(context.Context) (iceio.IO, error) { return fs, nil }, l.cat), nil
}

// catalogLockKey is the PostgreSQL advisory lock key under which Open
// creates the catalog tables, so that processes starting together do not
// race on CREATE TABLE IF NOT EXISTS (which PostgreSQL does not make safe).
const catalogLockKey = 0x5374726f6d4c616b // "StromLak"

// Open connects to the Iceberg SQL catalog in PostgreSQL, creating its
// tables (the Java JDBC catalog's iceberg_tables and
// iceberg_namespace_properties, schema V1) if they do not exist.
func Open(ctx context.Context, cfg Config) (*Lake, error) {
	if cfg.CatalogName == "" {
		cfg.CatalogName = DefaultCatalogName
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	db, err := sql.Open("pgx", cfg.PostgresURL)
	if err != nil {
		return nil, fmt.Errorf("lake: open postgres: %w", err)
	}
	cat, err := newCatalog(ctx, db, cfg)
	if err != nil {
		db.Close()
		return nil, err
	}
	props := iceberg.Properties{
		table.PropertyFormatVersion:               "2",
		table.ParquetCompressionKey:               "zstd",
		table.ManifestMergeEnabledKey:             "true",
		table.MetadataDeleteAfterCommitEnabledKey: "true",
	}
	maps.Copy(props, cfg.TableProperties)
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Lake{db: db, cat: cat, tableProp: props, log: log}, nil
}

func newCatalog(ctx context.Context, db *sql.DB, cfg Config) (*icesql.Catalog, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("lake: connect to postgres: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", int64(catalogLockKey)); err != nil {
		return nil, fmt.Errorf("lake: lock catalog tables: %w", err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", int64(catalogLockKey)) //nolint:errcheck // the session ends with conn anyway

	props := iceberg.Properties{
		"warehouse":                    cfg.Warehouse,
		iceio.S3Region:                 cfg.S3.Region,
		iceio.S3ForceVirtualAddressing: fmt.Sprint(!cfg.S3.PathStyle),
		icesql.SchemaVersionKey:        icesql.SchemaVersionV1,
	}
	if cfg.S3.Endpoint != "" {
		props[iceio.S3EndpointURL] = cfg.S3.Endpoint
	}
	if cfg.S3.AccessKey != "" {
		props[iceio.S3AccessKeyID] = cfg.S3.AccessKey
		props[iceio.S3SecretAccessKey] = cfg.S3.SecretKey
	}
	cat, err := icesql.NewCatalog(cfg.CatalogName, db, icesql.Postgres, props)
	if err != nil {
		return nil, fmt.Errorf("lake: open iceberg sql catalog: %w", err)
	}
	return cat, nil
}

// Catalog returns the Iceberg catalog that holds the lake's tables, for
// serving it to engines (the REST catalog) and for reading tables back.
func (l *Lake) Catalog() icecatalog.Catalog { return l.cat }

// Close releases the catalog's connections.
func (l *Lake) Close() error {
	return errors.Join(l.cat.Close(), l.db.Close())
}

// Identifier returns the Iceberg identifier of a Strom table: the namespace
// is the database, the table name is the table's.
func Identifier(t catalog.Table) table.Identifier {
	return table.Identifier{t.Database, t.Name}
}
