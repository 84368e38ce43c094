package e2e

// Lake benchmarks: tiering throughput and freshness (BenchmarkTiering), a
// union scan against the stream alone (BenchmarkUnionScan), and a union
// scan of a primary-key table against its KV index
// (BenchmarkUnionScanPrimaryKey). One `strom server` with every role, on
// PostgreSQL and versitygw like the other system benchmarks; results go to
// tiering.json, union_scan.json and union_scan_pk.json.

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"google.golang.org/protobuf/types/known/structpb"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/api/gen/strom/v1/stromv1connect"
	"github.com/strom-io/strom/e2e/bench"
	"github.com/strom-io/strom/testenv"
)

const (
	lakeBuckets   = 6
	lakeFreshness = 2 * time.Second
	lakeInterval  = "100ms"
	// lakeIdle is the tiering interval of a server that must not tier
	// (beyond its first check at start): the backlog of the catch-up run
	// and the stream tail of the union scan are written under it.
	lakeIdle = "1h"
)

// lakeEnv is a benchEnv whose server can be restarted with another
// tiering interval, keeping its data directory, database and bucket.
type lakeEnv struct {
	*benchEnv
	dir   string
	args  []string
	admin stromv1connect.AdminServiceClient
}

func newLakeEnv(b *testing.B, interval string) *lakeEnv {
	b.Helper()
	out, err := bench.OutDir(filepath.Join("..", "bench", "results"))
	if err != nil {
		b.Fatal(err)
	}
	s3ep := testenv.S3(b)
	proxy := startS3Proxy(b, s3ep.Endpoint)
	dir := b.TempDir()
	viaProxy := s3ep
	viaProxy.Endpoint = proxy.url
	args := append([]string{"-catalog.backend", "postgres", "-catalog.postgres.url", testenv.Postgres(b),
		"-data-dir", filepath.Join(dir, "data"), "-log.level", "warn"}, s3Args(viaProxy)...)
	e := &lakeEnv{benchEnv: &benchEnv{s3: s3ep, proxy: proxy, outDir: out}, dir: dir, args: args}
	e.start(b, interval)
	if _, errOut, err := runCLI(e.p, "db", "create", "bench"); err != nil {
		b.Fatalf("db create: %v: %s", err, errOut)
	}
	return e
}

// start starts the server with the given tiering interval.
func (e *lakeEnv) start(b *testing.B, interval string) {
	b.Helper()
	e.p = startServer(b, e.dir, append(slices.Clone(e.args), "-lake.tiering.interval", interval)...)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConns: 64, MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute, DisableCompression: true}}
	b.Cleanup(hc.CloseIdleConnections)
	e.http = hc
	e.write = stromv1connect.NewWriteServiceClient(hc, e.p.url(), connect.WithReadMaxBytes(256<<20), connect.WithSendMaxBytes(256<<20))
	e.read = stromv1connect.NewReadServiceClient(hc, e.p.url(), connect.WithReadMaxBytes(1<<30), connect.WithAcceptCompression("gzip", nil, nil))
	e.readGzip = stromv1connect.NewReadServiceClient(hc, e.p.url(), connect.WithReadMaxBytes(1<<30))
	e.admin = stromv1connect.NewAdminServiceClient(hc, e.p.url())
}

// restart stops the server (SIGTERM) and starts it again with interval.
func (e *lakeEnv) restart(b *testing.B, interval string) {
	b.Helper()
	if err := e.p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		b.Fatal(err)
	}
	select {
	case <-e.p.exited:
	case <-time.After(30 * time.Second):
		b.Fatal("strom server did not stop within 30s of SIGTERM")
	}
	e.start(b, interval)
}

func (e *lakeEnv) createLakeTable(b *testing.B, name string) {
	b.Helper()
	args := []string{"table", "create", "bench." + name, "--buckets", fmt.Sprint(lakeBuckets),
		"-p", "table.datalake.enabled=true", "-p", "table.datalake.freshness=" + lakeFreshness.String()}
	for _, c := range wideColumns() {
		args = append(args, "-c", c)
	}
	if _, errOut, err := runCLI(e.p, args...); err != nil {
		b.Fatalf("table create: %v: %s", err, errOut)
	}
}

func (e *lakeEnv) lakeStatus(ctx context.Context, b *testing.B, table string) *stromv1.LakeTableStatus {
	b.Helper()
	resp, err := e.admin.GetLakeStatus(ctx, connect.NewRequest(&stromv1.GetLakeStatusRequest{Database: "bench", Table: table}))
	if err != nil {
		b.Fatalf("lake status: %v", err)
	}
	if len(resp.Msg.GetTables()) != 1 {
		b.Fatalf("lake status of %s: %d tables", table, len(resp.Msg.GetTables()))
	}
	return resp.Msg.GetTables()[0]
}

// waitTiered polls the lake status until nothing of table is untiered.
func (e *lakeEnv) waitTiered(b *testing.B, table string, within time.Duration) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for {
		st := e.lakeStatus(ctx, b, table)
		if st.GetLagRecords() == 0 {
			return
		}
		select {
		case <-ctx.Done():
			b.Fatalf("%s not tiered within %s: %d records behind\n%s", table, within, st.GetLagRecords(), e.p.log())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (e *lakeEnv) stromCPU(b *testing.B) float64 {
	b.Helper()
	st, err := readProcStat(strconv.Itoa(e.p.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	return st.cpu
}

// ackRange is one acknowledged append's records in one bucket.
type ackRange struct {
	base, end int64
	at        time.Time
}

// BenchmarkTiering: (a) a backlog of 20-column Arrow rows in 6 buckets,
// written while tiering is idle, then the server restarted with tiering
// every 100 ms: time until the lake status shows no lag, and the strom
// process's CPU over it. (b) A steady write load of 2,000 rows/s for 60 s
// on a table with freshness 2 s: every 250 ms, the lake's lag in time
// (now − the ack time of the oldest acknowledged record not yet tiered).
func BenchmarkTiering(b *testing.B) {
	e := newLakeEnv(b, lakeIdle)
	e.createLakeTable(b, "backlog")
	batches := wideBatches(b, 8)
	const total = 200 << 20
	in := e.ingest(b, "backlog", batches, 4, total)
	if st := e.lakeStatus(context.Background(), b, "backlog"); st.GetLagRecords() != in.rows {
		b.Logf("before the restart the lake is %d records behind, %d were written", st.GetLagRecords(), in.rows)
	}

	// (a) catch-up
	e.restart(b, lakeInterval)
	b.ResetTimer()
	os0 := e.proxy.counts()
	cpu0 := e.stromCPU(b)
	t0 := time.Now()
	e.waitTiered(b, "backlog", 3*time.Minute)
	el := time.Since(t0)
	cpu := e.stromCPU(b) - cpu0
	b.StopTimer()
	cu := bench.TieringCatchUp{Rows: in.rows, Bytes: in.bytes, Seconds: el.Seconds(),
		RowsPerSec: float64(in.rows) / el.Seconds(), MBps: float64(in.bytes) / 1e6 / el.Seconds(),
		StromCPUSeconds: cpu, CoresUsed: cpu / el.Seconds(), ObjStore: e.proxy.counts().Sub(os0)}
	if cpu > 0 {
		cu.RowsPerCoreSec = float64(in.rows) / cpu
	}
	b.Logf("catch-up: %d rows (%.1f MB) in %.2fs: %.0f rows/s, %.1f MB/s; strom CPU %.2fs (%.2f cores): %.0f rows/s per core",
		cu.Rows, float64(cu.Bytes)/1e6, cu.Seconds, cu.RowsPerSec, cu.MBps, cu.StromCPUSeconds, cu.CoresUsed, cu.RowsPerCoreSec)

	// (b) freshness under a steady load
	e.createLakeTable(b, "steady")
	const rate, batchRows = 2000, 200
	dur := time.Duration(benchN(60)) * time.Second
	small := make([][]byte, 10)
	for i := range small {
		small[i] = wideBatch(b, uint64(1000+i), batchRows)
	}
	type sample struct {
		at     time.Time
		tiered map[int32]int64
	}
	var (
		mu      sync.Mutex
		acked   = map[int32][]ackRange{}
		acks    []time.Duration
		rows    int64
		samples []sample
		snaps   = map[int64]bool{}
	)
	ctx, cancel := context.WithTimeout(context.Background(), dur+time.Minute)
	defer cancel()
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
			resp, err := e.admin.GetLakeStatus(ctx, connect.NewRequest(&stromv1.GetLakeStatusRequest{Database: "bench", Table: "steady"}))
			now := time.Now()
			if err != nil || len(resp.Msg.GetTables()) != 1 {
				b.Errorf("lake status: %v", err)
				return
			}
			st := resp.Msg.GetTables()[0]
			s := sample{at: now, tiered: map[int32]int64{}}
			for _, bk := range st.GetBuckets() {
				s.tiered[bk.GetBucket()] = bk.GetTieredOffset()
			}
			mu.Lock()
			samples = append(samples, s)
			snaps[st.GetSnapshotId()] = true
			mu.Unlock()
		}
	}()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	start := time.Now()
	b.StartTimer()
	n := int(dur / (time.Second * batchRows / rate))
	for i := range n {
		time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second * batchRows / rate)))
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			t := time.Now()
			resp, err := e.write.Append(ctx, connect.NewRequest(&stromv1.AppendRequest{
				Database: "bench", Table: "steady", ArrowIpc: small[i%len(small)], Durability: stromv1.Durability_DURABILITY_DURABLE,
			}))
			at := time.Now()
			if err != nil {
				b.Errorf("append: %v", err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			acks = append(acks, at.Sub(t))
			for _, o := range resp.Msg.GetOffsets() {
				acked[o.GetBucket()] = append(acked[o.GetBucket()], ackRange{o.GetBaseOffset(), o.GetBaseOffset() + o.GetCount(), at})
				rows += o.GetCount()
			}
		})
	}
	wg.Wait()
	writeEl := time.Since(start)
	time.Sleep(lakeFreshness) // the last records' lag, too
	close(stopSampling)
	<-sampled
	b.StopTimer()
	if b.Failed() {
		return
	}
	// lag(t) = t − ack time of the oldest record not tiered at t, over
	// the records acknowledged by t; 0 if none.
	ackOf := func(bucket int32, off int64) (time.Time, bool) {
		for _, r := range acked[bucket] {
			if off >= r.base && off < r.end {
				return r.at, true
			}
		}
		return time.Time{}, false
	}
	var lags []time.Duration
	zero := 0
	for _, s := range samples {
		var lag time.Duration
		for bk, off := range s.tiered {
			if at, ok := ackOf(bk, off); ok && !at.After(s.at) {
				lag = max(lag, s.at.Sub(at))
			}
		}
		// Buckets the status does not list yet hold nothing tiered.
		for bk := range int32(lakeBuckets) {
			if _, ok := s.tiered[bk]; !ok {
				if at, ok := ackOf(bk, 0); ok && !at.After(s.at) {
					lag = max(lag, s.at.Sub(at))
				}
			}
		}
		if lag == 0 {
			zero++
		}
		lags = append(lags, lag)
	}
	fr := bench.TieringFreshness{TargetRowsPerSec: rate, BatchRows: batchRows, Seconds: writeEl.Seconds(), Rows: rows,
		AckLatency: bench.Summarize(acks), SampleEvery: "250ms", Lag: bench.Summarize(lags), Snapshots: int64(len(snaps))}
	if len(lags) > 0 {
		fr.ZeroShare = float64(zero) / float64(len(lags))
	}
	b.Logf("steady %d rows/s for %.1fs (%d rows, ack p50 %.0fms p99 %.0fms): lake lag p50 %.0fms p90 %.0fms p99 %.0fms max %.0fms over %d samples (%.0f%% zero), %d snapshots; freshness %s",
		rate, fr.Seconds, fr.Rows, fr.AckLatency.P50, fr.AckLatency.P99, fr.Lag.P50, fr.Lag.P90, fr.Lag.P99, fr.Lag.Max, fr.Lag.N, 100*fr.ZeroShare, fr.Snapshots, lakeFreshness)

	res := bench.Tiering{Env: bench.NewEnv(), Buckets: lakeBuckets, Columns: benchColumns, BatchRows: benchBatchRows,
		Interval: lakeInterval, Freshness: lakeFreshness.String(), CatchUp: cu, Steady: fr}
	if err := bench.Write(e.outDir, bench.TieringFile, res); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(cu.RowsPerSec, "tier-rows/s")
	b.ReportMetric(cu.MBps, "tier-MB/s")
	b.ReportMetric(cu.RowsPerCoreSec, "tier-rows/core-s")
	b.ReportMetric(fr.Lag.P99, "lag-p99-ms")
}

// BenchmarkUnionScan: a 6-bucket 20-column table, fully tiered, plus a
// stream tail of 10% more rows written with tiering idle; the whole table
// read by ScanStream{union, ARROW} (pages of 10,000 rows) against Fetch
// (ARROW) of every bucket from offset 0, alternating, median of the runs.
func BenchmarkUnionScan(b *testing.B) {
	e := newLakeEnv(b, lakeInterval)
	e.createLakeTable(b, "union")
	batches := wideBatches(b, 8)
	const lakeBytes = 48 << 20
	base := e.ingest(b, "union", batches, 4, lakeBytes)
	e.waitTiered(b, "union", 3*time.Minute)
	e.restart(b, lakeIdle)
	tail := e.ingest(b, "union", batches, 2, lakeBytes/10)
	time.Sleep(time.Second)
	st := e.lakeStatus(context.Background(), b, "union")
	if st.GetLagRecords() != tail.rows {
		b.Logf("the stream tail is %d records, %d were written after tiering", st.GetLagRecords(), tail.rows)
	}
	total := base.rows + tail.rows
	ctx := context.Background()

	unionOnce := func(count bool) (time.Duration, int64, int64) {
		t0 := time.Now()
		rows, bytes := scanStream(b, ctx, e.read, &stromv1.ScanRequest{Database: "bench", Table: "union", Union: true, Format: stromv1.Format_FORMAT_ARROW}, count)
		return time.Since(t0), rows, bytes
	}
	streamOnce := func() (time.Duration, int64, int64) {
		t0 := time.Now()
		var rows, arrowBytes int64
		for bk := range int32(lakeBuckets) {
			var off int64
			for {
				resp, err := e.read.Fetch(ctx, connect.NewRequest(&stromv1.FetchRequest{
					Database: "bench", Table: "union", Bucket: bk, Offset: off, MaxBytes: 16 << 20, Format: stromv1.Format_FORMAT_ARROW,
				}))
				if err != nil {
					b.Fatalf("fetch bucket %d at %d: %v", bk, off, err)
				}
				arrowBytes += int64(len(resp.Msg.GetArrowIpc()))
				rows += resp.Msg.GetNextOffset() - off
				off = resp.Msg.GetNextOffset()
				if off >= resp.Msg.GetHighWatermark() {
					break
				}
			}
		}
		return time.Since(t0), rows, arrowBytes
	}
	// Warm up both paths (connections, the read cache, the lake metadata).
	if _, got, _ := unionOnce(true); got != total {
		b.Fatalf("union scan returned %d rows, want %d", got, total)
	}
	if _, rows, _ := streamOnce(); rows != total {
		b.Fatalf("stream read returned %d rows, want %d", rows, total)
	}
	const reps = 5
	var us, ss []time.Duration
	var unionBytes, streamBytes int64
	b.ResetTimer()
	for i := range reps {
		if i%2 == 0 {
			d, _, ub := unionOnce(false)
			us, unionBytes = append(us, d), ub
			d, _, sb := streamOnce()
			ss, streamBytes = append(ss, d), sb
		} else {
			d, _, sb := streamOnce()
			ss, streamBytes = append(ss, d), sb
			d, _, ub := unionOnce(false)
			us, unionBytes = append(us, d), ub
		}
	}
	b.StopTimer()
	slices.Sort(us)
	slices.Sort(ss)
	u, s := us[len(us)/2], ss[len(ss)/2]
	res := bench.UnionScan{Env: bench.NewEnv(), Buckets: lakeBuckets, Columns: benchColumns, Rows: total, LakeRows: base.rows, TailRows: tail.rows,
		Reps: reps, UnionSeconds: u.Seconds(), UnionRowsPerSec: float64(total) / u.Seconds(), UnionArrowBytes: unionBytes,
		StreamSeconds: s.Seconds(), StreamRowsPerSec: float64(total) / s.Seconds(), StreamArrowBytes: streamBytes}
	res.Ratio = res.UnionRowsPerSec / res.StreamRowsPerSec
	if err := bench.Write(e.outDir, bench.UnionScanFile, res); err != nil {
		b.Fatal(err)
	}
	b.Logf("%d rows (%d lake + %d tail): union scan %.2fs %.0f rows/s (%.1f MB Arrow); stream fetch %.2fs %.0f rows/s (%.1f MB Arrow); ratio %.2f; runs union %v stream %v",
		total, base.rows, tail.rows, res.UnionSeconds, res.UnionRowsPerSec, float64(unionBytes)/1e6, res.StreamSeconds, res.StreamRowsPerSec, float64(streamBytes)/1e6, res.Ratio, us, ss)
	b.ReportMetric(res.UnionRowsPerSec, "union-rows/s")
	b.ReportMetric(res.StreamRowsPerSec, "stream-rows/s")
	b.ReportMetric(res.Ratio, "union/stream")
}

// BenchmarkUnionScanPrimaryKey: a 6-bucket 20-column primary-key table
// (key c00) with the lake on: 200,000 keys upserted (Arrow) and tiered,
// then 10% of the keys updated and 1% deleted with tiering idle, which
// leaves them in the changelog tail. The whole table read by
// ScanStream{union, ARROW} (the lake snapshot, equality deletes applied,
// merged by key with the tail) against a plain ScanStream (ARROW) of the KV
// index, both in pages of 10,000 rows, alternating, median of the runs;
// both must return the current rows.
func BenchmarkUnionScanPrimaryKey(b *testing.B) {
	const (
		table     = "union_pk"
		batchRows = 4000
		updateMod = 10  // keys k with k%10 == 3 are updated
		deleteMod = 100 // keys k with k%100 == 7 are deleted
	)
	e := newLakeEnv(b, lakeInterval)
	args := []string{"table", "create", "bench." + table, "--buckets", fmt.Sprint(lakeBuckets), "--primary-key", "c00",
		"-p", "table.datalake.enabled=true", "-p", "table.datalake.freshness=" + lakeFreshness.String(), "-c", "c00 BIGINT NOT NULL"}
	for _, c := range wideColumns()[1:] {
		args = append(args, "-c", c)
	}
	if _, errOut, err := runCLI(e.p, args...); err != nil {
		b.Fatalf("table create: %v: %s", err, errOut)
	}
	nBatches := benchN(50)
	keys := int64(nBatches * batchRows)

	// The lake: every key upserted once, then tiered.
	load := make([][]byte, nBatches)
	var wg sync.WaitGroup
	for i := range load {
		wg.Go(func() { load[i] = keyedBatch(b, uint64(i+1), int64(i*batchRows), 1, batchRows) })
	}
	wg.Wait()
	t0 := time.Now()
	e.upsertAll(b, table, load, 4)
	upsertEl := time.Since(t0)
	e.waitTiered(b, table, 3*time.Minute)
	tierEl := time.Since(t0)
	b.Logf("upserted %d keys in %.2fs (%.0f rows/s); tiered %.2fs after the first upsert", keys, upsertEl.Seconds(), float64(keys)/upsertEl.Seconds(), tierEl.Seconds())

	// The changelog tail, with tiering idle: updates and deletes.
	e.restart(b, lakeIdle)
	var updates [][]byte
	var updated int64
	for from := int64(3); from < keys; from += batchRows * updateMod {
		n := min(batchRows, (keys-from+updateMod-1)/updateMod)
		updates = append(updates, keyedBatch(b, uint64(1000+len(updates)), from, updateMod, int(n)))
		updated += n
	}
	e.upsertAll(b, table, updates, 2)
	var deleted int64
	var del []*structpb.Struct
	flush := func() {
		if len(del) == 0 {
			return
		}
		if _, err := e.write.Delete(context.Background(), connect.NewRequest(&stromv1.DeleteRequest{
			Database: "bench", Table: table, Keys: del, Durability: stromv1.Durability_DURABILITY_DURABLE,
		})); err != nil {
			b.Fatalf("delete: %v", err)
		}
		deleted += int64(len(del))
		del = del[:0]
	}
	for k := int64(7); k < keys; k += deleteMod {
		s, err := structpb.NewStruct(map[string]any{"c00": k})
		if err != nil {
			b.Fatal(err)
		}
		if del = append(del, s); len(del) == 500 {
			flush()
		}
	}
	flush()
	time.Sleep(time.Second)
	st := e.lakeStatus(context.Background(), b, table)
	tailRecords := st.GetLagRecords()
	if tailRecords == 0 {
		b.Fatalf("the changelog tail was tiered: nothing untiered after %d updates and %d deletes", updated, deleted)
	}
	want := keys - deleted
	ctx := context.Background()

	scanOnce := func(union, count bool) (time.Duration, int64, int64) {
		t0 := time.Now()
		rows, bytes := scanStream(b, ctx, e.read, &stromv1.ScanRequest{Database: "bench", Table: table, Union: union, Format: stromv1.Format_FORMAT_ARROW}, count)
		return time.Since(t0), rows, bytes
	}
	// Warm up both paths and check the row counts.
	for _, union := range []bool{true, false} {
		if _, rows, _ := scanOnce(union, true); rows != want {
			b.Fatalf("scan (union %v) returned %d rows, want %d", union, rows, want)
		}
	}
	const reps = 5
	var us, ks []time.Duration
	var unionBytes, kvBytes int64
	b.ResetTimer()
	for i := range reps {
		for _, union := range []bool{i%2 == 0, i%2 != 0} {
			d, _, n := scanOnce(union, false)
			if union {
				us, unionBytes = append(us, d), n
			} else {
				ks, kvBytes = append(ks, d), n
			}
		}
	}
	b.StopTimer()
	if st := e.lakeStatus(ctx, b, table); st.GetLagRecords() != tailRecords {
		b.Fatalf("the changelog tail changed during the runs: %d records untiered, %d before", st.GetLagRecords(), tailRecords)
	}
	slices.Sort(us)
	slices.Sort(ks)
	u, k := us[len(us)/2], ks[len(ks)/2]
	res := bench.UnionScanPK{Env: bench.NewEnv(), Buckets: lakeBuckets, Columns: benchColumns, Rows: want, LakeRows: keys,
		TailUpdates: updated, TailDeletes: deleted, TailRecords: tailRecords, UpsertRowsPerSec: float64(keys) / upsertEl.Seconds(),
		Reps: reps, UnionSeconds: u.Seconds(), UnionRowsPerSec: float64(want) / u.Seconds(), UnionArrowBytes: unionBytes,
		KVSeconds: k.Seconds(), KVRowsPerSec: float64(want) / k.Seconds(), KVArrowBytes: kvBytes}
	res.Ratio = res.UnionRowsPerSec / res.KVRowsPerSec
	if err := bench.Write(e.outDir, bench.UnionScanPKFile, res); err != nil {
		b.Fatal(err)
	}
	b.Logf("%d rows (%d keys in the lake; tail: %d updates + %d deletes = %d changelog records): union scan %.2fs %.0f rows/s (%.1f MB Arrow); KV scan %.2fs %.0f rows/s (%.1f MB Arrow); ratio %.2f; runs union %v kv %v",
		want, keys, updated, deleted, tailRecords, res.UnionSeconds, res.UnionRowsPerSec, float64(unionBytes)/1e6, res.KVSeconds, res.KVRowsPerSec, float64(kvBytes)/1e6, res.Ratio, us, ks)
	b.ReportMetric(res.UnionRowsPerSec, "union-rows/s")
	b.ReportMetric(res.KVRowsPerSec, "kv-rows/s")
	b.ReportMetric(res.Ratio, "union/kv")
}

// upsertAll upserts batches (Arrow IPC) into table from writers
// goroutines, durably.
func (e *lakeEnv) upsertAll(b *testing.B, table string, batches [][]byte, writers int) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var next atomic.Int64
	errc := make(chan error, writers)
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(len(batches)); i = next.Add(1) - 1 {
				if _, err := e.write.Upsert(ctx, connect.NewRequest(&stromv1.UpsertRequest{
					Database: "bench", Table: table, ArrowIpc: batches[i], Durability: stromv1.Durability_DURABILITY_DURABLE,
				})); err != nil {
					errc <- err
					return
				}
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errc:
		b.Fatalf("upsert: %v", err)
	default:
	}
}

// keyedBatch is wideBatch(seed, rows) with c00, the primary key, set to
// from, from+step, from+2·step, ...
func keyedBatch(tb testing.TB, seed uint64, from, step int64, rows int) []byte {
	tb.Helper()
	r, err := ipc.NewReader(bytes.NewReader(wideBatch(tb, seed, rows)))
	if err != nil {
		tb.Fatal(err)
	}
	defer r.Release()
	if !r.Next() {
		tb.Fatalf("wideBatch: no record: %v", r.Err())
	}
	rec := r.RecordBatch()
	kb := array.NewInt64Builder(memory.DefaultAllocator)
	defer kb.Release()
	for i := range int64(rows) {
		kb.Append(from + i*step)
	}
	key := kb.NewArray()
	defer key.Release()
	cols := slices.Clone(rec.Columns())
	cols[0] = key
	out := array.NewRecordBatch(rec.Schema(), cols, rec.NumRows())
	defer out.Release()
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(out.Schema()))
	if err := w.Write(out); err != nil {
		tb.Fatal(err)
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// scanStream reads every page of a scan with ScanStream (pages of the
// default size, the most) and returns its Arrow bytes and, with count, its
// rows (decoding the pages: the timed runs do not, as the stream reads
// they are compared with do not).
func scanStream(b *testing.B, ctx context.Context, read stromv1connect.ReadServiceClient, req *stromv1.ScanRequest, count bool) (rows, bytes int64) {
	b.Helper()
	st, err := read.ScanStream(ctx, connect.NewRequest(&stromv1.ScanStreamRequest{Scan: req}))
	if err != nil {
		b.Fatalf("scan stream %v: %v", req, err)
	}
	defer st.Close()
	for st.Receive() {
		ipcBytes := st.Msg().GetPage().GetArrowIpc()
		if count {
			rows += countIPCRows(b, ipcBytes)
		}
		bytes += int64(len(ipcBytes))
	}
	if err := st.Err(); err != nil {
		b.Fatalf("scan stream %v: %v", req, err)
	}
	return rows, bytes
}

// countIPCRows counts the rows of an Arrow IPC stream.
func countIPCRows(b *testing.B, data []byte) int64 {
	b.Helper()
	if len(data) == 0 {
		return 0
	}
	r, err := ipc.NewReader(bytes.NewReader(data))
	if err != nil {
		b.Fatalf("arrow ipc: %v", err)
	}
	defer r.Release()
	var n int64
	for r.Next() {
		n += r.RecordBatch().NumRows()
	}
	if err := r.Err(); err != nil {
		b.Fatalf("arrow ipc: %v", err)
	}
	return n
}
