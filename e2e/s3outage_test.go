package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/testenv"
)

// TestObjectStoreOutageDuringAppends: the S3 server is down while four
// idempotent writers append with durable acks and retry every unavailable
// error with the same sequence; it stays down until /readyz has named the
// object store and every writer has had an append fail with `unavailable`.
// Afterwards the server resumes by itself: each of those appends is
// acknowledged by a retry, and no acknowledged row is lost or doubled.
func TestObjectStoreOutageDuringAppends(t *testing.T) {
	s3srv := testenv.StartS3(t)
	s3 := s3srv.Endpoint(t)
	dir := t.TempDir()
	args := append([]string{"-catalog.backend", "postgres", "-catalog.postgres.url", testenv.Postgres(t), "-frontend.commit-timeout", "1s"}, s3Args(s3)...)
	p := startServer(t, dir, args...)
	cli(t, p, "db", "create", "e2e")
	cli(t, p, "table", "create", "e2e.events", "-c", "id STRING NOT NULL", "-c", "v BIGINT", "--buckets", "4", "--bucket-key", "id")

	var (
		mu      sync.Mutex
		down    bool                // the S3 server is stopped
		failed  = map[string]bool{} // "writer seq" of appends that failed with unavailable while it was down
		writers = map[string]bool{} // writers with such an append
		retried = map[string]bool{} // writers whose such append was acknowledged later (a flush needs S3: after the outage)
	)
	count := func(m map[string]bool) func() bool {
		return func() bool { mu.Lock(); defer mu.Unlock(); return len(m) == 4 }
	}
	l := startLoad(t, p, 4, 10, func(req *stromv1.AppendRequest, err error) {
		key := fmt.Sprintf("%s %d", req.GetWriterId(), req.GetSequence())
		mu.Lock()
		defer mu.Unlock()
		switch {
		case down && connect.CodeOf(err) == connect.CodeUnavailable:
			failed[key] = true
			writers[req.GetWriterId()] = true
		case err == nil && failed[key]:
			retried[req.GetWriterId()] = true
		}
	})
	waitFor(t, time.Minute, "an acknowledged append of every writer", func() bool { return l.ackedRows() >= 4*10 })
	before := l.ackedRows()

	s3srv.Stop(t)
	outageStart := time.Now()
	mu.Lock()
	down = true
	mu.Unlock()
	// /readyz names the object store as not ready.
	var readyz string
	waitFor(t, time.Minute, "/readyz to report the object store as not ready", func() bool {
		code, checks, err := getReadyz(p)
		if err != nil {
			t.Fatalf("/readyz during outage: %v", err)
		}
		readyz = checks["objstore"]
		return code == http.StatusServiceUnavailable && readyz != "ok" && readyz != ""
	})
	t.Logf("/readyz during outage: objstore: %s", readyz)
	waitFor(t, time.Minute, "an append of every writer failing with unavailable", count(writers))
	s3srv.Start(t)
	mu.Lock()
	down = false
	mu.Unlock()
	t.Logf("S3 server down for %v", time.Since(outageStart).Round(time.Millisecond))
	waitFor(t, time.Minute, "the appends that failed during the outage acknowledged after it", count(retried))
	l.finish(t)
	waitReady(t, p)

	checkExactlyOnce(t, p, l.acked)
	mu.Lock()
	t.Logf("%d rows acknowledged before the outage, %d appends failed with unavailable during it", before, len(failed))
	mu.Unlock()
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
