// Package postgres implements catalog.Store on PostgreSQL with pgx. It is
// the shared catalog of a Strom deployment: every frontend and tiering
// process opens its own Store onto the same database.
//
// Open applies the embedded schema migrations (tern) before returning, under
// tern's advisory lock, so concurrent Opens are safe. Lease and member
// expiry are judged by the database clock (now()), never by the caller's.
// CommitSegment runs in one transaction that locks the affected bucket rows
// in (table, partition, bucket) order and notifies channel "strom_commits"
// once per committed range with a JSON Notification; table changes notify
// "strom_tables". Watch listens on a dedicated connection.
package postgres

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"

	"github.com/strom-io/strom/catalog"
)

// NotifyChannel is the channel CommitSegment notifies, once per committed
// range, with a JSON Notification as the payload. PostgreSQL delivers the
// notifications when the transaction commits, and never those of a
// transaction that rolls back.
const NotifyChannel = "strom_commits"

// Notification is the JSON payload on NotifyChannel:
// {"table_id":7,"partition":"","bucket":3,"next_offset":120}.
type Notification struct {
	TableID    int64  `json:"table_id"`
	Partition  string `json:"partition"`
	Bucket     int32  `json:"bucket"`
	NextOffset int64  `json:"next_offset"`
}

// TablesChannel is the channel CreateTable, AddColumns, DropTable and
// DropDatabase (per dropped table) notify with a JSON TableNotification,
// delivered when their transaction commits.
const TablesChannel = "strom_tables"

// TableNotification is the JSON payload on TablesChannel:
// {"table_id":7,"database":"db","name":"t","schema_version":2};
// schema_version is 0 when the table was dropped.
type TableNotification struct {
	TableID       int64  `json:"table_id"`
	Database      string `json:"database"`
	Name          string `json:"name"`
	SchemaVersion int32  `json:"schema_version"`
}

// syncChannelPrefix starts the name of the channel on which a watch sends
// its sync pings to itself (catalog.Events.Synced).
const syncChannelPrefix = "strom_sync_"

// notifyTable queues c's notification on TablesChannel in tx.
func notifyTable(ctx context.Context, tx pgx.Tx, c catalog.TableChange) error {
	payload, err := json.Marshal(TableNotification{TableID: c.ID, Database: c.Database, Name: c.Name, SchemaVersion: c.SchemaVersion})
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `SELECT pg_notify($1, $2)`, TablesChannel, string(payload))
	return err
}

// IdleInTransactionTimeout is the idle_in_transaction_session_timeout of
// the store's sessions unless the connection string sets one.
const IdleInTransactionTimeout = "5s"

// VersionTable is the table in which tern records the applied schema
// version.
const VersionTable = "strom_schema_version"

//go:embed migrations/*.sql
var migrationFS embed.FS

// Store is a catalog.Store on PostgreSQL. It is safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool
	// closed is cancelled by Close; it ends running Watch calls.
	closed      context.Context
	closeCancel context.CancelFunc
}

var _ catalog.Store = (*Store)(nil)

// Option configures Open.
type Option func(*pgxpool.Config)

// WithMaxConns caps the connection pool at n connections (pgxpool's default
// is max(4, GOMAXPROCS)).
func WithMaxConns(n int32) Option {
	return func(c *pgxpool.Config) { c.MaxConns = n }
}

// Open connects to the PostgreSQL database at dsn (a URL or key=value
// connection string), applies every pending schema migration and returns the
// store. Connection failures are ErrUnavailable.
func Open(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("catalog/postgres: parse dsn: %w", err)
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"]; !ok {
		// A frontend paused (or cut off) inside a transaction must not keep
		// its row locks — the bucket rows other frontends take over — past
		// a lease's lifetime. Every transaction here is a few statements.
		cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"] = IdleInTransactionTimeout
	}
	for _, o := range opts {
		o(cfg)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, mapErr("connect", err)
	}
	if err := migrateSchema(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	closed, cancel := context.WithCancel(context.Background())
	return &Store{pool: pool, closed: closed, closeCancel: cancel}, nil
}

// migrateSchema applies the embedded migrations with tern.
func migrateSchema(ctx context.Context, pool *pgxpool.Pool) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return mapErr("migrate: connect", err)
	}
	defer conn.Release()
	m, err := migrate.NewMigrator(ctx, conn.Conn(), VersionTable)
	if err != nil {
		return mapErr("migrate", err)
	}
	sub, err := fs.Sub(migrationFS, "migrations")
	if err != nil {
		return fmt.Errorf("catalog/postgres: migrations: %w", err)
	}
	if err := m.LoadMigrations(sub); err != nil {
		return fmt.Errorf("catalog/postgres: load migrations: %w", err)
	}
	if err := m.Migrate(ctx); err != nil {
		return mapErr("migrate", err)
	}
	return nil
}

// Close closes the connection pool and ends running Watch calls
// (with ErrUnavailable).
func (s *Store) Close() error {
	s.closeCancel()
	s.pool.Close()
	return nil
}

// mapErr classifies a driver error: unique violations are ErrAlreadyExists,
// foreign-key violations ErrNotFound, connection failures, shutdowns,
// serialization failures and deadlocks ErrUnavailable (retryable). Errors
// that already carry a catalog sentinel pass through.
func mapErr(op string, err error) error {
	if err == nil {
		return nil
	}
	for _, sentinel := range []error{catalog.ErrNotFound, catalog.ErrAlreadyExists, catalog.ErrInvalid,
		catalog.ErrNotEmpty, catalog.ErrLeaseHeld, catalog.ErrFenced, catalog.ErrOffsetGap, catalog.ErrUnavailable} {
		if errors.Is(err, sentinel) {
			return err
		}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("catalog/postgres: %s: %w", op, err)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "23505":
			return fmt.Errorf("catalog/postgres: %s: %w (%s)", op, catalog.ErrAlreadyExists, pgErr.Detail)
		case pgErr.Code == "23503":
			return fmt.Errorf("catalog/postgres: %s: %w (%s)", op, catalog.ErrNotFound, pgErr.Detail)
		case pgErr.Code == "40001", pgErr.Code == "40P01", // serialization failure, deadlock
			strings.HasPrefix(pgErr.Code, "08"),  // connection exception
			strings.HasPrefix(pgErr.Code, "57P"), // admin shutdown, crash shutdown, cannot connect now
			pgErr.Code == "53300":                // too many connections
			return fmt.Errorf("catalog/postgres: %s: %w: %w", op, catalog.ErrUnavailable, err)
		}
		return fmt.Errorf("catalog/postgres: %s: %w", op, err)
	}
	var migErr migrate.MigrationPgError
	if errors.As(err, &migErr) {
		return fmt.Errorf("catalog/postgres: %s: %w", op, err)
	}
	// Anything else is the network, the pool or the server going away.
	return fmt.Errorf("catalog/postgres: %s: %w: %w", op, catalog.ErrUnavailable, err)
}

// inTx runs fn in a read-committed transaction and maps its error.
func (s *Store) inTx(ctx context.Context, op string, fn func(tx pgx.Tx) error) error {
	return mapErr(op, pgx.BeginFunc(ctx, s.pool, fn))
}

func notFound(format string, args ...any) error {
	return fmt.Errorf("catalog/postgres: "+format+": %w", append(args, catalog.ErrNotFound)...)
}

// schemaJSON is the stored form of a catalog.Schema (schema_versions.schema).
type schemaJSON struct {
	Columns    []columnJSON `json:"columns"`
	PrimaryKey []string     `json:"primary_key,omitempty"`
}

type columnJSON struct {
	Name     string       `json:"name"`
	Type     catalog.Type `json:"type"`
	Nullable bool         `json:"nullable"`
}

func toSchemaJSON(s catalog.Schema) schemaJSON {
	out := schemaJSON{PrimaryKey: s.PrimaryKey}
	for _, c := range s.Columns {
		out.Columns = append(out.Columns, columnJSON(c))
	}
	return out
}

func (s schemaJSON) schema() catalog.Schema {
	out := catalog.Schema{PrimaryKey: nilIfEmpty(s.PrimaryKey)}
	for _, c := range s.Columns {
		out.Columns = append(out.Columns, catalog.Column(c))
	}
	return out
}

func nilIfEmpty[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}

// CreateDatabase implements catalog.Store.
func (s *Store) CreateDatabase(ctx context.Context, name string) (catalog.Database, error) {
	if err := catalog.ValidateDatabaseName(name); err != nil {
		return catalog.Database{}, err
	}
	db := catalog.Database{Name: name}
	err := s.pool.QueryRow(ctx, `INSERT INTO databases (name) VALUES ($1) RETURNING created_at`, name).Scan(&db.CreatedAt)
	if err != nil {
		return catalog.Database{}, mapErr(fmt.Sprintf("create database %q", name), err)
	}
	return db, nil
}

// GetDatabase implements catalog.Store.
func (s *Store) GetDatabase(ctx context.Context, name string) (catalog.Database, error) {
	db := catalog.Database{Name: name}
	err := s.pool.QueryRow(ctx, `SELECT created_at FROM databases WHERE name = $1`, name).Scan(&db.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return catalog.Database{}, notFound("database %q", name)
	}
	if err != nil {
		return catalog.Database{}, mapErr(fmt.Sprintf("get database %q", name), err)
	}
	return db, nil
}

// ListDatabases implements catalog.Store.
func (s *Store) ListDatabases(ctx context.Context) ([]catalog.Database, error) {
	rows, _ := s.pool.Query(ctx, `SELECT name, created_at FROM databases ORDER BY name`)
	dbs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (catalog.Database, error) {
		var d catalog.Database
		err := r.Scan(&d.Name, &d.CreatedAt)
		return d, err
	})
	if err != nil {
		return nil, mapErr("list databases", err)
	}
	return nilIfEmpty(dbs), nil
}

// DropDatabase implements catalog.Store.
func (s *Store) DropDatabase(ctx context.Context, name string, cascade bool) error {
	return s.inTx(ctx, fmt.Sprintf("drop database %q", name), func(tx pgx.Tx) error {
		var one int
		err := tx.QueryRow(ctx, `SELECT 1 FROM databases WHERE name = $1 FOR UPDATE`, name).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			return notFound("database %q", name)
		}
		if err != nil {
			return err
		}
		rows, _ := tx.Query(ctx, `SELECT id, name FROM tables WHERE database = $1 ORDER BY id FOR UPDATE`, name)
		dropped, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (catalog.TableChange, error) {
			c := catalog.TableChange{Database: name}
			err := r.Scan(&c.ID, &c.Name)
			return c, err
		})
		if err != nil {
			return err
		}
		if len(dropped) > 0 && !cascade {
			return fmt.Errorf("catalog/postgres: database %q holds %d tables; drop them or cascade: %w", name, len(dropped), catalog.ErrNotEmpty)
		}
		ids := make([]int64, len(dropped))
		for i, c := range dropped {
			ids[i] = c.ID
			if err := notifyTable(ctx, tx, c); err != nil {
				return err
			}
		}
		if err := dropTables(ctx, tx, ids); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM databases WHERE name = $1`, name)
		return err
	})
}

// dropTables deletes tables (their rows in other tables cascade) and the
// segment rows no remaining range refers to.
func dropTables(ctx context.Context, tx pgx.Tx, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	rows, _ := tx.Query(ctx, `SELECT DISTINCT segment_id FROM segment_ranges WHERE table_id = ANY($1)`, ids)
	segs, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `DELETE FROM tables WHERE id = ANY($1)`, ids); err != nil {
		return err
	}
	_, err = deleteEmptySegments(ctx, tx, segs)
	return err
}

// deleteEmptySegments deletes those of the segment rows segs that no range
// refers to any more and returns their object keys, ordered. It first locks
// the rows (in id order, so concurrent callers cannot deadlock); the delete
// then runs with a snapshot taken after the lock was granted, so of two
// transactions that each remove the last ranges of different buckets of one
// object, the second to commit sees the first's deletions and removes the
// row.
func deleteEmptySegments(ctx context.Context, tx pgx.Tx, segs []int64) ([]string, error) {
	if len(segs) == 0 {
		return nil, nil
	}
	if _, err := tx.Exec(ctx, `SELECT id FROM segments WHERE id = ANY($1) ORDER BY id FOR UPDATE`, segs); err != nil {
		return nil, err
	}
	rows, _ := tx.Query(ctx, `DELETE FROM segments s WHERE s.id = ANY($1)
		AND NOT EXISTS (SELECT 1 FROM segment_ranges r WHERE r.segment_id = s.id)
		RETURNING s.object_key`, segs)
	keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	slices.Sort(keys)
	return nilIfEmpty(keys), nil
}

const tableColumns = `t.id, t.database, t.name, t.schema_version, t.buckets, t.bucket_key,
	t.partition_key, t.properties, t.created_at, v.schema`

const tableFrom = ` FROM tables t JOIN schema_versions v ON v.table_id = t.id AND v.version = t.schema_version `

func scanTable(r pgx.Row) (catalog.Table, error) {
	var (
		t     catalog.Table
		sch   schemaJSON
		props map[string]string
	)
	err := r.Scan(&t.ID, &t.Database, &t.Name, &t.SchemaVersion, &t.Buckets, &t.BucketKey,
		&t.PartitionKey, &props, &t.CreatedAt, &sch)
	if err != nil {
		return catalog.Table{}, err
	}
	t.BucketKey = nilIfEmpty(t.BucketKey)
	if len(props) > 0 {
		t.Properties = props
	}
	t.Schema = sch.schema()
	return t, nil
}

// CreateTable implements catalog.Store.
func (s *Store) CreateTable(ctx context.Context, spec catalog.TableSpec) (catalog.Table, error) {
	if err := spec.Validate(); err != nil {
		return catalog.Table{}, err
	}
	props := spec.Properties
	if props == nil {
		props = map[string]string{}
	}
	bucketKey := spec.BucketKey
	if bucketKey == nil {
		bucketKey = []string{}
	}
	var t catalog.Table
	err := s.inTx(ctx, fmt.Sprintf("create table %q.%q", spec.Database, spec.Name), func(tx pgx.Tx) error {
		var one int
		err := tx.QueryRow(ctx, `SELECT 1 FROM databases WHERE name = $1 FOR KEY SHARE`, spec.Database).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			return notFound("database %q", spec.Database)
		}
		if err != nil {
			return err
		}
		var id int64
		var created time.Time
		err = tx.QueryRow(ctx, `INSERT INTO tables (database, name, schema_version, buckets, bucket_key, partition_key, properties)
			VALUES ($1, $2, 1, $3, $4, $5, $6) RETURNING id, created_at`,
			spec.Database, spec.Name, spec.Buckets, bucketKey, spec.PartitionKey, props).Scan(&id, &created)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_versions (table_id, version, schema, created_at) VALUES ($1, 1, $2, $3)`,
			id, toSchemaJSON(spec.Schema), created); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO buckets (table_id, partition, bucket)
			SELECT $1, '', g FROM generate_series(0, $2 - 1) g`, id, spec.Buckets); err != nil {
			return err
		}
		if t, err = scanTable(tx.QueryRow(ctx, `SELECT `+tableColumns+tableFrom+`WHERE t.id = $1`, id)); err != nil {
			return err
		}
		return notifyTable(ctx, tx, catalog.TableChange{ID: id, Database: t.Database, Name: t.Name, SchemaVersion: t.SchemaVersion})
	})
	if err != nil {
		return catalog.Table{}, err
	}
	return t, nil
}

// GetTable implements catalog.Store.
func (s *Store) GetTable(ctx context.Context, database, name string) (catalog.Table, error) {
	t, err := scanTable(s.pool.QueryRow(ctx, `SELECT `+tableColumns+tableFrom+`WHERE t.database = $1 AND t.name = $2`, database, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return catalog.Table{}, notFound("table %q.%q", database, name)
	}
	if err != nil {
		return catalog.Table{}, mapErr(fmt.Sprintf("get table %q.%q", database, name), err)
	}
	return t, nil
}

// GetTableByID implements catalog.Store.
func (s *Store) GetTableByID(ctx context.Context, id int64) (catalog.Table, error) {
	t, err := scanTable(s.pool.QueryRow(ctx, `SELECT `+tableColumns+tableFrom+`WHERE t.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return catalog.Table{}, notFound("table id %d", id)
	}
	if err != nil {
		return catalog.Table{}, mapErr(fmt.Sprintf("get table id %d", id), err)
	}
	return t, nil
}

// ListTables implements catalog.Store.
func (s *Store) ListTables(ctx context.Context, database string) ([]catalog.Table, error) {
	if _, err := s.GetDatabase(ctx, database); err != nil {
		return nil, err
	}
	rows, _ := s.pool.Query(ctx, `SELECT `+tableColumns+tableFrom+`WHERE t.database = $1 ORDER BY t.name`, database)
	ts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (catalog.Table, error) { return scanTable(r) })
	if err != nil {
		return nil, mapErr(fmt.Sprintf("list tables of %q", database), err)
	}
	return nilIfEmpty(ts), nil
}

// DropTable implements catalog.Store.
func (s *Store) DropTable(ctx context.Context, database, name string) error {
	return s.inTx(ctx, fmt.Sprintf("drop table %q.%q", database, name), func(tx pgx.Tx) error {
		var id int64
		err := tx.QueryRow(ctx, `SELECT id FROM tables WHERE database = $1 AND name = $2 FOR UPDATE`, database, name).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			return notFound("table %q.%q", database, name)
		}
		if err != nil {
			return err
		}
		if err := notifyTable(ctx, tx, catalog.TableChange{ID: id, Database: database, Name: name}); err != nil {
			return err
		}
		return dropTables(ctx, tx, []int64{id})
	})
}

// AddColumns implements catalog.Store.
func (s *Store) AddColumns(ctx context.Context, database, name string, columns []catalog.Column) (catalog.Table, error) {
	var t catalog.Table
	err := s.inTx(ctx, fmt.Sprintf("add columns to %q.%q", database, name), func(tx pgx.Tx) error {
		var err error
		t, err = scanTable(tx.QueryRow(ctx, `SELECT `+tableColumns+tableFrom+
			`WHERE t.database = $1 AND t.name = $2 FOR NO KEY UPDATE OF t`, database, name))
		if errors.Is(err, pgx.ErrNoRows) {
			return notFound("table %q.%q", database, name)
		}
		if err != nil {
			return err
		}
		if err := catalog.ValidateAddColumns(t.Schema, columns); err != nil {
			return err
		}
		t.Schema.Columns = append(slices.Clone(t.Schema.Columns), columns...)
		t.SchemaVersion++
		if _, err := tx.Exec(ctx, `INSERT INTO schema_versions (table_id, version, schema) VALUES ($1, $2, $3)`,
			t.ID, t.SchemaVersion, toSchemaJSON(t.Schema)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE tables SET schema_version = $2 WHERE id = $1`, t.ID, t.SchemaVersion); err != nil {
			return err
		}
		return notifyTable(ctx, tx, catalog.TableChange{ID: t.ID, Database: t.Database, Name: t.Name, SchemaVersion: t.SchemaVersion})
	})
	if err != nil {
		return catalog.Table{}, err
	}
	return t, nil
}

// SchemaVersions implements catalog.Store.
func (s *Store) SchemaVersions(ctx context.Context, tableID int64) ([]catalog.SchemaVersion, error) {
	rows, _ := s.pool.Query(ctx, `SELECT version, schema, created_at FROM schema_versions WHERE table_id = $1 ORDER BY version`, tableID)
	vs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (catalog.SchemaVersion, error) {
		var v catalog.SchemaVersion
		var sch schemaJSON
		err := r.Scan(&v.Version, &sch, &v.CreatedAt)
		v.Schema = sch.schema()
		return v, err
	})
	if err != nil {
		return nil, mapErr(fmt.Sprintf("schema versions of table %d", tableID), err)
	}
	if len(vs) == 0 {
		return nil, notFound("table id %d", tableID)
	}
	return vs, nil
}

const bucketColumns = `table_id, partition, bucket, leader, epoch, lease_expiry, next_offset, start_offset`

func scanBucket(r pgx.Row) (catalog.BucketState, error) {
	var b catalog.BucketState
	var expiry *time.Time
	err := r.Scan(&b.TableID, &b.Partition, &b.Bucket, &b.Leader, &b.Epoch, &expiry, &b.NextOffset, &b.StartOffset)
	if expiry != nil {
		b.LeaseExpiry = *expiry
	}
	return b, err
}

// ListBuckets implements catalog.Store. ErrNotFound if the table does not
// exist.
func (s *Store) ListBuckets(ctx context.Context, tableID int64) ([]catalog.BucketState, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+bucketColumns+` FROM buckets WHERE table_id = $1 ORDER BY partition, bucket`, tableID)
	bs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (catalog.BucketState, error) { return scanBucket(r) })
	if err != nil {
		return nil, mapErr(fmt.Sprintf("list buckets of table %d", tableID), err)
	}
	if len(bs) == 0 {
		return nil, notFound("table id %d", tableID)
	}
	return bs, nil
}

// GetBucket implements catalog.Store with one primary-key lookup.
func (s *Store) GetBucket(ctx context.Context, b catalog.BucketID) (catalog.BucketState, error) {
	st, err := scanBucket(s.pool.QueryRow(ctx, `SELECT `+bucketColumns+` FROM buckets WHERE table_id = $1 AND partition = $2 AND bucket = $3`,
		b.TableID, b.Partition, b.Bucket))
	if errors.Is(err, pgx.ErrNoRows) {
		return catalog.BucketState{}, notFound("bucket %v", b)
	}
	if err != nil {
		return catalog.BucketState{}, mapErr(fmt.Sprintf("get bucket %v", b), err)
	}
	return st, nil
}

// ListAllBuckets implements catalog.Store in one query.
func (s *Store) ListAllBuckets(ctx context.Context) ([]catalog.BucketState, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+bucketColumns+` FROM buckets ORDER BY table_id, partition, bucket`)
	bs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (catalog.BucketState, error) { return scanBucket(r) })
	if err != nil {
		return nil, mapErr("list all buckets", err)
	}
	return nilIfEmpty(bs), nil
}

// AcquireLease implements catalog.Store. Besides the interface's errors it
// returns ErrInvalid for an empty holder, a ttl under 1ms, a bucket index
// outside 0..buckets-1, or a non-empty partition of an unpartitioned table.
func (s *Store) AcquireLease(ctx context.Context, b catalog.BucketID, holder string, ttl time.Duration) (catalog.Lease, error) {
	if err := catalog.ValidateLeaseRequest(b, holder, ttl); err != nil {
		return catalog.Lease{}, err
	}
	l := catalog.Lease{Bucket: b, Holder: holder}
	err := s.inTx(ctx, fmt.Sprintf("acquire lease on %v", b), func(tx pgx.Tx) error {
		var buckets int32
		var partKey string
		err := tx.QueryRow(ctx, `SELECT buckets, partition_key FROM tables WHERE id = $1 FOR KEY SHARE`, b.TableID).Scan(&buckets, &partKey)
		if errors.Is(err, pgx.ErrNoRows) {
			return notFound("table id %d", b.TableID)
		}
		if err != nil {
			return err
		}
		if b.Bucket >= buckets {
			return &catalog.ValidationError{Field: "bucket.bucket", Reason: fmt.Sprintf("bucket %d out of range 0..%d", b.Bucket, buckets-1)}
		}
		if b.Partition != "" && partKey == "" {
			return &catalog.ValidationError{Field: "bucket.partition", Reason: fmt.Sprintf("partition %q given but table %d has no partition key", b.Partition, b.TableID)}
		}
		if b.Partition != "" {
			if _, err := tx.Exec(ctx, `INSERT INTO buckets (table_id, partition, bucket) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
				b.TableID, b.Partition, b.Bucket); err != nil {
				return err
			}
		}
		var (
			leader string
			epoch  int64
			live   bool
			expiry *time.Time
		)
		err = tx.QueryRow(ctx, `SELECT leader, epoch, COALESCE(lease_expiry > now(), false), lease_expiry FROM buckets
			WHERE table_id = $1 AND partition = $2 AND bucket = $3 FOR UPDATE`, b.TableID, b.Partition, b.Bucket).Scan(&leader, &epoch, &live, &expiry)
		if errors.Is(err, pgx.ErrNoRows) {
			return notFound("bucket %v", b)
		}
		if err != nil {
			return err
		}
		if live && leader != holder {
			return fmt.Errorf("catalog/postgres: bucket %v is led by %q (epoch %d) until %v: %w", b, leader, epoch, expiry.UTC(), catalog.ErrLeaseHeld)
		}
		if !live || leader != holder {
			epoch++
		}
		l.Epoch = epoch
		return tx.QueryRow(ctx, `UPDATE buckets SET leader = $4, epoch = $5, lease_expiry = now() + $6 * interval '1 microsecond'
			WHERE table_id = $1 AND partition = $2 AND bucket = $3 RETURNING lease_expiry`,
			b.TableID, b.Partition, b.Bucket, holder, epoch, ttl.Microseconds()).Scan(&l.Expiry)
	})
	if err != nil {
		return catalog.Lease{}, err
	}
	return l, nil
}

// leaseMismatch explains why a lease operation matched no row: the bucket
// is gone (ErrNotFound) or the lease is no longer current (ErrFenced).
func (s *Store) leaseMismatch(ctx context.Context, l catalog.Lease) error {
	b := l.Bucket
	var leader string
	var epoch int64
	err := s.pool.QueryRow(ctx, `SELECT leader, epoch FROM buckets WHERE table_id = $1 AND partition = $2 AND bucket = $3`,
		b.TableID, b.Partition, b.Bucket).Scan(&leader, &epoch)
	if errors.Is(err, pgx.ErrNoRows) {
		return notFound("bucket %v", b)
	}
	if err != nil {
		return mapErr(fmt.Sprintf("lease on %v", b), err)
	}
	return fmt.Errorf("catalog/postgres: lease of %q at epoch %d on bucket %v: bucket is now at epoch %d led by %q: %w",
		l.Holder, l.Epoch, b, epoch, leader, catalog.ErrFenced)
}

// RenewLease implements catalog.Store.
func (s *Store) RenewLease(ctx context.Context, l catalog.Lease, ttl time.Duration) (catalog.Lease, error) {
	if err := catalog.ValidateLeaseRequest(l.Bucket, l.Holder, ttl); err != nil {
		return catalog.Lease{}, err
	}
	b := l.Bucket
	err := s.pool.QueryRow(ctx, `UPDATE buckets SET lease_expiry = now() + $6 * interval '1 microsecond'
		WHERE table_id = $1 AND partition = $2 AND bucket = $3 AND leader = $4 AND epoch = $5 RETURNING lease_expiry`,
		b.TableID, b.Partition, b.Bucket, l.Holder, l.Epoch, ttl.Microseconds()).Scan(&l.Expiry)
	if errors.Is(err, pgx.ErrNoRows) {
		return catalog.Lease{}, s.leaseMismatch(ctx, l)
	}
	if err != nil {
		return catalog.Lease{}, mapErr(fmt.Sprintf("renew lease on %v", b), err)
	}
	return l, nil
}

// ReleaseLease implements catalog.Store. The epoch stays; the next
// acquisition increments it.
func (s *Store) ReleaseLease(ctx context.Context, l catalog.Lease) error {
	b := l.Bucket
	tag, err := s.pool.Exec(ctx, `UPDATE buckets SET leader = '', lease_expiry = NULL
		WHERE table_id = $1 AND partition = $2 AND bucket = $3 AND leader = $4 AND epoch = $5`,
		b.TableID, b.Partition, b.Bucket, l.Holder, l.Epoch)
	if err != nil {
		return mapErr(fmt.Sprintf("release lease on %v", b), err)
	}
	if tag.RowsAffected() == 0 {
		return s.leaseMismatch(ctx, l)
	}
	return nil
}

// CommitSegment implements catalog.Store. It locks the ranges' bucket rows
// in (table, partition, bucket) order, checks every epoch (the bucket must
// also still have a leader: a released lease fences its holder) and next
// offset, inserts the segment and its ranges, advances the next offsets and
// notifies NotifyChannel, all in one transaction. ErrAlreadyExists if the
// object key was committed before; ErrNotFound for a bucket with no row.
func (s *Store) CommitSegment(ctx context.Context, seg catalog.Segment) error {
	if err := seg.Validate(); err != nil {
		return err
	}
	order := make([]int, len(seg.Ranges))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return seg.Ranges[a].Bucket.Compare(seg.Ranges[b].Bucket) })
	n := len(order)
	tids, parts, bkts := make([]int64, n), make([]string, n), make([]int32, n)
	for i, idx := range order {
		b := seg.Ranges[idx].Bucket
		tids[i], parts[i], bkts[i] = b.TableID, b.Partition, b.Bucket
	}
	return s.inTx(ctx, fmt.Sprintf("commit segment %q", seg.ObjectKey), func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `SELECT b.table_id, b.partition, b.bucket, b.leader, b.epoch, b.lease_expiry, b.next_offset, b.start_offset
			FROM buckets b JOIN unnest($1::bigint[], $2::text[], $3::int[]) AS k(table_id, partition, bucket)
			  ON b.table_id = k.table_id AND b.partition = k.partition AND b.bucket = k.bucket
			ORDER BY b.table_id, b.partition, b.bucket
			FOR UPDATE OF b`, tids, parts, bkts)
		states, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (catalog.BucketState, error) { return scanBucket(r) })
		if err != nil {
			return err
		}
		byID := make(map[catalog.BucketID]catalog.BucketState, len(states))
		for _, st := range states {
			byID[st.BucketID] = st
		}
		for _, idx := range order {
			r := seg.Ranges[idx]
			st, ok := byID[r.Bucket]
			if !ok {
				return notFound("segment %q: bucket %v", seg.ObjectKey, r.Bucket)
			}
			if st.Epoch != r.Epoch || st.Leader == "" {
				return fmt.Errorf("catalog/postgres: segment %q: bucket %v is at epoch %d (leader %q), range has epoch %d: %w",
					seg.ObjectKey, r.Bucket, st.Epoch, st.Leader, r.Epoch, catalog.ErrFenced)
			}
			if st.NextOffset != r.BaseOffset {
				return fmt.Errorf("catalog/postgres: segment %q: bucket %v expects offset %d, range starts at %d: %w",
					seg.ObjectKey, r.Bucket, st.NextOffset, r.BaseOffset, catalog.ErrOffsetGap)
			}
		}
		var segID int64
		if err := tx.QueryRow(ctx, `INSERT INTO segments (object_key, size) VALUES ($1, $2) RETURNING id`,
			seg.ObjectKey, seg.Size).Scan(&segID); err != nil {
			return err
		}
		batch := &pgx.Batch{}
		for _, idx := range order {
			r := seg.Ranges[idx]
			b := r.Bucket
			batch.Queue(`INSERT INTO segment_ranges (table_id, partition, bucket, base_offset, end_offset, segment_id, epoch,
				byte_offset, byte_length, row_count, min_timestamp, max_timestamp)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
				b.TableID, b.Partition, b.Bucket, r.BaseOffset, r.EndOffset, segID, r.Epoch,
				r.ByteOffset, r.ByteLength, r.RowCount, r.MinTimestamp, r.MaxTimestamp)
			batch.Queue(`UPDATE buckets SET next_offset = $4 WHERE table_id = $1 AND partition = $2 AND bucket = $3`,
				b.TableID, b.Partition, b.Bucket, r.EndOffset)
			for _, w := range r.Writers {
				batch.Queue(`INSERT INTO writer_sequences (table_id, partition, bucket, writer_id, sequence, base_offset, end_offset)
					VALUES ($1, $2, $3, $4, $5, $6, $7)
					ON CONFLICT (table_id, partition, bucket, writer_id) DO UPDATE
					SET sequence = EXCLUDED.sequence, base_offset = EXCLUDED.base_offset, end_offset = EXCLUDED.end_offset, updated_at = now()
					WHERE writer_sequences.sequence < EXCLUDED.sequence`,
					b.TableID, b.Partition, b.Bucket, w.WriterID, w.Sequence, w.BaseOffset, w.EndOffset)
			}
			payload, err := json.Marshal(Notification{TableID: b.TableID, Partition: b.Partition, Bucket: b.Bucket, NextOffset: r.EndOffset})
			if err != nil {
				return err
			}
			batch.Queue(`SELECT pg_notify($1, $2)`, NotifyChannel, string(payload))
		}
		return tx.SendBatch(ctx, batch).Close()
	})
}

// ListSegments implements catalog.Store. A bucket without rows has no
// segments (nil, no error).
func (s *Store) ListSegments(ctx context.Context, b catalog.BucketID, from int64, limit int) ([]catalog.SegmentRange, error) {
	var lim *int
	if limit > 0 {
		lim = &limit
	}
	rows, _ := s.pool.Query(ctx, `SELECT r.epoch, s.object_key, r.base_offset, r.end_offset, r.byte_offset, r.byte_length,
			r.row_count, r.min_timestamp, r.max_timestamp, s.committed_at
		FROM segment_ranges r JOIN segments s ON s.id = r.segment_id
		WHERE r.table_id = $1 AND r.partition = $2 AND r.bucket = $3 AND r.end_offset > $4
		ORDER BY r.base_offset LIMIT $5`, b.TableID, b.Partition, b.Bucket, from, lim)
	rs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (catalog.SegmentRange, error) {
		r := catalog.SegmentRange{Bucket: b}
		err := row.Scan(&r.Epoch, &r.ObjectKey, &r.BaseOffset, &r.EndOffset, &r.ByteOffset, &r.ByteLength,
			&r.RowCount, &r.MinTimestamp, &r.MaxTimestamp, &r.CommittedAt)
		return r, err
	})
	if err != nil {
		return nil, mapErr(fmt.Sprintf("list segments of %v", b), err)
	}
	return nilIfEmpty(rs), nil
}

// PutKVSnapshot implements catalog.Store. Ids are unique across the store
// and increase with every snapshot.
func (s *Store) PutKVSnapshot(ctx context.Context, snap catalog.KVSnapshot) (catalog.KVSnapshot, error) {
	b := snap.Bucket
	if snap.LogOffset < 0 {
		return catalog.KVSnapshot{}, &catalog.ValidationError{Field: "log_offset", Reason: fmt.Sprintf("log offset %d is negative", snap.LogOffset)}
	}
	files := snap.Files
	if files == nil {
		files = []string{}
	}
	err := s.inTx(ctx, fmt.Sprintf("put kv snapshot of %v", b), func(tx pgx.Tx) error {
		var leader string
		var epoch int64
		err := tx.QueryRow(ctx, `SELECT leader, epoch FROM buckets WHERE table_id = $1 AND partition = $2 AND bucket = $3 FOR SHARE`,
			b.TableID, b.Partition, b.Bucket).Scan(&leader, &epoch)
		if errors.Is(err, pgx.ErrNoRows) {
			return notFound("bucket %v", b)
		}
		if err != nil {
			return err
		}
		if epoch != snap.Epoch || leader == "" {
			return fmt.Errorf("catalog/postgres: kv snapshot of %v: bucket is at epoch %d (leader %q), snapshot has epoch %d: %w",
				b, epoch, leader, snap.Epoch, catalog.ErrFenced)
		}
		return tx.QueryRow(ctx, `INSERT INTO kv_snapshots (table_id, partition, bucket, epoch, log_offset, files)
			VALUES ($1, $2, $3, $4, $5, $6) RETURNING id, created_at`,
			b.TableID, b.Partition, b.Bucket, snap.Epoch, snap.LogOffset, files).Scan(&snap.ID, &snap.CreatedAt)
	})
	if err != nil {
		return catalog.KVSnapshot{}, err
	}
	snap.Files = slices.Clone(snap.Files)
	return snap, nil
}

// ListKVSnapshots implements catalog.Store.
func (s *Store) ListKVSnapshots(ctx context.Context, b catalog.BucketID) ([]catalog.KVSnapshot, error) {
	rows, _ := s.pool.Query(ctx, `SELECT id, epoch, log_offset, files, created_at FROM kv_snapshots
		WHERE table_id = $1 AND partition = $2 AND bucket = $3 ORDER BY id DESC`, b.TableID, b.Partition, b.Bucket)
	ss, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (catalog.KVSnapshot, error) {
		k := catalog.KVSnapshot{Bucket: b}
		err := r.Scan(&k.ID, &k.Epoch, &k.LogOffset, &k.Files, &k.CreatedAt)
		k.Files = nilIfEmpty(k.Files)
		return k, err
	})
	if err != nil {
		return nil, mapErr(fmt.Sprintf("list kv snapshots of %v", b), err)
	}
	return nilIfEmpty(ss), nil
}

// DeleteKVSnapshot implements catalog.Store.
func (s *Store) DeleteKVSnapshot(ctx context.Context, b catalog.BucketID, id int64) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM kv_snapshots WHERE table_id = $1 AND partition = $2 AND bucket = $3 AND id = $4`,
		b.TableID, b.Partition, b.Bucket, id)
	if err != nil {
		return mapErr(fmt.Sprintf("delete kv snapshot %d of %v", id, b), err)
	}
	if tag.RowsAffected() == 0 {
		return notFound("kv snapshot %d of bucket %v", id, b)
	}
	return nil
}

// SetTieredOffsets implements catalog.Store. ErrNotFound (and nothing
// recorded) if any bucket has no row; ErrInvalid for a negative offset.
func (s *Store) SetTieredOffsets(ctx context.Context, offsets []catalog.TieredOffset) error {
	for i, o := range offsets {
		if o.Offset < 0 {
			return &catalog.ValidationError{Field: fmt.Sprintf("offsets[%d].offset", i), Reason: fmt.Sprintf("offset %d is negative", o.Offset)}
		}
	}
	if len(offsets) == 0 {
		return nil
	}
	return s.inTx(ctx, "set tiered offsets", func(tx pgx.Tx) error {
		batch := &pgx.Batch{}
		for _, o := range offsets {
			b := o.Bucket
			batch.Queue(`INSERT INTO tiered_offsets (table_id, partition, bucket, "offset", lake_snapshot_id)
				VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT (table_id, partition, bucket) DO UPDATE
				SET "offset" = EXCLUDED."offset", lake_snapshot_id = EXCLUDED.lake_snapshot_id, updated_at = now()
				WHERE tiered_offsets."offset" <= EXCLUDED."offset"`,
				b.TableID, b.Partition, b.Bucket, o.Offset, o.LakeSnapshotID)
		}
		return tx.SendBatch(ctx, batch).Close()
	})
}

// TieredOffsets implements catalog.Store. Buckets never tiered are absent.
func (s *Store) TieredOffsets(ctx context.Context, tableID int64) ([]catalog.TieredOffset, error) {
	rows, _ := s.pool.Query(ctx, `SELECT partition, bucket, "offset", lake_snapshot_id, updated_at FROM tiered_offsets
		WHERE table_id = $1 ORDER BY partition, bucket`, tableID)
	os, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (catalog.TieredOffset, error) {
		o := catalog.TieredOffset{Bucket: catalog.BucketID{TableID: tableID}}
		err := r.Scan(&o.Bucket.Partition, &o.Bucket.Bucket, &o.Offset, &o.LakeSnapshotID, &o.UpdatedAt)
		return o, err
	})
	if err != nil {
		return nil, mapErr(fmt.Sprintf("tiered offsets of table %d", tableID), err)
	}
	return nilIfEmpty(os), nil
}

// OffsetForTimestamp implements catalog.Store. ErrNotFound if the bucket
// has no row.
func (s *Store) OffsetForTimestamp(ctx context.Context, b catalog.BucketID, ts time.Time) (int64, error) {
	var off int64
	err := s.pool.QueryRow(ctx, `SELECT COALESCE(
			(SELECT min(r.base_offset) FROM segment_ranges r
			 WHERE r.table_id = b.table_id AND r.partition = b.partition AND r.bucket = b.bucket AND r.max_timestamp >= $4),
			b.next_offset)
		FROM buckets b WHERE b.table_id = $1 AND b.partition = $2 AND b.bucket = $3`,
		b.TableID, b.Partition, b.Bucket, ts).Scan(&off)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, notFound("bucket %v", b)
	}
	if err != nil {
		return 0, mapErr(fmt.Sprintf("offset for timestamp in %v", b), err)
	}
	return off, nil
}

// DeleteRangesBefore implements catalog.Store. It locks the bucket row,
// deletes the ranges ending at or before offset, moves start_offset to the
// first remaining range's base (or to offset, at most next_offset, when no
// range remains; never backwards) and deletes the segment rows left without
// ranges, in one transaction. ErrNotFound if the bucket has no row.
func (s *Store) DeleteRangesBefore(ctx context.Context, b catalog.BucketID, offset int64) ([]string, error) {
	var orphans []string
	err := s.inTx(ctx, fmt.Sprintf("delete ranges of %v before %d", b, offset), func(tx pgx.Tx) error {
		var next, start int64
		err := tx.QueryRow(ctx, `SELECT next_offset, start_offset FROM buckets
			WHERE table_id = $1 AND partition = $2 AND bucket = $3 FOR NO KEY UPDATE`,
			b.TableID, b.Partition, b.Bucket).Scan(&next, &start)
		if errors.Is(err, pgx.ErrNoRows) {
			return notFound("bucket %v", b)
		}
		if err != nil {
			return err
		}
		rows, _ := tx.Query(ctx, `DELETE FROM segment_ranges
			WHERE table_id = $1 AND partition = $2 AND bucket = $3 AND end_offset <= $4
			RETURNING segment_id`, b.TableID, b.Partition, b.Bucket, offset)
		segs, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return err
		}
		var first *int64
		if err := tx.QueryRow(ctx, `SELECT min(base_offset) FROM segment_ranges
			WHERE table_id = $1 AND partition = $2 AND bucket = $3`, b.TableID, b.Partition, b.Bucket).Scan(&first); err != nil {
			return err
		}
		newStart := min(max(offset, 0), next)
		if first != nil {
			newStart = *first
		}
		if newStart > start {
			if _, err := tx.Exec(ctx, `UPDATE buckets SET start_offset = $4 WHERE table_id = $1 AND partition = $2 AND bucket = $3`,
				b.TableID, b.Partition, b.Bucket, newStart); err != nil {
				return err
			}
		}
		slices.Sort(segs)
		orphans, err = deleteEmptySegments(ctx, tx, slices.Compact(segs))
		return err
	})
	if err != nil {
		return nil, err
	}
	return orphans, nil
}

// UnknownObjects implements catalog.Store. The result keeps the order of
// keys, each key once.
func (s *Store) UnknownObjects(ctx context.Context, keys []string) ([]string, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	rows, _ := s.pool.Query(ctx, `SELECT k.key FROM unnest($1::text[]) WITH ORDINALITY AS k(key, ord)
		WHERE NOT EXISTS (SELECT 1 FROM segments s WHERE s.object_key = k.key)
		  AND NOT EXISTS (SELECT 1 FROM kv_snapshots v WHERE v.files @> ARRAY[k.key])
		GROUP BY k.key ORDER BY min(k.ord)`, keys)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, mapErr("unknown objects", err)
	}
	return nilIfEmpty(out), nil
}

// WriterSequences implements catalog.Store, ordered by writer id. A bucket
// without a row has none (nil, no error).
func (s *Store) WriterSequences(ctx context.Context, b catalog.BucketID) ([]catalog.WriterSequence, error) {
	rows, _ := s.pool.Query(ctx, `SELECT writer_id, sequence, base_offset, end_offset, updated_at FROM writer_sequences
		WHERE table_id = $1 AND partition = $2 AND bucket = $3 ORDER BY writer_id`, b.TableID, b.Partition, b.Bucket)
	ws, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (catalog.WriterSequence, error) {
		var w catalog.WriterSequence
		err := r.Scan(&w.WriterID, &w.Sequence, &w.BaseOffset, &w.EndOffset, &w.UpdatedAt)
		return w, err
	})
	if err != nil {
		return nil, mapErr(fmt.Sprintf("writer sequences of %v", b), err)
	}
	return nilIfEmpty(ws), nil
}

// Watch implements catalog.Store. It opens a dedicated connection
// (outside the pool, with the pool's connection settings), LISTENs on
// NotifyChannel and TablesChannel and calls ev's callbacks on the calling
// goroutine, in the order PostgreSQL delivers the notifications: that of
// the commits of the transactions that sent them. Payloads that do not
// parse (such as the bare table ids of older binaries during a rolling
// upgrade) are skipped.
//
// With ev.Synced, the watch also LISTENs on a channel of its own and, every
// ev.SyncInterval, sends itself a ping on it (pg_notify): when the ping
// comes back, every notification of a transaction that committed before
// the ping was sent has been delivered before it, so Synced is called with
// the time the ping was sent. A lagging or silently broken connection
// delays the ping, and so Synced.
//
// It returns ctx.Err() when ctx ends, and an ErrUnavailable error when the
// connection fails or the store is closed.
func (s *Store) Watch(ctx context.Context, ev catalog.Events) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.closed, cancel)
	defer stop()
	fail := func(op string, err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if s.closed.Err() != nil {
			return fmt.Errorf("catalog/postgres: watch: store closed: %w", catalog.ErrUnavailable)
		}
		return fmt.Errorf("catalog/postgres: watch: %s: %w: %w", op, catalog.ErrUnavailable, err)
	}
	conn, err := pgx.ConnectConfig(wctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return fail("connect", err)
	}
	defer func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer ccancel()
		_ = conn.Close(cctx)
	}()
	channels := []string{NotifyChannel, TablesChannel}
	syncing := ev.Synced != nil && ev.SyncInterval > 0
	var syncChannel string
	if syncing {
		var id [8]byte
		_, _ = rand.Read(id[:]) // never fails (crypto/rand)
		syncChannel = syncChannelPrefix + hex.EncodeToString(id[:])
		channels = append(channels, syncChannel)
	}
	for _, ch := range channels {
		if _, err := conn.Exec(wctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
			return fail("listen", err)
		}
	}
	if ev.Listening != nil {
		ev.Listening()
	}
	var (
		ping     int64     // the last ping sent
		pingSent time.Time // when it was sent; zero once it came back
		nextPing = time.Now()
	)
	for {
		waitCtx, cancelWait := wctx, context.CancelFunc(func() {})
		if syncing && pingSent.IsZero() {
			waitCtx, cancelWait = context.WithDeadline(wctx, nextPing)
		}
		n, err := conn.WaitForNotification(waitCtx)
		cancelWait()
		if err != nil {
			if wctx.Err() == nil && waitCtx.Err() != nil {
				// Time for a ping. Notifications that arrive meanwhile are
				// buffered by the connection and delivered in order.
				ping++
				pingSent = time.Now()
				if _, err := conn.Exec(wctx, `SELECT pg_notify($1, $2)`, syncChannel, strconv.FormatInt(ping, 10)); err != nil {
					return fail("sync", err)
				}
				continue
			}
			return fail("wait", err)
		}
		switch n.Channel {
		case NotifyChannel:
			var p Notification
			if json.Unmarshal([]byte(n.Payload), &p) == nil && ev.Commit != nil {
				ev.Commit(catalog.BucketID{TableID: p.TableID, Partition: p.Partition, Bucket: p.Bucket}, p.NextOffset)
			}
		case TablesChannel:
			var p TableNotification
			if json.Unmarshal([]byte(n.Payload), &p) == nil && ev.Table != nil {
				ev.Table(catalog.TableChange{ID: p.TableID, Database: p.Database, Name: p.Name, SchemaVersion: p.SchemaVersion})
			}
		case syncChannel:
			if !pingSent.IsZero() && n.Payload == strconv.FormatInt(ping, 10) {
				ev.Synced(pingSent)
				nextPing = pingSent.Add(ev.SyncInterval)
				pingSent = time.Time{}
			}
		}
	}
}
