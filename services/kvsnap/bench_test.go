package kvsnap_test

import (
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/services/kv"
	"github.com/strom-io/strom/services/kvsnap"
	"github.com/strom-io/strom/services/objstore"
)

// BenchmarkRestore measures Restore of a snapshot of a pebble DB holding
// about 64 MiB of incompressible values, from the FS store and from the S3
// test server, and reports the download rate in MB/s of snapshot files.
// Setup (writing the DB and one Take) is outside the timer.
//
//	cd /work/main/services && go test -run '^$' -bench BenchmarkRestore -benchtime 5x ./kvsnap/
func BenchmarkRestore(b *testing.B) {
	for _, s := range stores {
		b.Run(s.name, func(b *testing.B) {
			objects := s.new(b)
			m := benchSnapshot(b, objects, 64<<20)
			size := m.Size()
			b.ResetTimer()
			for i := range b.N {
				dir := filepath.Join(b.TempDir(), fmt.Sprint(i))
				if err := kvsnap.Restore(b.Context(), objects, m.Key, dir); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				os.RemoveAll(dir)
				b.StartTimer()
			}
			b.ReportMetric(float64(size)*float64(b.N)/1e6/b.Elapsed().Seconds(), "MB/s")
			b.ReportMetric(float64(size)/(1<<20), "MiB/snapshot")
			b.ReportMetric(float64(len(m.Entries)), "files/snapshot")
		})
	}
}

// benchSnapshot writes about bytes of random 1 KiB values into a new DB and
// returns a snapshot of it in objects.
func benchSnapshot(b *testing.B, objects objstore.Bucket, bytes int) *kvsnap.Manifest {
	b.Helper()
	db, err := pebble.Open(filepath.Join(b.TempDir(), "db"), &pebble.Options{Logger: quietLogger{}})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	val := make([]byte, 1024)
	batch := db.NewBatch()
	for i := range bytes / len(val) {
		rand.Read(val)
		if err := batch.Set(fmt.Appendf(nil, "key-%09d", i), val, nil); err != nil {
			b.Fatal(err)
		}
		if batch.Len() > 4<<20 {
			if err := batch.Commit(pebble.NoSync); err != nil {
				b.Fatal(err)
			}
			batch = db.NewBatch()
		}
	}
	if err := batch.Commit(pebble.Sync); err != nil {
		b.Fatal(err)
	}
	m, err := kvsnap.Take(b.Context(), db, b.TempDir(), objects, "bench", nil)
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// recoveryBytes is the KV state BenchmarkRecover builds.
var recoveryBytes = flag.Int64("recovery.bytes", 1<<30, "bytes of row data in the primary-key bucket BenchmarkRecover recovers")

// BenchmarkRecover measures what a frontend taking over a primary-key
// bucket does with no local state: restore the newest KV snapshot from the
// S3 server and open the bucket's KV state, checking its exact row count.
// The bucket holds -recovery.bytes (default 1 GiB) of 1 KiB rows written
// through kv's own write path; building it and uploading the snapshot are
// outside the timer and reported separately.
//
//	cd services && go test -run '^$' -bench BenchmarkRecover -benchtime 1x ./kvsnap/
func BenchmarkRecover(b *testing.B) {
	objects := newS3(b)
	t := catalog.Table{ID: 1, TableSpec: catalog.TableSpec{Database: "d", Name: "t", Buckets: 1, Schema: catalog.Schema{
		Columns:    []catalog.Column{{Name: "id", Type: catalog.MustParseType("BIGINT")}, {Name: "payload", Type: catalog.MustParseType("STRING"), Nullable: true}},
		PrimaryKey: []string{"id"},
	}}}
	dir := filepath.Join(b.TempDir(), "kv")
	state, err := kv.Open(dir, t, kv.Options{MaxPendingBytes: 256 << 20})
	if err != nil {
		b.Fatal(err)
	}
	const rowBytes, perBatch = 1024, 2048
	rows := *recoveryBytes / rowBytes
	payload := make([]byte, rowBytes/2)
	start := time.Now()
	var offset int64
	for i := int64(0); i < rows; i += perBatch {
		ops := make([]kv.Op, 0, perBatch)
		for j := i; j < min(i+perBatch, rows); j++ {
			rand.Read(payload)
			ops = append(ops, kv.Op{Kind: kv.OpUpsert, Row: kv.Row{j, hex.EncodeToString(payload)}})
		}
		c, err := state.Prepare(ops)
		if err != nil {
			b.Fatal(err)
		}
		offset += int64(c.Len())
		if err := state.Apply(c, offset); err != nil {
			b.Fatal(err)
		}
	}
	built := time.Since(start)
	start = time.Now()
	m, err := kvsnap.Take(b.Context(), state.DB(), b.TempDir(), objects, "recover", nil)
	if err != nil {
		b.Fatal(err)
	}
	uploaded := time.Since(start)
	if err := state.Close(); err != nil {
		b.Fatal(err)
	}
	size := m.Size()

	b.ResetTimer()
	var restore, open time.Duration
	for i := range b.N {
		target := filepath.Join(b.TempDir(), fmt.Sprint(i))
		t0 := time.Now()
		if err := kvsnap.Restore(b.Context(), objects, m.Key, target); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		got, err := kv.Open(target, t, kv.Options{})
		if err != nil {
			b.Fatal(err)
		}
		open += time.Since(t1)
		restore += t1.Sub(t0)
		if got.Count() != rows || got.AppliedOffset() != offset {
			b.Fatalf("recovered count %d at offset %d, want %d at %d", got.Count(), got.AppliedOffset(), rows, offset)
		}
		b.StopTimer()
		_ = got.Close()
		os.RemoveAll(target)
		b.StartTimer()
	}
	n := float64(b.N)
	b.ReportMetric((restore+open).Seconds()/n, "recovery-s")
	b.ReportMetric(float64(size)*n/1e6/restore.Seconds(), "restore-MB/s")
	b.ReportMetric(float64(rows), "rows")
	b.ReportMetric(float64(size)/(1<<20), "snapshot-MiB")
	b.Logf("%d rows (%.0f MiB of row data, snapshot %.0f MiB in %d files): built in %s, snapshot uploaded in %s; recovery %s (restore %s, open %s)",
		rows, float64(*recoveryBytes)/(1<<20), float64(size)/(1<<20), len(m.Entries), built.Round(time.Millisecond), uploaded.Round(time.Millisecond),
		((restore + open) / time.Duration(b.N)).Round(time.Millisecond), (restore / time.Duration(b.N)).Round(time.Millisecond), (open / time.Duration(b.N)).Round(time.Millisecond))
}
