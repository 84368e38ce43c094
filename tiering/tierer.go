package tiering

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/util"
	"github.com/apache/iceberg-go/table"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/tiering/lake"
)

// Source reads the committed records of a bucket; services implements it
// over its segment reader.
type Source interface {
	// Read calls fn, in offset order, with the committed records of bucket
	// b of table t that hold the offsets [from, to): each record batch
	// with the offset of its first row and the time it was committed.
	// Batches may begin before from and end after to (the Tierer uses only
	// the rows in [from, to)), but together they must cover [from, to)
	// without a gap. A batch has the columns of the schema version it was
	// written with; a primary-key table's batches are its changelog, with
	// the changelog.Column after the table's columns. fn may keep a batch
	// by retaining it; the Source must not change a batch's buffers
	// afterwards. Read stops at, and returns, fn's first error. Read may be
	// called concurrently.
	Read(ctx context.Context, t catalog.Table, b catalog.BucketID, from, to int64,
		fn func(rec arrow.RecordBatch, base int64, ts time.Time) error) error
}

// Claims decides which tables this process tiers; services assigns tables
// to the tiering processes (a lease per table).
type Claims interface {
	// Owns reports whether this process should tier the table now. Two
	// processes that both believe they own a table tier it correctly
	// (Iceberg's optimistic commit keeps every record once), only with
	// wasted work.
	Owns(tableID int64) bool
}

// Catalog is the part of the catalog the Tierer uses.
type Catalog interface {
	TableLister
	GetTableByID(ctx context.Context, id int64) (catalog.Table, error)
	ListBuckets(ctx context.Context, tableID int64) ([]catalog.BucketState, error)
	TieredOffsets(ctx context.Context, tableID int64) ([]catalog.TieredOffset, error)
	SetTieredOffsets(ctx context.Context, offsets []catalog.TieredOffset) error
}

var _ Catalog = catalog.Store(nil)

// ErrPrimaryKey: the table is a primary-key table that the Tierer cannot
// tier: a primary-key column is FLOAT, DOUBLE or a timestamp with more
// than microsecond precision (lake.ErrUnsupportedKey says which).
var ErrPrimaryKey = errors.New("tiering: primary-key table cannot be tiered")

// Defaults of Config.
const (
	DefaultInterval           = 5 * time.Second
	DefaultMaxRoundRows       = 4 << 20
	DefaultMaxRoundBytes      = 256 << 20
	DefaultCompactAfterDeltas = 20
	DefaultSnapshotMaxAge     = time.Hour
	DefaultSnapshotRetainLast = 10
)

// expireEvery is how often a table's old lake snapshots are looked for
// at most (or every SnapshotMaxAge, when that is shorter).
const expireEvery = time.Minute

// Config configures a Tierer.
type Config struct {
	// Interval between checks for tables to tier.
	Interval time.Duration `yaml:"interval"`
	// MaxRoundRows and MaxRoundBytes bound what one table's round reads
	// (and holds in memory) and commits as one snapshot; the rest goes in
	// the next round, right after. Bytes are uncompressed Arrow bytes.
	MaxRoundRows  int64 `yaml:"max_round_rows"`
	MaxRoundBytes int64 `yaml:"max_round_bytes"`
	// CompactAfterDeltas: once a primary-key table's lake table has this
	// many snapshots with delete files since its last compaction, the
	// round that made it so compacts it (lake.Compact: the partitions with
	// deletes rewritten, the deletes dropped). Negative: never.
	CompactAfterDeltas int `yaml:"compact_after_deltas"`
	// SnapshotMaxAge and SnapshotRetainLast: lake snapshots older than
	// SnapshotMaxAge are expired (lake.Expire), the SnapshotRetainLast
	// newest and the current one always kept; a negative SnapshotMaxAge
	// keeps every snapshot. Every tiering round commits a snapshot, and
	// each one makes the table's metadata, rewritten on every commit,
	// larger.
	SnapshotMaxAge     time.Duration `yaml:"snapshot_max_age"`
	SnapshotRetainLast int           `yaml:"snapshot_retain_last"`

	// Claims selects the tables to tier; nil tiers every lake table.
	Claims Claims `yaml:"-"`
	// Logger receives progress and errors; nil discards them.
	Logger *slog.Logger `yaml:"-"`
	// OnTier, if set, is called after every round of a table that had
	// records to tier, with the round's statistics (for metrics).
	OnTier func(TierStats) `yaml:"-"`
}

// RegisterFlags registers the flags of Config, each name prefixed with
// prefix (e.g. "tiering."), with the defaults.
func (c *Config) RegisterFlags(prefix string, fs *flag.FlagSet) {
	fs.DurationVar(&c.Interval, prefix+"interval", DefaultInterval, "How often to look for tables to tier.")
	fs.Int64Var(&c.MaxRoundRows, prefix+"max-round-rows", DefaultMaxRoundRows, "Most rows of one table to tier in one Iceberg commit.")
	fs.Int64Var(&c.MaxRoundBytes, prefix+"max-round-bytes", DefaultMaxRoundBytes, "Most uncompressed Arrow bytes of one table to tier in one Iceberg commit (held in memory).")
	fs.IntVar(&c.CompactAfterDeltas, prefix+"compact-after-deltas", DefaultCompactAfterDeltas, "Compact a primary-key table's lake table (rewrite its files without the equality deletes) once this many snapshots with deletes have accumulated; -1 never.")
	fs.DurationVar(&c.SnapshotMaxAge, prefix+"snapshot-max-age", DefaultSnapshotMaxAge, "Expire lake snapshots older than this (their metadata, and files only they referenced); -1s keeps every snapshot.")
	fs.IntVar(&c.SnapshotRetainLast, prefix+"snapshot-retain-last", DefaultSnapshotRetainLast, "Lake snapshots kept per table however old (the current one is always kept).")
}

// Validate checks the configuration; zero values mean the defaults.
func (c Config) Validate() error {
	if c.Interval < 0 {
		return fmt.Errorf("tiering: interval %s must be > 0", c.Interval)
	}
	if c.MaxRoundRows < 0 {
		return fmt.Errorf("tiering: max_round_rows %d must be > 0", c.MaxRoundRows)
	}
	if c.MaxRoundBytes < 0 {
		return fmt.Errorf("tiering: max_round_bytes %d must be > 0", c.MaxRoundBytes)
	}
	if c.CompactAfterDeltas < -1 {
		return fmt.Errorf("tiering: compact_after_deltas %d must be > 0, or -1 for never", c.CompactAfterDeltas)
	}
	if c.SnapshotRetainLast < 0 {
		return fmt.Errorf("tiering: snapshot_retain_last %d must be at least 1", c.SnapshotRetainLast)
	}
	return nil
}

// TierStats describes one round of one table.
type TierStats struct {
	TableID  int64
	Database string
	Table    string
	// Rows and Bytes (uncompressed Arrow) tiered; Buckets advanced. For
	// a primary-key table Rows counts changelog rows.
	Rows, Bytes int64
	Buckets     int
	// Upserted and Deleted, for a primary-key table: the rows written
	// (the last row of every key whose last change in the round inserted
	// or updated it) and the keys written as equality deletes (every key
	// the round touched that may have had a row in the lake).
	Upserted, Deleted int64
	// Compaction is the snapshot of the compaction that followed the
	// round (see Config.CompactAfterDeltas); 0 if none.
	Compaction int64
	// ExpiredSnapshots is how many old lake snapshots were expired after
	// the round (see Config.SnapshotMaxAge).
	ExpiredSnapshots int
	// Lag is how far the lake was behind: now minus the commit time of the
	// oldest record tiered in this round; zero when it tiered none.
	Lag time.Duration
	// Duration of the round.
	Duration time.Duration
	// SnapshotID is the Iceberg snapshot that holds the records.
	SnapshotID int64
	// Reconciled counts buckets whose tiered offset in the catalog was
	// behind Iceberg's (the last round ended between the Iceberg commit
	// and the catalog update) and was moved up to it.
	Reconciled int
	// More: the round hit a bound and records remain to be tiered.
	More bool
	// Err is the round's failure, if any.
	Err error
}

// Tierer copies the committed records of lake-enabled tables into their
// Iceberg tables: a log table's records as rows, a primary-key table's
// changelog as merge-on-read row deltas (equality deletes and new rows).
// Records are tiered exactly once: the Iceberg snapshot summary records the
// offsets it holds (strom.offsets), every round starts from them, and the
// catalog's tiered offsets follow Iceberg.
type Tierer struct {
	cfg   Config
	store Catalog
	lake  *lake.Lake
	src   Source
	log   *slog.Logger
	now   func() time.Time

	mu     sync.Mutex
	tables map[int64]*tableState
}

// tableState is what the Tierer remembers of a table between rounds.
type tableState struct {
	mu        sync.Mutex // one round at a time
	caughtUp  time.Time  // start of the last round that left nothing behind
	rotation  int        // first bucket of the next round, for fairness
	expired   time.Time  // when old lake snapshots were last looked for
	skipNoted bool       // the unsupported-key skip was logged; guarded by Tierer.mu
}

// New returns a Tierer. Run starts it.
func New(cfg Config, store Catalog, lk *lake.Lake, src Source) (*Tierer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.MaxRoundRows == 0 {
		cfg.MaxRoundRows = DefaultMaxRoundRows
	}
	if cfg.MaxRoundBytes == 0 {
		cfg.MaxRoundBytes = DefaultMaxRoundBytes
	}
	if cfg.CompactAfterDeltas == 0 {
		cfg.CompactAfterDeltas = DefaultCompactAfterDeltas
	}
	if cfg.SnapshotMaxAge == 0 {
		cfg.SnapshotMaxAge = DefaultSnapshotMaxAge
	}
	if cfg.SnapshotRetainLast == 0 {
		cfg.SnapshotRetainLast = DefaultSnapshotRetainLast
	}
	if store == nil || lk == nil || src == nil {
		return nil, errors.New("tiering: New needs a catalog, a lake and a source")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Tierer{cfg: cfg, store: store, lake: lk, src: src, log: log, now: time.Now, tables: map[int64]*tableState{}}, nil
}

func (t *Tierer) state(id int64) *tableState {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.tables[id]
	if !ok {
		s = &tableState{}
		t.tables[id] = s
	}
	return s
}

// Run tiers every Interval until ctx ends, then returns nil. Failures are
// logged and retried in the next round.
func (t *Tierer) Run(ctx context.Context) error {
	ticker := time.NewTicker(t.cfg.Interval)
	defer ticker.Stop()
	for {
		if err := t.RunOnce(ctx); err != nil && ctx.Err() == nil {
			t.log.Error("tiering round failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

// RunOnce looks at every lake-enabled table once and tiers those that are
// due: a table is due when it has untiered records and its last round
// that caught up began at least half its freshness ago (so the lake lags
// by at most about half the freshness plus a round), or when its last
// round hit a bound. It returns the first error (listing tables or tiering
// one); the other tables are still tiered.
func (t *Tierer) RunOnce(ctx context.Context) error {
	tables, err := LakeTables(ctx, t.store)
	if err != nil {
		return err
	}
	var first error
	for _, lt := range tables {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		id := lt.Table.ID
		st := t.state(id)
		if err := lake.CheckPrimaryKey(lt.Table); err != nil {
			t.mu.Lock()
			noted := st.skipNoted
			st.skipNoted = true
			t.mu.Unlock()
			if !noted {
				t.log.Info("tiering: skipping primary-key table whose key cannot be tiered",
					"database", lt.Table.Database, "table", lt.Table.Name, "err", err)
			}
			continue
		}
		if t.cfg.Claims != nil && !t.cfg.Claims.Owns(id) {
			continue
		}
		st.mu.Lock()
		due := t.now().Sub(st.caughtUp) >= lt.Settings.Freshness/2
		st.mu.Unlock()
		if !due {
			continue
		}
		if _, err := t.Tier(ctx, id); err != nil && first == nil && ctx.Err() == nil {
			first = err
		}
	}
	return first
}

// Tier runs one round of a table now, due or not: it reconciles the
// catalog's tiered offsets with Iceberg's, reads every bucket's records
// from there up to the bucket's next offset as of the round's start (within
// the round's bounds), commits them to Iceberg in one snapshot and records
// the new tiered offsets in the catalog. A round with nothing to tier
// returns zero stats and touches nothing but the catalog. Rounds of one
// table in one Tierer run one at a time.
func (t *Tierer) Tier(ctx context.Context, tableID int64) (TierStats, error) {
	st := t.state(tableID)
	st.mu.Lock()
	defer st.mu.Unlock()
	start := t.now()
	stats, err := t.tier(ctx, tableID, st)
	stats.Duration = t.now().Sub(start)
	stats.Err = err
	if err == nil && !stats.More {
		st.caughtUp = start
	}
	attrs := []any{"database", stats.Database, "table", stats.Table}
	switch {
	case err != nil && errors.Is(err, lake.ErrConflict):
		t.log.Info("tiering: another tierer committed to the table; retrying next round", append(attrs, "err", err)...)
	case err != nil:
		t.log.Error("tiering: round failed", append(attrs, "err", err)...)
	case stats.Rows > 0 || stats.Reconciled > 0:
		attrs = append(attrs, "rows", stats.Rows, "bytes", stats.Bytes, "buckets", stats.Buckets,
			"lag", stats.Lag, "duration", stats.Duration, "snapshot", stats.SnapshotID,
			"reconciled", stats.Reconciled, "more", stats.More)
		if stats.Upserted > 0 || stats.Deleted > 0 || stats.Compaction != 0 {
			attrs = append(attrs, "upserted", stats.Upserted, "deleted", stats.Deleted, "compaction", stats.Compaction)
		}
		t.log.Info("tiering: tiered", attrs...)
	}
	if t.cfg.OnTier != nil && (err != nil || stats.Rows > 0 || stats.Reconciled > 0) {
		t.cfg.OnTier(stats)
	}
	return stats, err
}

// errStop ends a Source.Read early: the range or the round's budget is
// exhausted.
var errStop = errors.New("tiering: stop reading")

func (t *Tierer) tier(ctx context.Context, tableID int64, st *tableState) (TierStats, error) {
	stats := TierStats{TableID: tableID}
	tbl, err := t.store.GetTableByID(ctx, tableID)
	if err != nil {
		return stats, fmt.Errorf("tiering: table %d: %w", tableID, err)
	}
	stats.Database, stats.Table = tbl.Database, tbl.Name
	name := tbl.Database + "." + tbl.Name
	if err := lake.CheckPrimaryKey(tbl); err != nil {
		return stats, fmt.Errorf("%w: %w", ErrPrimaryKey, err)
	}
	pk := tbl.IsPrimaryKey()

	// What the catalog says is left to tier. NextOffset is fixed here: the
	// round reads no further, however much is committed meanwhile.
	buckets, err := t.store.ListBuckets(ctx, tableID)
	if err != nil {
		return stats, fmt.Errorf("tiering: %s: list buckets: %w", name, err)
	}
	tieredList, err := t.store.TieredOffsets(ctx, tableID)
	if err != nil {
		return stats, fmt.Errorf("tiering: %s: tiered offsets: %w", name, err)
	}
	tiered := make(map[catalog.BucketID]int64, len(tieredList))
	for _, o := range tieredList {
		tiered[o.Bucket] = o.Offset
	}
	if !slices.ContainsFunc(buckets, func(b catalog.BucketState) bool { return b.NextOffset > tiered[b.BucketID] }) {
		return stats, nil
	}

	// Reconcile: Iceberg is the truth of what is in the lake. If it holds
	// more than the catalog records, the last round committed to Iceberg
	// and stopped before the catalog: record it, and never tier those
	// records again.
	lt, err := t.lake.EnsureTable(ctx, tbl)
	if err != nil {
		return stats, fmt.Errorf("tiering: %s: %w", name, err)
	}
	inLake, lakeSnap, err := t.lake.Offsets(ctx, lt)
	if err != nil {
		return stats, fmt.Errorf("tiering: %s: %w", name, err)
	}
	var fix []catalog.TieredOffset
	for b, o := range inLake {
		if o > tiered[b] {
			fix = append(fix, catalog.TieredOffset{Bucket: b, Offset: o, LakeSnapshotID: lakeSnap})
			tiered[b] = o
		}
	}
	if len(fix) > 0 {
		if err := t.store.SetTieredOffsets(ctx, fix); err != nil {
			return stats, fmt.Errorf("tiering: %s: reconcile tiered offsets with the lake: %w", name, err)
		}
		stats.Reconciled = len(fix)
		stats.SnapshotID = lakeSnap
		t.log.Info("tiering: catalog was behind the lake; reconciled", "database", tbl.Database, "table", tbl.Name,
			"buckets", len(fix), "snapshot", lakeSnap)
	}

	var pending []catalog.BucketState
	for _, b := range buckets {
		if from := tiered[b.BucketID]; b.NextOffset > from {
			if from > inLake[b.BucketID] {
				// Possible only if the Iceberg table was rolled back or
				// replaced; the records in between may be gone (retention).
				t.log.Warn("tiering: lake is behind the catalog's tiered offset; continuing from the catalog's",
					"database", tbl.Database, "table", tbl.Name, "bucket", b.BucketID.String(),
					"lake", inLake[b.BucketID], "catalog", from)
			}
			pending = append(pending, b)
		}
	}
	if len(pending) == 0 {
		return stats, nil
	}
	// Start with another bucket each round, so that a bound does not
	// starve the last buckets.
	rot := st.rotation % len(pending)
	st.rotation++
	pending = append(pending[rot:], pending[:rot]...)

	schema, err := lake.ArrowSchema(lt)
	if err != nil {
		return stats, fmt.Errorf("tiering: %s: %w", name, err)
	}
	conv := newConverter(schema)
	var (
		recs    []arrow.RecordBatch // converted batches, in read order
		chunks  []changeChunk       // the same with their change types, for a primary-key table
		offsets = map[catalog.BucketID]int64{}
		oldest  time.Time
	)
	defer func() { release(recs) }()
	full := func() bool { return stats.Rows >= t.cfg.MaxRoundRows || stats.Bytes >= t.cfg.MaxRoundBytes }
	for bi, b := range pending {
		if full() {
			stats.More = true
			break
		}
		from, to := tiered[b.BucketID], b.NextOffset
		next := from
		err := t.src.Read(ctx, tbl, b.BucketID, from, to, func(rec arrow.RecordBatch, base int64, ts time.Time) error {
			n := rec.NumRows()
			if base+n <= next {
				return nil // wholly before the range
			}
			if base > next {
				return fmt.Errorf("source skipped offsets %d..%d", next, base)
			}
			lo, hi := next-base, min(n, to-base)
			out, err := conv.convert(rec, lo, hi, b.Bucket, base, ts)
			if err != nil {
				return fmt.Errorf("offsets %d..%d: %w", base+lo, base+hi, err)
			}
			recs = append(recs, out)
			if pk {
				kinds, err := changeKinds(rec, lo, hi)
				if err != nil {
					return fmt.Errorf("offsets %d..%d: %w", base+lo, base+hi, err)
				}
				chunks = append(chunks, changeChunk{bucket: bi, rec: out, kinds: kinds})
			}
			stats.Rows += hi - lo
			if n > 0 {
				stats.Bytes += util.TotalRecordSize(rec) * (hi - lo) / n
			}
			if oldest.IsZero() || ts.Before(oldest) {
				oldest = ts
			}
			next = base + hi
			if next >= to {
				return errStop
			}
			if full() {
				stats.More = true
				return errStop
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStop) {
			return stats, fmt.Errorf("tiering: %s: read %s [%d, %d): %w", name, b.BucketID, from, to, err)
		}
		if next < to && !stats.More {
			return stats, fmt.Errorf("tiering: %s: read %s [%d, %d): source ended at %d", name, b.BucketID, from, to, next)
		}
		if next > from {
			offsets[b.BucketID] = next
		}
	}
	if len(recs) == 0 {
		return stats, nil
	}

	var snap int64
	if pk {
		snap, err = t.commitDelta(ctx, tbl, lt, chunks, offsets, &stats)
	} else {
		snap, err = t.lake.Append(ctx, lt, recs, offsets)
	}
	switch {
	case errors.Is(err, lake.ErrAlreadyCommitted):
		// Another tierer was faster with the same records: record its
		// snapshot; this round tiered nothing itself.
		t.log.Info("tiering: another tierer committed the same records", "database", tbl.Database, "table", tbl.Name, "snapshot", snap)
		stats.Rows, stats.Bytes, stats.Upserted, stats.Deleted = 0, 0, 0, 0
	case err != nil:
		return stats, fmt.Errorf("tiering: %s: %w", name, err)
	default:
		stats.Buckets = len(offsets)
		stats.Lag = t.now().Sub(oldest)
	}
	stats.SnapshotID = snap
	record := make([]catalog.TieredOffset, 0, len(offsets))
	for b, o := range offsets {
		record = append(record, catalog.TieredOffset{Bucket: b, Offset: o, LakeSnapshotID: snap})
	}
	if err := t.store.SetTieredOffsets(ctx, record); err != nil {
		return stats, fmt.Errorf("tiering: %s: record tiered offsets (snapshot %d holds them; the next round reconciles): %w", name, snap, err)
	}
	if pk && t.cfg.CompactAfterDeltas > 0 {
		// lt is the table before this round's commit.
		deltas := lake.DeltasSinceCompaction(lt)
		if stats.Deleted > 0 {
			deltas++
		}
		if deltas >= t.cfg.CompactAfterDeltas {
			t.compact(ctx, tbl, &stats)
		}
	}
	if t.cfg.SnapshotMaxAge >= 0 && t.now().Sub(st.expired) >= min(expireEvery, t.cfg.SnapshotMaxAge) {
		st.expired = t.now()
		t.expire(ctx, tbl, &stats)
	}
	return stats, nil
}

// expire expires a table's old lake snapshots after a round. A failure
// is logged, not returned: the next look tries again.
func (t *Tierer) expire(ctx context.Context, tbl catalog.Table, stats *TierStats) {
	attrs := []any{"database", tbl.Database, "table", tbl.Name}
	lt, err := t.lake.EnsureTable(ctx, tbl)
	if err == nil {
		stats.ExpiredSnapshots, err = t.lake.Expire(ctx, lt, t.cfg.SnapshotMaxAge, t.cfg.SnapshotRetainLast)
	}
	switch {
	case err != nil:
		t.log.Warn("tiering: expiring old lake snapshots failed; retrying later", append(attrs, "err", err)...)
	case stats.ExpiredSnapshots > 0:
		t.log.Info("tiering: expired old lake snapshots", append(attrs, "snapshots", stats.ExpiredSnapshots)...)
	}
}

// commitDelta collapses a primary-key table's changelog chunks by key and
// commits the result to the lake table lt.
func (t *Tierer) commitDelta(ctx context.Context, tbl catalog.Table, lt *table.Table, chunks []changeChunk, offsets map[catalog.BucketID]int64, stats *TierStats) (int64, error) {
	delSchema, err := lake.DeleteSchema(lt)
	if err != nil {
		return 0, err
	}
	schema, err := lake.ArrowSchema(lt)
	if err != nil {
		return 0, err
	}
	keyCols := make([]int, 0, len(tbl.Schema.PrimaryKey))
	for _, k := range tbl.Schema.PrimaryKey {
		idx := schema.FieldIndices(k)
		if len(idx) == 0 {
			return 0, fmt.Errorf("primary-key column %q is not in the lake table", k)
		}
		keyCols = append(keyCols, idx[0])
	}
	d, cs, err := collapse(ctx, chunks, keyCols, delSchema)
	if err != nil {
		return 0, fmt.Errorf("collapse the changelog: %w", err)
	}
	defer release(d.Rows)
	defer release(d.Deletes)
	stats.Upserted, stats.Deleted = cs.rows, cs.deletes
	return t.lake.CommitDelta(ctx, lt, d, offsets)
}

// compact compacts a primary-key table's lake table after a round. A
// failure is logged, not returned: the round itself succeeded, and the
// next round tries again.
func (t *Tierer) compact(ctx context.Context, tbl catalog.Table, stats *TierStats) {
	attrs := []any{"database", tbl.Database, "table", tbl.Name}
	lt, err := t.lake.EnsureTable(ctx, tbl)
	if err != nil {
		t.log.Warn("tiering: compaction: load the lake table", append(attrs, "err", err)...)
		return
	}
	start := t.now()
	cs, err := t.lake.Compact(ctx, lt)
	if errors.Is(err, lake.ErrConflict) {
		t.log.Info("tiering: compaction lost a race with another commit; retrying after the next round", append(attrs, "err", err)...)
		return
	}
	if err != nil {
		t.log.Warn("tiering: compaction failed; retrying after the next round", append(attrs, "err", err)...)
		return
	}
	stats.Compaction = cs.SnapshotID
	t.log.Info("tiering: compacted", append(attrs, "snapshot", cs.SnapshotID, "partitions", cs.Partitions,
		"data_files_removed", cs.RemovedDataFiles, "data_files_added", cs.AddedDataFiles,
		"delete_files_removed", cs.RemovedDeleteFiles, "bytes_before", cs.BytesBefore, "bytes_after", cs.BytesAfter,
		"duration", t.now().Sub(start))...)
}
