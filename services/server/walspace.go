package server

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/strom-io/strom/services/wal"
)

// registerWALMetrics exports the WAL's disk space and write failures.
func registerWALMetrics(reg prometheus.Registerer, w *wal.WAL, minFree int64) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "strom_wal_free_bytes", Help: "Bytes available in the WAL's filesystem (measured at most every 100 ms; -1 if unknown).",
		}, func() float64 { return float64(w.Metrics().FreeBytes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "strom_wal_min_free_bytes", Help: "The WAL's free-space watermark (-wal.min-free-bytes): writes are refused below it; 0 disables it.",
		}, func() float64 { return float64(minFree) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "strom_wal_rejected_appends_total", Help: "Write requests refused with resource_exhausted because the WAL's free space was below -wal.min-free-bytes.",
		}, func() float64 { return float64(w.Metrics().SpaceRejections) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "strom_wal_write_errors_total", Help: "WAL writes that failed (e.g. ENOSPC) and were rolled back; their requests failed.",
		}, func() float64 { return float64(w.Metrics().WriteErrors) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "strom_wal_failed", Help: "1 once an fsync error failed the WAL: writes fail until the frontend restarts.",
		}, func() float64 {
			if w.Metrics().Failed {
				return 1
			}
			return 0
		}),
	)
}

// walReadiness is the "wal" check of /readyz. A nearly full disk refuses
// writes but serves reads, and passes (its check names the condition); a
// failed WAL does not.
func walReadiness(w *wal.WAL, opts wal.Options) (check string, ready bool) {
	m := w.Metrics()
	switch {
	case m.Failed:
		return "failed by an I/O error (see the log): writes fail until the frontend restarts", false
	case opts.MinFreeBytes > 0 && m.FreeBytes >= 0 && m.FreeBytes < opts.MinFreeBytes:
		se := &wal.SpaceError{Dir: opts.Dir, Free: m.FreeBytes, Min: opts.MinFreeBytes, Flag: "-wal.min-free-bytes"}
		return "ok for reads; writes refused: " + se.Error(), true
	}
	return "ok", true
}
