package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/strom-io/strom/testenv"
)

// TestObjectStoreOutageDuringAppends: the S3 server is down for 10s while
// four idempotent writers append with durable acks and retry every
// unavailable error with the same sequence. During the outage appends fail
// with `unavailable` and /readyz names the object store; afterwards the
// server resumes by itself, and no acknowledged row is lost or doubled.
func TestObjectStoreOutageDuringAppends(t *testing.T) {
	s3srv := testenv.StartS3(t)
	s3 := s3srv.Endpoint(t)
	dir := t.TempDir()
	args := append([]string{"-catalog.backend", "postgres", "-catalog.postgres.url", testenv.Postgres(t), "-frontend.commit-timeout", "1s"}, s3Args(s3)...)
	p := startServer(t, dir, args...)
	cli(t, p, "db", "create", "e2e")
	cli(t, p, "table", "create", "e2e.events", "-c", "id STRING NOT NULL", "-c", "v BIGINT", "--buckets", "4", "--bucket-key", "id")

	var outage atomic.Bool       // the S3 server is stopped
	var unavailable atomic.Int64 // appends that failed with unavailable during the outage
	var ackedAfter atomic.Int64  // appends acknowledged after the outage
	l := startLoad(t, p, 4, 10, func(err error) {
		during := outage.Load()
		switch {
		case err == nil && !during:
			ackedAfter.Add(1)
		case during && connect.CodeOf(err) == connect.CodeUnavailable:
			unavailable.Add(1)
		}
	})
	time.Sleep(1500 * time.Millisecond)
	before := l.ackedRows()
	ackedAfter.Store(0) // count only appends after the outage
	if before == 0 {
		t.Error("no append was acknowledged before the outage")
	}

	s3srv.Stop(t)
	outageStart := time.Now()
	outage.Store(true)
	// /readyz names the object store as not ready.
	var readyz string
	for readyz == "" && time.Since(outageStart) < 8*time.Second {
		if code, checks, err := getReadyz(p); err != nil {
			t.Errorf("/readyz during outage: %v", err)
			break
		} else if code == http.StatusServiceUnavailable && checks["objstore"] != "ok" && checks["objstore"] != "" {
			readyz = checks["objstore"]
		} else {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if readyz == "" {
		t.Error("/readyz did not report the object store as not ready during the outage")
	} else {
		t.Logf("/readyz during outage: objstore: %s", readyz)
	}
	time.Sleep(10*time.Second - time.Since(outageStart))
	outage.Store(false) // a failure racing with this is not counted
	s3srv.Start(t)
	t.Logf("S3 server down for %v", time.Since(outageStart).Round(time.Millisecond))
	time.Sleep(3 * time.Second)
	l.finish(t)
	if n := unavailable.Load(); n == 0 {
		t.Error("no append failed with unavailable during the outage")
	} else {
		t.Logf("%d appends failed with unavailable during the outage", n)
	}
	if ackedAfter.Load() == 0 {
		t.Error("no append was acknowledged after the outage: the server did not resume")
	}
	waitReady(t, p)

	checkExactlyOnce(t, p, l.acked)
	t.Logf("%d rows acknowledged before the outage, %d appends after it", before, ackedAfter.Load())
	p.stop(t)
}

// getReadyz returns the status code of /readyz and its checks.
func getReadyz(p *process) (int, map[string]string, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(p.url() + "/readyz")
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, err
	}
	var r struct {
		Checks map[string]string `json:"checks"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return 0, nil, fmt.Errorf("%d %s: %w", resp.StatusCode, body, err)
	}
	return resp.StatusCode, r.Checks, nil
}

// listeningAddr matches the log line with the API's address, printed before
// the server is ready.
var listeningAddr = regexp.MustCompile(`msg="strom server listening" addr=(\S+)`)

// TestStartBannerWaitsForObjectStore: with its object store down, `strom
// server` does not print its ready line (while /readyz answers not ready)
// but says what it waits for, naming the object store; it prints the ready
// line once the store is back.
func TestStartBannerWaitsForObjectStore(t *testing.T) {
	s3srv := testenv.StartS3(t)
	s3 := s3srv.Endpoint(t)
	s3srv.Stop(t)
	dir := t.TempDir()
	args := append([]string{"-catalog.backend", "postgres", "-catalog.postgres.url", testenv.Postgres(t)}, s3Args(s3)...)
	p, readyc := launchServer(t, dir, http.DefaultClient, args...)

	waiting := regexp.MustCompile(`Strom is starting: waiting for (.*; )?objstore: \S`)
	deadline := time.Now().Add(60 * time.Second)
	for !waiting.MatchString(p.log()) {
		select {
		case <-p.exited:
			t.Fatalf("strom server exited: %v", p.err)
		case m := <-readyc:
			t.Fatalf("strom server printed its ready line (%v) with the object store down", m)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no line saying the server waits for the object store within 60s")
		}
	}
	m := listeningAddr.FindStringSubmatch(p.log())
	if m == nil {
		t.Fatal("no log line with the server's address")
	}
	p.addr = m[1]
	code, checks, err := getReadyz(p)
	if err != nil || code != http.StatusServiceUnavailable || checks["objstore"] == "ok" {
		t.Fatalf("/readyz with the object store down: %d %v %v; want 503 naming objstore", code, checks, err)
	}
	select {
	case m := <-readyc:
		t.Fatalf("strom server printed its ready line (%v) while /readyz said not ready", m)
	default:
	}
	for _, line := range strings.Split(p.log(), "\n") {
		if strings.HasPrefix(line, "Strom is starting:") {
			t.Logf("banner: %s", line)
			break
		}
	}

	s3srv.Start(t)
	select {
	case m := <-readyc:
		if m[1] != p.addr {
			t.Errorf("ready line names %s, the server listens on %s", m[1], p.addr)
		}
	case <-p.exited:
		t.Fatalf("strom server exited: %v", p.err)
	case <-time.After(60 * time.Second):
		t.Fatal("no ready line within 60s of the object store coming back")
	}
	if code, checks, err := getReadyz(p); err != nil || code != http.StatusOK {
		t.Errorf("/readyz after the ready line: %d %v %v", code, checks, err)
	}
	p.stop(t)
}
