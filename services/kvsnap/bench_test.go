package kvsnap_test

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2"

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
