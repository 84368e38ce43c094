package e2e

// Cluster benchmarks (docs/cluster.md): frontends sharing one PostgreSQL
// catalog and one S3 bucket. BenchmarkFailover measures how long a bucket
// cannot be written when its leader is killed (SIGKILL) or stopped
// (SIGTERM); BenchmarkClusterThroughput measures durable ingest through 1,
// 2 and 3 frontends. Like bench_test.go they write JSON into
// $STROM_BENCH_OUT (default ../bench/results), rendered by bench/report.
// Run them with `make bench`, or:
//
//	cd e2e && go test -run '^$' -bench 'BenchmarkFailover|BenchmarkClusterThroughput' -benchtime=1x -timeout 30m .

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/api/gen/strom/v1/stromv1connect"
	"github.com/strom-io/strom/e2e/bench"
	"github.com/strom-io/strom/testenv"
)

const (
	// clusterLeaseTTL, clusterLeaseRenew and clusterBalance are the
	// defaults of -frontend.lease-ttl, -frontend.lease-renew-interval and
	// -frontend.balance-interval, what users get; they are passed
	// explicitly so that the report states what was measured.
	clusterLeaseTTL   = 10 * time.Second
	clusterLeaseRenew = 3 * time.Second
	clusterBalance    = time.Second

	failoverFrontends    = 3
	failoverBuckets      = 6
	failoverProbeEvery   = 50 * time.Millisecond   // one durable append per bucket per interval
	failoverProbeTimeout = 2 * time.Second         // per append attempt
	failoverKillRounds   = 5                       // kill -9 rounds, scaled by $STROM_BENCH_SCALE
	failoverTermRounds   = 3                       // SIGTERM rounds, scaled by $STROM_BENCH_SCALE
	failoverBaseline     = 2500 * time.Millisecond // window before a SIGTERM whose longest gap is the baseline

	clusterFrontends = 3
	clusterBuckets   = 6 // divisible by 1, 2 and 3 frontends
	clusterWriters   = 6
	clusterTotal     = 256 << 20 // Arrow bytes per measured run
	clusterWarmup    = 24 << 20
)

// ---- a cluster of frontends ----

// benchFrontend is one `strom server` of a benchmark cluster, with a
// stable id, data directory and addresses that survive restarts: the
// testing.TB variant of cluster_test.go's frontend.
type benchFrontend struct {
	id            string
	dir           string
	api, internal string
	args          []string
	p             *process
	past          []*process // every process started, for their logs
}

func newBenchFrontend(tb testing.TB, id string, common []string) *benchFrontend {
	tb.Helper()
	dir := tb.TempDir()
	f := &benchFrontend{id: id, dir: dir, api: benchFreeAddr(tb), internal: benchFreeAddr(tb)}
	f.args = append(slices.Clone(common),
		"-data-dir", filepath.Join(dir, "data"),
		"-frontend.id", id,
		"-server.http-listen-address", f.api,
		"-server.internal-listen-address", f.internal)
	return f
}

func (f *benchFrontend) start(tb testing.TB) {
	tb.Helper()
	f.p = startServer(tb, f.dir, f.args...)
	f.past = append(f.past, f.p)
	if f.p.addr != f.api {
		tb.Fatalf("frontend %s listens on %s, want %s", f.id, f.p.addr, f.api)
	}
}

func (f *benchFrontend) url() string { return "http://" + f.api }

// kill sends SIGKILL, as a crash would, waits for the exit, and returns
// when the signal was sent.
func (f *benchFrontend) kill(tb testing.TB) time.Time {
	tb.Helper()
	at := time.Now()
	if err := f.p.cmd.Process.Kill(); err != nil {
		tb.Fatal(err)
	}
	select {
	case <-f.p.exited:
	case <-time.After(30 * time.Second):
		tb.Fatalf("frontend %s did not die of SIGKILL", f.id)
	}
	return at
}

// terminate sends SIGTERM and waits for the drain to end in a clean exit;
// it returns when the signal was sent and how long the drain took.
func (f *benchFrontend) terminate(tb testing.TB) (time.Time, time.Duration) {
	tb.Helper()
	at := time.Now()
	if err := f.p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		tb.Fatal(err)
	}
	select {
	case <-f.p.exited:
	case <-time.After(45 * time.Second):
		tb.Fatalf("frontend %s did not stop within 45s of SIGTERM", f.id)
	}
	took := time.Since(at)
	if f.p.err != nil {
		tb.Fatalf("frontend %s exited with %v after SIGTERM:\n%s", f.id, f.p.err, f.p.log())
	}
	return at, took
}

// benchFreeAddr returns a 127.0.0.1 address whose port was free a moment
// ago.
func benchFreeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// benchCluster is frontends prepared (not started) on one fresh PostgreSQL
// database and one fresh S3 bucket, reached through a counting proxy.
type benchCluster struct {
	fronts []*benchFrontend
	proxy  *s3Proxy
	http   *http.Client
	outDir string
}

func newBenchCluster(b *testing.B, n int, extra ...string) *benchCluster {
	b.Helper()
	out, err := bench.OutDir(filepath.Join("..", "bench", "results"))
	if err != nil {
		b.Fatal(err)
	}
	s3ep := testenv.S3(b)
	proxy := startS3Proxy(b, s3ep.Endpoint)
	viaProxy := s3ep
	viaProxy.Endpoint = proxy.url
	common := append([]string{"-catalog.backend", "postgres", "-catalog.postgres.url", testenv.Postgres(b),
		"-frontend.lease-ttl", clusterLeaseTTL.String(),
		"-frontend.lease-renew-interval", clusterLeaseRenew.String(),
		"-frontend.balance-interval", clusterBalance.String()}, s3Args(viaProxy)...)
	common = append(common, extra...)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConns: 64, MaxIdleConnsPerHost: 16, IdleConnTimeout: time.Minute, DisableCompression: true}}
	b.Cleanup(hc.CloseIdleConnections)
	c := &benchCluster{proxy: proxy, http: hc, outDir: out}
	for i := range n {
		c.fronts = append(c.fronts, newBenchFrontend(b, fmt.Sprintf("f%d", i+1), common))
	}
	return c
}

func (c *benchCluster) cli(b *testing.B, args ...string) {
	b.Helper()
	if _, errOut, err := runCLI(c.fronts[0].p, args...); err != nil {
		b.Fatalf("strom %s: %v: %s", strings.Join(args, " "), err, errOut)
	}
}

func (c *benchCluster) writeClient(f *benchFrontend) stromv1connect.WriteServiceClient {
	return stromv1connect.NewWriteServiceClient(c.http, f.url(), connect.WithReadMaxBytes(256<<20), connect.WithSendMaxBytes(256<<20))
}

// status reads the cluster's members and bucket leaders through f.
func (c *benchCluster) status(b *testing.B, f *benchFrontend) *stromv1.GetClusterStatusResponse {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := stromv1connect.NewAdminServiceClient(c.http, f.url()).GetClusterStatus(ctx, connect.NewRequest(&stromv1.GetClusterStatusRequest{}))
	if err != nil {
		b.Fatalf("cluster status through %s: %v", f.id, err)
	}
	return resp.Msg
}

// liveLeaders returns the leader of every bucket of bench.table whose
// lease is live.
func liveLeaders(st *stromv1.GetClusterStatusResponse, table string) map[int32]string {
	out := map[int32]string{}
	for _, bl := range st.GetBuckets() {
		if bl.GetDatabase() == "bench" && bl.GetTable() == table && bl.GetLive() && bl.GetBucket().GetLeader() != "" {
			out[bl.GetBucket().GetBucket()] = bl.GetBucket().GetLeader()
		}
	}
	return out
}

func frontendIDs(fronts []*benchFrontend) []string {
	ids := make([]string, len(fronts))
	for i, f := range fronts {
		ids[i] = f.id
	}
	return ids
}

// waitBalanced waits until every one of the buckets of bench.table has a
// live lease and each of ids leads its even share of them, and returns
// when it saw that.
func (c *benchCluster) waitBalanced(b *testing.B, via *benchFrontend, table string, ids []string, buckets int, within time.Duration) time.Time {
	b.Helper()
	deadline := time.Now().Add(within)
	for {
		leaders := liveLeaders(c.status(b, via), table)
		per := map[string]int{}
		for _, id := range leaders {
			per[id]++
		}
		balanced := len(leaders) == buckets
		for _, id := range ids {
			balanced = balanced && per[id] == buckets/len(ids)
		}
		if balanced {
			return time.Now()
		}
		if time.Now().After(deadline) {
			b.Fatalf("bench.%s: leases not balanced over %v within %s: leaders %v", table, ids, within, leaders)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ---- metrics and CPU ----

// scrapeMetrics reads f's /metrics: value by series ("name{labels}").
func (c *benchCluster) scrapeMetrics(b *testing.B, f *benchFrontend) map[string]float64 {
	b.Helper()
	resp, err := c.http.Get(f.url() + "/metrics")
	if err != nil {
		b.Fatalf("scrape %s: %v", f.id, err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	if err := sc.Err(); err != nil {
		b.Fatalf("scrape %s: %v", f.id, err)
	}
	return out
}

// sumSeries adds every series of the metric name.
func sumSeries(m map[string]float64, name string) float64 {
	var sum float64
	for k, v := range m {
		if k == name || strings.HasPrefix(k, name+"{") {
			sum += v
		}
	}
	return sum
}

// promHistogram is a Prometheus histogram as scraped: cumulative counts by
// upper bound (the last one +Inf), with its sum and count.
type promHistogram struct {
	bounds, counts []float64
	sum, count     float64
}

// histogram reads the histogram name (without labels) from a scrape.
func histogram(m map[string]float64, name string) promHistogram {
	var h promHistogram
	type bucket struct{ le, n float64 }
	var bs []bucket
	prefix := name + `_bucket{le="`
	for k, v := range m {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		le, err := strconv.ParseFloat(strings.TrimSuffix(k[len(prefix):], `"}`), 64)
		if err != nil {
			continue
		}
		bs = append(bs, bucket{le, v})
	}
	slices.SortFunc(bs, func(a, b bucket) int {
		switch {
		case a.le < b.le:
			return -1
		case a.le > b.le:
			return 1
		}
		return 0
	})
	for _, x := range bs {
		h.bounds, h.counts = append(h.bounds, x.le), append(h.counts, x.n)
	}
	h.sum, h.count = m[name+"_sum"], m[name+"_count"]
	return h
}

// add returns h + sign*o; h may be empty.
func (h promHistogram) add(o promHistogram, sign float64) promHistogram {
	out := promHistogram{bounds: slices.Clone(o.bounds), counts: make([]float64, len(o.counts)), sum: h.sum + sign*o.sum, count: h.count + sign*o.count}
	for i := range out.counts {
		out.counts[i] = sign * o.counts[i]
		if i < len(h.counts) {
			out.counts[i] += h.counts[i]
		}
	}
	return out
}

// quantile estimates the q-quantile as histogram_quantile does: linear
// interpolation within the bucket that holds it; the highest finite bound
// when that is the +Inf bucket.
func (h promHistogram) quantile(q float64) float64 {
	if h.count <= 0 {
		return 0
	}
	rank := q * h.count
	for i, c := range h.counts {
		if c < rank {
			continue
		}
		if math.IsInf(h.bounds[i], 1) {
			if i == 0 {
				return 0
			}
			return h.bounds[i-1]
		}
		lo, below := 0.0, 0.0
		if i > 0 {
			lo, below = h.bounds[i-1], h.counts[i-1]
		}
		if c == below {
			return h.bounds[i]
		}
		return lo + (h.bounds[i]-lo)*(rank-below)/(c-below)
	}
	return 0
}

const takeoverMetric = "strom_bucket_takeover_duration_seconds"

// takeovers adds up the takeover histograms of fronts.
func (c *benchCluster) takeovers(b *testing.B, fronts []*benchFrontend) promHistogram {
	b.Helper()
	var h promHistogram
	for _, f := range fronts {
		h = h.add(histogram(c.scrapeMetrics(b, f), takeoverMetric), 1)
	}
	return h
}

// userHZ is the unit of the CPU times in /proc (USER_HZ, 100 on Linux).
const userHZ = 100

// cpuSample is CPU time used so far, in seconds.
type cpuSample struct {
	strom, self float64 // the strom processes, this process (clients, S3 proxy)
	s3, pg      float64 // this process's versitygw and PostgreSQL cluster
	busy, total float64 // the machine, all CPUs
}

// procStat is what /proc/<pid>/stat says of a process: its parent, its
// command name, and the user+system CPU seconds it and (reaped) children
// used.
type procStat struct {
	ppid          int
	comm          string
	cpu, children float64
}

func readProcStat(pid string) (procStat, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return procStat{}, err
	}
	s := string(b)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return procStat{}, fmt.Errorf("/proc/%s/stat: %q", pid, s)
	}
	// The fields after the command, from field 3 (state) on: ppid is
	// field 4, utime, stime, cutime and cstime fields 14 to 17.
	f := strings.Fields(s[end+1:])
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("/proc/%s/stat: %d fields", pid, len(f))
	}
	var v [4]float64
	for i := range v {
		if v[i], err = strconv.ParseFloat(f[11+i], 64); err != nil {
			return procStat{}, fmt.Errorf("/proc/%s/stat: %w", pid, err)
		}
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return procStat{}, fmt.Errorf("/proc/%s/stat: %w", pid, err)
	}
	return procStat{ppid: ppid, comm: s[open+1 : end], cpu: (v[0] + v[1]) / userHZ, children: (v[2] + v[3]) / userHZ}, nil
}

// sampleCPU reads the CPU used by the running frontends, this process,
// the versitygw and PostgreSQL that testenv started for it (found as this
// process's versitygw child, and as the postmaster whose backends serve
// this process's databases, with all its children), and the machine.
func sampleCPU(fronts []*benchFrontend) (cpuSample, error) {
	var s cpuSample
	for _, f := range fronts {
		st, err := readProcStat(strconv.Itoa(f.p.cmd.Process.Pid))
		if err != nil {
			return s, err
		}
		s.strom += st.cpu
	}
	self, err := readProcStat("self")
	if err != nil {
		return s, err
	}
	s.self = self.cpu
	procs := map[int]procStat{}
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return s, err
	}
	ourDB := fmt.Sprintf("strom_test_%d_", os.Getpid())
	postmaster := 0
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		st, err := readProcStat(d.Name())
		if err != nil {
			continue // exited meanwhile
		}
		procs[pid] = st
		if st.ppid == os.Getpid() && st.comm == "versitygw" {
			s.s3 += st.cpu
		}
		if postmaster == 0 && st.comm == "postgres" {
			if cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && strings.Contains(string(cmd), ourDB) {
				postmaster = st.ppid
			}
		}
	}
	if pm, ok := procs[postmaster]; ok {
		s.pg = pm.cpu + pm.children
		for _, st := range procs {
			if st.ppid == postmaster {
				s.pg += st.cpu
			}
		}
	}
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s, err
	}
	line, _, _ := strings.Cut(string(stat), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal guest guest_nice
	if len(f) < 9 || f[0] != "cpu" {
		return s, fmt.Errorf("/proc/stat: first line %q", line)
	}
	for i, x := range f[1:9] { // guest time is counted in user already
		n, err := strconv.ParseFloat(x, 64)
		if err != nil {
			return s, fmt.Errorf("/proc/stat: %q", line)
		}
		s.total += n / userHZ
		if i != 3 && i != 4 { // idle, iowait
			s.busy += n / userHZ
		}
	}
	return s, nil
}

// ---- failover ----

// probeAttempt is one append of a probe.
type probeAttempt struct {
	sent, done time.Time
	ok         bool
	code       connect.Code // when not ok
}

// bucketProbe appends one small durable row to one bucket every
// failoverProbeEvery, one append at a time, and records every attempt.
type bucketProbe struct {
	bucket int32
	key    string // a bucket-key value that maps to bucket

	mu       sync.Mutex
	attempts []probeAttempt
	wrong    int // acks for another bucket than expected
}

func (p *bucketProbe) run(ctx context.Context, clients []stromv1connect.WriteServiceClient, via *atomic.Int32) {
	t := time.NewTicker(failoverProbeEvery)
	defer t.Stop()
	for seq := int64(1); ; seq++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		wc := clients[via.Load()]
		actx, cancel := context.WithTimeout(ctx, failoverProbeTimeout)
		sent := time.Now()
		resp, err := wc.Append(actx, connect.NewRequest(&stromv1.AppendRequest{
			Database: "bench", Table: "probe", Durability: stromv1.Durability_DURABILITY_DURABLE,
			Rows: []*structpb.Struct{{Fields: map[string]*structpb.Value{
				"k": structpb.NewStringValue(p.key), "n": structpb.NewNumberValue(float64(seq)),
			}}},
		}))
		cancel()
		if ctx.Err() != nil {
			return
		}
		a := probeAttempt{sent: sent, done: time.Now(), ok: err == nil}
		if err != nil {
			a.code = connect.CodeOf(err)
		}
		p.mu.Lock()
		p.attempts = append(p.attempts, a)
		if err == nil && (len(resp.Msg.GetOffsets()) != 1 || resp.Msg.GetOffsets()[0].GetBucket() != p.bucket) {
			p.wrong++
		}
		p.mu.Unlock()
	}
}

// firstOK returns the first acknowledged append sent at or after t.
func (p *bucketProbe) firstOK(t time.Time) (probeAttempt, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, a := range p.attempts {
		if a.ok && !a.sent.Before(t) {
			return a, true
		}
	}
	return probeAttempt{}, false
}

// longestGap returns the longest time between two consecutive acks of
// which the later is after from and the earlier before to.
func (p *bucketProbe) longestGap(from, to time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	var longest time.Duration
	var prev time.Time
	for _, a := range p.attempts {
		if !a.ok {
			continue
		}
		if !prev.IsZero() && a.done.After(from) && prev.Before(to) {
			longest = max(longest, a.done.Sub(prev))
		}
		prev = a.done
	}
	return longest
}

// failures counts the failed attempts that ended in [from, to), by code.
func (p *bucketProbe) failures(from, to time.Time, codes map[string]int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, a := range p.attempts {
		if !a.ok && !a.done.Before(from) && a.done.Before(to) {
			n++
			codes[a.code.String()]++
		}
	}
	return n
}

// waitProbes waits until every probe has an ack of an append sent after
// t.
func waitProbes(b *testing.B, probes []*bucketProbe, t time.Time, within time.Duration) {
	b.Helper()
	deadline := time.Now().Add(within)
	for _, p := range probes {
		for {
			if _, ok := p.firstOK(t); ok {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("bucket %d: no probe append acknowledged within %s", p.bucket, within)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// bucketKeys finds, by appending single rows (acked from the WAL), a
// bucket-key value of bench.probe for each of its buckets.
func bucketKeys(b *testing.B, wc stromv1connect.WriteServiceClient, buckets int) map[int32]string {
	b.Helper()
	keys := map[int32]string{}
	deadline := time.Now().Add(time.Minute)
	for i := 0; len(keys) < buckets; i++ {
		if time.Now().After(deadline) {
			b.Fatalf("bench.probe: found keys for %d of %d buckets after %d appends", len(keys), buckets, i)
		}
		key := fmt.Sprintf("probe-%d", i)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := wc.Append(ctx, connect.NewRequest(&stromv1.AppendRequest{
			Database: "bench", Table: "probe", Durability: stromv1.Durability_DURABILITY_WAL,
			Rows: []*structpb.Struct{{Fields: map[string]*structpb.Value{"k": structpb.NewStringValue(key), "n": structpb.NewNumberValue(0)}}},
		}))
		cancel()
		if err != nil {
			b.Logf("bucket keys: append %s: %v (retried)", key, err)
			time.Sleep(200 * time.Millisecond)
			continue
		}
		if bkt := resp.Msg.GetOffsets()[0].GetBucket(); keys[bkt] == "" {
			keys[bkt] = key
		}
	}
	return keys
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

func msDurations(v []float64) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x * 1e6)
	}
	return out
}

// failoverRun is the state of BenchmarkFailover shared by its rounds.
type failoverRun struct {
	c        *benchCluster
	probes   []*bucketProbe
	via      *atomic.Int32 // index of the frontend the probes append through
	takeover promHistogram // the survivors' takeovers over every kill round
	lines    []string      // per-round log lines, logged after the summary
}

// logf keeps a line for the end: go test shows only the first lines of a
// benchmark's log, which should be the summary.
func (r *failoverRun) logf(format string, args ...any) {
	r.lines = append(r.lines, fmt.Sprintf(format, args...))
}

// route sends the probes through fronts[i] from now on, and lets the
// appends in flight through the previous one finish.
func (r *failoverRun) route(i int) {
	r.via.Store(int32(i))
	time.Sleep(failoverProbeTimeout / 4)
}

// restart starts f again on its data directory and waits until the
// leases are balanced and every probe acknowledged again. It records how
// long that took and the longest gap of the buckets handed back to f.
func (r *failoverRun) restart(b *testing.B, f, via *benchFrontend, round *bench.FailoverRound) {
	b.Helper()
	c := r.c
	at := time.Now()
	f.start(b)
	balanced := c.waitBalanced(b, via, "probe", frontendIDs(c.fronts), failoverBuckets, time.Minute)
	waitProbes(b, r.probes, balanced, 30*time.Second)
	round.RejoinMs = ms(balanced.Sub(at))
	leaders := liveLeaders(c.status(b, via), "probe")
	for _, p := range r.probes {
		if leaders[p.bucket] == f.id {
			round.RejoinGapMs = max(round.RejoinGapMs, ms(p.longestGap(at, balanced.Add(time.Second))))
		}
	}
}

// killRound kills fronts[i] with SIGKILL while the probes append through
// the next frontend, measures kill → first ack of each bucket it led, and
// restarts it.
func (r *failoverRun) killRound(b *testing.B, i int) bench.FailoverRound {
	b.Helper()
	c := r.c
	victim := c.fronts[i%len(c.fronts)]
	router := (i + 1) % len(c.fronts)
	via := c.fronts[router]
	var survivors []*benchFrontend
	for _, f := range c.fronts {
		if f != victim {
			survivors = append(survivors, f)
		}
	}
	r.route(router)
	st := c.status(b, via)
	var memberExpiry time.Time
	for _, m := range st.GetMembers() {
		if m.GetId() == victim.id {
			memberExpiry = m.GetExpireTime().AsTime()
		}
	}
	leaseExpiry := map[int32]time.Time{}
	for _, bl := range st.GetBuckets() {
		if bl.GetTable() == "probe" && bl.GetLive() && bl.GetBucket().GetLeader() == victim.id {
			leaseExpiry[bl.GetBucket().GetBucket()] = bl.GetBucket().GetLeaseExpireTime().AsTime()
		}
	}
	if len(leaseExpiry) == 0 {
		b.Fatalf("round %d: %s leads no bucket: %v", i, victim.id, liveLeaders(st, "probe"))
	}
	before := c.takeovers(b, survivors)

	killed := victim.kill(b)
	round := bench.FailoverRound{Kind: "kill", Frontend: victim.id, MemberWaitMs: ms(memberExpiry.Sub(killed))}
	deadline := killed.Add(clusterLeaseTTL + 30*time.Second)
	var recovered time.Time
	for _, p := range r.probes {
		exp, led := leaseExpiry[p.bucket]
		if !led {
			continue
		}
		for {
			if a, ok := p.firstOK(killed); ok {
				round.Buckets = append(round.Buckets, p.bucket)
				round.Ms = append(round.Ms, ms(a.done.Sub(killed)))
				wait := exp
				if memberExpiry.After(wait) {
					wait = memberExpiry
				}
				round.ExpiryWaitMs = append(round.ExpiryWaitMs, ms(wait.Sub(killed)))
				if a.done.After(recovered) {
					recovered = a.done
				}
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("round %d: bucket %d not writable %s after %s was killed; survivors' logs:\n%s\n%s",
					i, p.bucket, time.Since(killed).Round(time.Millisecond), victim.id, survivors[0].p.log(), survivors[1].p.log())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	codes := map[string]int{}
	for _, p := range r.probes {
		round.FailedAttempts += p.failures(killed, recovered.Add(time.Millisecond), codes)
	}
	round.Codes = codes
	time.Sleep(clusterBalance) // a takeover is observed just after its lease is acquired
	took := c.takeovers(b, survivors).add(before, -1)
	r.takeover = r.takeover.add(took, 1)
	round.Takeovers = int(took.count)
	if took.count > 0 {
		round.TakeoverMeanMs = took.sum / took.count * 1e3
	}
	r.restart(b, victim, via, &round)
	r.logf("kill -9 %s: buckets %v writable after %v ms (lease or membership expiry, whichever later, after %v ms; membership after %.0f ms); %d failed appends %v; %d takeovers, mean %.1f ms; back and balanced in %.0f ms, rejoin gap %.0f ms",
		victim.id, round.Buckets, roundMs(round.Ms), roundMs(round.ExpiryWaitMs), round.MemberWaitMs, round.FailedAttempts, round.Codes, round.Takeovers, round.TakeoverMeanMs, round.RejoinMs, round.RejoinGapMs)
	return round
}

// termRound stops fronts[i] with SIGTERM while the probes append through
// the next frontend, measures the longest gap between acks of each bucket
// it led, and restarts it.
func (r *failoverRun) termRound(b *testing.B, i int) bench.FailoverRound {
	b.Helper()
	c := r.c
	victim := c.fronts[i%len(c.fronts)]
	router := (i + 1) % len(c.fronts)
	via := c.fronts[router]
	r.route(router)
	time.Sleep(3 * time.Second) // a quiet window, for the baseline
	leaders := liveLeaders(c.status(b, via), "probe")
	round := bench.FailoverRound{Kind: "term", Frontend: victim.id}
	sent, drain := victim.terminate(b)
	round.DrainMs = ms(drain)
	end := sent.Add(drain + time.Second)
	time.Sleep(time.Until(end) + 100*time.Millisecond)
	codes := map[string]int{}
	for _, p := range r.probes {
		round.BaselineGapMs = max(round.BaselineGapMs, ms(p.longestGap(sent.Add(-failoverBaseline), sent)))
		round.FailedAttempts += p.failures(sent, end, codes)
		if leaders[p.bucket] == victim.id {
			round.Buckets = append(round.Buckets, p.bucket)
			round.Ms = append(round.Ms, ms(p.longestGap(sent, end)))
		}
	}
	round.Codes = codes
	if len(round.Buckets) == 0 {
		b.Fatalf("round %d: %s led no bucket: %v", i, victim.id, leaders)
	}
	r.restart(b, victim, via, &round)
	r.logf("SIGTERM %s: drained in %.0f ms; buckets %v longest gap %v ms (baseline %.0f ms); %d failed appends %v; back and balanced in %.0f ms, rejoin gap %.0f ms",
		victim.id, round.DrainMs, round.Buckets, roundMs(round.Ms), round.BaselineGapMs, round.FailedAttempts, round.Codes, round.RejoinMs, round.RejoinGapMs)
	return round
}

func roundMs(v []float64) []int64 {
	out := make([]int64, len(v))
	for i, x := range v {
		out[i] = int64(math.Round(x))
	}
	return out
}

// BenchmarkFailover: three frontends with the default lease TTL and
// balance interval; a probe per bucket of a 6-bucket log table appends one
// durable row every 50 ms through a frontend that stays up. Each round
// kills (SIGKILL) a frontend that leads buckets and measures, per bucket
// it led, kill → first ack of an append sent after the kill; then restarts
// it (same id and data) and waits until the leases are balanced again.
// Then rounds of SIGTERM measure the longest gap between acks while the
// stopped frontend hands its buckets over.
func BenchmarkFailover(b *testing.B) {
	b.ReportAllocs()
	c := newBenchCluster(b, failoverFrontends, "-log.level", "info")
	for _, f := range c.fronts {
		f.start(b)
	}
	c.cli(b, "db", "create", "bench")
	c.cli(b, "table", "create", "bench.probe", "-c", "k STRING NOT NULL", "-c", "n BIGINT",
		"--buckets", fmt.Sprint(failoverBuckets), "--bucket-key", "k")
	c.waitBalanced(b, c.fronts[0], "probe", frontendIDs(c.fronts), failoverBuckets, time.Minute)

	clients := make([]stromv1connect.WriteServiceClient, len(c.fronts))
	for i, f := range c.fronts {
		clients[i] = c.writeClient(f)
	}
	keys := bucketKeys(b, clients[0], failoverBuckets)
	r := &failoverRun{c: c, via: &atomic.Int32{}}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for bkt := range int32(failoverBuckets) {
		p := &bucketProbe{bucket: bkt, key: keys[bkt]}
		r.probes = append(r.probes, p)
		wg.Go(func() { p.run(ctx, clients, r.via) })
	}
	defer func() { stop(); wg.Wait() }()
	waitProbes(b, r.probes, time.Now(), 30*time.Second)

	b.ResetTimer()
	var rounds []bench.FailoverRound
	for i := range benchN(failoverKillRounds) {
		rounds = append(rounds, r.killRound(b, i))
	}
	for i := range benchN(failoverTermRounds) {
		rounds = append(rounds, r.termRound(b, i))
	}
	b.StopTimer()
	stop()
	wg.Wait()
	for _, p := range r.probes {
		if p.wrong > 0 {
			b.Fatalf("bucket %d: %d probe appends with key %s were acknowledged for another bucket", p.bucket, p.wrong, p.key)
		}
	}

	res := bench.Failover{Env: bench.NewEnv(), Frontends: failoverFrontends, Buckets: failoverBuckets,
		LeaseTTL: clusterLeaseTTL.String(), LeaseRenew: clusterLeaseRenew.String(), BalanceInterval: clusterBalance.String(),
		ProbeEvery: failoverProbeEvery.String(), Codes: map[string]int{}, HandoffCodes: map[string]int{}, Rounds: rounds}
	var failover, expiry, after, handoff, baseline, drain, rejoin []float64
	for _, rd := range rounds {
		rejoin = append(rejoin, rd.RejoinGapMs)
		switch rd.Kind {
		case "kill":
			res.FailedAttempts += rd.FailedAttempts
			for code, n := range rd.Codes {
				res.Codes[code] += n
			}
			failover = append(failover, rd.Ms...)
			expiry = append(expiry, rd.ExpiryWaitMs...)
			for j := range rd.Ms {
				after = append(after, rd.Ms[j]-rd.ExpiryWaitMs[j])
			}
		case "term":
			res.HandoffFailedAttempts += rd.FailedAttempts
			for code, n := range rd.Codes {
				res.HandoffCodes[code] += n
			}
			handoff = append(handoff, rd.Ms...)
			baseline = append(baseline, rd.BaselineGapMs)
			drain = append(drain, rd.DrainMs)
		}
	}
	res.Failover = bench.Summarize(msDurations(failover))
	res.ExpiryWait = bench.Summarize(msDurations(expiry))
	res.AfterExpiry = bench.Summarize(msDurations(after))
	res.Handoff = bench.Summarize(msDurations(handoff))
	res.BaselineGap = bench.Summarize(msDurations(baseline))
	res.Drain = bench.Summarize(msDurations(drain))
	res.RejoinGap = bench.Summarize(msDurations(rejoin))
	if h := r.takeover; h.count > 0 {
		res.Takeover = bench.Takeover{N: int(h.count), MeanMs: h.sum / h.count * 1e3, P50Ms: h.quantile(0.5) * 1e3, P99Ms: h.quantile(0.99) * 1e3}
	}
	if err := bench.Write(c.outDir, bench.FailoverFile, res); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(res.Failover.P50/1e3, "failover-p50-s")
	b.ReportMetric(res.Failover.Max/1e3, "failover-max-s")
	b.ReportMetric(res.Handoff.Max, "handoff-gap-max-ms")
	b.Logf("failover (lease TTL %s, balance %s): kill -9 → first ack p50 %.0f ms p99 %.0f ms max %.0f ms (n=%d); of which until the lease and membership expired p50 %.0f ms, after it p50 %.0f ms max %.0f ms; takeover (metric) n=%d mean %.1f ms p50≈%.1f ms p99≈%.1f ms; %d failed probe appends %v",
		clusterLeaseTTL, clusterBalance, res.Failover.P50, res.Failover.P99, res.Failover.Max, res.Failover.N,
		res.ExpiryWait.P50, res.AfterExpiry.P50, res.AfterExpiry.Max, res.Takeover.N, res.Takeover.MeanMs, res.Takeover.P50Ms, res.Takeover.P99Ms, res.FailedAttempts, res.Codes)
	b.Logf("SIGTERM handoff: longest gap between acks p50 %.0f ms max %.0f ms (n=%d; baseline without a fault max %.0f ms); drain p50 %.0f ms; %d failed probe appends %v; rejoin gap max %.0f ms",
		res.Handoff.P50, res.Handoff.Max, res.Handoff.N, res.BaselineGap.Max, res.Drain.P50, res.HandoffFailedAttempts, res.HandoffCodes, res.RejoinGap.Max)
	logSummary(b, c.fronts)
	for _, line := range r.lines {
		b.Log(line)
	}
}

var logMsg = regexp.MustCompile(`level=(\w+) msg=("(?:[^"\\]|\\.)*"|\S+)`)

// logSummary logs, over every process the frontends ran, how many bucket
// leaderships were acquired and how many takeovers the cluster balancer
// reported (the ones strom_bucket_takeover_duration_seconds observes),
// the drain times, and each distinct warning or error with its count and
// first occurrence.
func logSummary(b *testing.B, fronts []*benchFrontend) {
	b.Helper()
	type seen struct {
		n     int
		first string
	}
	warn := map[string]*seen{}
	var keys []string
	var acquired, takenOver int
	var drained, starts []string
	for _, f := range fronts {
		for i, p := range f.past {
			replayed, warns := "no WAL records", 0
			for _, line := range strings.Split(p.log(), "\n") {
				m := logMsg.FindStringSubmatch(line)
				if m == nil {
					continue
				}
				switch {
				case strings.Contains(m[2], "bucket leadership acquired"):
					acquired++
				case strings.Contains(m[2], "bucket taken over"):
					takenOver++
				case strings.Contains(m[2], "drained"):
					_, took, _ := strings.Cut(line, "took=")
					drained = append(drained, f.id+" "+took)
				case strings.Contains(m[2], "WAL replayed"):
					_, replayed, _ = strings.Cut(line, "records=")
				}
				if m[1] != "WARN" && m[1] != "ERROR" {
					continue
				}
				warns++
				k := m[1] + " " + m[2]
				if warn[k] == nil {
					warn[k] = &seen{first: f.id + ": " + line}
					keys = append(keys, k)
				}
				warn[k].n++
			}
			starts = append(starts, fmt.Sprintf("%s#%d: WAL %s, %d warnings", f.id, i+1, replayed, warns))
		}
	}
	b.Logf("frontend logs: %d bucket leaderships acquired, %d reported by the balancer as taken over (observed by %s); drains: %v; by process start: %s",
		acquired, takenOver, takeoverMetric, drained, strings.Join(starts, "; "))
	for _, k := range keys {
		b.Logf("frontend logs: %d× %s; first: %s", warn[k].n, k, warn[k].first)
	}
}

// ---- throughput ----

// roundRobin sends each Append to the next frontend in turn.
type roundRobin struct {
	stromv1connect.WriteServiceClient // the other methods: unused
	clients                           []stromv1connect.WriteServiceClient
	next                              atomic.Uint64
}

func (r *roundRobin) Append(ctx context.Context, req *connect.Request[stromv1.AppendRequest]) (*connect.Response[stromv1.AppendResponse], error) {
	return r.clients[(r.next.Add(1)-1)%uint64(len(r.clients))].Append(ctx, req)
}

// clusterOrder is the sequence of frontend counts measured: up and down
// again, so that each count is measured twice, early and late, and drift or
// load from other processes on the shared machine shows.
var clusterOrder = []int{1, 2, 3, 3, 2, 1}

// BenchmarkClusterThroughput: durable ingest of BenchmarkIngest's Arrow
// batches into a 6-bucket log table by six writers, through 1, 2, 3, 3, 2
// and 1 frontends (started, or stopped with SIGTERM, one at a time; each
// run waits until the leases are balanced), each request sent to the next
// frontend in turn, the same bytes per run. The best run of each count is
// reported. CPU use comes from /proc: every process shares this machine's
// CPUs.
func BenchmarkClusterThroughput(b *testing.B) {
	b.ReportAllocs()
	c := newBenchCluster(b, clusterFrontends, "-log.level", "warn")
	batches := wideBatches(b, 8)
	c.fronts[0].start(b)
	c.cli(b, "db", "create", "bench")
	c.cli(b, append([]string{"table", "create", "bench.ingest", "--buckets", fmt.Sprint(clusterBuckets)}, colFlags(wideColumns())...)...)

	res := bench.Cluster{Env: bench.NewEnv(), Buckets: clusterBuckets, Columns: benchColumns, BatchRows: benchBatchRows, BatchBytes: int64(len(batches[0]))}
	running := 1
	b.ResetTimer()
	for _, n := range clusterOrder {
		b.StopTimer()
		for ; running < n; running++ {
			c.fronts[running].start(b)
		}
		for ; running > n; running-- {
			c.fronts[running-1].terminate(b)
		}
		live := c.fronts[:n]
		c.waitBalanced(b, c.fronts[0], "ingest", frontendIDs(live), clusterBuckets, 2*time.Minute)
		b.StartTimer()
		run := c.ingestRun(b, live, batches)
		b.StopTimer()
		res.Samples = append(res.Samples, run)
	}
	for _, s := range res.Samples {
		i := slices.IndexFunc(res.Runs, func(r bench.ClusterRun) bool { return r.Frontends == s.Frontends })
		switch {
		case i < 0:
			res.Runs = append(res.Runs, s)
		case s.MBps > res.Runs[i].MBps:
			res.Runs[i] = s
		}
	}
	slices.SortFunc(res.Runs, func(a, b bench.ClusterRun) int { return a.Frontends - b.Frontends })
	for i := range res.Runs {
		res.Runs[i].Ratio = res.Runs[i].MBps / res.Runs[0].MBps
	}
	for i := range res.Samples {
		res.Samples[i].Ratio = res.Samples[i].MBps / res.Runs[0].MBps
	}
	if err := bench.Write(c.outDir, bench.ClusterFile, res); err != nil {
		b.Fatal(err)
	}
	for _, run := range res.Runs {
		b.ReportMetric(run.MBps, fmt.Sprintf("MB/s-%dfe", run.Frontends))
		b.Logf("best of %d frontends: %.1f MB/s %.0f rows/s (×%.2f of 1); ack p50 %.0f ms p99 %.0f ms; %.0f%% forwarded; CPU s: strom %.1f (%.2f CPUs), bench process %.1f, versitygw %.1f, postgres %.1f, other processes %.1f, machine %.1f (%.0f%% of %d CPUs); %.1f strom CPU-s/GB, %.1f machine CPU-s/GB; %d PUTs",
			run.Frontends, run.MBps, run.RowsPerSec, run.Ratio, run.Ack.P50, run.Ack.P99, 100*run.Forwarded, run.StromCPUSeconds, run.StromCPUSeconds/run.Seconds, run.BenchCPUSeconds,
			run.S3CPUSeconds, run.PostgresCPUSeconds, run.OtherCPUSeconds, run.MachineCPUSeconds, 100*run.MachineUtil, res.Env.CPUs, run.StromCPUPerGB, run.MachineCPUPerGB, run.ObjStore.Puts)
	}
	var order []string
	for _, s := range res.Samples {
		order = append(order, fmt.Sprintf("%d: %.1f MB/s (other processes %.1f CPU-s)", s.Frontends, s.MBps, s.OtherCPUSeconds))
	}
	b.Logf("in order: %s", strings.Join(order, ", "))
	b.ReportMetric(res.Runs[len(res.Runs)-1].Ratio, "x-3fe-vs-1")
}

// ingestRun warms up, then ingests clusterTotal bytes through fronts,
// each request to the next frontend in turn, and measures it.
func (c *benchCluster) ingestRun(b *testing.B, fronts []*benchFrontend, batches [][]byte) bench.ClusterRun {
	b.Helper()
	rr := &roundRobin{}
	for _, f := range fronts {
		rr.clients = append(rr.clients, c.writeClient(f))
	}
	e := &benchEnv{write: rr}
	e.ingest(b, "ingest", batches, clusterWriters, clusterWarmup)

	fwd0 := c.forwarded(b, fronts)
	os0 := c.proxy.counts()
	cpu0, err := sampleCPU(fronts)
	if err != nil {
		b.Fatal(err)
	}
	r := e.ingest(b, "ingest", batches, clusterWriters, clusterTotal)
	cpu1, err := sampleCPU(fronts)
	if err != nil {
		b.Fatal(err)
	}
	st := c.proxy.counts().Sub(os0)
	fwd := c.forwarded(b, fronts) - fwd0

	gb := float64(r.bytes) / 1e9
	run := bench.ClusterRun{Frontends: len(fronts), Writers: clusterWriters, Requests: r.requests, Rows: r.rows, Bytes: r.bytes,
		Seconds: r.elapsed.Seconds(), MBps: float64(r.bytes) / 1e6 / r.elapsed.Seconds(), RowsPerSec: float64(r.rows) / r.elapsed.Seconds(),
		Ack: bench.Summarize(r.acks), Forwarded: fwd / float64(r.requests), ObjStore: st,
		StromCPUSeconds: cpu1.strom - cpu0.strom, BenchCPUSeconds: cpu1.self - cpu0.self,
		S3CPUSeconds: cpu1.s3 - cpu0.s3, PostgresCPUSeconds: cpu1.pg - cpu0.pg, MachineCPUSeconds: cpu1.busy - cpu0.busy,
	}
	run.OtherCPUSeconds = run.MachineCPUSeconds - run.StromCPUSeconds - run.BenchCPUSeconds - run.S3CPUSeconds - run.PostgresCPUSeconds
	if total := cpu1.total - cpu0.total; total > 0 {
		run.MachineUtil = run.MachineCPUSeconds / total
	}
	run.StromCPUPerGB = run.StromCPUSeconds / gb
	run.MachineCPUPerGB = run.MachineCPUSeconds / gb
	return run
}

func colFlags(cols []string) []string {
	var out []string
	for _, c := range cols {
		out = append(out, "-c", c)
	}
	return out
}

// forwarded adds up the requests fronts forwarded to other leaders.
func (c *benchCluster) forwarded(b *testing.B, fronts []*benchFrontend) float64 {
	b.Helper()
	var n float64
	for _, f := range fronts {
		n += sumSeries(c.scrapeMetrics(b, f), "strom_forwarded_requests_total")
	}
	return n
}
