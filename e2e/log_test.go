package e2e

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/api/gen/strom/v1/stromv1connect"
	"github.com/strom-io/strom/testenv"
)

// pgS3Args are the flags of a server on the test's own PostgreSQL database
// and S3 bucket.
func pgS3Args(t *testing.T) []string {
	return append([]string{"-catalog.backend", "postgres", "-catalog.postgres.url", testenv.Postgres(t)}, s3Args(testenv.S3(t))...)
}

// s3Args are the flags of a server on the S3 bucket s3.
func s3Args(s3 testenv.S3Endpoint) []string {
	return []string{
		"-objstore.backend", "s3", "-objstore.s3.endpoint", s3.Endpoint, "-objstore.s3.region", s3.Region,
		"-objstore.s3.bucket", s3.Bucket, "-objstore.s3.prefix", s3.Prefix,
		"-objstore.s3.access-key-id", s3.AccessKey, "-objstore.s3.secret-access-key", s3.SecretKey,
	}
}

// load is idempotent writers appending batches with durable acks to
// e2e.events, each retrying every unavailable error with the same sequence,
// until finish is called.
type load struct {
	mu    sync.Mutex
	acked map[string]bool
	stop  chan struct{}
	wg    sync.WaitGroup
	errs  chan error
}

// startLoad starts writers; hook, if set, sees every append attempt's
// request and outcome.
func startLoad(t *testing.T, p *process, writers, rows int, hook func(req *stromv1.AppendRequest, err error)) *load {
	client := stromv1connect.NewWriteServiceClient(http.DefaultClient, p.url())
	l := &load{acked: map[string]bool{}, stop: make(chan struct{}), errs: make(chan error, writers)}
	for i := 0; i < writers; i++ {
		w := &writerLoad{id: fmt.Sprintf("w%d", i)}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for n := 0; n < 2000; n++ {
				select {
				case <-l.stop:
					return
				default:
				}
				req := w.nextRequest(rows)
				var err error
				for attempt := 0; attempt < 300; attempt++ { // up to ~60s of retries
					var resp *connect.Response[stromv1.AppendResponse]
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					resp, err = client.Append(ctx, connect.NewRequest(req))
					cancel()
					if hook != nil {
						hook(req, err)
					}
					if err == nil {
						record(t, l.acked, &l.mu, req, resp.Msg)
						break
					}
					if connect.CodeOf(err) != connect.CodeUnavailable {
						break
					}
					time.Sleep(200 * time.Millisecond)
				}
				if err != nil {
					l.errs <- fmt.Errorf("%s seq %d: %w", w.id, w.seq, err)
					return
				}
			}
		}()
	}
	return l
}

// ackedRows is how many rows were acknowledged so far.
func (l *load) ackedRows() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// finish stops the writers and fails the test if one gave up.
func (l *load) finish(t *testing.T) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	close(l.errs)
	for err := range l.errs {
		t.Fatalf("writer failed: %v", err)
	}
}

// checkExactlyOnce reads every bucket of e2e.events and checks that each
// acknowledged row is there once and no row twice.
func checkExactlyOnce(t *testing.T, p *process, acked map[string]bool) {
	t.Helper()
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
	t.Logf("%d rows acknowledged, %d rows stored", len(acked), len(seen))
}

// writerLoad appends batches of rows with unique ids as one idempotent
// writer, recording what was acknowledged, until stop is closed or the
// server fails; it returns the request in flight when it stopped.
type writerLoad struct {
	id      string
	seq     int64
	pending *stromv1.AppendRequest // sent, outcome unknown
}

func (w *writerLoad) nextRequest(rows int) *stromv1.AppendRequest {
	w.seq++
	req := &stromv1.AppendRequest{Database: "e2e", Table: "events", WriterId: w.id, Sequence: w.seq}
	for i := 0; i < rows; i++ {
		req.Rows = append(req.Rows, mustStruct(map[string]any{"id": fmt.Sprintf("%s-%d-%d", w.id, w.seq, i), "v": float64(i)}))
	}
	return req
}

func mustStruct(m map[string]any) *structpb.Struct {
	s, err := structpb.NewStruct(m)
	if err != nil {
		panic(err)
	}
	return s
}

// record notes the acknowledged rows of req, checking that the response
// accounts for every row.
func record(t *testing.T, acked map[string]bool, mu *sync.Mutex, req *stromv1.AppendRequest, resp *stromv1.AppendResponse) {
	mu.Lock()
	defer mu.Unlock()
	n := 0
	for _, o := range resp.GetOffsets() {
		n += int(o.GetCount())
	}
	if n != len(req.GetRows()) {
		t.Errorf("append of %d rows acknowledged %d", len(req.GetRows()), n)
	}
	for _, r := range req.GetRows() {
		acked[r.GetFields()["id"].GetStringValue()] = true
	}
}

// TestKillDuringDurableAppends: kill -9 the server while four idempotent
// writers append with durable acks; restart it; retry what was in flight.
// Every acknowledged row is present exactly once, and every bucket's
// offsets run from 0 without a gap.
func TestKillDuringDurableAppends(t *testing.T) {
	dir := t.TempDir()
	args := append(pgS3Args(t), "-data-dir", filepath.Join(dir, "data"))
	p := startServer(t, dir, args...)
	cli(t, p, "db", "create", "e2e")
	cli(t, p, "table", "create", "e2e.events", "-c", "id STRING NOT NULL", "-c", "v BIGINT", "--buckets", "4", "--bucket-key", "id")

	client := stromv1connect.NewWriteServiceClient(http.DefaultClient, p.url())
	acked := map[string]bool{}
	var mu sync.Mutex
	writers := make([]*writerLoad, 4)
	var wg sync.WaitGroup
	ackedReqs := 0
	for i := range writers {
		w := &writerLoad{id: fmt.Sprintf("w%d", i)}
		writers[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 1000; n++ { // bounded; the kill ends it much sooner
				req := w.nextRequest(20)
				w.pending = req
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				resp, err := client.Append(ctx, connect.NewRequest(req))
				cancel()
				if err != nil {
					return
				}
				record(t, acked, &mu, req, resp.Msg)
				mu.Lock()
				ackedReqs++
				mu.Unlock()
				w.pending = nil
			}
		}()
	}
	// Let some appends commit, then crash the server mid-stream.
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := ackedReqs
		mu.Unlock()
		if n >= 40 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.kill(t)
	wg.Wait()
	if ackedReqs == 0 {
		t.Fatal("no append was acknowledged before the kill")
	}

	p = startServer(t, dir, args...)
	client = stromv1connect.NewWriteServiceClient(http.DefaultClient, p.url())
	for _, w := range writers {
		if w.pending == nil {
			continue
		}
		// The retry of an unknown outcome reuses its sequence: written once.
		var resp *connect.Response[stromv1.AppendResponse]
		var err error
		for attempt := 0; attempt < 50; attempt++ {
			resp, err = client.Append(context.Background(), connect.NewRequest(w.pending))
			if err == nil || connect.CodeOf(err) != connect.CodeUnavailable {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("retry of %s seq %d after restart: %v", w.id, w.pending.GetSequence(), err)
		}
		record(t, acked, &mu, w.pending, resp.Msg)
	}

	checkExactlyOnce(t, p, acked)
	p.stop(t)
}

// readAll fetches every bucket from offset 0 to its end, checks that the
// offsets are contiguous, and counts the rows by id.
func readAll(t *testing.T, p *process, db, table string, buckets int32) map[string]int {
	t.Helper()
	rc := stromv1connect.NewReadServiceClient(http.DefaultClient, p.url())
	seen := map[string]int{}
	for b := int32(0); b < buckets; b++ {
		var offset int64
		var offsets []int64
		for {
			resp, err := rc.Fetch(context.Background(), connect.NewRequest(&stromv1.FetchRequest{
				Database: db, Table: table, Bucket: b, Offset: offset,
			}))
			if err != nil {
				t.Fatalf("fetch bucket %d at %d: %v", b, offset, err)
			}
			for _, row := range resp.Msg.GetRows() {
				seen[row.GetFields()["id"].GetStringValue()]++
				offsets = append(offsets, int64(row.GetFields()["_offset"].GetNumberValue()))
			}
			if resp.Msg.GetNextOffset() >= resp.Msg.GetHighWatermark() {
				break
			}
			offset = resp.Msg.GetNextOffset()
		}
		if !sort.SliceIsSorted(offsets, func(i, j int) bool { return offsets[i] < offsets[j] }) {
			t.Errorf("bucket %d: offsets out of order", b)
		}
		for i, o := range offsets {
			if o != int64(i) {
				t.Fatalf("bucket %d: offset %d at position %d: gap or duplicate", b, o, i)
			}
		}
	}
	return seen
}

// TestCatalogRestartDuringAppends: PostgreSQL restarts while four
// idempotent writers append with durable acks and retry every unavailable
// error with the same sequence. Every writer has an append fail with
// `unavailable` during the outage, and each of those is acknowledged by a
// retry after the restart. Commits whose answer was lost are neither lost
// nor doubled.
func TestCatalogRestartDuringAppends(t *testing.T) {
	pg := testenv.StartPostgres(t)
	args := append([]string{"-catalog.backend", "postgres", "-catalog.postgres.url", pg.URL(), "-frontend.commit-timeout", "1s"}, s3Args(testenv.S3(t))...)
	p := startServer(t, t.TempDir(), args...)
	cli(t, p, "db", "create", "e2e")
	cli(t, p, "table", "create", "e2e.events", "-c", "id STRING NOT NULL", "-c", "v BIGINT", "--buckets", "4", "--bucket-key", "id")

	var (
		mu      sync.Mutex
		down    bool                // PostgreSQL is stopped
		failed  = map[string]bool{} // "writer seq" of appends that failed with unavailable while it was down
		writers = map[string]bool{} // writers with such an append
		retried = map[string]bool{} // writers whose such append was acknowledged later (a commit needs PostgreSQL: after the restart)
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
	pg.Stop(t)
	mu.Lock()
	down = true
	mu.Unlock()
	waitFor(t, time.Minute, "an append of every writer failing with unavailable", count(writers))
	pg.Start(t)
	mu.Lock()
	down = false
	mu.Unlock()
	waitFor(t, time.Minute, "the appends that failed during the outage acknowledged after it", count(retried))
	l.finish(t)
	mu.Lock()
	t.Logf("%d appends failed with unavailable during the outage", len(failed))
	mu.Unlock()
	checkExactlyOnce(t, p, l.acked)
	p.stop(t)
}
