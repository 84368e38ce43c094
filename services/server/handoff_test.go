package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/testenv"
)

// holdingProxy passes requests on to an S3 server; while it holds, every
// PUT (a segment upload) waits until it is released: an object store that
// stalls, to stretch a flush, and so a handoff, as long as a test needs.
type holdingProxy struct {
	url  string
	mu   sync.Mutex
	gate chan struct{} // non-nil while holding; closed by release
}

func startHoldingProxy(t *testing.T, endpoint string) *holdingProxy {
	t.Helper()
	target, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	p := &holdingProxy{}
	// The client signs the Host header, so it is passed on unchanged.
	rp := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			p.mu.Lock()
			gate := p.gate
			p.mu.Unlock()
			if gate != nil {
				select {
				case <-gate:
				case <-r.Context().Done():
					return
				}
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.url = srv.URL
	return p
}

func (p *holdingProxy) hold() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gate == nil {
		p.gate = make(chan struct{})
	}
}

func (p *holdingProxy) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gate != nil {
		close(p.gate)
		p.gate = nil
	}
}

var handoffWaits = regexp.MustCompile(`(?m)^strom_bucket_handoff_waits_total (\d+)$`)

// handoffWaitsOf reads strom_bucket_handoff_waits_total from the frontend at base;
// 0 when it cannot.
func handoffWaitsOf(base string) int {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0
	}
	m := handoffWaits.FindSubmatch(body)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// proxiedNodes starts frontends that share one PostgreSQL catalog and one
// S3 bucket, each reaching the S3 server through its own holdingProxy.
type proxiedNodes struct {
	t       *testing.T
	pg      string
	s3      testenv.S3Endpoint
	nodes   map[string]*node
	proxies map[string]*holdingProxy
}

func newProxiedNodes(t *testing.T) *proxiedNodes {
	return &proxiedNodes{t: t, pg: testenv.Postgres(t), s3: testenv.S3(t), nodes: map[string]*node{}, proxies: map[string]*holdingProxy{}}
}

func (c *proxiedNodes) start(id string) *node {
	p := startHoldingProxy(c.t, c.s3.Endpoint)
	n := startNode(c.t, id, []string{
		"-catalog.backend", "postgres", "-catalog.postgres.url", c.pg,
		"-objstore.backend", "s3",
		"-objstore.s3.endpoint", p.url, "-objstore.s3.region", c.s3.Region,
		"-objstore.s3.bucket", c.s3.Bucket, "-objstore.s3.prefix", c.s3.Prefix,
		"-objstore.s3.access-key-id", c.s3.AccessKey, "-objstore.s3.secret-access-key", c.s3.SecretKey,
	})
	// Runs before the node stops (cleanups run last first): a failed
	// test's held uploads must not stall its drain.
	c.t.Cleanup(p.release)
	c.nodes[id], c.proxies[id] = n, p
	return n
}

// releaseOnWait releases the uploads of frontend id once a request waited
// for a handoff there (strom_bucket_handoff_waits_total), and then closes
// the returned channel; it gives up when stop is closed.
func (c *proxiedNodes) releaseOnWait(id string, stop <-chan struct{}) <-chan struct{} {
	waited := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			if handoffWaitsOf(c.nodes[id].base) > 0 {
				c.proxies[id].release()
				close(waited)
				return
			}
		}
	}()
	return waited
}

// appender appends rows with ids counting up, spread over the buckets by
// the table's bucket key.
type appender struct {
	id int
}

func (a *appender) append(n *node, rows int, d stromv1.Durability) error {
	req := &stromv1.AppendRequest{Database: "c", Table: "log", Durability: d}
	for i := range rows {
		st, _ := structpb.NewStruct(map[string]any{"id": a.id + i})
		req.Rows = append(req.Rows, st)
	}
	_, err := n.write.Append(context.Background(), connect.NewRequest(req))
	if err == nil {
		a.id += rows
	}
	return err
}

func createLog(t *testing.T, n *node, buckets int32) {
	t.Helper()
	ctx := context.Background()
	if _, err := n.admin.CreateDatabase(ctx, connect.NewRequest(&stromv1.CreateDatabaseRequest{Name: "c"})); err != nil {
		t.Fatal(err)
	}
	if _, err := n.admin.CreateTable(ctx, connect.NewRequest(&stromv1.CreateTableRequest{
		Database: "c", Name: "log", Buckets: &buckets, BucketKey: []string{"id"},
		Schema: &stromv1.Schema{Columns: []*stromv1.Column{{Name: "id", Type: "BIGINT"}}},
	})); err != nil {
		t.Fatal(err)
	}
}

// TestDrainHoldsWritesUntilHandoff: writes that reach a bucket while its
// leader drains wait for the handoff to end and then go to the new leader,
// however long the handoff takes: none fails. The old leader's object
// store holds its segment uploads, so the handoff (which commits the
// bucket's accepted batches first) lasts until a write is seen waiting
// for it. Before, the drained leader left the member list at once, and
// writes gave up after the re-route budget of about a third of a second
// with unavailable ("its leader left or stopped answering").
func TestDrainHoldsWritesUntilHandoff(t *testing.T) {
	c := newProxiedNodes(t)
	c.start("f1")
	c.start("f2")
	createLog(t, c.nodes["f1"], 1)
	var old string // the bucket's leader, which drains
	deadline := time.Now().Add(20 * time.Second)
	for old == "" {
		for id := range leaders(t, c.nodes["f1"], "log") {
			old = id
		}
		if time.Now().After(deadline) {
			t.Fatal("the bucket got no leader")
		}
		time.Sleep(20 * time.Millisecond)
	}
	other := map[string]string{"f1": "f2", "f2": "f1"}[old]
	via := c.nodes[other]

	a := &appender{}
	// Acknowledged once in the leader's WAL, while its commits are held.
	wal := stromv1.Durability_DURABILITY_WAL
	if err := a.append(via, 1, wal); err != nil {
		t.Fatal(err)
	}
	// From now on the old leader's flushes stall, so the row below stays
	// pending there and its handoff waits for it.
	c.proxies[old].hold()
	if err := a.append(via, 1, wal); err != nil {
		t.Fatal(err)
	}

	stopped := make(chan struct{})
	go func() { defer close(stopped); c.nodes[old].stop() }()
	waited := c.releaseOnWait(old, stopped)
	deadline = time.Now().Add(time.Minute)
	for {
		if err := a.append(via, 1, wal); err != nil {
			t.Fatalf("append via %s during the drain of %s: %v", other, old, err)
		}
		select {
		case <-stopped:
		default:
			if time.Now().After(deadline) {
				t.Fatalf("%s did not drain within a minute", old)
			}
			continue
		}
		break
	}
	select {
	case <-waited:
	default:
		t.Fatalf("%s drained, but no write waited for its handoff", old)
	}
	waitLeaders(t, via, "log", map[string]int{other: 1})
	// Once this is committed, so is every row before it.
	if err := a.append(via, 1, stromv1.Durability_DURABILITY_DURABLE); err != nil {
		t.Fatal(err)
	}
	if got := countLog(t, via, 1); got != a.id {
		t.Fatalf("after the drain: %d rows, want %d", got, a.id)
	}
}

// TestRebalanceHoldsWritesUntilHandoff: when a frontend joins, the leader
// hands it one of its buckets; writes through either frontend that reach
// that bucket during the handoff wait for it to end, however long it
// takes, and none fails. The old leader's segment uploads are held until
// a write is seen waiting for the handoff. Before, the old leader refused
// them ("led by or assigned to f2"), and the new one too, as the lease was
// not released yet, until the re-route budget ran out with unavailable.
func TestRebalanceHoldsWritesUntilHandoff(t *testing.T) {
	c := newProxiedNodes(t)
	f1 := c.start("f1")
	createLog(t, f1, 2)
	waitLeaders(t, f1, "log", map[string]int{"f1": 2})
	a := &appender{}
	wal := stromv1.Durability_DURABILITY_WAL
	if err := a.append(f1, 10, wal); err != nil {
		t.Fatal(err)
	}
	// From now on f1's flushes stall, so the rows below stay pending in
	// both buckets, and the handoff of either waits for them.
	c.proxies["f1"].hold()
	if err := a.append(f1, 10, wal); err != nil {
		t.Fatal(err)
	}
	f2 := c.start("f2")
	stop := make(chan struct{})
	defer close(stop)
	waited := c.releaseOnWait("f1", stop)
	balanced := map[string]int{"f1": 1, "f2": 1}
	deadline := time.Now().Add(time.Minute)
	for i := 0; ; i++ {
		via := []*node{f1, f2}[i%2]
		if err := a.append(via, 10, wal); err != nil {
			t.Fatalf("append via %s while f1 hands a bucket to f2: %v", via.id, err)
		}
		select {
		case <-waited:
			if fmt.Sprint(leaders(t, f1, "log")) == fmt.Sprint(balanced) {
				// Once this is committed, so is every row before it.
				for _, n := range []*node{f1, f2} {
					if err := a.append(n, 10, stromv1.Durability_DURABILITY_DURABLE); err != nil {
						t.Fatal(err)
					}
				}
				if got := countLog(t, f2, 2); got != a.id {
					t.Fatalf("after the handoff: %d rows, want %d", got, a.id)
				}
				return
			}
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no write waited for a handoff, or f1 did not hand a bucket to f2, within a minute: leaders %v", leaders(t, f1, "log"))
		}
	}
}
