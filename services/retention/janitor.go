package retention

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/strom-io/strom/services/kvsnap"
	"github.com/strom-io/strom/services/writer"
)

// JanitorResult summarises one [Retention.Janitor].
type JanitorResult struct {
	// Listed is the number of objects listed under the segment prefix.
	Listed int
	// Young is the number of objects younger than the grace, left alone
	// without asking the catalog.
	Young int
	// Unparsed is the number of keys without a segment object time, left
	// alone.
	Unparsed int
	// Objects is the number of unknown objects deleted.
	Objects int
	// Bytes is their total size, as listed.
	Bytes int64
}

func (j JanitorResult) logAttrs() []any {
	return []any{
		slog.Int("listed", j.Listed), slog.Int("young", j.Young), slog.Int("unparsed", j.Unparsed),
		slog.Int("objects", j.Objects), slog.Int64("bytes", j.Bytes),
	}
}

// janitorPrefixes are the object key prefixes the janitor cleans, with the
// function that reads an object's creation time from its key: segment
// objects and KV snapshot files.
var janitorPrefixes = []struct {
	prefix string
	time   func(key string) (time.Time, bool)
}{
	{writer.ObjectPrefix, writer.ObjectTime},
	{writer.SnapshotPrefix, kvsnap.ObjectTime},
}

// Janitor deletes the segment objects (keys under writer.ObjectPrefix) and
// KV snapshot files (under writer.SnapshotPrefix) that no catalog row names
// and whose key says they were created more than Config.JanitorGrace ago. Younger objects may belong to a flush that has
// uploaded but not yet committed, so they are never deleted; keys that do
// not parse as segment keys are left alone and each is logged once.
//
// It asks the catalog in chunks of Config.PageSize keys while listing. It
// stops at the first error (the next run resumes) and returns the result
// of what it did.
func (r *Retention) Janitor(ctx context.Context) (JanitorResult, error) {
	var res JanitorResult
	cutoff := r.now().Add(-r.cfg.JanitorGrace)
	batch := make([]string, 0, r.cfg.PageSize)
	sizes := make(map[string]int64, r.cfg.PageSize)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		unknown, err := r.store.UnknownObjects(ctx, batch)
		if err != nil {
			return fmt.Errorf("retention: janitor: unknown objects: %w", err)
		}
		for _, k := range unknown {
			if err := r.objects.Delete(ctx, k); err != nil {
				return fmt.Errorf("retention: janitor: %w", err)
			}
			res.Objects++
			res.Bytes += sizes[k]
			r.logger.Debug("retention: janitor deleted unknown object", slog.String("object", k), slog.Int64("bytes", sizes[k]))
		}
		batch = batch[:0]
		clear(sizes)
		return nil
	}
	var err error
	for _, jp := range janitorPrefixes {
		if err = r.clean(ctx, jp.prefix, jp.time, cutoff, &res, &batch, sizes, flush); err != nil {
			break
		}
	}
	if err == nil {
		err = flush()
	}
	if res.Objects > 0 {
		r.logger.Info("retention: janitor deleted unknown objects", res.logAttrs()...)
	} else {
		r.logger.Debug("retention: janitor found nothing to delete", res.logAttrs()...)
	}
	return res, err
}

// clean lists prefix and queues the objects older than cutoff for the
// catalog check that flush makes.
func (r *Retention) clean(ctx context.Context, prefix string, objectTime func(string) (time.Time, bool), cutoff time.Time,
	res *JanitorResult, batch *[]string, sizes map[string]int64, flush func() error) error {
	return r.objects.List(ctx, prefix, func(key string, size int64) error {
		res.Listed++
		created, ok := objectTime(key)
		if !ok {
			res.Unparsed++
			r.logUnparsed(key)
			return nil
		}
		if !created.Before(cutoff) {
			res.Young++
			return nil
		}
		*batch = append(*batch, key)
		sizes[key] = size
		if len(*batch) >= r.cfg.PageSize {
			return flush()
		}
		return nil
	})
}

// logUnparsed logs a key without a segment object time the first time it
// is seen. Past maxUnparsedLogged such keys it stops logging them one by
// one; JanitorResult.Unparsed still counts them.
func (r *Retention) logUnparsed(key string) {
	r.mu.Lock()
	_, seen := r.unparsed[key]
	log := !seen && len(r.unparsed) < maxUnparsedLogged
	if log {
		r.unparsed[key] = struct{}{}
	}
	r.mu.Unlock()
	if log {
		r.logger.Warn("retention: janitor leaves an object whose key has no segment time", slog.String("object", key))
	}
}
