package wal_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strom-io/strom/services/wal"
)

var benchSizes = []struct {
	name string
	n    int
}{
	{"1KiB", 1 << 10},
	{"64KiB", 64 << 10},
}

// BenchmarkAppend measures fsynced Appends (default Options) by payload size
// and number of concurrent appenders. ns/op is wall time per record (the
// inverse of throughput); latency-us is the mean time one Append waits;
// fsyncs/append shows group commit at work (1 without batching). Run with
//
//	cd services && go test -run '^$' -bench 'BenchmarkAppend|BenchmarkRawFsync' -benchtime 2s ./wal/
func BenchmarkAppend(b *testing.B) {
	for _, size := range benchSizes {
		for _, appenders := range []int{1, 8, 64} {
			b.Run(fmt.Sprintf("%s/appenders=%d", size.name, appenders), func(b *testing.B) {
				w := open(b, wal.Options{Dir: b.TempDir()})
				defer w.Close()
				payload := make([]byte, size.n)
				b.SetBytes(int64(size.n))
				b.ReportAllocs()
				var next, waited atomic.Int64
				var wg sync.WaitGroup
				b.ResetTimer()
				for range appenders {
					wg.Go(func() {
						for next.Add(1) <= int64(b.N) {
							start := time.Now()
							if _, err := w.Append(context.Background(), payload); err != nil {
								b.Error(err)
								return
							}
							waited.Add(int64(time.Since(start)))
						}
					})
				}
				wg.Wait()
				b.StopTimer()
				m := w.Metrics()
				b.ReportMetric(float64(m.Fsyncs)/float64(m.Appends), "fsyncs/append")
				b.ReportMetric(float64(waited.Load())/float64(b.N)/1e3, "latency-us")
			})
		}
	}
}

// BenchmarkRawFsync is the baseline for BenchmarkAppend: write the same
// bytes to a plain file and fsync, serially (what appending without group
// commit would cost at best). Run with the command above.
func BenchmarkRawFsync(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(size.name, func(b *testing.B) {
			f, err := os.Create(filepath.Join(b.TempDir(), "raw"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			buf := make([]byte, size.n)
			b.SetBytes(int64(size.n))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := f.Write(buf); err != nil {
					b.Fatal(err)
				}
				if err := f.Sync(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
