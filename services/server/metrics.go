package server

import (
	"context"
	"errors"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/services/lease"
	"github.com/strom-io/strom/services/readsvc"
	"github.com/strom-io/strom/services/wal"
	"github.com/strom-io/strom/services/writer"
	"github.com/strom-io/strom/tiering"
)

// writePathMetrics turns writer and WAL events into Prometheus metrics.
type writePathMetrics struct {
	flushes       *prometheus.CounterVec
	flushBytes    prometheus.Counter
	flushRows     prometheus.Counter
	flushDuration prometheus.Histogram
	walBatches    prometheus.Counter
	walRecords    prometheus.Counter
	walBytes      prometheus.Counter
	walFsync      prometheus.Histogram
}

func newWritePathMetrics(reg prometheus.Registerer) *writePathMetrics {
	m := &writePathMetrics{
		flushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strom_writer_flushes_total", Help: "Segment flush attempts by result (committed or failed).",
		}, []string{"result"}),
		flushBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strom_writer_flushed_bytes_total", Help: "Bytes of committed segment objects.",
		}),
		flushRows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strom_writer_flushed_rows_total", Help: "Rows in committed segment objects.",
		}),
		flushDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "strom_writer_flush_duration_seconds", Help: "Segment upload plus catalog commit time.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		walBatches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strom_wal_group_commits_total", Help: "WAL group commits (one write and one fsync each).",
		}),
		walRecords: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strom_wal_records_total", Help: "Records appended to the WAL.",
		}),
		walBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strom_wal_written_bytes_total", Help: "Bytes written to the WAL, headers included.",
		}),
		walFsync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "strom_wal_fsync_duration_seconds", Help: "WAL fsync latency.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14),
		}),
	}
	m.flushes.WithLabelValues("committed")
	m.flushes.WithLabelValues("failed")
	reg.MustRegister(m.flushes, m.flushBytes, m.flushRows, m.flushDuration, m.walBatches, m.walRecords, m.walBytes, m.walFsync)
	return m
}

func (m *writePathMetrics) onFlush(f writer.FlushInfo) {
	if f.Err != nil {
		m.flushes.WithLabelValues("failed").Inc()
		return
	}
	m.flushes.WithLabelValues("committed").Inc()
	m.flushBytes.Add(float64(f.Bytes))
	m.flushRows.Add(float64(f.Rows))
	m.flushDuration.Observe(f.Duration.Seconds())
}

func (m *writePathMetrics) onWALCommit(c wal.CommitInfo) {
	m.walBatches.Inc()
	m.walRecords.Add(float64(c.Records))
	m.walBytes.Add(float64(c.Bytes))
	m.walFsync.Observe(c.SyncDuration.Seconds())
}

// apiMetrics counts API requests by procedure and Connect code.
type apiMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newAPIMetrics(reg prometheus.Registerer) *apiMetrics {
	m := &apiMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strom_api_requests_total",
			Help: "API requests by procedure and result code.",
		}, []string{"procedure", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "strom_api_request_duration_seconds",
			Help:    "API request latency by procedure.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 9),
		}, []string{"procedure"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

// interceptor records every unary call. A cancelled call is counted with
// code "canceled" but is not a server failure.
func (m *apiMetrics) interceptor() connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			start := time.Now()
			resp, err := next(ctx, req)
			proc := req.Spec().Procedure
			m.duration.WithLabelValues(proc).Observe(time.Since(start).Seconds())
			code := "ok"
			if err != nil {
				code = connect.CodeUnknown.String()
				var ce *connect.Error
				if errors.As(err, &ce) {
					code = ce.Code().String()
				}
			}
			m.requests.WithLabelValues(proc, code).Inc()
			return resp, err
		}
	}
}

// clusterMetrics count bucket leaderships, their changes and takeover
// times, and forwarded requests.
type clusterMetrics struct {
	changes      *prometheus.CounterVec
	renewals     *prometheus.CounterVec
	takeover     prometheus.Histogram
	forwarded    *prometheus.CounterVec
	handoffWaits prometheus.Counter

	tieredRows   prometheus.Counter
	tieredBytes  prometheus.Counter
	tierRounds   *prometheus.CounterVec
	tierLag      prometheus.Histogram
	tierDuration prometheus.Histogram
}

func newClusterMetrics(reg prometheus.Registerer) *clusterMetrics {
	m := &clusterMetrics{
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strom_bucket_leadership_changes_total",
			Help: "Bucket leaderships this frontend acquired, released (handoff, shutdown), lost to fencing, or ended because the table was dropped.",
		}, []string{"change"}),
		renewals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strom_bucket_lease_renewals_total",
			Help: "Bucket lease renewals by result: renewed, fenced (another frontend took the bucket), dropped (the table no longer exists) or failed (retried).",
		}, []string{"result"}),
		takeover: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "strom_bucket_takeover_duration_seconds",
			Help:    "Time to take a bucket over: lease, log position, idempotent writers, KV snapshot restore and changelog replay.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}),
		forwarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strom_forwarded_requests_total",
			Help: "Requests forwarded to the bucket's leader, by procedure and outcome (ok or a Connect code).",
		}, []string{"procedure", "outcome"}),
		handoffWaits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strom_bucket_handoff_waits_total",
			Help: "Requests (or parts of one) that reached a bucket while this frontend handed it over, and waited for the handoff to end before going to the next leader.",
		}),
	}
	m.tieredRows = prometheus.NewCounter(prometheus.CounterOpts{Name: "strom_tiering_rows_total", Help: "Rows tiered into the lake."})
	m.tieredBytes = prometheus.NewCounter(prometheus.CounterOpts{Name: "strom_tiering_arrow_bytes_total", Help: "Uncompressed Arrow bytes tiered into the lake."})
	m.tierRounds = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strom_tiering_rounds_total", Help: "Tiering rounds of a table by result (committed or failed)."}, []string{"result"})
	m.tierLag = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "strom_tiering_lag_seconds", Help: "How far the lake was behind the stream when a round started: now minus the commit time of its oldest record.",
		Buckets: prometheus.ExponentialBuckets(0.5, 2, 14),
	})
	m.tierDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "strom_tiering_round_duration_seconds", Help: "Time of one table's tiering round: read, Parquet, Iceberg commit, catalog record.",
		Buckets: prometheus.ExponentialBuckets(0.05, 2, 14),
	})
	for _, c := range lease.Changes {
		m.changes.WithLabelValues(string(c))
	}
	for _, r := range []string{"renewed", "fenced", "dropped", "failed"} {
		m.renewals.WithLabelValues(r)
	}
	reg.MustRegister(m.changes, m.renewals, m.takeover, m.forwarded, m.handoffWaits, m.tieredRows, m.tieredBytes, m.tierRounds, m.tierLag, m.tierDuration)
	return m
}

func (m *clusterMetrics) onTier(st tiering.TierStats) {
	if st.Err != nil {
		m.tierRounds.WithLabelValues("failed").Inc()
		return
	}
	m.tierRounds.WithLabelValues("committed").Inc()
	m.tieredRows.Add(float64(st.Rows))
	m.tieredBytes.Add(float64(st.Bytes))
	m.tierLag.Observe(st.Lag.Seconds())
	m.tierDuration.Observe(st.Duration.Seconds())
}

func (m *clusterMetrics) onHandoffWait(catalog.BucketID) { m.handoffWaits.Inc() }

func (m *clusterMetrics) onLeaseChange(c lease.Change) { m.changes.WithLabelValues(string(c)).Inc() }

func (m *clusterMetrics) onLeaseRenew(_ catalog.BucketID, err error) {
	result := "renewed"
	switch {
	case errors.Is(err, catalog.ErrFenced):
		result = "fenced"
	case errors.Is(err, catalog.ErrNotFound):
		result = "dropped"
	case err != nil:
		result = "failed"
	}
	m.renewals.WithLabelValues(result).Inc()
}

func (m *clusterMetrics) onTakeover(_ catalog.BucketID, took time.Duration) {
	m.takeover.Observe(took.Seconds())
}

func (m *clusterMetrics) onForward(procedure, outcome string) {
	m.forwarded.WithLabelValues(procedure, outcome).Inc()
}

// leaderships exports the number of buckets this frontend leads.
func (m *clusterMetrics) leaderships(reg prometheus.Registerer, k *lease.Keeper) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "strom_bucket_leaderships",
		Help: "Buckets whose lease this frontend holds.",
	}, func() float64 { return float64(k.Held()) }))
}

// scanMetrics turn readsvc's scan events into metrics: rows and pages
// sent, and per scan the most rows it held at once (a page and the batch
// being cut into pages), by kind of scan.
type scanMetrics struct {
	rows  *prometheus.CounterVec
	pages *prometheus.CounterVec
	held  *prometheus.HistogramVec
}

func newScanMetrics(reg prometheus.Registerer) *scanMetrics {
	m := &scanMetrics{
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strom_read_scan_rows_total", Help: "Rows sent by Scan and ScanStream, by kind of scan (kv, union_log, union_pk).",
		}, []string{"kind"}),
		pages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strom_read_scan_pages_total", Help: "Pages sent by Scan and ScanStream, by kind of scan.",
		}, []string{"kind"}),
		held: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "strom_read_scan_held_rows", Help: "Per Scan or ScanStream call, the most rows it held at once: the page it filled and the batch it cut into pages.",
			Buckets: prometheus.ExponentialBuckets(16, 4, 9),
		}, []string{"kind"}),
	}
	for _, k := range []string{readsvc.ScanKV, readsvc.ScanUnionLog, readsvc.ScanUnionPK} {
		m.rows.WithLabelValues(k)
		m.pages.WithLabelValues(k)
		m.held.WithLabelValues(k)
	}
	reg.MustRegister(m.rows, m.pages, m.held)
	return m
}

func (m *scanMetrics) onScan(i readsvc.ScanInfo) {
	if i.Kind == "" {
		return // refused before it read anything
	}
	m.rows.WithLabelValues(i.Kind).Add(float64(i.Rows))
	m.pages.WithLabelValues(i.Kind).Add(float64(i.Pages))
	m.held.WithLabelValues(i.Kind).Observe(float64(i.HeldRows))
}
