// Package tablecache keeps the table definitions of a catalog.Store in
// memory, so that the API's hot path (Append, Fetch, Lookup) reads them
// without a catalog round trip, and makes AlterTable and DropTable safe
// for every process that caches them.
//
// The cache is fed by the catalog's watch (catalog.Store.Watch, through
// notify.Hub.Follow): a table change drops the table's entry, a
// (re)started watch drops every entry. With a shared catalog (PostgreSQL,
// many processes) that is not enough on its own: a notification may lag.
// So an entry is trusted only while the watch has confirmed, within
// MaxStaleness, that every change made before has reached it
// (catalog.Events.Synced), and every change made through this Store waits
// MaxStaleness (plus a tenth) after the catalog committed it before it
// returns. Hence, once AddColumns or DropTable has returned, no process
// serves a request it received afterwards from the table's old
// definition: see docs/catalog.md for the argument.
package tablecache

import (
	"context"
	"sync"
	"time"

	"github.com/strom-io/strom/catalog"
)

// Lookup results reported to Config.OnLookup.
const (
	// Hit: served from the cache.
	Hit = "hit"
	// Miss: the table was not cached; it was read from the catalog.
	Miss = "miss"
	// Unconfirmed: the table was cached, but the watch had not confirmed
	// the cache fresh within MaxStaleness; it was read from the catalog.
	Unconfirmed = "unconfirmed"
)

// DefaultMaxStaleness is the default Config.MaxStaleness.
const DefaultMaxStaleness = time.Second

// Config configures the cache.
type Config struct {
	// MaxStaleness is how long after the watch's last confirmation the
	// cached tables are trusted, and (with Shared) how long a table change
	// waits before it returns. 0 disables the cache: every read goes to
	// the catalog and changes do not wait. Every process sharing a
	// catalog must use the same value.
	MaxStaleness time.Duration
	// Shared says that other processes change the catalog too
	// (PostgreSQL). Without it (the embedded store, which one process
	// owns) every change goes through this Store, which drops the entries
	// it affects before it returns: entries need no confirmation and
	// changes do not wait.
	Shared bool
	// OnLookup, if set, is told the result of every GetTable and
	// GetTableByID: Hit, Miss or Unconfirmed.
	OnLookup func(result string)
}

type tableName struct{ database, name string }

// Store is a catalog.Store whose GetTable and GetTableByID are served from
// memory; every other method passes through, the table changes dropping
// the entries they affect. It is safe for concurrent use. The tables it
// returns are shared: callers must not modify their slices or maps.
type Store struct {
	catalog.Store
	cfg Config

	mu     sync.RWMutex
	byID   map[int64]catalog.Table
	byName map[tableName]int64
	// gen counts invalidations: a catalog read is cached only if none
	// happened while it ran, so a read that raced a change never puts the
	// old definition back.
	gen uint64
	// synced is the newest time before which every change is known to have
	// been seen (Events.Synced); zero until the watch confirms it.
	synced time.Time
}

var _ catalog.Store = (*Store)(nil)

// New returns a cache in front of store. Feed it the store's watch with
// Events.
func New(store catalog.Store, cfg Config) *Store {
	return &Store{Store: store, cfg: cfg, byID: map[int64]catalog.Table{}, byName: map[tableName]int64{}}
}

// Events are the callbacks to run the catalog's watch with: Listening
// drops every entry (changes made while no watch listened were missed),
// Table drops the changed table's entries, Synced confirms the cache.
func (s *Store) Events() catalog.Events {
	ev := catalog.Events{Listening: s.reset, Table: s.invalidate}
	if s.cfg.Shared && s.cfg.MaxStaleness > 0 {
		ev.Synced = s.confirm
		ev.SyncInterval = max(s.cfg.MaxStaleness/10, time.Millisecond)
	}
	return ev
}

// SettleTime is how long a table change waits after the catalog committed
// it before it returns: MaxStaleness and a tenth of it for the difference
// of the clock rates of the processes (with Shared; else 0).
func (s *Store) SettleTime() time.Duration {
	if !s.cfg.Shared || s.cfg.MaxStaleness <= 0 {
		return 0
	}
	return s.cfg.MaxStaleness + s.cfg.MaxStaleness/10
}

// reset drops every entry and the confirmation.
func (s *Store) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	clear(s.byID)
	clear(s.byName)
	s.synced = time.Time{}
}

// invalidate drops the entries of the changed table.
func (s *Store) invalidate(c catalog.TableChange) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	s.dropID(c.ID)
	s.dropName(tableName{c.Database, c.Name})
}

// invalidateDatabase drops the entries of every table of database.
func (s *Store) invalidateDatabase(database string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	for n := range s.byName {
		if n.database == database {
			s.dropName(n)
		}
	}
	for id, t := range s.byID {
		if t.Database == database {
			s.dropID(id)
		}
	}
}

// dropID and dropName drop an entry under both its keys; s.mu is held.
func (s *Store) dropID(id int64) {
	if t, ok := s.byID[id]; ok {
		delete(s.byID, id)
		if s.byName[tableName{t.Database, t.Name}] == id {
			delete(s.byName, tableName{t.Database, t.Name})
		}
	}
}

func (s *Store) dropName(n tableName) {
	if id, ok := s.byName[n]; ok {
		delete(s.byName, n)
		delete(s.byID, id)
	}
}

// confirm records a sync of the watch.
func (s *Store) confirm(at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if at.After(s.synced) {
		s.synced = at
	}
}

// trusted reports whether cached entries may be served now; s.mu is held.
func (s *Store) trusted() bool {
	return !s.cfg.Shared || (!s.synced.IsZero() && time.Since(s.synced) < s.cfg.MaxStaleness)
}

// lookup returns the cached table that found picks, if it may be served;
// else the generation to read the catalog under.
func (s *Store) lookup(found func() (catalog.Table, bool)) (catalog.Table, bool, uint64) {
	if s.cfg.MaxStaleness <= 0 {
		return catalog.Table{}, false, 0
	}
	s.mu.RLock()
	t, ok := found()
	trusted := s.trusted()
	gen := s.gen
	s.mu.RUnlock()
	switch {
	case ok && trusted:
		s.report(Hit)
		return t, true, 0
	case ok:
		s.report(Unconfirmed)
	default:
		s.report(Miss)
	}
	return catalog.Table{}, false, gen
}

// store caches t, read from the catalog under generation gen, unless a
// change was seen since.
func (s *Store) store(t catalog.Table, gen uint64) {
	if s.cfg.MaxStaleness <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen != gen {
		return
	}
	s.dropID(t.ID)
	s.dropName(tableName{t.Database, t.Name})
	s.byID[t.ID] = t
	s.byName[tableName{t.Database, t.Name}] = t.ID
}

func (s *Store) report(result string) {
	if s.cfg.OnLookup != nil {
		s.cfg.OnLookup(result)
	}
}

// GetTable implements catalog.Store from the cache when it may.
func (s *Store) GetTable(ctx context.Context, database, name string) (catalog.Table, error) {
	t, ok, gen := s.lookup(func() (catalog.Table, bool) {
		id, ok := s.byName[tableName{database, name}]
		if !ok {
			return catalog.Table{}, false
		}
		t, ok := s.byID[id]
		return t, ok
	})
	if ok {
		return t, nil
	}
	t, err := s.Store.GetTable(ctx, database, name)
	if err == nil {
		s.store(t, gen)
	}
	return t, err
}

// GetTableByID implements catalog.Store from the cache when it may.
func (s *Store) GetTableByID(ctx context.Context, id int64) (catalog.Table, error) {
	return s.GetTableByIDAtLeast(ctx, id, 0)
}

// GetTableByIDAtLeast returns table id at schema version version or newer:
// from the cache when it may and the cached definition is that new, else
// from the catalog. A frontend that receives rows decoded by another one
// under a newer schema version than it has cached reads the table anew
// with it.
func (s *Store) GetTableByIDAtLeast(ctx context.Context, id int64, version int32) (catalog.Table, error) {
	t, ok, gen := s.lookup(func() (catalog.Table, bool) {
		t, ok := s.byID[id]
		return t, ok && t.SchemaVersion >= version
	})
	if ok {
		return t, nil
	}
	t, err := s.Store.GetTableByID(ctx, id)
	if err == nil {
		s.store(t, gen)
	}
	return t, err
}

// CreateTable implements catalog.Store. It drops any entry of the name (a
// table of that name dropped before); it need not wait, since no process
// caches a table it has not read.
func (s *Store) CreateTable(ctx context.Context, spec catalog.TableSpec) (catalog.Table, error) {
	t, err := s.Store.CreateTable(ctx, spec)
	if err == nil {
		s.invalidate(catalog.TableChange{ID: t.ID, Database: t.Database, Name: t.Name, SchemaVersion: t.SchemaVersion})
	}
	return t, err
}

// AddColumns implements catalog.Store. After the catalog committed the new
// schema version it drops the table's entries and waits SettleTime: when
// it returns, no process serves the old definition any more.
func (s *Store) AddColumns(ctx context.Context, database, name string, columns []catalog.Column) (catalog.Table, error) {
	t, err := s.Store.AddColumns(ctx, database, name, columns)
	if err != nil {
		return t, err
	}
	s.invalidate(catalog.TableChange{ID: t.ID, Database: t.Database, Name: t.Name, SchemaVersion: t.SchemaVersion})
	s.settle()
	return t, nil
}

// DropTable implements catalog.Store. After the catalog dropped the table
// it drops its entries and waits SettleTime: when it returns, no process
// serves the dropped table any more.
func (s *Store) DropTable(ctx context.Context, database, name string) error {
	if err := s.Store.DropTable(ctx, database, name); err != nil {
		return err
	}
	s.invalidate(catalog.TableChange{Database: database, Name: name})
	s.settle()
	return nil
}

// DropDatabase implements catalog.Store. With cascade it drops the
// entries of the database's tables and waits SettleTime, as DropTable.
func (s *Store) DropDatabase(ctx context.Context, name string, cascade bool) error {
	if err := s.Store.DropDatabase(ctx, name, cascade); err != nil {
		return err
	}
	if cascade {
		s.invalidateDatabase(name)
		s.settle()
	}
	return nil
}

// settle waits SettleTime. It does not end early with the caller's
// context: the change is committed, and returning sooner would break the
// promise that the old definition is no longer served.
func (s *Store) settle() {
	if d := s.SettleTime(); d > 0 {
		time.Sleep(d)
	}
}
