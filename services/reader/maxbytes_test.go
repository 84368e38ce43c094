package reader_test

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/catalog/embedded"
	"github.com/strom-io/strom/services/batch"
	"github.com/strom-io/strom/services/notify"
	"github.com/strom-io/strom/services/objstore"
	"github.com/strom-io/strom/services/reader"
	"github.com/strom-io/strom/services/segment"
)

// MaxBytes bounds a fetch's batches (segment.ReadBatch.Bytes) also across
// segment objects, which are read ahead concurrently each with the whole
// budget: every response is either one batch (however large) or batches
// whose bytes sum to at most MaxBytes, and holds as many as fit.
func TestFetchMaxBytesIsAnUpperBound(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store, err := embedded.Open(filepath.Join(dir, "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	objects, err := objstore.NewFS(objstore.FSConfig{Dir: filepath.Join(dir, "objects")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.CreateDatabase(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	tbl, err := store.CreateTable(ctx, catalog.TableSpec{Database: "db", Name: "t", Buckets: 1, Schema: catalog.Schema{Columns: []catalog.Column{
		{Name: "id", Type: catalog.MustParseType("BIGINT")},
		{Name: "s", Type: catalog.MustParseType("STRING"), Nullable: true},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	b := catalog.BucketID{TableID: tbl.ID}
	lease, err := store.AcquireLease(ctx, b, "w", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	// Three segment objects of three batches of 1 to 9 rows.
	next := int64(0)
	for seg := range 3 {
		sec := segment.Section{TableID: tbl.ID, Codec: segment.CodecNone}
		for i := range 3 {
			n := 1 + (seg*3+i)*7%9
			rows := make([]map[string]any, n)
			for j := range rows {
				rows[j] = map[string]any{"id": float64(next + int64(j)), "s": strings.Repeat("x", j)}
			}
			rec, err := batch.FromJSON(memory.DefaultAllocator, tbl.Schema, rows)
			if err != nil {
				t.Fatal(err)
			}
			defer rec.Release()
			sec.Batches = append(sec.Batches, segment.Batch{BaseOffset: next, Timestamp: time.Now().UTC().Truncate(time.Microsecond), SchemaVersion: 1, Record: rec})
			next += int64(n)
		}
		data, infos, err := segment.Encode([]segment.Section{sec})
		if err != nil {
			t.Fatal(err)
		}
		key := fmt.Sprintf("segments/%d.seg", seg)
		if err := objects.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
		if err := store.CommitSegment(ctx, catalog.Segment{ObjectKey: key, Size: int64(len(data)), Ranges: []catalog.SegmentRange{infos[0].SegmentRange(key, lease.Epoch)}}); err != nil {
			t.Fatal(err)
		}
	}
	r := reader.New(store, objects, notify.NewHub())

	for _, columns := range [][]string{nil, {"s"}} {
		// Every batch and what it counts, from one unbounded fetch.
		all, err := r.Fetch(ctx, reader.FetchRequest{Table: tbl, Bucket: b, Columns: columns})
		if err != nil {
			t.Fatal(err)
		}
		sizes := map[int64]int64{} // base offset -> bytes
		var bases []int64
		for _, rb := range all.Batches {
			sizes[rb.BaseOffset] = rb.Bytes
			bases = append(bases, rb.BaseOffset)
		}
		all.Release()
		if len(bases) != 9 || all.NextOffset != next {
			t.Fatalf("columns %v: unbounded fetch: batches at %v, next offset %d, want 9 batches to %d", columns, bases, all.NextOffset, next)
		}
		first, second := sizes[bases[0]], sizes[bases[1]]
		for _, maxBytes := range []int64{1, first, first + second - 1, first + second, first + second + 1, 3 * first, 1 << 20} {
			for off := int64(0); off < next; {
				res, err := r.Fetch(ctx, reader.FetchRequest{Table: tbl, Bucket: b, Offset: off, MaxBytes: maxBytes, Columns: columns})
				if err != nil {
					t.Fatal(err)
				}
				var used int64
				at := off
				for _, rb := range res.Batches {
					if rb.BaseOffset != at {
						t.Fatalf("columns %v, max %d, from %d: batch at %d, want %d", columns, maxBytes, off, rb.BaseOffset, at)
					}
					used += rb.Bytes
					at += rb.Record.NumRows()
				}
				n := len(res.Batches)
				res.Release()
				if n == 0 || res.NextOffset != at {
					t.Fatalf("columns %v, max %d, from %d: %d batches, next offset %d", columns, maxBytes, off, n, res.NextOffset)
				}
				if n > 1 && used > maxBytes {
					t.Fatalf("columns %v, max %d, from %d: %d batches of %d bytes", columns, maxBytes, off, n, used)
				}
				if s, ok := sizes[at]; ok && used+s <= maxBytes {
					t.Fatalf("columns %v, max %d, from %d: stopped at %d after %d bytes, the next batch of %d bytes fits", columns, maxBytes, off, at, used, s)
				}
				off = at
			}
		}
	}
}
