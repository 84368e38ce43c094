// Package bench holds the result records of the system benchmarks in
// e2e/bench_test.go, e2e/cluster_bench_test.go and e2e/lake_bench_test.go
// and their JSON files, which bench/report renders into
// bench/results/README.md and PNG charts.
package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"
)

// EnvOut names the directory the results are written to; default
// bench/results under the repository root.
const EnvOut = "STROM_BENCH_OUT"

// File names of the results, one per benchmark.
const (
	IngestFile  = "ingest.json"
	LatencyFile = "latency.json"
	PruningFile = "pruning.json"
	// FailoverFile and ClusterFile hold the cluster benchmarks'
	// results (e2e/cluster_bench_test.go).
	FailoverFile = "failover.json"
	ClusterFile  = "cluster_throughput.json"
	// TieringFile, UnionScanFile and UnionScanPKFile hold the lake
	// benchmarks' results (e2e/lake_bench_test.go).
	TieringFile     = "tiering.json"
	UnionScanFile   = "union_scan.json"
	UnionScanPKFile = "union_scan_pk.json"
)

// Env describes where a result was measured.
type Env struct {
	Time   time.Time `json:"time"`
	GOOS   string    `json:"goos"`
	GOARCH string    `json:"goarch"`
	CPUs   int       `json:"cpus"`
	Go     string    `json:"go"`
}

// NewEnv describes this machine now.
func NewEnv() Env {
	return Env{Time: time.Now().UTC().Truncate(time.Second), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, CPUs: runtime.NumCPU(), Go: runtime.Version()}
}

// ObjStore counts object-store traffic seen by the counting proxy.
type ObjStore struct {
	Puts     int64 `json:"puts"`
	Gets     int64 `json:"gets"`
	Other    int64 `json:"other"` // HEAD, DELETE, LIST, multipart calls, ...
	PutBytes int64 `json:"put_bytes"`
	GetBytes int64 `json:"get_bytes"` // response bytes of GETs
}

// Sub returns o - p.
func (o ObjStore) Sub(p ObjStore) ObjStore {
	return ObjStore{Puts: o.Puts - p.Puts, Gets: o.Gets - p.Gets, Other: o.Other - p.Other, PutBytes: o.PutBytes - p.PutBytes, GetBytes: o.GetBytes - p.GetBytes}
}

// Percentiles summarises latencies in milliseconds.
type Percentiles struct {
	N    int     `json:"n"`
	Mean float64 `json:"mean_ms"`
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	Max  float64 `json:"max_ms"`
}

// Summarize returns the percentiles of ds (nearest-rank).
func Summarize(ds []time.Duration) Percentiles {
	if len(ds) == 0 {
		return Percentiles{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	rank := func(p float64) time.Duration {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return Percentiles{N: len(s), Mean: ms(sum / time.Duration(len(s))), P50: ms(rank(0.50)), P90: ms(rank(0.90)), P99: ms(rank(0.99)), Max: ms(s[len(s)-1])}
}

// PutRun is one raw S3 PUT measurement.
type PutRun struct {
	Label       string  `json:"label"`
	Via         string  `json:"via"` // "proxy" or "direct"
	Concurrency int     `json:"concurrency"`
	ObjectBytes int64   `json:"object_bytes"`
	Objects     int     `json:"objects"`
	Bytes       int64   `json:"bytes"`
	Seconds     float64 `json:"seconds"`
	MBps        float64 `json:"mb_per_s"`
}

// Ingest is the result of BenchmarkIngest.
type Ingest struct {
	Env          Env         `json:"env"`
	Format       string      `json:"format"`
	Durability   string      `json:"durability"`
	Writers      int         `json:"writers"`
	Columns      int         `json:"columns"`
	BatchRows    int         `json:"batch_rows"`
	BatchBytes   int64       `json:"batch_bytes"` // Arrow IPC bytes per request
	Requests     int64       `json:"requests"`
	Rows         int64       `json:"rows"`
	Bytes        int64       `json:"bytes"` // Arrow IPC bytes acknowledged
	Seconds      float64     `json:"seconds"`
	MBps         float64     `json:"mb_per_s"`
	RowsPerSec   float64     `json:"rows_per_s"`
	Ack          Percentiles `json:"ack_latency"`
	ObjStore     ObjStore    `json:"objstore"`
	AvgPutBytes  float64     `json:"avg_put_bytes"`
	PutsPerGiB   float64     `json:"puts_per_gib"`
	GetsPerGiB   float64     `json:"gets_per_gib"`
	OtherPerGiB  float64     `json:"other_per_gib"`
	StoredRatio  float64     `json:"stored_ratio"` // object bytes PUT / Arrow bytes ingested
	RawPuts      []PutRun    `json:"raw_puts"`
	RawPutMBps   float64     `json:"raw_put_mb_per_s"` // baseline: the same bytes in 8 MiB objects, serial PUTs via the proxy (median of runs)
	Ratio        float64     `json:"ratio"`            // MBps / RawPutMBps
	RawPutBestMB float64     `json:"raw_put_best_mb_per_s"`
	RatioBest    float64     `json:"ratio_best"`
	// StromCPUSeconds is the CPU the strom process used during the
	// measured run; CPUSecondsPerGB per GB (1e9 bytes) of Arrow ingested.
	StromCPUSeconds float64 `json:"strom_cpu_seconds"`
	CPUSecondsPerGB float64 `json:"strom_cpu_seconds_per_gb"`
	Profile         Profile `json:"profile"`
}

// Profile is a CPU profile of the strom process taken during a benchmark:
// its file (next to the results) and its top entries by flat time.
type Profile struct {
	File    string         `json:"file"`
	Seconds float64        `json:"seconds"`
	Top     []ProfileEntry `json:"top"`
}

// ProfileEntry is one function of a profile's top list.
type ProfileEntry struct {
	Func    string  `json:"func"`
	FlatPct float64 `json:"flat_pct"`
	CumPct  float64 `json:"cum_pct"`
}

// LatencyRun is one latency distribution.
type LatencyRun struct {
	Name        string      `json:"name"`
	Description string      `json:"description"`
	BatchRows   int         `json:"batch_rows"`
	Latency     Percentiles `json:"latency"`
}

// Latency is the result of BenchmarkLatency.
type Latency struct {
	Env           Env          `json:"env"`
	FlushInterval string       `json:"flush_interval"`
	Runs          []LatencyRun `json:"runs"`
}

// PruneRun is the read of every row projecting Columns columns.
type PruneRun struct {
	Columns     int    `json:"columns"`
	Compression string `json:"compression,omitempty"` // response compression accepted by the client; "" for none
	// ArrowCompressed: read with arrow_compressed, the Arrow buffers as
	// stored (zstd), not decompressed by the server.
	ArrowCompressed bool    `json:"arrow_compressed,omitempty"`
	Reps            int     `json:"reps"`
	Seconds         float64 `json:"seconds"` // median of the reps
	Rows            int64   `json:"rows"`
	RowsPerSec      float64 `json:"rows_per_s"`
	ArrowBytes      int64   `json:"arrow_bytes"` // Arrow IPC bytes returned
	MBps            float64 `json:"mb_per_s"`    // Arrow bytes returned per second
	ObjGetBytes     int64   `json:"objstore_get_bytes"`
	ObjGets         int64   `json:"objstore_gets"`
	BytesVsAll      float64 `json:"bytes_vs_all"`   // ObjGetBytes / that of all columns
	SpeedupVsAll    float64 `json:"speedup_vs_all"` // time of all columns / this time
}

// Pruning is the result of BenchmarkColumnPruning.
type Pruning struct {
	Env         Env        `json:"env"`
	Columns     int        `json:"columns"`
	Rows        int64      `json:"rows"`
	IngestBytes int64      `json:"ingest_bytes"` // Arrow IPC bytes written
	StoredBytes int64      `json:"stored_bytes"` // object bytes PUT
	Segments    int64      `json:"segments"`
	Runs        []PruneRun `json:"runs"`
	Profile     Profile    `json:"profile"` // during full reads of every column
}

// Takeover summarises strom_bucket_takeover_duration_seconds as the
// surviving frontends observed it: the mean is exact (sum / count), the
// percentiles are histogram estimates.
type Takeover struct {
	N      int     `json:"n"`
	MeanMs float64 `json:"mean_ms"`
	P50Ms  float64 `json:"p50_ms"`
	P99Ms  float64 `json:"p99_ms"`
}

// FailoverRound is one fault: a frontend killed (SIGKILL) or stopped
// (SIGTERM) while probes appended to every bucket through another one.
type FailoverRound struct {
	Kind     string  `json:"kind"` // "kill" or "term"
	Frontend string  `json:"frontend"`
	Buckets  []int32 `json:"buckets"` // the buckets it led
	// Ms per bucket: for a kill, kill → the first durable ack of an append
	// sent after it; for a SIGTERM, the longest time between two acks.
	Ms []float64 `json:"ms"`
	// ExpiryWaitMs per bucket (kill): kill → the later of the bucket's
	// lease expiry and the killed frontend's membership expiry, as the
	// catalog had them just before the kill.
	ExpiryWaitMs []float64 `json:"expiry_wait_ms,omitempty"`
	// MemberWaitMs (kill): kill → the killed frontend's membership expiry
	// alone; survivors assign its buckets elsewhere only after it.
	MemberWaitMs   float64        `json:"member_wait_ms,omitempty"`
	FailedAttempts int            `json:"failed_attempts"` // probe appends that failed (all buckets) until every bucket was acked again
	Codes          map[string]int `json:"codes,omitempty"`
	Takeovers      int            `json:"takeovers"`                 // takeovers the survivors' metric counted
	TakeoverMeanMs float64        `json:"takeover_mean_ms"`          // their mean duration
	DrainMs        float64        `json:"drain_ms,omitempty"`        // SIGTERM → exit
	RejoinGapMs    float64        `json:"rejoin_gap_ms"`             // restarted: longest time between two acks of a bucket handed back to it
	RejoinMs       float64        `json:"rejoin_ms"`                 // restart → leases balanced again
	BaselineGapMs  float64        `json:"baseline_gap_ms,omitempty"` // SIGTERM: longest gap of any bucket in the 2.5 s before it
}

// Failover is the result of BenchmarkFailover.
type Failover struct {
	Env             Env    `json:"env"`
	Frontends       int    `json:"frontends"`
	Buckets         int    `json:"buckets"`
	LeaseTTL        string `json:"lease_ttl"`
	LeaseRenew      string `json:"lease_renew_interval"`
	BalanceInterval string `json:"balance_interval"`
	ProbeEvery      string `json:"probe_every"`
	// Failover: kill -9 → first durable ack, over every (bucket, round).
	Failover Percentiles `json:"failover"`
	// ExpiryWait: the part of it spent until the killed frontend's lease
	// and membership expired; AfterExpiry: the rest (re-reading the
	// leaders, the takeover, the probe's own durable append).
	ExpiryWait     Percentiles    `json:"expiry_wait"`
	AfterExpiry    Percentiles    `json:"after_expiry"`
	Takeover       Takeover       `json:"takeover"`
	FailedAttempts int            `json:"failed_attempts"`
	Codes          map[string]int `json:"codes"`
	// Handoff: SIGTERM, longest gap between acks per (bucket, round) of
	// the buckets the stopped frontend led; BaselineGap: the same for
	// every bucket without a fault; Drain: SIGTERM → exit.
	Handoff               Percentiles     `json:"handoff_gap"`
	BaselineGap           Percentiles     `json:"baseline_gap"`
	Drain                 Percentiles     `json:"drain"`
	HandoffFailedAttempts int             `json:"handoff_failed_attempts"`
	HandoffCodes          map[string]int  `json:"handoff_codes"`
	RejoinGap             Percentiles     `json:"rejoin_gap"` // a restarted frontend taking its share back
	Rounds                []FailoverRound `json:"rounds"`
}

// ClusterRun is durable ingest through Frontends frontends.
type ClusterRun struct {
	Frontends  int         `json:"frontends"`
	Writers    int         `json:"writers"`
	Requests   int64       `json:"requests"`
	Rows       int64       `json:"rows"`
	Bytes      int64       `json:"bytes"` // Arrow IPC bytes acknowledged
	Seconds    float64     `json:"seconds"`
	MBps       float64     `json:"mb_per_s"`
	RowsPerSec float64     `json:"rows_per_s"`
	Ratio      float64     `json:"ratio_to_1"` // MBps / MBps with one frontend
	Ack        Percentiles `json:"ack_latency"`
	// Forwarded is the share of requests the receiving frontend forwarded
	// to the bucket's leader (strom_forwarded_requests_total).
	Forwarded float64  `json:"forwarded"`
	ObjStore  ObjStore `json:"objstore"`
	// CPU from /proc: seconds of CPU used by the strom processes, the
	// benchmark process (clients and the S3 proxy), its versitygw and
	// PostgreSQL, other processes (whatever else runs on the machine), and
	// the whole machine; MachineUtil is the machine's busy share of all
	// its CPUs during the run.
	StromCPUSeconds    float64 `json:"strom_cpu_s"`
	BenchCPUSeconds    float64 `json:"bench_cpu_s"`
	S3CPUSeconds       float64 `json:"versitygw_cpu_s"`
	PostgresCPUSeconds float64 `json:"postgres_cpu_s"`
	OtherCPUSeconds    float64 `json:"other_cpu_s"`
	MachineCPUSeconds  float64 `json:"machine_cpu_s"`
	MachineUtil        float64 `json:"machine_util"`
	StromCPUPerGB      float64 `json:"strom_cpu_s_per_gb"`
	MachineCPUPerGB    float64 `json:"machine_cpu_s_per_gb"`
}

// Cluster is the result of BenchmarkClusterThroughput.
type Cluster struct {
	Env        Env   `json:"env"`
	Buckets    int   `json:"buckets"`
	Columns    int   `json:"columns"`
	BatchRows  int   `json:"batch_rows"`
	BatchBytes int64 `json:"batch_bytes"`
	// Runs holds the best (fastest) sample of each frontend count, by
	// count; Samples every run in the order measured.
	Runs    []ClusterRun `json:"runs"`
	Samples []ClusterRun `json:"samples"`
}

// TieringCatchUp is tiering a backlog that was written while tiering was
// off: server restart with tiering on → the lake status shows no lag.
type TieringCatchUp struct {
	Rows            int64    `json:"rows"`
	Bytes           int64    `json:"bytes"` // Arrow IPC bytes written
	Seconds         float64  `json:"seconds"`
	RowsPerSec      float64  `json:"rows_per_s"`
	MBps            float64  `json:"mb_per_s"`
	StromCPUSeconds float64  `json:"strom_cpu_s"`     // the strom process, over Seconds
	CoresUsed       float64  `json:"cores_used"`      // StromCPUSeconds / Seconds
	RowsPerCoreSec  float64  `json:"rows_per_core_s"` // Rows / StromCPUSeconds
	ObjStore        ObjStore `json:"objstore"`
}

// TieringFreshness is the lake's lag in time under a steady write load:
// per sample, now − the ack time of the oldest record not yet in the lake
// (0 when every acknowledged record is).
type TieringFreshness struct {
	TargetRowsPerSec int         `json:"target_rows_per_s"`
	BatchRows        int         `json:"batch_rows"`
	Seconds          float64     `json:"seconds"`
	Rows             int64       `json:"rows"`
	AckLatency       Percentiles `json:"ack_latency"`
	SampleEvery      string      `json:"sample_every"`
	Lag              Percentiles `json:"lag"`
	ZeroShare        float64     `json:"zero_share"` // samples with nothing untiered
	Snapshots        int64       `json:"snapshots"`  // distinct snapshot ids seen
}

// Tiering is the result of BenchmarkTiering.
type Tiering struct {
	Env       Env              `json:"env"`
	Buckets   int              `json:"buckets"`
	Columns   int              `json:"columns"`
	BatchRows int              `json:"batch_rows"`
	Interval  string           `json:"tiering_interval"`
	Freshness string           `json:"freshness"`
	CatchUp   TieringCatchUp   `json:"catch_up"`
	Steady    TieringFreshness `json:"steady"`
}

// UnionScan is the result of BenchmarkUnionScan: the whole table read by
// one Scan{union} (lake snapshot + stream tail) against Fetch of every
// bucket from offset 0 (stream only), both Arrow; medians of Reps runs.
type UnionScan struct {
	Env              Env     `json:"env"`
	Buckets          int     `json:"buckets"`
	Columns          int     `json:"columns"`
	Rows             int64   `json:"rows"`
	LakeRows         int64   `json:"lake_rows"`
	TailRows         int64   `json:"tail_rows"`
	Reps             int     `json:"reps"`
	UnionSeconds     float64 `json:"union_seconds"`
	UnionRowsPerSec  float64 `json:"union_rows_per_s"`
	UnionArrowBytes  int64   `json:"union_arrow_bytes"`
	StreamSeconds    float64 `json:"stream_seconds"`
	StreamRowsPerSec float64 `json:"stream_rows_per_s"`
	StreamArrowBytes int64   `json:"stream_arrow_bytes"`
	Ratio            float64 `json:"ratio"` // UnionRowsPerSec / StreamRowsPerSec
}

// UnionScanPK is the result of BenchmarkUnionScanPrimaryKey: the current
// rows of a primary-key table read by one Scan{union} (the lake snapshot,
// equality deletes applied, merged by key with the changelog tail) against
// a plain Scan of the KV index, both Arrow; medians of Reps runs.
type UnionScanPK struct {
	Env              Env     `json:"env"`
	Buckets          int     `json:"buckets"`
	Columns          int     `json:"columns"`
	Rows             int64   `json:"rows"`              // current rows: LakeRows - TailDeletes
	LakeRows         int64   `json:"lake_rows"`         // keys upserted and tiered
	TailUpdates      int64   `json:"tail_updates"`      // keys updated after tiering
	TailDeletes      int64   `json:"tail_deletes"`      // keys deleted after tiering
	TailRecords      int64   `json:"tail_records"`      // changelog records not tiered (GetLakeStatus lag)
	UpsertRowsPerSec float64 `json:"upsert_rows_per_s"` // of the initial load, durable Arrow upserts
	Reps             int     `json:"reps"`
	UnionSeconds     float64 `json:"union_seconds"`
	UnionRowsPerSec  float64 `json:"union_rows_per_s"`
	UnionArrowBytes  int64   `json:"union_arrow_bytes"` // with _bucket, _offset, _timestamp
	KVSeconds        float64 `json:"kv_seconds"`
	KVRowsPerSec     float64 `json:"kv_rows_per_s"`
	KVArrowBytes     int64   `json:"kv_arrow_bytes"`
	Ratio            float64 `json:"ratio"` // UnionRowsPerSec / KVRowsPerSec
}

// OutDir returns $STROM_BENCH_OUT or def, created.
func OutDir(def string) (string, error) {
	dir := os.Getenv(EnvOut)
	if dir == "" {
		dir = def
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return dir, nil
}

// Write stores v as indented JSON in dir/name.
func Write(dir, name string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name), append(b, '\n'), 0o644)
}

// Read loads dir/name into v; a missing file reports ok false.
func Read(dir, name string, v any) (ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if os.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("%s: %w", name, err)
	}
	return true, nil
}
