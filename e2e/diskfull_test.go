package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/api/gen/strom/v1/stromv1connect"
	"github.com/strom-io/strom/testenv"
)

// mountTmpfs mounts a tmpfs of size at dir for the test, unmounting it at
// the end (after the servers started later are killed: cleanups run last
// registered first). It needs root (CAP_SYS_ADMIN); it fails, never skips.
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("mounting a %s tmpfs at %s for the disk-full test failed: %v: %s\n"+
			"This test fills a small filesystem with the WAL; run it as root or in a container with CAP_SYS_ADMIN (e.g. docker run --privileged), e.g. sudo -E go test -run TestWALDiskFull ./e2e",
			size, dir, err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			if out2, err2 := exec.Command("umount", "-l", dir).CombinedOutput(); err2 != nil {
				t.Errorf("umount %s: %v: %s; %v: %s", dir, err, out, err2, out2)
			}
		}
	})
}

// diskLoad is idempotent writers appending padded rows with `wal`
// durability to e2e.events on whichever server target names, retrying
// every refused or unavailable append with the same sequence.
type diskLoad struct {
	target    atomic.Pointer[string] // base URL of the current server
	mu        sync.Mutex
	acked     map[string]bool
	lastAck   time.Time
	exhausted atomic.Int64 // appends refused with resource_exhausted
	message   atomic.Pointer[string]
	stop      chan struct{}
	wg        sync.WaitGroup
	errs      chan error
}

func startDiskLoad(t *testing.T, url string, writers, rows, pad int) *diskLoad {
	l := &diskLoad{acked: map[string]bool{}, stop: make(chan struct{}), errs: make(chan error, writers)}
	l.target.Store(&url)
	padding := strings.Repeat("x", pad)
	clients := sync.Map{} // url -> client
	client := func() stromv1connect.WriteServiceClient {
		u := *l.target.Load()
		c, _ := clients.LoadOrStore(u, stromv1connect.NewWriteServiceClient(http.DefaultClient, u))
		return c.(stromv1connect.WriteServiceClient)
	}
	for i := range writers {
		w := &writerLoad{id: fmt.Sprintf("d%d", i)}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				req := w.nextRequest(rows)
				req.Durability = stromv1.Durability_DURABILITY_WAL
				for _, r := range req.Rows {
					r.Fields["pad"] = mustStruct(map[string]any{"p": padding}).Fields["p"]
				}
				deadline := time.Now().Add(45 * time.Second)
				for {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					resp, err := client().Append(ctx, connect.NewRequest(req))
					cancel()
					if err == nil {
						record(t, l.acked, &l.mu, req, resp.Msg)
						l.mu.Lock()
						l.lastAck = time.Now()
						l.mu.Unlock()
						break
					}
					switch connect.CodeOf(err) {
					case connect.CodeResourceExhausted:
						l.exhausted.Add(1)
						msg := err.Error()
						l.message.Store(&msg)
					case connect.CodeUnavailable, connect.CodeDeadlineExceeded, connect.CodeCanceled, connect.CodeUnknown:
						// The server is restarting (connection refused or reset).
					default:
						l.errs <- fmt.Errorf("%s seq %d: %w", w.id, w.seq, err)
						return
					}
					if time.Now().After(deadline) {
						l.errs <- fmt.Errorf("%s seq %d: still failing after 45s: %w", w.id, w.seq, err)
						return
					}
					select {
					case <-l.stop:
						return // outcome unknown: not counted as acknowledged
					case <-time.After(50 * time.Millisecond):
					}
				}
			}
		}()
	}
	return l
}

func (l *diskLoad) ackedRows() (int, time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked), l.lastAck
}

func (l *diskLoad) finish(t *testing.T) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	close(l.errs)
	for err := range l.errs {
		t.Errorf("writer failed: %v", err)
	}
}

// metric returns the value of an unlabelled metric of p.
func metric(t *testing.T, p *process, name string) float64 {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(p.url() + "/metrics")
	if err != nil {
		t.Fatalf("/metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", name, err)
			}
			return f
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

// waitFor polls cond every 50 ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestWALDiskFull fills a 64 MiB tmpfs holding the data directory with the
// server's own WAL: the S3 server is stopped, so segments cannot be flushed
// and the WAL cannot be truncated, while four idempotent writers append
// with `wal` durability. Appends are then refused with resource_exhausted
// and a message naming the directory, free space and watermark; the server
// neither crashes nor corrupts anything. When S3 returns, the WAL is
// flushed and truncated and appends succeed again. The disk is filled a
// second time and the server killed (SIGKILL) while it is full; it
// restarts on the full disk, recovers its WAL and catches up. At the end
// every acknowledged row is stored exactly once, offsets without gaps.
func TestWALDiskFull(t *testing.T) {
	start := time.Now()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	mountTmpfs(t, data, "64m")
	s3srv := testenv.StartS3(t)
	args := append([]string{
		"-catalog.backend", "postgres", "-catalog.postgres.url", testenv.Postgres(t),
		"-data-dir", data, "-cache.dir", filepath.Join(dir, "cache"),
		"-wal.min-free-bytes", strconv.Itoa(16 << 20), "-wal.segment-size", strconv.Itoa(2 << 20),
		"-frontend.commit-timeout", "1s",
	}, s3Args(s3srv.Endpoint(t))...)
	p := startServer(t, dir, args...)
	cli(t, p, "db", "create", "e2e")
	cli(t, p, "table", "create", "e2e.events", "-c", "id STRING NOT NULL", "-c", "v BIGINT", "-c", "pad STRING", "--buckets", "4", "--bucket-key", "id")

	l := startDiskLoad(t, p.url(), 4, 64, 2048) // ~140 KiB per append
	waitFor(t, 10*time.Second, "appends before the outage", func() bool { n, _ := l.ackedRows(); return n > 0 })

	// fill stops S3 and waits until the WAL has filled the disk down to the
	// watermark and every writer is refused.
	fill := func(round int) {
		s3srv.Stop(t)
		waitFor(t, 20*time.Second, "appends refused with resource_exhausted", func() bool {
			_, last := l.ackedRows()
			return l.exhausted.Load() > 0 && time.Since(last) > 500*time.Millisecond
		})
		msg := *l.message.Load()
		for _, want := range []string{"WAL disk nearly full", "free in " + filepath.Join(data, "wal"), "below -wal.min-free-bytes 16 MiB", "writes resume when space is freed"} {
			if !strings.Contains(msg, want) {
				t.Errorf("round %d: resource_exhausted message %q lacks %q", round, msg, want)
			}
		}
		free := metric(t, p, "strom_wal_free_bytes")
		t.Logf("round %d: disk full after %v: %d appends refused, free %.1f MiB; message: %s",
			round, time.Since(start).Round(time.Millisecond), l.exhausted.Load(), free/(1<<20), msg)
		if free >= 16<<20 || free < 0 {
			t.Errorf("round %d: strom_wal_free_bytes %v while writes are refused", round, free)
		}
		if n := metric(t, p, "strom_wal_rejected_appends_total"); n == 0 {
			t.Errorf("round %d: strom_wal_rejected_appends_total is 0", round)
		}
		if _, checks, err := getReadyz(p); err != nil || !strings.Contains(checks["wal"], "writes refused: WAL disk nearly full") {
			t.Errorf("round %d: /readyz wal check %q (%v)", round, checks["wal"], err)
		}
		// Reads go on.
		rc := stromv1connect.NewReadServiceClient(http.DefaultClient, p.url())
		if _, err := rc.Fetch(context.Background(), connect.NewRequest(&stromv1.FetchRequest{Database: "e2e", Table: "events", Bucket: 0})); err != nil && connect.CodeOf(err) != connect.CodeUnavailable {
			t.Errorf("round %d: fetch while the disk is full: %v", round, err)
		}
	}

	// Round 1: S3 returns while the server runs.
	fill(1)
	refused := l.exhausted.Load()
	s3srv.Start(t)
	resumed := time.Now()
	waitFor(t, 20*time.Second, "appends acknowledged after S3 returned", func() bool { _, last := l.ackedRows(); return last.After(resumed) })
	waitFor(t, 10*time.Second, "the WAL truncated", func() bool { return metric(t, p, "strom_wal_free_bytes") > 32<<20 })
	t.Logf("round 1: appends resumed %v after S3 returned; free %.1f MiB", time.Since(resumed).Round(time.Millisecond), metric(t, p, "strom_wal_free_bytes")/(1<<20))

	// Round 2: the server dies while the disk is full and restarts on it.
	l.exhausted.Store(0)
	fill(2)
	if !strings.Contains(p.log(), "disk nearly full") {
		t.Error("the server logged no WARN about the full disk")
	}
	p.kill(t)
	s3srv.Start(t)
	restart := time.Now()
	p = startServer(t, dir, args...)
	url := p.url()
	l.target.Store(&url)
	waitFor(t, 20*time.Second, "appends acknowledged after the restart", func() bool { _, last := l.ackedRows(); return last.After(restart) })
	t.Logf("round 2: restarted on the full disk and appending again after %v", time.Since(restart).Round(time.Millisecond))
	if strings.Contains(p.log(), "level=ERROR") {
		t.Errorf("errors logged by the restarted server:\n%s", p.log())
	}

	l.finish(t)
	// `wal` acks precede the commit: wait until readers see every row.
	waitFor(t, 10*time.Second, "every acknowledged row committed", func() bool {
		seen := readAll(t, p, "e2e", "events", 4)
		for id := range l.acked {
			if seen[id] == 0 {
				return false
			}
		}
		return true
	})
	checkExactlyOnce(t, p, l.acked)
	t.Logf("%d appends refused in round 1, %d in round 2; total %v", refused, l.exhausted.Load(), time.Since(start).Round(time.Millisecond))
	p.stop(t)
}

// TestWALDiskFullNoWatermark: with the watermark disabled
// (-wal.min-free-bytes 0) the WAL really runs out of space (ENOSPC). The
// failed writes are rolled back and refused with resource_exhausted naming
// the cause; the server neither crashes nor fails its WAL, and when S3
// returns it catches up. Every acknowledged row is stored exactly once.
func TestWALDiskFullNoWatermark(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	mountTmpfs(t, data, "32m")
	s3srv := testenv.StartS3(t)
	args := append([]string{
		"-catalog.backend", "postgres", "-catalog.postgres.url", testenv.Postgres(t),
		"-data-dir", data, "-cache.dir", filepath.Join(dir, "cache"),
		"-wal.min-free-bytes", "0", "-wal.segment-size", strconv.Itoa(2 << 20),
		"-frontend.commit-timeout", "1s",
	}, s3Args(s3srv.Endpoint(t))...)
	p := startServer(t, dir, args...)
	cli(t, p, "db", "create", "e2e")
	cli(t, p, "table", "create", "e2e.events", "-c", "id STRING NOT NULL", "-c", "v BIGINT", "-c", "pad STRING", "--buckets", "4", "--bucket-key", "id")
	l := startDiskLoad(t, p.url(), 4, 64, 2048)
	waitFor(t, 10*time.Second, "appends before the outage", func() bool { n, _ := l.ackedRows(); return n > 0 })

	s3srv.Stop(t)
	waitFor(t, 20*time.Second, "appends refused with resource_exhausted", func() bool { return l.exhausted.Load() > 0 })
	msg := *l.message.Load()
	for _, want := range []string{"WAL disk full", "no space left on device", "rolled back", "writes resume when space is freed"} {
		if !strings.Contains(msg, want) {
			t.Errorf("resource_exhausted message %q lacks %q", msg, want)
		}
	}
	t.Logf("message: %s", msg)
	time.Sleep(time.Second) // keep hitting the full disk
	if n := metric(t, p, "strom_wal_write_errors_total"); n == 0 {
		t.Error("strom_wal_write_errors_total is 0")
	}
	if n := metric(t, p, "strom_wal_failed"); n != 0 {
		t.Error("ENOSPC failed the WAL")
	}
	s3srv.Start(t)
	resumed := time.Now()
	waitFor(t, 20*time.Second, "appends acknowledged after S3 returned", func() bool { _, last := l.ackedRows(); return last.After(resumed) })
	t.Logf("appends resumed %v after S3 returned", time.Since(resumed).Round(time.Millisecond))
	l.finish(t)
	waitFor(t, 10*time.Second, "every acknowledged row committed", func() bool {
		seen := readAll(t, p, "e2e", "events", 4)
		for id := range l.acked {
			if seen[id] == 0 {
				return false
			}
		}
		return true
	})
	checkExactlyOnce(t, p, l.acked)
	p.stop(t)
}
