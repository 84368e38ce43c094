package retention_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/catalog/embedded"
	"github.com/strom-io/strom/services/objstore"
	"github.com/strom-io/strom/services/retention"
)

// Example deletes a segment older than its table's table.log.ttl.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "retention-example")
	defer os.RemoveAll(dir)
	store, _ := embedded.Open(filepath.Join(dir, "catalog.db"))
	defer store.Close()
	objects, _ := objstore.NewFS(objstore.FSConfig{Dir: filepath.Join(dir, "objects")})

	// A table that keeps its log for one day, with one segment from two
	// days ago.
	store.CreateDatabase(ctx, "db")
	tbl, _ := store.CreateTable(ctx, catalog.TableSpec{
		Database: "db", Name: "events", Buckets: 1,
		Schema:     catalog.Schema{Columns: []catalog.Column{{Name: "id", Type: catalog.BigInt}}},
		Properties: map[string]string{catalog.PropLogTTL: "1d"},
	})
	b := catalog.BucketID{TableID: tbl.ID}
	lease, _ := store.AcquireLease(ctx, b, "example", time.Minute)
	then := time.Now().Add(-48 * time.Hour).UTC()
	key := fmt.Sprintf("segments/%s/%d-example.seg", then.Format("2006-01-02"), then.UnixMilli())
	objects.Put(ctx, key, strings.NewReader("data"), 4)
	store.CommitSegment(ctx, catalog.Segment{ObjectKey: key, Size: 4, Ranges: []catalog.SegmentRange{{
		Bucket: b, Epoch: lease.Epoch, BaseOffset: 0, EndOffset: 3, ByteLength: 4, RowCount: 3,
		MinTimestamp: then, MaxTimestamp: then,
	}}})

	r := retention.New(retention.Config{}, store, objects, slog.New(slog.DiscardHandler))
	res, err := r.Sweep(ctx)
	fmt.Printf("ranges=%d objects=%d bytes=%d err=%v\n", res.Ranges, res.Objects, res.ObjectBytes, err)
	// Output: ranges=1 objects=1 bytes=4 err=<nil>
}
