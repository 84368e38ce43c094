package lake

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/apache/iceberg-go/table"
)

// Expire drops the snapshots of tbl older than maxAge from its metadata,
// keeping at least the retainLast newest and always the current one, and
// deletes the files only they referenced: manifest lists, manifests, and
// the data and delete files that compactions replaced. (A log table's
// data files stay: every append is still in the current snapshot.) It
// returns how many snapshots it dropped; when none is due it commits
// nothing and returns 0. A commit by another writer meanwhile fails the
// expiry; the next one catches up.
//
// A reader that still reads a dropped snapshot (a union read that loaded
// it more than maxAge after it was committed, and before a compaction
// replaced it) fails on the deleted files; it reads again from the
// current snapshot.
func (l *Lake) Expire(ctx context.Context, tbl *table.Table, maxAge time.Duration, retainLast int) (int, error) {
	ident := strings.Join(tbl.Identifier(), ".")
	snaps := tbl.Metadata().Snapshots()
	current := tbl.CurrentSnapshot()
	if current == nil || len(snaps) <= retainLast {
		return 0, nil
	}
	cutoff := time.Now().Add(-maxAge).UnixMilli()
	due := 0
	for _, s := range snaps {
		if s.SnapshotID != current.SnapshotID && s.TimestampMs < cutoff {
			due++
		}
	}
	if due == 0 {
		return 0, nil
	}
	txn := tbl.NewTransaction()
	if err := txn.ExpireSnapshots(table.WithOlderThan(maxAge), table.WithRetainLast(retainLast)); err != nil {
		return 0, fmt.Errorf("lake: expire snapshots of %s: %w", ident, err)
	}
	committed, err := txn.Commit(ctx)
	if err != nil {
		return 0, fmt.Errorf("lake: commit the expiry of %s's snapshots: %w", ident, err)
	}
	return len(snaps) - len(committed.Metadata().Snapshots()), nil
}
