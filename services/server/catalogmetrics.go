package server

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/catalog/tablecache"
)

// countingStore counts this process's catalog calls by method
// (strom_catalog_calls_total): PostgreSQL round trips or embedded
// transactions. It sits under the table cache, so table reads the cache
// serves are not counted — which lets a test see that the hot path makes
// no catalog round trip.
type countingStore struct {
	catalog.Store
	calls map[string]prometheus.Counter
}

var _ catalog.Store = (*countingStore)(nil)

// catalogMethods are the methods of catalog.Store, the label values of
// strom_catalog_calls_total.
var catalogMethods = []string{
	"CreateDatabase", "GetDatabase", "ListDatabases", "DropDatabase", "CreateTable", "GetTable",
	"GetTableByID", "ListTables", "DropTable", "AddColumns", "SchemaVersions", "ListBuckets",
	"GetBucket", "ListAllBuckets", "AcquireLease", "RenewLease", "ReleaseLease", "CommitSegment",
	"ListSegments", "OffsetForTimestamp", "DeleteRangesBefore", "UnknownObjects", "WriterSequences",
	"Watch", "Heartbeat", "ListMembers", "RemoveMember", "PutKVSnapshot", "ListKVSnapshots",
	"DeleteKVSnapshot", "SetTieredOffsets", "TieredOffsets",
}

// instrumentCatalog counts store's calls into reg.
func instrumentCatalog(store catalog.Store, reg prometheus.Registerer) *countingStore {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "strom_catalog_calls_total",
		Help: "Catalog calls (PostgreSQL round trips or embedded transactions) by catalog.Store method; table reads the table cache serves are not counted.",
	}, []string{"method"})
	reg.MustRegister(vec)
	s := &countingStore{Store: store, calls: make(map[string]prometheus.Counter, len(catalogMethods))}
	for _, m := range catalogMethods {
		s.calls[m] = vec.WithLabelValues(m)
	}
	return s
}

func (s *countingStore) count(method string) { s.calls[method].Inc() }

// tableCacheLookups counts the table cache's lookups by result
// (strom_catalog_table_cache_lookups_total).
func tableCacheLookups(reg prometheus.Registerer) func(result string) {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "strom_catalog_table_cache_lookups_total",
		Help: "Table definitions asked of the table cache, by result: hit (served from memory), miss (not cached), unconfirmed (cached, but the catalog watch had not confirmed it within catalog.table_cache_max_staleness).",
	}, []string{"result"})
	reg.MustRegister(vec)
	counters := map[string]prometheus.Counter{}
	for _, r := range []string{tablecache.Hit, tablecache.Miss, tablecache.Unconfirmed} {
		counters[r] = vec.WithLabelValues(r)
	}
	return func(result string) { counters[result].Inc() }
}

// CreateDatabase implements catalog.Store.
func (s *countingStore) CreateDatabase(ctx context.Context, name string) (catalog.Database, error) {
	s.count("CreateDatabase")
	return s.Store.CreateDatabase(ctx, name)
}

// GetDatabase implements catalog.Store.
func (s *countingStore) GetDatabase(ctx context.Context, name string) (catalog.Database, error) {
	s.count("GetDatabase")
	return s.Store.GetDatabase(ctx, name)
}

// ListDatabases implements catalog.Store.
func (s *countingStore) ListDatabases(ctx context.Context) ([]catalog.Database, error) {
	s.count("ListDatabases")
	return s.Store.ListDatabases(ctx)
}

// DropDatabase implements catalog.Store.
func (s *countingStore) DropDatabase(ctx context.Context, name string, cascade bool) error {
	s.count("DropDatabase")
	return s.Store.DropDatabase(ctx, name, cascade)
}

// CreateTable implements catalog.Store.
func (s *countingStore) CreateTable(ctx context.Context, spec catalog.TableSpec) (catalog.Table, error) {
	s.count("CreateTable")
	return s.Store.CreateTable(ctx, spec)
}

// GetTable implements catalog.Store.
func (s *countingStore) GetTable(ctx context.Context, database, name string) (catalog.Table, error) {
	s.count("GetTable")
	return s.Store.GetTable(ctx, database, name)
}

// GetTableByID implements catalog.Store.
func (s *countingStore) GetTableByID(ctx context.Context, id int64) (catalog.Table, error) {
	s.count("GetTableByID")
	return s.Store.GetTableByID(ctx, id)
}

// ListTables implements catalog.Store.
func (s *countingStore) ListTables(ctx context.Context, database string) ([]catalog.Table, error) {
	s.count("ListTables")
	return s.Store.ListTables(ctx, database)
}

// DropTable implements catalog.Store.
func (s *countingStore) DropTable(ctx context.Context, database, name string) error {
	s.count("DropTable")
	return s.Store.DropTable(ctx, database, name)
}

// AddColumns implements catalog.Store.
func (s *countingStore) AddColumns(ctx context.Context, database, name string, columns []catalog.Column) (catalog.Table, error) {
	s.count("AddColumns")
	return s.Store.AddColumns(ctx, database, name, columns)
}

// SchemaVersions implements catalog.Store.
func (s *countingStore) SchemaVersions(ctx context.Context, tableID int64) ([]catalog.SchemaVersion, error) {
	s.count("SchemaVersions")
	return s.Store.SchemaVersions(ctx, tableID)
}

// ListBuckets implements catalog.Store.
func (s *countingStore) ListBuckets(ctx context.Context, tableID int64) ([]catalog.BucketState, error) {
	s.count("ListBuckets")
	return s.Store.ListBuckets(ctx, tableID)
}

// GetBucket implements catalog.Store.
func (s *countingStore) GetBucket(ctx context.Context, b catalog.BucketID) (catalog.BucketState, error) {
	s.count("GetBucket")
	return s.Store.GetBucket(ctx, b)
}

// ListAllBuckets implements catalog.Store.
func (s *countingStore) ListAllBuckets(ctx context.Context) ([]catalog.BucketState, error) {
	s.count("ListAllBuckets")
	return s.Store.ListAllBuckets(ctx)
}

// AcquireLease implements catalog.Store.
func (s *countingStore) AcquireLease(ctx context.Context, b catalog.BucketID, holder string, ttl time.Duration) (catalog.Lease, error) {
	s.count("AcquireLease")
	return s.Store.AcquireLease(ctx, b, holder, ttl)
}

// RenewLease implements catalog.Store.
func (s *countingStore) RenewLease(ctx context.Context, l catalog.Lease, ttl time.Duration) (catalog.Lease, error) {
	s.count("RenewLease")
	return s.Store.RenewLease(ctx, l, ttl)
}

// ReleaseLease implements catalog.Store.
func (s *countingStore) ReleaseLease(ctx context.Context, l catalog.Lease) error {
	s.count("ReleaseLease")
	return s.Store.ReleaseLease(ctx, l)
}

// CommitSegment implements catalog.Store.
func (s *countingStore) CommitSegment(ctx context.Context, seg catalog.Segment) error {
	s.count("CommitSegment")
	return s.Store.CommitSegment(ctx, seg)
}

// ListSegments implements catalog.Store.
func (s *countingStore) ListSegments(ctx context.Context, b catalog.BucketID, from int64, limit int) ([]catalog.SegmentRange, error) {
	s.count("ListSegments")
	return s.Store.ListSegments(ctx, b, from, limit)
}

// OffsetForTimestamp implements catalog.Store.
func (s *countingStore) OffsetForTimestamp(ctx context.Context, b catalog.BucketID, ts time.Time) (int64, error) {
	s.count("OffsetForTimestamp")
	return s.Store.OffsetForTimestamp(ctx, b, ts)
}

// DeleteRangesBefore implements catalog.Store.
func (s *countingStore) DeleteRangesBefore(ctx context.Context, b catalog.BucketID, offset int64) ([]string, error) {
	s.count("DeleteRangesBefore")
	return s.Store.DeleteRangesBefore(ctx, b, offset)
}

// UnknownObjects implements catalog.Store.
func (s *countingStore) UnknownObjects(ctx context.Context, keys []string) ([]string, error) {
	s.count("UnknownObjects")
	return s.Store.UnknownObjects(ctx, keys)
}

// WriterSequences implements catalog.Store.
func (s *countingStore) WriterSequences(ctx context.Context, b catalog.BucketID) ([]catalog.WriterSequence, error) {
	s.count("WriterSequences")
	return s.Store.WriterSequences(ctx, b)
}

// Watch implements catalog.Store.
func (s *countingStore) Watch(ctx context.Context, ev catalog.Events) error {
	s.count("Watch")
	return s.Store.Watch(ctx, ev)
}

// Heartbeat implements catalog.Store.
func (s *countingStore) Heartbeat(ctx context.Context, m catalog.Member, ttl time.Duration) (catalog.Member, error) {
	s.count("Heartbeat")
	return s.Store.Heartbeat(ctx, m, ttl)
}

// ListMembers implements catalog.Store.
func (s *countingStore) ListMembers(ctx context.Context) ([]catalog.Member, error) {
	s.count("ListMembers")
	return s.Store.ListMembers(ctx)
}

// RemoveMember implements catalog.Store.
func (s *countingStore) RemoveMember(ctx context.Context, id string) error {
	s.count("RemoveMember")
	return s.Store.RemoveMember(ctx, id)
}

// PutKVSnapshot implements catalog.Store.
func (s *countingStore) PutKVSnapshot(ctx context.Context, snap catalog.KVSnapshot) (catalog.KVSnapshot, error) {
	s.count("PutKVSnapshot")
	return s.Store.PutKVSnapshot(ctx, snap)
}

// ListKVSnapshots implements catalog.Store.
func (s *countingStore) ListKVSnapshots(ctx context.Context, b catalog.BucketID) ([]catalog.KVSnapshot, error) {
	s.count("ListKVSnapshots")
	return s.Store.ListKVSnapshots(ctx, b)
}

// DeleteKVSnapshot implements catalog.Store.
func (s *countingStore) DeleteKVSnapshot(ctx context.Context, b catalog.BucketID, id int64) error {
	s.count("DeleteKVSnapshot")
	return s.Store.DeleteKVSnapshot(ctx, b, id)
}

// SetTieredOffsets implements catalog.Store.
func (s *countingStore) SetTieredOffsets(ctx context.Context, offsets []catalog.TieredOffset) error {
	s.count("SetTieredOffsets")
	return s.Store.SetTieredOffsets(ctx, offsets)
}

// TieredOffsets implements catalog.Store.
func (s *countingStore) TieredOffsets(ctx context.Context, tableID int64) ([]catalog.TieredOffset, error) {
	s.count("TieredOffsets")
	return s.Store.TieredOffsets(ctx, tableID)
}
