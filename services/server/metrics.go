package server

import (
	"context"
	"errors"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
)

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
