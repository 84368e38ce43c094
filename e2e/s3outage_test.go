package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/api/gen/strom/v1/stromv1connect"
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
	p := startServer(t, dir, "-catalog.backend", "postgres", "-catalog.postgres.url", testenv.Postgres(t),
		"-objstore.backend", "s3", "-objstore.s3.endpoint", s3.Endpoint, "-objstore.s3.region", s3.Region,
		"-objstore.s3.bucket", s3.Bucket, "-objstore.s3.prefix", s3.Prefix,
		"-objstore.s3.access-key-id", s3.AccessKey, "-objstore.s3.secret-access-key", s3.SecretKey,
		"-frontend.commit-timeout", "1s")
	cli(t, p, "db", "create", "e2e")
	cli(t, p, "table", "create", "e2e.events", "-c", "id STRING NOT NULL", "-c", "v BIGINT", "--buckets", "4", "--bucket-key", "id")

	client := stromv1connect.NewWriteServiceClient(http.DefaultClient, p.url())
	acked := map[string]bool{}
	var mu sync.Mutex
	var outage atomic.Bool       // the S3 server is stopped
	var unavailable atomic.Int64 // appends that failed with unavailable during the outage
	var ackedAfter atomic.Int64  // appends acknowledged after the outage
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		w := &writerLoad{id: fmt.Sprintf("w%d", i)}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 2000; n++ {
				select {
				case <-stop:
					return
				default:
				}
				req := w.nextRequest(10)
				var err error
				for attempt := 0; attempt < 300; attempt++ { // up to ~60s of retries
					var resp *connect.Response[stromv1.AppendResponse]
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					resp, err = client.Append(ctx, connect.NewRequest(req))
					cancel()
					during := outage.Load()
					if err == nil {
						record(t, acked, &mu, req, resp.Msg)
						if !during {
							ackedAfter.Add(1)
						}
						break
					}
					if connect.CodeOf(err) != connect.CodeUnavailable {
						break
					}
					if during {
						unavailable.Add(1)
					}
					time.Sleep(200 * time.Millisecond)
				}
				if err != nil {
					errs <- fmt.Errorf("%s seq %d: %w", w.id, w.seq, err)
					return
				}
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	mu.Lock()
	before := len(acked)
	mu.Unlock()
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
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("writer failed: %v", err)
	}
	if n := unavailable.Load(); n == 0 {
		t.Error("no append failed with unavailable during the outage")
	} else {
		t.Logf("%d appends failed with unavailable during the outage", n)
	}
	if ackedAfter.Load() == 0 {
		t.Error("no append was acknowledged after the outage: the server did not resume")
	}
	waitReady(t, p)

	seen := readAll(t, p, "e2e", "events", 4)
	for id := range acked {
		if seen[id] != 1 {
			t.Errorf("acknowledged row %s present %d times", id, seen[id])
		}
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("row %s present %d times", id, n)
		}
	}
	t.Logf("%d rows acknowledged (%d before the outage, %d appends after it), %d rows stored",
		len(acked), before, ackedAfter.Load(), len(seen))
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
