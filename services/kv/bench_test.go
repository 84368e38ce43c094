package kv

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/strom-io/strom/catalog"
)

// Benchmarks of a bucket beside raw pebble doing the same writes and reads
// of the same keys and values, in the same run. Run:
//
//	cd services && go test ./kv -run '^$' -bench . -benchtime 2s
//
// Reported: rows/s and raw-rows/s (raw pebble: one batch of the encoded
// keys and row values per Prepare), upsert-ratio = rows/s ÷ raw-rows/s;
// raw-rmw-rows/s and rmw-ratio likewise for raw pebble reading each key
// (Get) before the batch, as every upsert must;
// lookup p50/p99 latencies of Bucket.Lookup of one key and of pebble Get
// (with a copy of the value), and their ratios.

func benchTable() catalog.Table {
	return catalog.Table{TableSpec: catalog.TableSpec{
		Name: "bench",
		Schema: catalog.Schema{
			Columns: []catalog.Column{
				{Name: "id", Type: catalog.BigInt},
				{Name: "v", Type: catalog.BigInt, Nullable: true},
				{Name: "s", Type: catalog.String, Nullable: true},
			},
			PrimaryKey: []string{"id"},
		},
	}}
}

func benchRow(id int64) Row {
	return Row{id, id * 3, strings.Repeat("v", 100)}
}

func openRawPebble(b *testing.B) *pebble.DB {
	db, err := pebble.Open(b.TempDir(), &pebble.Options{Logger: quietLogger{}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	return db
}

func BenchmarkUpsert(b *testing.B) {
	for _, size := range []int{1, 100} {
		b.Run(fmt.Sprint("batch=", size), func(b *testing.B) {
			b.ReportAllocs()
			tbl := benchTable()
			bk := openBucket(b, b.TempDir(), tbl, Options{})
			const keySpace = 100_000
			rng := rand.New(rand.NewPCG(1, 2))
			batches := make([][]Op, 1024)
			for i := range batches {
				ops := make([]Op, size)
				for j := range ops {
					ops[j] = Op{Kind: OpUpsert, Row: benchRow(rng.Int64N(keySpace))}
				}
				batches[i] = ops
			}
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				c, err := bk.Prepare(batches[i%len(batches)])
				if err != nil {
					b.Fatal(err)
				}
				if err := bk.Apply(c, int64(i+1)); err != nil {
					b.Fatal(err)
				}
			}
			kvSecs := time.Since(start).Seconds()
			b.StopTimer()

			db := openRawPebble(b)
			kvs := make([][][2][]byte, len(batches))
			for i, ops := range batches {
				for _, op := range ops {
					kvs[i] = append(kvs[i], [2][]byte{bk.rowKey(op.Row), EncodeRow(nil, tbl.Schema, op.Row)})
				}
			}
			start = time.Now()
			for i := range b.N {
				batch := db.NewBatch()
				for _, kv := range kvs[i%len(kvs)] {
					batch.Set(kv[0], kv[1], nil)
				}
				if err := batch.Commit(pebble.NoSync); err != nil {
					b.Fatal(err)
				}
				batch.Close()
			}
			rawSecs := time.Since(start).Seconds()
			// Raw read-modify-write: a Get of each key (the old value every
			// upsert must read), then the batch.
			start = time.Now()
			for i := range b.N {
				batch := db.NewBatch()
				for _, kv := range kvs[i%len(kvs)] {
					if v, closer, err := db.Get(kv[0]); err == nil {
						_ = append([]byte(nil), v...)
						closer.Close()
					}
					batch.Set(kv[0], kv[1], nil)
				}
				if err := batch.Commit(pebble.NoSync); err != nil {
					b.Fatal(err)
				}
				batch.Close()
			}
			rmwSecs := time.Since(start).Seconds()
			rows := float64(b.N * size)
			b.ReportMetric(rows/rmwSecs, "raw-rmw-rows/s")
			b.ReportMetric(rmwSecs/kvSecs, "rmw-ratio")
			b.ReportMetric(rows/kvSecs, "rows/s")
			b.ReportMetric(rows/rawSecs, "raw-rows/s")
			b.ReportMetric(rawSecs/kvSecs, "upsert-ratio")
		})
	}
}

func BenchmarkLookup(b *testing.B) {
	b.ReportAllocs()
	tbl := benchTable()
	bk := openBucket(b, b.TempDir(), tbl, Options{})
	db := openRawPebble(b)
	const rows = 50_000
	for start := int64(0); start < rows; start += 1000 {
		ops := make([]Op, 1000)
		raw := db.NewBatch()
		for j := range ops {
			row := benchRow(start + int64(j))
			ops[j] = Op{Kind: OpUpsert, Row: row}
			raw.Set(bk.rowKey(row), EncodeRow(nil, tbl.Schema, row), nil)
		}
		c, err := bk.Prepare(ops)
		if err != nil {
			b.Fatal(err)
		}
		if err := bk.Apply(c, start+1000); err != nil {
			b.Fatal(err)
		}
		if err := raw.Commit(pebble.NoSync); err != nil {
			b.Fatal(err)
		}
		raw.Close()
	}
	rng := rand.New(rand.NewPCG(3, 4))
	ids := make([]int64, 4096)
	for i := range ids {
		ids[i] = rng.Int64N(rows)
	}
	kvLat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		got, err := bk.Lookup([]Row{{ids[i%len(ids)]}})
		kvLat = append(kvLat, time.Since(t0))
		if err != nil || got[0] == nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	rawLat := make([]time.Duration, 0, b.N)
	keys := make([][]byte, len(ids))
	for i, id := range ids {
		keys[i] = bk.rowKey(Row{id})
	}
	for i := range b.N {
		t0 := time.Now()
		v, closer, err := db.Get(keys[i%len(keys)])
		if err != nil {
			b.Fatal(err)
		}
		_ = append([]byte(nil), v...)
		closer.Close()
		rawLat = append(rawLat, time.Since(t0))
	}
	p := func(l []time.Duration, q float64) float64 {
		slices.Sort(l)
		return float64(l[int(q*float64(len(l)-1))].Nanoseconds())
	}
	kp50, kp99, rp50, rp99 := p(kvLat, 0.5), p(kvLat, 0.99), p(rawLat, 0.5), p(rawLat, 0.99)
	b.ReportMetric(kp50, "p50-ns")
	b.ReportMetric(kp99, "p99-ns")
	b.ReportMetric(rp50, "raw-p50-ns")
	b.ReportMetric(rp99, "raw-p99-ns")
	b.ReportMetric(kp50/rp50, "p50-ratio")
	b.ReportMetric(kp99/rp99, "p99-ratio")
}
