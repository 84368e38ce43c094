// Package embedded implements catalog.Store in one process on local disk,
// in a bbolt file. It is the catalog of `strom server` with defaults: one
// process owns the file (a second Open of it waits, then fails). Every
// method runs in one bbolt transaction, so every mutation is atomic and
// durable when it returns. The clock that judges leases and member
// heartbeats is time.Now.
package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/strom-io/strom/catalog"
)

// bbolt buckets ("bkt" to tell them from Strom buckets) and their keys.
var (
	bktDatabases  = []byte("databases")   // name -> databaseRec
	bktTables     = []byte("tables")      // u64 id -> tableRec; its sequence numbers tables
	bktTableNames = []byte("table_names") // database 0x00 name -> u64 id
	bktSchemas    = []byte("schemas")     // u64 id, u32 version -> schemaRec
	bktBuckets    = []byte("buckets")     // bucketKey -> bucketRec
	bktRanges     = []byte("ranges")      // bucketKey, u64 base offset -> rangeRec
	bktObjects    = []byte("objects")     // object key -> objectRec
	bktKV         = []byte("kv")          // bucketKey, u64 id -> kvRec; its sequence numbers snapshots
	bktTiered     = []byte("tiered")      // bucketKey -> tieredRec
	bktWriters    = []byte("writers")     // bucketKey, writer id -> writerRec
	bktMembers    = []byte("members")     // member id -> memberRec
)

// Store is a catalog.Store in a bbolt file. It is safe for concurrent use.
type Store struct {
	db  *bolt.DB
	now func() time.Time

	mu        sync.Mutex
	watchers  map[*watcher]struct{}
	closed    chan struct{} // closed by Close; ends Watch
	closeOnce sync.Once
}

// watcher is one Watch call: the newest next offset of every bucket
// committed since it last looked, the table changes made since, and a
// signal (capacity 1) that there is something to look at. Mutations never
// block on a slow watcher; commits coalesce per bucket.
type watcher struct {
	pending map[catalog.BucketID]int64 // guarded by Store.mu
	tables  []catalog.TableChange      // in the order made; guarded by Store.mu
	signal  chan struct{}
}

var _ catalog.Store = (*Store)(nil)

// Open opens (creating if needed) the catalog file at path. It fails with
// ErrUnavailable if another process holds the file for more than 5s.
func Open(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("catalog/embedded: open %s: file is locked by another process: %w: %w", path, catalog.ErrUnavailable, err)
		}
		return nil, fmt.Errorf("catalog/embedded: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bktDatabases, bktTables, bktTableNames, bktSchemas, bktBuckets, bktRanges, bktObjects, bktKV, bktTiered, bktWriters, bktMembers} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("catalog/embedded: initialise %s: %w", path, err)
	}
	return &Store{
		db: db, now: func() time.Time { return time.Now().UTC() },
		watchers: map[*watcher]struct{}{}, closed: make(chan struct{}),
	}, nil
}

// Close closes the file and ends running Watch calls (with
// ErrUnavailable). Calls after Close fail.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("catalog/embedded: close: %w", err)
	}
	return nil
}

// Records as stored (JSON values).
type (
	databaseRec struct {
		CreatedAt time.Time `json:"created_at"`
	}
	tableRec struct {
		Database      string            `json:"database"`
		Name          string            `json:"name"`
		SchemaVersion int32             `json:"schema_version"`
		Buckets       int32             `json:"buckets"`
		BucketKey     []string          `json:"bucket_key,omitempty"`
		PartitionKey  string            `json:"partition_key,omitempty"`
		Properties    map[string]string `json:"properties,omitempty"`
		CreatedAt     time.Time         `json:"created_at"`
	}
	columnRec struct {
		Name     string       `json:"name"`
		Type     catalog.Type `json:"type"`
		Nullable bool         `json:"nullable"`
	}
	schemaRec struct {
		Columns    []columnRec `json:"columns"`
		PrimaryKey []string    `json:"primary_key,omitempty"`
		CreatedAt  time.Time   `json:"created_at"`
	}
	bucketRec struct {
		Leader      string    `json:"leader,omitempty"`
		Epoch       int64     `json:"epoch"`
		LeaseExpiry time.Time `json:"lease_expiry"`
		NextOffset  int64     `json:"next_offset"`
		StartOffset int64     `json:"start_offset,omitempty"`
	}
	writerRec struct {
		Sequence   int64     `json:"sequence"`
		BaseOffset int64     `json:"base_offset"`
		EndOffset  int64     `json:"end_offset"`
		UpdatedAt  time.Time `json:"updated_at"`
	}
	rangeRec struct {
		Epoch        int64     `json:"epoch"`
		ObjectKey    string    `json:"object_key"`
		EndOffset    int64     `json:"end_offset"`
		ByteOffset   int64     `json:"byte_offset"`
		ByteLength   int64     `json:"byte_length"`
		RowCount     int64     `json:"row_count"`
		MinTimestamp time.Time `json:"min_timestamp"`
		MaxTimestamp time.Time `json:"max_timestamp"`
		CommittedAt  time.Time `json:"committed_at"`
	}
	objectRec struct {
		Size        int64     `json:"size"`
		CommittedAt time.Time `json:"committed_at"`
		Ranges      int       `json:"ranges"` // ranges still registered; the row goes at 0
	}
	kvRec struct {
		Epoch     int64     `json:"epoch"`
		LogOffset int64     `json:"log_offset"`
		Files     []string  `json:"files,omitempty"`
		CreatedAt time.Time `json:"created_at"`
	}
	tieredRec struct {
		Offset         int64     `json:"offset"`
		LakeSnapshotID int64     `json:"lake_snapshot_id"`
		UpdatedAt      time.Time `json:"updated_at"`
	}
)

func u64(v int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(v)) }

func tablePrefix(id int64) []byte { return u64(id) }

// bucketKey is u64 table id, partition, 0x00, u32 bucket: bytewise order
// is (table, partition, bucket) because partitions hold no 0x00.
func bucketKey(b catalog.BucketID) []byte {
	k := u64(b.TableID)
	k = append(k, b.Partition...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint32(k, uint32(b.Bucket))
}

func decodeBucketKey(k []byte) catalog.BucketID {
	return catalog.BucketID{
		TableID:   int64(binary.BigEndian.Uint64(k)),
		Partition: string(k[8 : len(k)-5]),
		Bucket:    int32(binary.BigEndian.Uint32(k[len(k)-4:])),
	}
}

func nameKey(database, name string) []byte { return []byte(database + "\x00" + name) }

func get[T any](b *bolt.Bucket, key []byte) (T, bool, error) {
	var v T
	raw := b.Get(key)
	if raw == nil {
		return v, false, nil
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, false, fmt.Errorf("catalog/embedded: corrupt record %q: %w", key, err)
	}
	return v, true, nil
}

func put(b *bolt.Bucket, key []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("catalog/embedded: encode %q: %w", key, err)
	}
	return b.Put(key, raw)
}

// deletePrefix removes every key of b starting with prefix and calls fn
// (if set) with each value first.
func deletePrefix(b *bolt.Bucket, prefix []byte, fn func(k, v []byte) error) error {
	c := b.Cursor()
	var keys [][]byte
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if fn != nil {
			if err := fn(k, v); err != nil {
				return err
			}
		}
		keys = append(keys, slices.Clone(k))
	}
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

func notFound(format string, args ...any) error {
	return fmt.Errorf("catalog/embedded: "+format+": %w", append(args, catalog.ErrNotFound)...)
}

// view and update run fn in a transaction unless ctx is done.
func (s *Store) view(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(fn)
}

func (s *Store) update(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(fn)
}

// CreateDatabase implements catalog.Store.
func (s *Store) CreateDatabase(ctx context.Context, name string) (catalog.Database, error) {
	if err := catalog.ValidateDatabaseName(name); err != nil {
		return catalog.Database{}, err
	}
	db := catalog.Database{Name: name, CreatedAt: s.now()}
	err := s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bktDatabases)
		if b.Get([]byte(name)) != nil {
			return fmt.Errorf("catalog/embedded: database %q: %w", name, catalog.ErrAlreadyExists)
		}
		return put(b, []byte(name), databaseRec{CreatedAt: db.CreatedAt})
	})
	if err != nil {
		return catalog.Database{}, err
	}
	return db, nil
}

// GetDatabase implements catalog.Store.
func (s *Store) GetDatabase(ctx context.Context, name string) (catalog.Database, error) {
	var db catalog.Database
	err := s.view(ctx, func(tx *bolt.Tx) error {
		rec, ok, err := get[databaseRec](tx.Bucket(bktDatabases), []byte(name))
		if err != nil {
			return err
		}
		if !ok {
			return notFound("database %q", name)
		}
		db = catalog.Database{Name: name, CreatedAt: rec.CreatedAt}
		return nil
	})
	return db, err
}

// ListDatabases implements catalog.Store.
func (s *Store) ListDatabases(ctx context.Context) ([]catalog.Database, error) {
	var out []catalog.Database
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bktDatabases).ForEach(func(k, v []byte) error {
			var rec databaseRec
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("catalog/embedded: corrupt database %q: %w", k, err)
			}
			out = append(out, catalog.Database{Name: string(k), CreatedAt: rec.CreatedAt})
			return nil
		})
	})
	return out, err
}

// DropDatabase implements catalog.Store.
func (s *Store) DropDatabase(ctx context.Context, name string, cascade bool) error {
	var dropped []catalog.TableChange
	err := s.update(ctx, func(tx *bolt.Tx) error {
		dbs := tx.Bucket(bktDatabases)
		if dbs.Get([]byte(name)) == nil {
			return notFound("database %q", name)
		}
		var ids []int64
		prefix := []byte(name + "\x00")
		c := tx.Bucket(bktTableNames).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			ids = append(ids, int64(binary.BigEndian.Uint64(v)))
		}
		if len(ids) > 0 && !cascade {
			return fmt.Errorf("catalog/embedded: database %q holds %d tables; drop them or cascade: %w", name, len(ids), catalog.ErrNotEmpty)
		}
		for _, id := range ids {
			c, err := dropTable(tx, id)
			if err != nil {
				return err
			}
			dropped = append(dropped, c)
		}
		return dbs.Delete([]byte(name))
	})
	if err != nil {
		return err
	}
	s.notifyTables(dropped...)
	return nil
}

func loadTable(tx *bolt.Tx, id int64) (catalog.Table, bool, error) {
	rec, ok, err := get[tableRec](tx.Bucket(bktTables), u64(id))
	if err != nil || !ok {
		return catalog.Table{}, ok, err
	}
	sch, ok, err := get[schemaRec](tx.Bucket(bktSchemas), schemaKey(id, rec.SchemaVersion))
	if err != nil {
		return catalog.Table{}, false, err
	}
	if !ok {
		return catalog.Table{}, false, fmt.Errorf("catalog/embedded: table %d lacks schema version %d", id, rec.SchemaVersion)
	}
	t := catalog.Table{
		ID: id,
		TableSpec: catalog.TableSpec{
			Database:     rec.Database,
			Name:         rec.Name,
			Schema:       sch.schema(),
			Buckets:      rec.Buckets,
			BucketKey:    rec.BucketKey,
			PartitionKey: rec.PartitionKey,
			Properties:   rec.Properties,
		},
		SchemaVersion: rec.SchemaVersion,
		CreatedAt:     rec.CreatedAt,
	}
	return t, true, nil
}

func schemaKey(id int64, version int32) []byte {
	return binary.BigEndian.AppendUint32(u64(id), uint32(version))
}

func toSchemaRec(s catalog.Schema, at time.Time) schemaRec {
	r := schemaRec{PrimaryKey: nilIfEmpty(slices.Clone(s.PrimaryKey)), CreatedAt: at}
	for _, c := range s.Columns {
		r.Columns = append(r.Columns, columnRec(c))
	}
	return r
}

func (r schemaRec) schema() catalog.Schema {
	s := catalog.Schema{PrimaryKey: nilIfEmpty(r.PrimaryKey)}
	for _, c := range r.Columns {
		s.Columns = append(s.Columns, catalog.Column(c))
	}
	return s
}

func nilIfEmpty[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}

func lookupTable(tx *bolt.Tx, database, name string) (int64, bool) {
	v := tx.Bucket(bktTableNames).Get(nameKey(database, name))
	if v == nil {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(v)), true
}

// CreateTable implements catalog.Store.
func (s *Store) CreateTable(ctx context.Context, spec catalog.TableSpec) (catalog.Table, error) {
	if err := spec.Validate(); err != nil {
		return catalog.Table{}, err
	}
	var t catalog.Table
	err := s.update(ctx, func(tx *bolt.Tx) error {
		if tx.Bucket(bktDatabases).Get([]byte(spec.Database)) == nil {
			return notFound("database %q", spec.Database)
		}
		if _, ok := lookupTable(tx, spec.Database, spec.Name); ok {
			return fmt.Errorf("catalog/embedded: table %q.%q: %w", spec.Database, spec.Name, catalog.ErrAlreadyExists)
		}
		tables := tx.Bucket(bktTables)
		seq, err := tables.NextSequence()
		if err != nil {
			return err
		}
		id := int64(seq)
		now := s.now()
		props := maps.Clone(spec.Properties)
		if len(props) == 0 {
			props = nil
		}
		rec := tableRec{
			Database: spec.Database, Name: spec.Name, SchemaVersion: 1, Buckets: spec.Buckets,
			BucketKey: nilIfEmpty(slices.Clone(spec.BucketKey)), PartitionKey: spec.PartitionKey,
			Properties: props, CreatedAt: now,
		}
		if err := put(tables, u64(id), rec); err != nil {
			return err
		}
		if err := tx.Bucket(bktTableNames).Put(nameKey(spec.Database, spec.Name), u64(id)); err != nil {
			return err
		}
		if err := put(tx.Bucket(bktSchemas), schemaKey(id, 1), toSchemaRec(spec.Schema, now)); err != nil {
			return err
		}
		buckets := tx.Bucket(bktBuckets)
		for i := range spec.Buckets {
			if err := put(buckets, bucketKey(catalog.BucketID{TableID: id, Bucket: i}), bucketRec{}); err != nil {
				return err
			}
		}
		t, _, err = loadTable(tx, id)
		return err
	})
	if err != nil {
		return catalog.Table{}, err
	}
	s.notifyTables(catalog.TableChange{ID: t.ID, Database: t.Database, Name: t.Name, SchemaVersion: t.SchemaVersion})
	return t, nil
}

// GetTable implements catalog.Store.
func (s *Store) GetTable(ctx context.Context, database, name string) (catalog.Table, error) {
	var t catalog.Table
	err := s.view(ctx, func(tx *bolt.Tx) error {
		id, ok := lookupTable(tx, database, name)
		if !ok {
			return notFound("table %q.%q", database, name)
		}
		var err error
		t, _, err = loadTable(tx, id)
		return err
	})
	return t, err
}

// GetTableByID implements catalog.Store.
func (s *Store) GetTableByID(ctx context.Context, id int64) (catalog.Table, error) {
	var t catalog.Table
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var ok bool
		var err error
		t, ok, err = loadTable(tx, id)
		if err == nil && !ok {
			return notFound("table id %d", id)
		}
		return err
	})
	return t, err
}

// ListTables implements catalog.Store.
func (s *Store) ListTables(ctx context.Context, database string) ([]catalog.Table, error) {
	var out []catalog.Table
	err := s.view(ctx, func(tx *bolt.Tx) error {
		if tx.Bucket(bktDatabases).Get([]byte(database)) == nil {
			return notFound("database %q", database)
		}
		prefix := []byte(database + "\x00")
		c := tx.Bucket(bktTableNames).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			t, _, err := loadTable(tx, int64(binary.BigEndian.Uint64(v)))
			if err != nil {
				return err
			}
			out = append(out, t)
		}
		return nil
	})
	return out, err
}

// DropTable implements catalog.Store.
func (s *Store) DropTable(ctx context.Context, database, name string) error {
	var dropped catalog.TableChange
	err := s.update(ctx, func(tx *bolt.Tx) error {
		id, ok := lookupTable(tx, database, name)
		if !ok {
			return notFound("table %q.%q", database, name)
		}
		var err error
		dropped, err = dropTable(tx, id)
		return err
	})
	if err != nil {
		return err
	}
	s.notifyTables(dropped)
	return nil
}

// dropTable removes a table and everything keyed by it; object rows go when
// their last range does. It returns the change to report.
func dropTable(tx *bolt.Tx, id int64) (catalog.TableChange, error) {
	rec, ok, err := get[tableRec](tx.Bucket(bktTables), u64(id))
	if err != nil || !ok {
		return catalog.TableChange{}, err
	}
	return catalog.TableChange{ID: id, Database: rec.Database, Name: rec.Name}, dropTableRec(tx, id, rec)
}

// dropTableRec deletes table id, whose record is rec.
func dropTableRec(tx *bolt.Tx, id int64, rec tableRec) error {
	if err := tx.Bucket(bktTableNames).Delete(nameKey(rec.Database, rec.Name)); err != nil {
		return err
	}
	if err := tx.Bucket(bktTables).Delete(u64(id)); err != nil {
		return err
	}
	p := tablePrefix(id)
	objects := tx.Bucket(bktObjects)
	err := deletePrefix(tx.Bucket(bktRanges), p, func(k, v []byte) error {
		var r rangeRec
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("catalog/embedded: corrupt range %x: %w", k, err)
		}
		_, err := unrefObject(objects, r.ObjectKey)
		return err
	})
	if err != nil {
		return err
	}
	for _, name := range [][]byte{bktSchemas, bktBuckets, bktKV, bktTiered, bktWriters} {
		if err := deletePrefix(tx.Bucket(name), p, nil); err != nil {
			return err
		}
	}
	return nil
}

// unrefObject counts one range of an object as gone and deletes the
// object's row with its last range, reporting whether it did.
func unrefObject(objects *bolt.Bucket, key string) (bool, error) {
	o, ok, err := get[objectRec](objects, []byte(key))
	if err != nil || !ok {
		return false, err
	}
	o.Ranges--
	if o.Ranges <= 0 {
		return true, objects.Delete([]byte(key))
	}
	return false, put(objects, []byte(key), o)
}

// AddColumns implements catalog.Store.
func (s *Store) AddColumns(ctx context.Context, database, name string, columns []catalog.Column) (catalog.Table, error) {
	var t catalog.Table
	err := s.update(ctx, func(tx *bolt.Tx) error {
		id, ok := lookupTable(tx, database, name)
		if !ok {
			return notFound("table %q.%q", database, name)
		}
		var err error
		if t, _, err = loadTable(tx, id); err != nil {
			return err
		}
		if err := catalog.ValidateAddColumns(t.Schema, columns); err != nil {
			return err
		}
		t.Schema.Columns = append(slices.Clone(t.Schema.Columns), columns...)
		t.SchemaVersion++
		if err := put(tx.Bucket(bktSchemas), schemaKey(id, t.SchemaVersion), toSchemaRec(t.Schema, s.now())); err != nil {
			return err
		}
		rec, _, err := get[tableRec](tx.Bucket(bktTables), u64(id))
		if err != nil {
			return err
		}
		rec.SchemaVersion = t.SchemaVersion
		return put(tx.Bucket(bktTables), u64(id), rec)
	})
	if err != nil {
		return catalog.Table{}, err
	}
	s.notifyTables(catalog.TableChange{ID: t.ID, Database: t.Database, Name: t.Name, SchemaVersion: t.SchemaVersion})
	return t, nil
}

// SchemaVersions implements catalog.Store.
func (s *Store) SchemaVersions(ctx context.Context, tableID int64) ([]catalog.SchemaVersion, error) {
	var out []catalog.SchemaVersion
	err := s.view(ctx, func(tx *bolt.Tx) error {
		p := tablePrefix(tableID)
		c := tx.Bucket(bktSchemas).Cursor()
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			var r schemaRec
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("catalog/embedded: corrupt schema %x: %w", k, err)
			}
			out = append(out, catalog.SchemaVersion{Version: int32(binary.BigEndian.Uint32(k[8:])), Schema: r.schema(), CreatedAt: r.CreatedAt})
		}
		if len(out) == 0 {
			return notFound("table id %d", tableID)
		}
		return nil
	})
	return out, err
}

// ListBuckets implements catalog.Store. ErrNotFound if the table does not
// exist.
func (s *Store) ListBuckets(ctx context.Context, tableID int64) ([]catalog.BucketState, error) {
	var out []catalog.BucketState
	err := s.view(ctx, func(tx *bolt.Tx) error {
		if tx.Bucket(bktTables).Get(u64(tableID)) == nil {
			return notFound("table id %d", tableID)
		}
		var err error
		out, err = scanBuckets(tx, tablePrefix(tableID))
		return err
	})
	return out, err
}

// GetBucket implements catalog.Store with one key lookup.
func (s *Store) GetBucket(ctx context.Context, b catalog.BucketID) (catalog.BucketState, error) {
	var out catalog.BucketState
	err := s.view(ctx, func(tx *bolt.Tx) error {
		r, ok, err := get[bucketRec](tx.Bucket(bktBuckets), bucketKey(b))
		if err != nil {
			return err
		}
		if !ok {
			return notFound("bucket %v", b)
		}
		out = catalog.BucketState{BucketID: b, Leader: r.Leader, Epoch: r.Epoch, LeaseExpiry: r.LeaseExpiry,
			NextOffset: r.NextOffset, StartOffset: r.StartOffset}
		return nil
	})
	return out, err
}

// ListAllBuckets implements catalog.Store: one scan of the buckets bucket,
// whose key order is (table id, partition, bucket).
func (s *Store) ListAllBuckets(ctx context.Context) ([]catalog.BucketState, error) {
	var out []catalog.BucketState
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		out, err = scanBuckets(tx, nil)
		return err
	})
	return out, err
}

// scanBuckets returns the bucket rows whose keys start with prefix, in key
// order.
func scanBuckets(tx *bolt.Tx, prefix []byte) ([]catalog.BucketState, error) {
	var out []catalog.BucketState
	c := tx.Bucket(bktBuckets).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		var r bucketRec
		if err := json.Unmarshal(v, &r); err != nil {
			return nil, fmt.Errorf("catalog/embedded: corrupt bucket %x: %w", k, err)
		}
		out = append(out, catalog.BucketState{BucketID: decodeBucketKey(k), Leader: r.Leader, Epoch: r.Epoch, LeaseExpiry: r.LeaseExpiry,
			NextOffset: r.NextOffset, StartOffset: r.StartOffset})
	}
	return out, nil
}

// AcquireLease implements catalog.Store. Besides the interface's errors it
// returns ErrInvalid for an empty holder, a ttl under 1ms, a bucket index
// outside 0..buckets-1, or a partition that is non-empty on an
// unpartitioned table or holds a NUL byte.
func (s *Store) AcquireLease(ctx context.Context, b catalog.BucketID, holder string, ttl time.Duration) (catalog.Lease, error) {
	if err := catalog.ValidateLeaseRequest(b, holder, ttl); err != nil {
		return catalog.Lease{}, err
	}
	if strings.IndexByte(b.Partition, 0) >= 0 {
		return catalog.Lease{}, &catalog.ValidationError{Field: "bucket.partition", Reason: fmt.Sprintf("partition %q holds a NUL byte", b.Partition)}
	}
	l := catalog.Lease{Bucket: b, Holder: holder}
	err := s.update(ctx, func(tx *bolt.Tx) error {
		t, ok, err := get[tableRec](tx.Bucket(bktTables), u64(b.TableID))
		if err != nil {
			return err
		}
		if !ok {
			return notFound("table id %d", b.TableID)
		}
		if b.Bucket >= t.Buckets {
			return &catalog.ValidationError{Field: "bucket.bucket", Reason: fmt.Sprintf("bucket %d out of range 0..%d", b.Bucket, t.Buckets-1)}
		}
		if b.Partition != "" && t.PartitionKey == "" {
			return &catalog.ValidationError{Field: "bucket.partition", Reason: fmt.Sprintf("partition %q given but table %d has no partition key", b.Partition, b.TableID)}
		}
		buckets := tx.Bucket(bktBuckets)
		key := bucketKey(b)
		rec, _, err := get[bucketRec](buckets, key) // a new partition's row starts empty
		if err != nil {
			return err
		}
		now := s.now()
		live := rec.Leader != "" && now.Before(rec.LeaseExpiry)
		if live && rec.Leader != holder {
			return fmt.Errorf("catalog/embedded: bucket %v is led by %q (epoch %d) until %v: %w", b, rec.Leader, rec.Epoch, rec.LeaseExpiry, catalog.ErrLeaseHeld)
		}
		if !live || rec.Leader != holder {
			rec.Epoch++
		}
		rec.Leader = holder
		rec.LeaseExpiry = now.Add(ttl)
		l.Epoch, l.Expiry = rec.Epoch, rec.LeaseExpiry
		return put(buckets, key, rec)
	})
	if err != nil {
		return catalog.Lease{}, err
	}
	return l, nil
}

// currentBucket loads a bucket row and checks that holder (if set) and
// epoch are current; ErrNotFound without a row, ErrFenced otherwise.
func currentBucket(tx *bolt.Tx, b catalog.BucketID, holder string, epoch int64, what string) (bucketRec, error) {
	rec, ok, err := get[bucketRec](tx.Bucket(bktBuckets), bucketKey(b))
	if err != nil {
		return rec, err
	}
	if !ok {
		return rec, notFound("%s: bucket %v", what, b)
	}
	if rec.Epoch != epoch || rec.Leader == "" || (holder != "" && rec.Leader != holder) {
		return rec, fmt.Errorf("catalog/embedded: %s: bucket %v is at epoch %d led by %q, caller has epoch %d: %w", what, b, rec.Epoch, rec.Leader, epoch, catalog.ErrFenced)
	}
	return rec, nil
}

// RenewLease implements catalog.Store.
func (s *Store) RenewLease(ctx context.Context, l catalog.Lease, ttl time.Duration) (catalog.Lease, error) {
	if err := catalog.ValidateLeaseRequest(l.Bucket, l.Holder, ttl); err != nil {
		return catalog.Lease{}, err
	}
	err := s.update(ctx, func(tx *bolt.Tx) error {
		rec, err := currentBucket(tx, l.Bucket, l.Holder, l.Epoch, "renew lease of "+l.Holder)
		if err != nil {
			return err
		}
		rec.LeaseExpiry = s.now().Add(ttl)
		l.Expiry = rec.LeaseExpiry
		return put(tx.Bucket(bktBuckets), bucketKey(l.Bucket), rec)
	})
	if err != nil {
		return catalog.Lease{}, err
	}
	return l, nil
}

// ReleaseLease implements catalog.Store. The epoch stays; the next
// acquisition increments it.
func (s *Store) ReleaseLease(ctx context.Context, l catalog.Lease) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		rec, err := currentBucket(tx, l.Bucket, l.Holder, l.Epoch, "release lease of "+l.Holder)
		if err != nil {
			return err
		}
		rec.Leader, rec.LeaseExpiry = "", time.Time{}
		return put(tx.Bucket(bktBuckets), bucketKey(l.Bucket), rec)
	})
}

// CommitSegment implements catalog.Store. A bucket must also still have a
// leader: a released lease fences its holder. ErrAlreadyExists if the object
// key was committed before; ErrNotFound for a bucket with no row.
func (s *Store) CommitSegment(ctx context.Context, seg catalog.Segment) error {
	if err := seg.Validate(); err != nil {
		return err
	}
	ranges := slices.Clone(seg.Ranges)
	slices.SortFunc(ranges, func(a, b catalog.SegmentRange) int { return a.Bucket.Compare(b.Bucket) })
	err := s.update(ctx, func(tx *bolt.Tx) error {
		recs := make([]bucketRec, len(ranges))
		for i, r := range ranges {
			rec, err := currentBucket(tx, r.Bucket, "", r.Epoch, fmt.Sprintf("segment %q", seg.ObjectKey))
			if err != nil {
				return err
			}
			if rec.NextOffset != r.BaseOffset {
				return fmt.Errorf("catalog/embedded: segment %q: bucket %v expects offset %d, range starts at %d: %w",
					seg.ObjectKey, r.Bucket, rec.NextOffset, r.BaseOffset, catalog.ErrOffsetGap)
			}
			recs[i] = rec
		}
		objects := tx.Bucket(bktObjects)
		if objects.Get([]byte(seg.ObjectKey)) != nil {
			return fmt.Errorf("catalog/embedded: segment %q: %w", seg.ObjectKey, catalog.ErrAlreadyExists)
		}
		now := s.now()
		if err := put(objects, []byte(seg.ObjectKey), objectRec{Size: seg.Size, CommittedAt: now, Ranges: len(ranges)}); err != nil {
			return err
		}
		for i, r := range ranges {
			key := bucketKey(r.Bucket)
			rr := rangeRec{
				Epoch: r.Epoch, ObjectKey: seg.ObjectKey, EndOffset: r.EndOffset, ByteOffset: r.ByteOffset, ByteLength: r.ByteLength,
				RowCount: r.RowCount, MinTimestamp: r.MinTimestamp, MaxTimestamp: r.MaxTimestamp, CommittedAt: now,
			}
			if err := put(tx.Bucket(bktRanges), append(slices.Clone(key), u64(r.BaseOffset)...), rr); err != nil {
				return err
			}
			recs[i].NextOffset = r.EndOffset
			if err := put(tx.Bucket(bktBuckets), key, recs[i]); err != nil {
				return err
			}
			writers := tx.Bucket(bktWriters)
			for _, w := range r.Writers {
				wkey := append(slices.Clone(key), w.WriterID...)
				cur, ok, err := get[writerRec](writers, wkey)
				if err != nil {
					return err
				}
				if ok && cur.Sequence >= w.Sequence {
					continue
				}
				if err := put(writers, wkey, writerRec{Sequence: w.Sequence, BaseOffset: w.BaseOffset, EndOffset: w.EndOffset, UpdatedAt: now}); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.notify(ranges)
	return nil
}

// notify tells every watcher about committed ranges.
func (s *Store) notify(ranges []catalog.SegmentRange) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for w := range s.watchers {
		for _, r := range ranges {
			if cur, ok := w.pending[r.Bucket]; !ok || r.EndOffset > cur {
				w.pending[r.Bucket] = r.EndOffset
			}
		}
		select {
		case w.signal <- struct{}{}:
		default:
		}
	}
}

// notifyTables tells every watcher about table changes, after their
// transaction committed.
func (s *Store) notifyTables(changes ...catalog.TableChange) {
	if len(changes) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for w := range s.watchers {
		w.tables = append(w.tables, changes...)
		select {
		case w.signal <- struct{}{}:
		default:
		}
	}
}

// ListSegments implements catalog.Store. A bucket without a row has no
// segments (nil, no error).
func (s *Store) ListSegments(ctx context.Context, b catalog.BucketID, from int64, limit int) ([]catalog.SegmentRange, error) {
	var out []catalog.SegmentRange
	err := s.view(ctx, func(tx *bolt.Tx) error {
		p := bucketKey(b)
		c := tx.Bucket(bktRanges).Cursor()
		// The range holding from starts at or before it: seek there and step
		// back one range unless the seek hit a range starting at from.
		start := append(slices.Clone(p), u64(max(from, 0))...)
		k, v := c.Seek(start)
		if k == nil || !bytes.Equal(k, start) {
			var pk, pv []byte
			if k == nil {
				pk, pv = c.Last()
			} else {
				pk, pv = c.Prev()
			}
			if pk != nil && bytes.HasPrefix(pk, p) {
				k, v = pk, pv
			} else {
				k, v = c.Seek(start)
			}
		}
		for ; k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			var r rangeRec
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("catalog/embedded: corrupt range %x: %w", k, err)
			}
			if r.EndOffset <= from {
				continue
			}
			out = append(out, catalog.SegmentRange{
				Bucket: b, Epoch: r.Epoch, ObjectKey: r.ObjectKey, BaseOffset: int64(binary.BigEndian.Uint64(k[len(p):])),
				EndOffset: r.EndOffset, ByteOffset: r.ByteOffset, ByteLength: r.ByteLength, RowCount: r.RowCount,
				MinTimestamp: r.MinTimestamp, MaxTimestamp: r.MaxTimestamp, CommittedAt: r.CommittedAt,
			})
			if limit > 0 && len(out) == limit {
				break
			}
		}
		return nil
	})
	return out, err
}

// PutKVSnapshot implements catalog.Store. Ids are unique across the store
// and increase with every snapshot.
func (s *Store) PutKVSnapshot(ctx context.Context, snap catalog.KVSnapshot) (catalog.KVSnapshot, error) {
	if snap.LogOffset < 0 {
		return catalog.KVSnapshot{}, &catalog.ValidationError{Field: "log_offset", Reason: fmt.Sprintf("log offset %d is negative", snap.LogOffset)}
	}
	snap.Files = nilIfEmpty(slices.Clone(snap.Files))
	err := s.update(ctx, func(tx *bolt.Tx) error {
		if _, err := currentBucket(tx, snap.Bucket, "", snap.Epoch, "kv snapshot"); err != nil {
			return err
		}
		kv := tx.Bucket(bktKV)
		seq, err := kv.NextSequence()
		if err != nil {
			return err
		}
		snap.ID = int64(seq)
		snap.CreatedAt = s.now()
		return put(kv, append(bucketKey(snap.Bucket), u64(snap.ID)...), kvRec{Epoch: snap.Epoch, LogOffset: snap.LogOffset, Files: snap.Files, CreatedAt: snap.CreatedAt})
	})
	if err != nil {
		return catalog.KVSnapshot{}, err
	}
	return snap, nil
}

// ListKVSnapshots implements catalog.Store.
func (s *Store) ListKVSnapshots(ctx context.Context, b catalog.BucketID) ([]catalog.KVSnapshot, error) {
	var out []catalog.KVSnapshot
	err := s.view(ctx, func(tx *bolt.Tx) error {
		p := bucketKey(b)
		c := tx.Bucket(bktKV).Cursor()
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			var r kvRec
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("catalog/embedded: corrupt kv snapshot %x: %w", k, err)
			}
			out = append(out, catalog.KVSnapshot{Bucket: b, ID: int64(binary.BigEndian.Uint64(k[len(p):])), Epoch: r.Epoch,
				LogOffset: r.LogOffset, Files: r.Files, CreatedAt: r.CreatedAt})
		}
		slices.Reverse(out)
		return nil
	})
	return out, err
}

// DeleteKVSnapshot implements catalog.Store.
func (s *Store) DeleteKVSnapshot(ctx context.Context, b catalog.BucketID, id int64) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		kv := tx.Bucket(bktKV)
		key := append(bucketKey(b), u64(id)...)
		if kv.Get(key) == nil {
			return notFound("kv snapshot %d of bucket %v", id, b)
		}
		return kv.Delete(key)
	})
}

// SetTieredOffsets implements catalog.Store. ErrNotFound (and nothing
// recorded) if any bucket has no row; ErrInvalid for a negative offset.
func (s *Store) SetTieredOffsets(ctx context.Context, offsets []catalog.TieredOffset) error {
	for i, o := range offsets {
		if o.Offset < 0 {
			return &catalog.ValidationError{Field: fmt.Sprintf("offsets[%d].offset", i), Reason: fmt.Sprintf("offset %d is negative", o.Offset)}
		}
	}
	return s.update(ctx, func(tx *bolt.Tx) error {
		tiered := tx.Bucket(bktTiered)
		now := s.now()
		for _, o := range offsets {
			key := bucketKey(o.Bucket)
			if tx.Bucket(bktBuckets).Get(key) == nil {
				return notFound("tiered offset: bucket %v", o.Bucket)
			}
			cur, ok, err := get[tieredRec](tiered, key)
			if err != nil {
				return err
			}
			if ok && o.Offset < cur.Offset {
				continue
			}
			if err := put(tiered, key, tieredRec{Offset: o.Offset, LakeSnapshotID: o.LakeSnapshotID, UpdatedAt: now}); err != nil {
				return err
			}
		}
		return nil
	})
}

// TieredOffsets implements catalog.Store. Buckets never tiered are absent.
func (s *Store) TieredOffsets(ctx context.Context, tableID int64) ([]catalog.TieredOffset, error) {
	var out []catalog.TieredOffset
	err := s.view(ctx, func(tx *bolt.Tx) error {
		p := tablePrefix(tableID)
		c := tx.Bucket(bktTiered).Cursor()
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			var r tieredRec
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("catalog/embedded: corrupt tiered offset %x: %w", k, err)
			}
			out = append(out, catalog.TieredOffset{Bucket: decodeBucketKey(k), Offset: r.Offset, LakeSnapshotID: r.LakeSnapshotID, UpdatedAt: r.UpdatedAt})
		}
		return nil
	})
	return out, err
}

// OffsetForTimestamp implements catalog.Store. ErrNotFound if the bucket
// has no row.
func (s *Store) OffsetForTimestamp(ctx context.Context, b catalog.BucketID, ts time.Time) (int64, error) {
	var off int64
	err := s.view(ctx, func(tx *bolt.Tx) error {
		key := bucketKey(b)
		rec, ok, err := get[bucketRec](tx.Bucket(bktBuckets), key)
		if err != nil {
			return err
		}
		if !ok {
			return notFound("bucket %v", b)
		}
		off = rec.NextOffset
		c := tx.Bucket(bktRanges).Cursor()
		for k, v := c.Seek(key); k != nil && bytes.HasPrefix(k, key); k, v = c.Next() {
			var r rangeRec
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("catalog/embedded: corrupt range %x: %w", k, err)
			}
			if !r.MaxTimestamp.Before(ts) {
				off = int64(binary.BigEndian.Uint64(k[len(key):]))
				return nil
			}
		}
		return nil
	})
	return off, err
}

// DeleteRangesBefore implements catalog.Store. ErrNotFound if the bucket has
// no row.
func (s *Store) DeleteRangesBefore(ctx context.Context, b catalog.BucketID, offset int64) ([]string, error) {
	var orphans []string
	err := s.update(ctx, func(tx *bolt.Tx) error {
		orphans = nil
		key := bucketKey(b)
		buckets := tx.Bucket(bktBuckets)
		rec, ok, err := get[bucketRec](buckets, key)
		if err != nil {
			return err
		}
		if !ok {
			return notFound("bucket %v", b)
		}
		ranges, objects := tx.Bucket(bktRanges), tx.Bucket(bktObjects)
		newStart := min(max(offset, 0), rec.NextOffset)
		var doomed [][]byte
		c := ranges.Cursor()
		for k, v := c.Seek(key); k != nil && bytes.HasPrefix(k, key); k, v = c.Next() {
			var r rangeRec
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("catalog/embedded: corrupt range %x: %w", k, err)
			}
			if r.EndOffset > offset {
				newStart = int64(binary.BigEndian.Uint64(k[len(key):]))
				break
			}
			doomed = append(doomed, slices.Clone(k))
			gone, err := unrefObject(objects, r.ObjectKey)
			if err != nil {
				return err
			}
			if gone {
				orphans = append(orphans, r.ObjectKey)
			}
		}
		for _, k := range doomed {
			if err := ranges.Delete(k); err != nil {
				return err
			}
		}
		if newStart > rec.StartOffset {
			rec.StartOffset = newStart
			return put(buckets, key, rec)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(orphans)
	return orphans, nil
}

// UnknownObjects implements catalog.Store. The result keeps the order of
// keys, each key once. It reads every KV snapshot record.
func (s *Store) UnknownObjects(ctx context.Context, keys []string) ([]string, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	var out []string
	err := s.view(ctx, func(tx *bolt.Tx) error {
		out = nil
		known := map[string]bool{}
		objects := tx.Bucket(bktObjects)
		for _, k := range keys {
			if objects.Get([]byte(k)) != nil {
				known[k] = true
			}
		}
		err := tx.Bucket(bktKV).ForEach(func(k, v []byte) error {
			var r kvRec
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("catalog/embedded: corrupt kv snapshot %x: %w", k, err)
			}
			for _, f := range r.Files {
				known[f] = true
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range keys {
			if !known[k] {
				known[k] = true // each key once
				out = append(out, k)
			}
		}
		return nil
	})
	return out, err
}

// WriterSequences implements catalog.Store, ordered by writer id. A bucket
// without a row has none (nil, no error).
func (s *Store) WriterSequences(ctx context.Context, b catalog.BucketID) ([]catalog.WriterSequence, error) {
	var out []catalog.WriterSequence
	err := s.view(ctx, func(tx *bolt.Tx) error {
		p := bucketKey(b)
		c := tx.Bucket(bktWriters).Cursor()
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			var r writerRec
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("catalog/embedded: corrupt writer sequence %x: %w", k, err)
			}
			out = append(out, catalog.WriterSequence{WriterID: string(k[len(p):]), Sequence: r.Sequence,
				BaseOffset: r.BaseOffset, EndOffset: r.EndOffset, UpdatedAt: r.UpdatedAt})
		}
		return nil
	})
	return out, err
}

// Watch implements catalog.Store with an in-process broadcast that the
// mutating methods feed after their transaction commits, before they
// return. The callbacks run on the calling goroutine; mutations never wait
// for them: while they run, further commits are coalesced to the newest
// next offset per bucket (a bucket's next offset is never reported lower
// than one reported before), and table changes queue up in order. With
// ev.Synced, it reads the clock every ev.SyncInterval, reports what is
// queued, then calls Synced with the time read: every mutation that
// returned before it was queued by then. It returns ctx.Err() when ctx ends
// and ErrUnavailable once the store is closed.
func (s *Store) Watch(ctx context.Context, ev catalog.Events) error {
	w := &watcher{pending: map[catalog.BucketID]int64{}, signal: make(chan struct{}, 1)}
	s.mu.Lock()
	s.watchers[w] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.watchers, w)
		s.mu.Unlock()
	}()
	if ev.Listening != nil {
		ev.Listening()
	}
	var tick <-chan time.Time
	if ev.Synced != nil && ev.SyncInterval > 0 {
		t := time.NewTicker(ev.SyncInterval)
		defer t.Stop()
		tick = t.C
	}
	reported := map[catalog.BucketID]int64{}
	for {
		var synced time.Time
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.closed:
			return fmt.Errorf("catalog/embedded: watch: store closed: %w", catalog.ErrUnavailable)
		case <-w.signal:
		case <-tick:
			synced = time.Now()
		}
		s.mu.Lock()
		pending, tables := w.pending, w.tables
		w.pending, w.tables = map[catalog.BucketID]int64{}, nil
		s.mu.Unlock()
		for _, c := range tables {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if ev.Table != nil {
				ev.Table(c)
			}
		}
		ids := slices.SortedFunc(maps.Keys(pending), catalog.BucketID.Compare)
		for _, b := range ids {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			next := pending[b]
			if prev, ok := reported[b]; ok && next <= prev {
				continue // a late signal of a commit already reported
			}
			reported[b] = next
			if ev.Commit != nil {
				ev.Commit(b, next)
			}
		}
		if !synced.IsZero() {
			ev.Synced(synced)
		}
	}
}
