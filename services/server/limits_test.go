package server

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
)

func TestRateLimiter(t *testing.T) {
	l := newRateLimiter(HTTPConfig{RateLimit: 10, RateLimitBurst: 3}, clientKey, prometheus.NewRegistry())
	now := time.Now()
	l.now = func() time.Time { return now }
	ctx := context.Background()
	a := connect.Peer{Addr: "10.0.0.1:5000"}
	aOtherPort := connect.Peer{Addr: "10.0.0.1:6000"}
	b := connect.Peer{Addr: "10.0.0.2:5000"}

	for i := range 3 {
		if err := l.allow(ctx, a); err != nil {
			t.Fatalf("call %d within the burst: %v", i, err)
		}
	}
	err := l.allow(ctx, aOtherPort) // same IP: same client
	if connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("call over the burst: %v, want resource_exhausted", err)
	}
	for _, part := range []string{"address 10.0.0.1", "10 calls per second", "bursts of 3", "-server.rate-limit", "retry in 100ms"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("message %q does not contain %q", err, part)
		}
	}
	var ce *connect.Error
	if !errors.As(err, &ce) {
		t.Fatal(err)
	}
	if got := ce.Meta().Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After %q, want 1", got)
	}
	var hint time.Duration
	for _, d := range ce.Details() {
		if v, err := d.Value(); err == nil {
			if ri, ok := v.(*errdetails.RetryInfo); ok {
				hint = ri.GetRetryDelay().AsDuration()
			}
		}
	}
	if hint != 100*time.Millisecond {
		t.Errorf("RetryInfo delay %s, want 100ms", hint)
	}
	// A refused call takes no token: after the hinted wait, one call passes.
	if err := l.allow(ctx, b); err != nil {
		t.Fatalf("another client: %v", err)
	}
	now = now.Add(100 * time.Millisecond)
	if err := l.allow(ctx, a); err != nil {
		t.Fatalf("after the retry hint: %v", err)
	}
	if err := l.allow(ctx, a); err == nil {
		t.Fatal("second call after one token refilled passed")
	}

	// An authenticated client is limited by its name, wherever it calls from.
	named := withClientID(ctx, "etl")
	for i := range 3 {
		if err := l.allow(named, connect.Peer{Addr: "10.0.1." + strconv.Itoa(i+1) + ":1"}); err != nil {
			t.Fatalf("named call %d: %v", i, err)
		}
	}
	if err := l.allow(named, b); err == nil || !strings.Contains(err.Error(), `client "etl"`) {
		t.Fatalf("named client over the burst: %v", err)
	}
}

// TestRateLimiterForgetsClients keeps memory bounded: only the most
// recently seen clients keep a limiter.
func TestRateLimiterForgetsClients(t *testing.T) {
	l := newRateLimiter(HTTPConfig{RateLimit: 1, RateLimitBurst: 1}, clientKey, prometheus.NewRegistry())
	ctx := context.Background()
	for i := range rateLimitClients + 100 {
		_ = l.allow(withClientID(ctx, "c"+strconv.Itoa(i)), connect.Peer{})
	}
	if n := l.clients.Len(); n != rateLimitClients {
		t.Fatalf("%d limiters kept, want %d", n, rateLimitClients)
	}
}

func TestValidateLimits(t *testing.T) {
	for _, c := range []struct {
		cfg  HTTPConfig
		want string
	}{
		{HTTPConfig{}, ""},
		{HTTPConfig{RateLimit: 5, RateLimitBurst: 1}, ""},
		{HTTPConfig{RateLimit: -1}, "server.rate_limit"},
		{HTTPConfig{RateLimit: 5}, "server.rate_limit_burst"},
	} {
		err := c.cfg.validateLimits()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%+v: %v", c.cfg, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%+v: %v, want an error naming %s", c.cfg, err, c.want)
		}
	}
	if newRateLimiter(HTTPConfig{}, clientKey, prometheus.NewRegistry()) != nil {
		t.Error("a zero rate limit built a limiter")
	}
}
