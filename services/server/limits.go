package server

import (
	"context"
	"flag"
	"fmt"
	"math"
	"net"
	"strconv"
	"time"

	"connectrpc.com/connect"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/durationpb"
)

// rateLimitClients bounds the clients whose rate limiters are kept; the
// least recently seen is forgotten first. A forgotten client starts again
// with a full burst, which is what an idle client's limiter holds anyway.
const rateLimitClients = 10000

// registerLimitFlags registers the per-client limits under prefix.
func (c *HTTPConfig) registerLimitFlags(prefix string, f *flag.FlagSet) {
	f.Float64Var(&c.RateLimit, prefix+"rate-limit", 0, "API calls per second each client may make (Connect, gRPC and gRPC-Web; a stream counts once), 0 for no limit. A client is its authenticated token when authentication is on, else its IP address (behind a load balancer: the balancer's, unless it keeps the client's). Calls over the limit fail with resource_exhausted and a retry hint.")
	f.IntVar(&c.RateLimitBurst, prefix+"rate-limit-burst", 100, "API calls a client may make at once above -server.rate-limit before it is held to that rate.")
}

// validateLimits checks the per-client limits.
func (c *HTTPConfig) validateLimits() error {
	switch {
	case c.RateLimit < 0 || math.IsNaN(c.RateLimit) || math.IsInf(c.RateLimit, 0):
		return fmt.Errorf("server.rate_limit: must be 0 (off) or a positive number of calls per second, got %g", c.RateLimit)
	case c.RateLimit > 0 && c.RateLimitBurst < 1:
		return fmt.Errorf("server.rate_limit_burst: must be at least 1 with server.rate_limit, got %d", c.RateLimitBurst)
	}
	return nil
}

// clientIDKey is the context key of the authenticated client's name.
type clientIDKey struct{}

// withClientID records the authenticated client's name in ctx, for the
// per-client limits. Authentication sets it; interceptors that read it must
// come after the one that sets it.
func withClientID(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, clientIDKey{}, name)
}

// clientKey names the client of a call for the per-client limits: its
// authenticated name when set in ctx (withClientID), else the IP address it
// connects from.
func clientKey(ctx context.Context, peer connect.Peer) string {
	if name, ok := ctx.Value(clientIDKey{}).(string); ok && name != "" {
		return "client " + strconv.Quote(name)
	}
	host, _, err := net.SplitHostPort(peer.Addr)
	if err != nil {
		host = peer.Addr
	}
	return "address " + host
}

// rateLimiter is a Connect interceptor that holds every client to a token
// bucket of limit calls per second and burst calls at once. Unary calls and
// the start of streams each take one token.
type rateLimiter struct {
	limit    rate.Limit
	burst    int
	key      func(context.Context, connect.Peer) string
	clients  *lru.Cache[string, *rate.Limiter]
	rejected prometheus.Counter
	now      func() time.Time
}

var _ connect.Interceptor = (*rateLimiter)(nil)

// newRateLimiter returns the limiter cfg asks for, or nil when off.
func newRateLimiter(cfg HTTPConfig, key func(context.Context, connect.Peer) string, reg prometheus.Registerer) *rateLimiter {
	if cfg.RateLimit <= 0 {
		return nil
	}
	clients, err := lru.New[string, *rate.Limiter](rateLimitClients)
	if err != nil {
		panic(err) // only for a size < 1
	}
	l := &rateLimiter{
		limit: rate.Limit(cfg.RateLimit), burst: cfg.RateLimitBurst, key: key, clients: clients, now: time.Now,
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strom_api_rate_limited_total",
			Help: "API calls refused with resource_exhausted because their client was over -server.rate-limit.",
		}),
	}
	reg.MustRegister(l.rejected)
	return l
}

// limiter returns the client's limiter, creating it on first sight.
func (l *rateLimiter) limiter(key string) *rate.Limiter {
	if lim, ok := l.clients.Get(key); ok {
		return lim
	}
	lim := rate.NewLimiter(l.limit, l.burst)
	if prev, ok, _ := l.clients.PeekOrAdd(key, lim); ok {
		return prev
	}
	return lim
}

// allow takes a token for the client of the call, or returns a
// resource_exhausted error that says when to retry.
func (l *rateLimiter) allow(ctx context.Context, peer connect.Peer) error {
	key := l.key(ctx, peer)
	now := l.now()
	r := l.limiter(key).ReserveN(now, 1)
	wait := r.DelayFrom(now)
	if r.OK() && wait == 0 {
		return nil
	}
	r.CancelAt(now)
	l.rejected.Inc()
	wait = max(wait, time.Millisecond)
	err := connect.NewError(connect.CodeResourceExhausted, fmt.Errorf(
		"rate limit: %s is over %g calls per second with bursts of %d (-server.rate-limit, -server.rate-limit-burst); retry in %s",
		key, float64(l.limit), l.burst, wait.Round(time.Millisecond)))
	if d, derr := connect.NewErrorDetail(&errdetails.RetryInfo{RetryDelay: durationpb.New(wait)}); derr == nil {
		err.AddDetail(d)
	}
	err.Meta().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
	return err
}

// WrapUnary limits unary calls.
func (l *rateLimiter) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if err := l.allow(ctx, req.Peer()); err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

// WrapStreamingClient leaves client streams alone.
func (l *rateLimiter) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

// WrapStreamingHandler limits the start of streams.
func (l *rateLimiter) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		if err := l.allow(ctx, conn.Peer()); err != nil {
			return err
		}
		return next(ctx, conn)
	}
}

// limitInterceptors returns the interceptors of the per-client limits, to
// run after authentication (which names the client).
func limitInterceptors(l *rateLimiter) []connect.Interceptor {
	if l == nil {
		return nil
	}
	return []connect.Interceptor{l}
}
