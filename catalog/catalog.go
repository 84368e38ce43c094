// Package catalog holds Strom's metadata model and the Store interface that
// keeps it: databases, tables and their schema versions, per-bucket leader
// leases with fencing epochs, the index of committed segment objects, KV
// snapshot records, tiered offsets and the members of the cluster.
//
// Two implementations exist: catalog/postgres (the shared catalog of a
// deployment) and catalog/embedded (one process, on local disk, for
// `strom server` with defaults). Both pass the acceptance suite in
// catalog/catalogtest.
package catalog

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors. Implementations wrap them with context (fmt.Errorf("%w"));
// callers classify with errors.Is.
var (
	// ErrNotFound: the named database, table, bucket or snapshot does not exist.
	ErrNotFound = errors.New("catalog: not found")
	// ErrAlreadyExists: a database or table of that name exists.
	ErrAlreadyExists = errors.New("catalog: already exists")
	// ErrInvalid: the request is malformed; the error is a *ValidationError
	// naming the field.
	ErrInvalid = errors.New("catalog: invalid")
	// ErrNotEmpty: a database still holds tables.
	ErrNotEmpty = errors.New("catalog: not empty")
	// ErrLeaseHeld: another holder has an unexpired lease on the bucket.
	ErrLeaseHeld = errors.New("catalog: lease held by another holder")
	// ErrFenced: the caller's epoch is no longer the bucket's current epoch;
	// it must stop acting as the bucket's leader.
	ErrFenced = errors.New("catalog: fenced: epoch is not current")
	// ErrOffsetGap: a segment range does not start at the bucket's next offset.
	ErrOffsetGap = errors.New("catalog: offsets not contiguous")
	// ErrUnavailable: the catalog's backing store cannot be reached; the call
	// may be retried.
	ErrUnavailable = errors.New("catalog: unavailable")
)

// Store keeps Strom's metadata. Every method is safe for concurrent use, and
// every mutating method is atomic: it applies entirely or not at all.
type Store interface {
	// CreateDatabase creates an empty database. ErrInvalid for a bad name,
	// ErrAlreadyExists if it exists.
	CreateDatabase(ctx context.Context, name string) (Database, error)
	// GetDatabase returns one database or ErrNotFound.
	GetDatabase(ctx context.Context, name string) (Database, error)
	// ListDatabases returns all databases ordered by name.
	ListDatabases(ctx context.Context) ([]Database, error)
	// DropDatabase removes a database. It fails with ErrNotEmpty while the
	// database holds tables, unless cascade is set, which drops them too.
	DropDatabase(ctx context.Context, name string, cascade bool) error

	// CreateTable validates spec (ErrInvalid naming the field), then creates
	// the table at schema version 1 with one bucket row per bucket of the
	// default (empty) partition.
	CreateTable(ctx context.Context, spec TableSpec) (Table, error)
	// GetTable returns the table with its newest schema, or ErrNotFound.
	GetTable(ctx context.Context, database, name string) (Table, error)
	// GetTableByID returns a table by its id, or ErrNotFound.
	GetTableByID(ctx context.Context, id int64) (Table, error)
	// ListTables returns the tables of a database ordered by name;
	// ErrNotFound if the database does not exist.
	ListTables(ctx context.Context, database string) ([]Table, error)
	// DropTable removes a table with its buckets, segment index, snapshots and
	// tiered offsets. Objects in the object store are left to the janitor.
	DropTable(ctx context.Context, database, name string) error
	// AddColumns appends nullable columns, creating a new schema version.
	AddColumns(ctx context.Context, database, name string, columns []Column) (Table, error)
	// SchemaVersions returns every schema version of a table, oldest first.
	SchemaVersions(ctx context.Context, tableID int64) ([]SchemaVersion, error)

	// ListBuckets returns the bucket rows of a table (every partition),
	// ordered by partition then bucket.
	ListBuckets(ctx context.Context, tableID int64) ([]BucketState, error)
	// GetBucket returns one bucket's row (its lease and offsets) in one
	// indexed read. ErrNotFound when the bucket has no row: its table does
	// not exist, or its partition was never led (AcquireLease creates the
	// rows of a partition).
	GetBucket(ctx context.Context, b BucketID) (BucketState, error)
	// ListAllBuckets returns the bucket rows of every table (every
	// partition), ordered by table id, partition, then bucket.
	ListAllBuckets(ctx context.Context) ([]BucketState, error)
	// AcquireLease makes holder the bucket's leader for ttl. It succeeds when
	// the bucket has no leader, the lease has expired, or holder already
	// holds it. The epoch increases whenever leadership is granted anew (not
	// on re-acquisition by the unexpired holder), so every earlier leader is
	// fenced. A bucket row of a new partition is created on first
	// acquisition. ErrLeaseHeld while another holder's lease is unexpired.
	// Expiry is judged by the store's clock, not the caller's.
	AcquireLease(ctx context.Context, b BucketID, holder string, ttl time.Duration) (Lease, error)
	// RenewLease extends a lease by ttl from now. ErrFenced if the bucket's
	// epoch or holder changed, even if the lease had expired meanwhile;
	// ErrNotFound once the bucket's table was dropped.
	RenewLease(ctx context.Context, l Lease, ttl time.Duration) (Lease, error)
	// ReleaseLease gives the bucket up so another holder can take it at once.
	// ErrFenced if l is no longer current; ErrNotFound once the bucket's
	// table was dropped.
	ReleaseLease(ctx context.Context, l Lease) error

	// CommitSegment registers one segment object and all its per-bucket
	// ranges in one transaction. Each range must carry its bucket's current
	// epoch (else ErrFenced) and start at the bucket's next offset (else
	// ErrOffsetGap); on success each bucket's next offset moves to the range's
	// end. Nothing is registered when any range fails.
	CommitSegment(ctx context.Context, seg Segment) error
	// ListSegments returns the committed ranges of a bucket whose offsets end
	// after from, ordered by offset, at most limit of them (0: no limit).
	ListSegments(ctx context.Context, b BucketID, from int64, limit int) ([]SegmentRange, error)
	// OffsetForTimestamp returns the base offset of the first committed range
	// of the bucket whose MaxTimestamp is at or after ts, or the bucket's
	// NextOffset when there is none.
	OffsetForTimestamp(ctx context.Context, b BucketID, ts time.Time) (int64, error)
	// DeleteRangesBefore removes the bucket's ranges that end at or before
	// offset (whole ranges only) and moves the bucket's StartOffset to the
	// first remaining offset. It returns the keys of segment objects that no
	// longer hold any range (their object rows are removed in the same
	// transaction); the caller deletes them from the object store.
	DeleteRangesBefore(ctx context.Context, b BucketID, offset int64) (orphans []string, err error)
	// UnknownObjects returns the keys among keys that no segment or KV
	// snapshot row names, for the janitor.
	UnknownObjects(ctx context.Context, keys []string) ([]string, error)
	// WriterSequences returns the idempotent writers' last committed
	// sequences in the bucket, as CommitSegment recorded them.
	WriterSequences(ctx context.Context, b BucketID) ([]WriterSequence, error)
	// Watch reports the catalog changes that any process makes — commits
	// and table changes — to ev until ctx is done or the watch fails
	// (PostgreSQL LISTEN/NOTIFY on one dedicated connection; an in-process
	// signal for the embedded store). Changes made while no watch listens
	// (before ev.Listening, or between a failure and a new watch) are not
	// reported. Commit notifications may be coalesced: their callers
	// re-read the catalog rather than trust a count. Table changes are
	// reported one by one, in the order they were made. It returns ctx.Err()
	// when ctx ends and an ErrUnavailable error when the notification
	// channel fails or the store is closed.
	Watch(ctx context.Context, ev Events) error

	// Heartbeat inserts or updates the row of member m.ID with m's Address,
	// APIAddress and Roles, and Expiry = the store's now + ttl; m.Started
	// and m.Expiry are ignored. Started is the store's now on the first
	// heartbeat, and again when the previous row had expired (a new start);
	// otherwise it is kept. It returns the row as stored. It is idempotent
	// and safe to call concurrently, also for one id. ErrInvalid (see
	// ValidateMember) for an empty id, an id over MaxMemberIDLength bytes,
	// more than MaxMemberRoles roles, an empty role, an over-long address,
	// text that PostgreSQL cannot store (invalid UTF-8, NUL bytes), or a
	// ttl under 1ms.
	Heartbeat(ctx context.Context, m Member, ttl time.Duration) (Member, error)
	// ListMembers returns the members whose Expiry is after the store's now,
	// ordered by id (bytewise). Expired rows are never returned; the store
	// deletes them lazily, some time (an hour) after they expired.
	ListMembers(ctx context.Context) ([]Member, error)
	// RemoveMember deletes a member's row at once, as a process does when it
	// shuts down; an absent member is no error.
	RemoveMember(ctx context.Context, id string) error

	// PutKVSnapshot records a KV snapshot of a primary-key bucket; the epoch
	// must be current (else ErrFenced). The snapshot gets the next id.
	PutKVSnapshot(ctx context.Context, s KVSnapshot) (KVSnapshot, error)
	// ListKVSnapshots returns a bucket's snapshots, newest first.
	ListKVSnapshots(ctx context.Context, b BucketID) ([]KVSnapshot, error)
	// DeleteKVSnapshot removes one snapshot record; ErrNotFound if absent.
	DeleteKVSnapshot(ctx context.Context, b BucketID, id int64) error

	// SetTieredOffsets records, in one transaction, up to which offset each
	// bucket has been tiered into the lake and by which lake snapshot.
	// Offsets never move backwards: a lower offset than recorded is ignored.
	SetTieredOffsets(ctx context.Context, offsets []TieredOffset) error
	// TieredOffsets returns the tiered offsets of every bucket of a table.
	TieredOffsets(ctx context.Context, tableID int64) ([]TieredOffset, error)

	// Close releases the store's resources.
	Close() error
}

// Events are the callbacks of Store.Watch; a nil one is skipped. They run
// on Watch's goroutine, one at a time, and must not block for long: the
// watch reads no further notification meanwhile.
type Events struct {
	// Listening is called once the watch listens, before any other
	// callback: every change whose Store call returns after it starts is
	// reported. A watcher that caches catalog state drops it here, since
	// changes made before (while no watch listened) are not reported.
	Listening func()
	// Commit reports that ranges of bucket b were committed up to
	// nextOffset (exclusive).
	Commit func(b BucketID, nextOffset int64)
	// Table reports that a table was created, altered (AddColumns) or
	// dropped (DropTable, DropDatabase with cascade).
	Table func(TableChange)
	// Synced, when SyncInterval is positive, is called about every
	// SyncInterval with a time at, read from the caller's clock: every
	// change whose Store call, in any process, returned before at has been
	// reported (its callback returned) before Synced(at) is called. A
	// watch whose notifications lag, or whose connection silently broke,
	// stops calling it.
	Synced       func(at time.Time)
	SyncInterval time.Duration
}

// TableChange names a table that was created, altered or dropped.
type TableChange struct {
	ID       int64
	Database string
	Name     string
	// SchemaVersion is the table's schema version after the change; 0 when
	// the table was dropped.
	SchemaVersion int32
}

// Database is a namespace of tables.
type Database struct {
	Name      string
	CreatedAt time.Time
}

// Column is one typed column of a table schema.
type Column struct {
	Name     string
	Type     Type
	Nullable bool
}

// Schema is the ordered columns of a table and its primary key (empty for a
// log table).
type Schema struct {
	Columns    []Column
	PrimaryKey []string
}

// TableSpec is what a user asks for when creating a table.
type TableSpec struct {
	Database     string
	Name         string
	Schema       Schema
	Buckets      int32
	BucketKey    []string
	PartitionKey string
	Properties   map[string]string
}

// Table is a created table at its newest schema version.
type Table struct {
	ID            int64
	TableSpec     // as created, with Schema at SchemaVersion
	SchemaVersion int32
	CreatedAt     time.Time
}

// IsPrimaryKey reports whether the table is a primary-key table.
func (t Table) IsPrimaryKey() bool { return len(t.Schema.PrimaryKey) > 0 }

// SchemaVersion is one version of a table's schema.
type SchemaVersion struct {
	Version   int32
	Schema    Schema
	CreatedAt time.Time
}

// BucketID names one bucket of one partition of a table. Partition is ""
// for a table without a partition column.
type BucketID struct {
	TableID   int64
	Partition string
	Bucket    int32
}

// BucketState is a bucket's catalog row.
type BucketState struct {
	BucketID
	Leader      string // "" when no lease was ever granted or it was released
	Epoch       int64  // 0 before the first lease
	LeaseExpiry time.Time
	NextOffset  int64 // offset of the next record to commit
	StartOffset int64 // first offset still retained (0 until retention deletes)
}

// Member is a running Strom process that announced itself with Heartbeat;
// frontends use the member list to balance bucket leases and to forward
// requests. Stores return Roles as nil, never as an empty slice, when the
// member has none.
type Member struct {
	ID         string    // unique per process; its lease holder id
	Address    string    // host:port of its internal (forwarding) API; "" if none
	APIAddress string    // host:port of its public API, for display
	Roles      []string  // e.g. "write", "read", "tiering"; nil for none
	Started    time.Time // when it first announced itself; kept across heartbeats
	Expiry     time.Time // by the store's clock; the member is gone after it
}

// Lease is a granted bucket leadership. Epoch fences every earlier leader.
type Lease struct {
	Bucket BucketID
	Holder string
	Epoch  int64
	Expiry time.Time
}

// Segment is one segment object: the object key and the per-bucket ranges it
// holds.
type Segment struct {
	ObjectKey string
	Size      int64
	Ranges    []SegmentRange
}

// SegmentRange is the part of a segment object that holds one bucket's
// records [BaseOffset, EndOffset).
type SegmentRange struct {
	Bucket       BucketID
	Epoch        int64 // the committing leader's epoch
	ObjectKey    string
	BaseOffset   int64
	EndOffset    int64 // exclusive
	ByteOffset   int64 // start of the bucket's bytes in the object
	ByteLength   int64
	RowCount     int64
	MinTimestamp time.Time
	MaxTimestamp time.Time
	CommittedAt  time.Time // set by the store
	// Writers are the idempotent writers with requests in this range; on
	// commit the store records each one's sequence for the bucket
	// (replacing an older one). Not returned by ListSegments.
	Writers []WriterSequence
}

// WriterSequence is an idempotent writer's last committed request in a
// bucket: its sequence and the offsets that request got there.
type WriterSequence struct {
	WriterID   string
	Sequence   int64
	BaseOffset int64
	EndOffset  int64     // exclusive
	UpdatedAt  time.Time // set by the store
}

// KVSnapshot records a snapshot of a primary-key bucket's KV state covering
// the changelog up to (excluding) LogOffset.
type KVSnapshot struct {
	Bucket    BucketID
	ID        int64 // assigned by PutKVSnapshot
	Epoch     int64
	LogOffset int64
	Files     []string // object keys of the snapshot's files (SSTs, manifest)
	CreatedAt time.Time
}

// TieredOffset records that a bucket's records before Offset are in the lake
// as of lake snapshot LakeSnapshotID.
type TieredOffset struct {
	Bucket         BucketID
	Offset         int64
	LakeSnapshotID int64
	UpdatedAt      time.Time
}
