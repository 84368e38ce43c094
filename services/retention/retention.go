// Package retention deletes what Strom no longer keeps.
//
// Two passes run every [Config.Interval]:
//
//   - [Retention.Sweep] applies each table's table.log.ttl: in every bucket it
//     deletes the oldest whole segment ranges whose newest record is older
//     than the TTL, never a range that is not yet in the lake when the table
//     has table.datalake.enabled=true, and never, in a primary-key table, a
//     range after the newest KV snapshot's log offset. It deletes the catalog
//     rows first and then the segment objects that no longer hold any range.
//   - [Retention.Janitor] deletes segment objects that no catalog row names
//     and that are older than [Config.JanitorGrace]: uploads whose commit
//     failed, objects of dropped tables, and objects a crashed Sweep left
//     behind.
//
// Both passes are idempotent and safe to run from several processes at once;
// docs/retention.md gives the rules and the crash-safety argument.
package retention

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/services/objstore"
)

// Defaults of [Config], applied by [New] to zero fields.
const (
	DefaultInterval     = time.Minute
	DefaultJanitorGrace = time.Hour
	DefaultPageSize     = 1000
)

// Config configures retention.
type Config struct {
	// Interval is the time between two passes of Sweep and Janitor.
	Interval time.Duration `yaml:"interval"`
	// JanitorGrace is the age (by the time in its key) below which the
	// janitor leaves an unknown segment object alone, because a writer
	// uploads a segment before it commits it. It must exceed the longest
	// time from upload to commit, including commit retries.
	JanitorGrace time.Duration `yaml:"janitor_grace"`
	// PageSize bounds the ranges read (and deleted) per catalog call in
	// Sweep, and the keys per UnknownObjects call in Janitor.
	PageSize int `yaml:"page_size"`
}

// RegisterFlags registers the retention settings under prefix (e.g.
// "retention.") with their defaults.
func (c *Config) RegisterFlags(prefix string, f *flag.FlagSet) {
	f.DurationVar(&c.Interval, prefix+"interval", DefaultInterval, "How often expired segments (table.log.ttl) and unreferenced segment objects are deleted.")
	f.DurationVar(&c.JanitorGrace, prefix+"janitor-grace", DefaultJanitorGrace, "Segment objects no catalog row names are deleted only once they are this old; must exceed the longest upload-to-commit time of a writer.")
	f.IntVar(&c.PageSize, prefix+"page-size", DefaultPageSize, "Segment ranges per catalog read and delete, and object keys per catalog lookup of the janitor.")
}

// Validate reports every invalid field, naming it and its limit. Zero
// values are valid: [New] replaces them with the defaults.
func (c *Config) Validate() error {
	var errs []error
	if c.Interval < 0 {
		errs = append(errs, fmt.Errorf("retention: interval: must not be negative, got %s", c.Interval))
	}
	if c.JanitorGrace < 0 {
		errs = append(errs, fmt.Errorf("retention: janitor_grace: must not be negative, got %s", c.JanitorGrace))
	}
	if c.PageSize < 0 {
		errs = append(errs, fmt.Errorf("retention: page_size: must not be negative, got %d", c.PageSize))
	}
	return errors.Join(errs...)
}

// withDefaults returns c with zero fields set to the defaults.
func (c Config) withDefaults() Config {
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.JanitorGrace == 0 {
		c.JanitorGrace = DefaultJanitorGrace
	}
	if c.PageSize == 0 {
		c.PageSize = DefaultPageSize
	}
	return c
}

// Store is the part of the catalog retention uses; catalog.Store
// implements it.
type Store interface {
	ListDatabases(ctx context.Context) ([]catalog.Database, error)
	ListTables(ctx context.Context, database string) ([]catalog.Table, error)
	ListBuckets(ctx context.Context, tableID int64) ([]catalog.BucketState, error)
	ListSegments(ctx context.Context, b catalog.BucketID, from int64, limit int) ([]catalog.SegmentRange, error)
	DeleteRangesBefore(ctx context.Context, b catalog.BucketID, offset int64) (orphans []string, err error)
	UnknownObjects(ctx context.Context, keys []string) ([]string, error)
	TieredOffsets(ctx context.Context, tableID int64) ([]catalog.TieredOffset, error)
	ListKVSnapshots(ctx context.Context, b catalog.BucketID) ([]catalog.KVSnapshot, error)
}

var _ Store = catalog.Store(nil)

// Option changes a [Retention] made by [New].
type Option func(*Retention)

// WithClock makes retention read the time from now instead of time.Now:
// TTLs and the janitor's grace are judged against it.
func WithClock(now func() time.Time) Option {
	return func(r *Retention) { r.now = now }
}

// maxUnparsedLogged bounds the set of unparsable keys remembered so that
// each is logged once.
const maxUnparsedLogged = 10000

// Retention runs the TTL sweep and the janitor. Its methods are safe for
// concurrent use, though running them concurrently gains nothing.
type Retention struct {
	cfg     Config
	store   Store
	objects objstore.Bucket
	logger  *slog.Logger
	now     func() time.Time

	mu       sync.Mutex
	unparsed map[string]struct{} // keys already logged as unparsable
}

// New returns a Retention over the catalog store and the object store.
// Zero fields of cfg take their defaults; Run reports an invalid cfg.
func New(cfg Config, store Store, objects objstore.Bucket, logger *slog.Logger, opts ...Option) *Retention {
	r := &Retention{
		cfg:      cfg.withDefaults(),
		store:    store,
		objects:  objects,
		logger:   logger,
		now:      time.Now,
		unparsed: map[string]struct{}{},
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Run runs Sweep and then Janitor at once and every Config.Interval after,
// until ctx ends; then it returns nil. A failed pass is logged and retried
// at the next interval. Run returns an error only for an invalid Config.
func (r *Retention) Run(ctx context.Context) error {
	if err := r.cfg.Validate(); err != nil {
		return err
	}
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		if _, err := r.Sweep(ctx); err != nil && ctx.Err() == nil {
			r.logger.Warn("retention: sweep failed; retrying at the next interval", slog.Any("err", err))
		}
		if _, err := r.Janitor(ctx); err != nil && ctx.Err() == nil {
			r.logger.Warn("retention: janitor failed; retrying at the next interval", slog.Any("err", err))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
