package retention

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"time"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/services/objstore"
)

// SweepResult summarises one [Retention.Sweep].
type SweepResult struct {
	// Tables is the number of tables with a table.log.ttl that were swept.
	Tables int
	// Ranges is the number of segment ranges deleted from the catalog.
	Ranges int
	// RangeBytes is the sum of the deleted ranges' byte lengths.
	RangeBytes int64
	// Objects is the number of segment objects deleted from the object
	// store because their last range was deleted.
	Objects int
	// ObjectBytes is the size of those objects (0 for one that was gone).
	ObjectBytes int64
}

func (s SweepResult) logAttrs() []any {
	return []any{
		slog.Int("tables", s.Tables), slog.Int("ranges", s.Ranges), slog.Int64("range_bytes", s.RangeBytes),
		slog.Int("objects", s.Objects), slog.Int64("object_bytes", s.ObjectBytes),
	}
}

// Sweep deletes the expired segment ranges of every table that has a
// table.log.ttl, and the segment objects left without ranges.
//
// In each bucket it walks the ranges from the bucket's StartOffset in
// offset order and deletes the longest prefix of whole ranges whose
// MaxTimestamp is before now minus the TTL; it stops at the first range that
// is not expired, so the retained offsets stay contiguous. A range also
// stays while it ends after the bucket's tiered offset (tables with
// table.datalake.enabled=true; no tiered offset means nothing is tiered) or,
// in a primary-key table, after the newest KV snapshot's log offset (no
// snapshot means nothing may go), because a new leader replays the
// changelog from there.
//
// Catalog rows are deleted before objects, so a crash or a failed object
// delete leaves only objects that no row names, which [Retention.Janitor]
// removes. Sweep continues past a table that fails and returns all errors
// joined, with the result of what it did.
func (r *Retention) Sweep(ctx context.Context) (SweepResult, error) {
	var res SweepResult
	now := r.now()
	dbs, err := r.store.ListDatabases(ctx)
	if err != nil {
		return res, fmt.Errorf("retention: list databases: %w", err)
	}
	var errs []error
	for _, db := range dbs {
		tables, err := r.store.ListTables(ctx, db.Name)
		if errors.Is(err, catalog.ErrNotFound) {
			continue // dropped meanwhile
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("retention: list tables of %q: %w", db.Name, err))
			continue
		}
		for _, t := range tables {
			if _, ok := t.Properties[catalog.PropLogTTL]; !ok {
				continue
			}
			res.Tables++
			if err := r.sweepTable(ctx, t, now, &res); err != nil && !errors.Is(err, catalog.ErrNotFound) {
				errs = append(errs, fmt.Errorf("retention: table %s.%s: %w", t.Database, t.Name, err))
			}
			if ctx.Err() != nil {
				return res, errors.Join(append(errs, ctx.Err())...)
			}
		}
	}
	if res.Ranges > 0 || res.Objects > 0 {
		r.logger.Info("retention: swept expired segments", res.logAttrs()...)
	} else {
		r.logger.Debug("retention: nothing expired", res.logAttrs()...)
	}
	return res, errors.Join(errs...)
}

// sweepTable sweeps every bucket of t.
func (r *Retention) sweepTable(ctx context.Context, t catalog.Table, now time.Time, res *SweepResult) error {
	v := t.Properties[catalog.PropLogTTL]
	ttl, err := catalog.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("%s: %w", catalog.PropLogTTL, err)
	}
	if ttl <= 0 {
		return fmt.Errorf("%s: duration %q must be > 0", catalog.PropLogTTL, v)
	}
	cutoff := now.Add(-ttl)

	lake := false
	if v, ok := t.Properties[catalog.PropDatalakeEnabled]; ok {
		// An unreadable value must not lift the guard: skip the table.
		if lake, err = strconv.ParseBool(v); err != nil {
			return fmt.Errorf("%s: %q: want true or false", catalog.PropDatalakeEnabled, v)
		}
	}
	var tiered map[catalog.BucketID]int64
	if lake {
		offsets, err := r.store.TieredOffsets(ctx, t.ID)
		if err != nil {
			return fmt.Errorf("tiered offsets: %w", err)
		}
		tiered = make(map[catalog.BucketID]int64, len(offsets))
		for _, o := range offsets {
			tiered[o.Bucket] = o.Offset
		}
	}

	buckets, err := r.store.ListBuckets(ctx, t.ID)
	if err != nil {
		return fmt.Errorf("list buckets: %w", err)
	}
	var errs []error
	for _, b := range buckets {
		limit := int64(math.MaxInt64)
		if lake {
			limit = tiered[b.BucketID] // 0 when nothing is tiered yet
		}
		if t.IsPrimaryKey() {
			snaps, err := r.store.ListKVSnapshots(ctx, b.BucketID)
			if err != nil {
				errs = append(errs, fmt.Errorf("bucket %v: kv snapshots: %w", b.BucketID, err))
				continue
			}
			if len(snaps) == 0 {
				continue
			}
			limit = min(limit, snaps[0].LogOffset) // newest first
		}
		if err := r.sweepBucket(ctx, b, cutoff, limit, res); err != nil {
			errs = append(errs, fmt.Errorf("bucket %v: %w", b.BucketID, err))
		}
		if ctx.Err() != nil {
			break
		}
	}
	return errors.Join(errs...)
}

// sweepBucket deletes b's leading ranges that have a MaxTimestamp before
// cutoff and end at or before limit, one page at a time.
func (r *Retention) sweepBucket(ctx context.Context, b catalog.BucketState, cutoff time.Time, limit int64, res *SweepResult) error {
	from := b.StartOffset
	for {
		page, err := r.store.ListSegments(ctx, b.BucketID, from, r.cfg.PageSize)
		if err != nil {
			return fmt.Errorf("list segments from %d: %w", from, err)
		}
		done := len(page) < r.cfg.PageSize
		cut, n, bytes := int64(-1), 0, int64(0)
		for _, rg := range page {
			if !rg.MaxTimestamp.Before(cutoff) || rg.EndOffset > limit {
				done = true
				break
			}
			cut, n, bytes = rg.EndOffset, n+1, bytes+rg.ByteLength
		}
		if n == 0 {
			return nil
		}
		orphans, err := r.store.DeleteRangesBefore(ctx, b.BucketID, cut)
		if err != nil {
			return fmt.Errorf("delete ranges before %d: %w", cut, err)
		}
		res.Ranges += n
		res.RangeBytes += bytes
		r.logger.Debug("retention: deleted expired ranges", slog.String("bucket", b.BucketID.String()),
			slog.Int("ranges", n), slog.Int64("before_offset", cut), slog.Int("orphans", len(orphans)))
		if err := r.deleteObjects(ctx, orphans, res); err != nil {
			return err
		}
		if done {
			return nil
		}
		from = cut
	}
}

// deleteObjects deletes segment objects whose catalog rows are gone. One
// that cannot be deleted is left to the janitor.
func (r *Retention) deleteObjects(ctx context.Context, keys []string, res *SweepResult) error {
	var errs []error
	for _, k := range keys {
		size, err := r.objects.Size(ctx, k)
		if err != nil {
			size = 0 // gone already, or unknown: the Delete below decides
		}
		if err := r.objects.Delete(ctx, k); err != nil {
			errs = append(errs, fmt.Errorf("delete object %q (left to the janitor): %w", k, err))
			if ctx.Err() != nil || errors.Is(err, objstore.ErrUnavailable) {
				break // the rest would fail too
			}
			continue
		}
		res.Objects++
		res.ObjectBytes += size
	}
	return errors.Join(errs...)
}
