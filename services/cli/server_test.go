package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestStartBanner: the ready line comes only once the checks pass, and
// once; before that, after the grace period, waiting lines name the failing
// checks, when they change and at least every interval.
func TestStartBanner(t *testing.T) {
	var out bytes.Buffer
	const ready = "Strom is ready: curl -s http://localhost:9123/readyz"
	b := newStartBanner(&out, ready)
	t0 := b.start
	down := map[string]string{"catalog": "ok", "objstore": "dial tcp 127.0.0.1:1: connect: connection refused"}
	both := map[string]string{"catalog": "timeout", "objstore": "refused", "server": "starting: recovering the WAL and joining the cluster"}
	steps := []struct {
		at     time.Duration
		ready  bool
		checks map[string]string
		want   string // the line printed, or ""
	}{
		{0, false, down, ""},                       // grace period
		{1500 * time.Millisecond, false, down, ""}, // still
		{2 * time.Second, false, down, "Strom is starting: waiting for objstore: dial tcp 127.0.0.1:1: connect: connection refused"},
		{3 * time.Second, false, down, ""}, // the same checks fail: quiet until the interval passed
		{11 * time.Second, false, down, ""},
		{12 * time.Second, false, down, "Strom is starting: waiting for objstore: dial tcp 127.0.0.1:1: connect: connection refused"},
		{12500 * time.Millisecond, false, both, "Strom is starting: waiting for catalog: timeout; objstore: refused; server: starting: recovering the WAL and joining the cluster"},
		{13 * time.Second, true, map[string]string{"catalog": "ok", "objstore": "ok"}, ready},
		{14 * time.Second, false, down, ""}, // announced once; /readyz tells the rest
		{15 * time.Second, true, nil, ""},
	}
	for _, s := range steps {
		out.Reset()
		b.report(t0.Add(s.at), s.ready, s.checks)
		if got := strings.TrimSuffix(out.String(), "\n"); got != s.want {
			t.Errorf("at %v (ready %v): printed %q, want %q", s.at, s.ready, got, s.want)
		}
	}
}
