package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/structpb"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/api/gen/strom/v1/stromv1connect"
	"github.com/strom-io/strom/services/server"
)

// node is one in-process frontend of a cluster test.
type node struct {
	id    string
	dir   string
	base  string
	stop  func() // drains, like SIGTERM, and waits
	admin stromv1connect.AdminServiceClient
	write stromv1connect.WriteServiceClient
	read  stromv1connect.ReadServiceClient
}

func startNode(t *testing.T, id string, shared []string, extra ...string) *node {
	t.Helper()
	dir := t.TempDir()
	args := append([]string{
		"-data-dir", dir, "-server.http-listen-address", "127.0.0.1:0", "-server.internal-listen-address", "127.0.0.1:0",
		"-frontend.id", id, "-frontend.lease-ttl", "2s", "-frontend.lease-renew-interval", "500ms",
		"-frontend.balance-interval", "100ms", "-frontend.flush-interval", "10ms",
	}, append(shared, extra...)...)
	cfg, err := server.LoadConfig("test", args, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With(slog.String("node", id))
	srv, err := server.New(ctx, cfg, logger, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	stopped := false
	n := &node{id: id, base: "http://" + srv.Addr().String(), dir: dir}
	n.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s: serve: %v", id, err)
		}
	}
	t.Cleanup(n.stop)
	n.admin = stromv1connect.NewAdminServiceClient(http.DefaultClient, n.base)
	n.write = stromv1connect.NewWriteServiceClient(h2cClient(), n.base, connect.WithGRPC())
	n.read = stromv1connect.NewReadServiceClient(h2cClient(), n.base)
	return n
}

// leaders returns, per member id, how many buckets of table it leads.
func leaders(t *testing.T, n *node, table string) map[string]int {
	t.Helper()
	resp, err := n.admin.GetClusterStatus(context.Background(), connect.NewRequest(&stromv1.GetClusterStatusRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, b := range resp.Msg.GetBuckets() {
		if b.GetTable() == table && b.GetLive() {
			out[b.GetBucket().GetLeader()]++
		}
	}
	return out
}

// waitLeaders waits until the buckets of table are led as want says.
func waitLeaders(t *testing.T, n *node, table string, want map[string]int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := leaders(t, n, table)
		if fmt.Sprint(got) == fmt.Sprint(want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("table %s: leaders %v, want %v", table, got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestClusterForwardsAndRebalances runs three frontends on one PostgreSQL
// catalog and one S3 bucket: bucket leaderships spread evenly, writes and
// primary-key reads sent to any frontend reach the leader, and a drained
// frontend hands its buckets to the others with no failed request.
func TestClusterForwardsAndRebalances(t *testing.T) {
	shared := backends(t)["postgres+s3"](t)
	nodes := []*node{startNode(t, "f1", shared), startNode(t, "f2", shared), startNode(t, "f3", shared)}
	ctx := context.Background()
	n1 := nodes[0]
	if _, err := n1.admin.CreateDatabase(ctx, connect.NewRequest(&stromv1.CreateDatabaseRequest{Name: "c"})); err != nil {
		t.Fatal(err)
	}
	six := int32(6)
	if _, err := n1.admin.CreateTable(ctx, connect.NewRequest(&stromv1.CreateTableRequest{
		Database: "c", Name: "log", Buckets: &six, BucketKey: []string{"id"},
		Schema: &stromv1.Schema{Columns: []*stromv1.Column{{Name: "id", Type: "BIGINT"}, {Name: "v", Type: "STRING"}}},
	})); err != nil {
		t.Fatal(err)
	}
	if _, err := n1.admin.CreateTable(ctx, connect.NewRequest(&stromv1.CreateTableRequest{
		Database: "c", Name: "pk", Buckets: &six,
		Schema: &stromv1.Schema{Columns: []*stromv1.Column{{Name: "id", Type: "BIGINT"}, {Name: "v", Type: "STRING", Nullable: true}}, PrimaryKey: []string{"id"}},
	})); err != nil {
		t.Fatal(err)
	}
	even := map[string]int{"f1": 2, "f2": 2, "f3": 2}
	waitLeaders(t, n1, "log", even)
	waitLeaders(t, n1, "pk", even)
	// A read-only frontend leads nothing and keeps no WAL, but accepts
	// every request and forwards what needs a leader.
	reader := startNode(t, "r1", shared, "-roles", "read")
	nodes = append(nodes, reader)

	// Writes through every frontend; each request spans every bucket, so
	// most of its parts are forwarded.
	const perRequest = 30
	id := 0
	rows := func(v string) []*structpb.Struct {
		var out []*structpb.Struct
		for range perRequest {
			st, _ := structpb.NewStruct(map[string]any{"id": id, "v": fmt.Sprintf("%s-%d", v, id)})
			out = append(out, st)
			id++
		}
		return out
	}
	for round := range 2 {
		for _, n := range nodes {
			resp, err := n.write.Append(ctx, connect.NewRequest(&stromv1.AppendRequest{Database: "c", Table: "log", Rows: rows(n.id)}))
			if err != nil {
				t.Fatalf("append via %s (round %d): %v", n.id, round, err)
			}
			var got int64
			for _, o := range resp.Msg.GetOffsets() {
				got += o.GetCount()
			}
			if got != perRequest {
				t.Fatalf("append via %s: %d rows acknowledged, want %d", n.id, got, perRequest)
			}
		}
	}
	wantLog := id
	// Any frontend reads every row back from the object store.
	for _, n := range nodes {
		if got := countLog(t, n, six); got != wantLog {
			t.Fatalf("fetch via %s: %d rows, want %d", n.id, got, wantLog)
		}
	}

	// Primary-key writes through one frontend, reads through the others.
	id = 0
	if _, err := nodes[1].write.Upsert(ctx, connect.NewRequest(&stromv1.UpsertRequest{Database: "c", Table: "pk", Rows: rows("pk")})); err != nil {
		t.Fatal(err)
	}
	var keys []*structpb.Struct
	for i := range perRequest {
		st, _ := structpb.NewStruct(map[string]any{"id": i})
		keys = append(keys, st)
	}
	for _, n := range []*node{nodes[0], nodes[2], reader} {
		resp, err := n.read.Lookup(ctx, connect.NewRequest(&stromv1.LookupRequest{Database: "c", Table: "pk", Keys: keys}))
		if err != nil {
			t.Fatalf("lookup via %s: %v", n.id, err)
		}
		if len(resp.Msg.GetRows()) != perRequest {
			t.Fatalf("lookup via %s: %d rows, want %d", n.id, len(resp.Msg.GetRows()), perRequest)
		}
		for i, row := range resp.Msg.GetRows() {
			f := row.GetFields()
			if int(f["id"].GetNumberValue()) != i || f["v"].GetStringValue() != fmt.Sprintf("pk-%d", i) {
				t.Fatalf("lookup via %s: row %d = %v", n.id, i, f)
			}
		}
		count, err := n.read.Count(ctx, connect.NewRequest(&stromv1.CountRequest{Database: "c", Table: "pk"}))
		if err != nil || count.Msg.GetCount() != perRequest {
			t.Fatalf("count via %s = %v, %v; want %d", n.id, count, err, perRequest)
		}
		scan, err := n.read.Scan(ctx, connect.NewRequest(&stromv1.ScanRequest{Database: "c", Table: "pk"}))
		if err != nil || len(scan.Msg.GetRows()) != perRequest {
			t.Fatalf("scan via %s: %v rows, %v", n.id, len(scan.Msg.GetRows()), err)
		}
	}

	if got := leaders(t, n1, "log"); got["r1"] != 0 {
		t.Fatalf("the read-only frontend leads buckets: %v", got)
	}
	if _, err := os.Stat(filepath.Join(reader.dir, "wal")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the read-only frontend has a WAL directory (stat: %v)", err)
	}
	status, err := n1.admin.GetClusterStatus(ctx, connect.NewRequest(&stromv1.GetClusterStatusRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range status.Msg.GetMembers() {
		ids = append(ids, m.GetId()+":"+strings.Join(m.GetRoles(), ","))
		if m.GetId() == "r1" && m.GetInternalAddress() != "" {
			t.Fatalf("read-only member advertises an internal address: %v", m)
		}
	}
	if got := strings.Join(ids, " "); got != "f1:write,read,tiering f2:write,read,tiering f3:write,read,tiering r1:read" {
		t.Fatalf("members = %s", got)
	}
	if !strings.Contains(metricsText(t, reader.base), `strom_forwarded_requests_total{outcome="ok",procedure="Write"}`) {
		t.Fatalf("the read-only frontend counted no forwarded write")
	}

	// Drain f1 while f2 writes: its buckets move to f2 and f3 at once (no
	// lease has to expire), and no write fails.
	stopped := make(chan struct{})
	go func() { defer close(stopped); n1.stop() }()
	id = wantLog
	for {
		if _, err := nodes[1].write.Append(ctx, connect.NewRequest(&stromv1.AppendRequest{Database: "c", Table: "log", Rows: rows("drain")})); err != nil {
			t.Fatalf("append during the drain of f1: %v", err)
		}
		select {
		case <-stopped:
		default:
			continue
		}
		break
	}
	waitLeaders(t, nodes[1], "log", map[string]int{"f2": 3, "f3": 3})
	waitLeaders(t, nodes[1], "pk", map[string]int{"f2": 3, "f3": 3})
	if got := countLog(t, nodes[2], six); got != id {
		t.Fatalf("after the drain: %d rows, want %d", got, id)
	}
	resp, err := nodes[2].read.Lookup(ctx, connect.NewRequest(&stromv1.LookupRequest{Database: "c", Table: "pk", Keys: keys}))
	if err != nil || len(resp.Msg.GetRows()) != perRequest {
		t.Fatalf("lookup after the drain: %v rows, %v", len(resp.Msg.GetRows()), err)
	}
}

// countLog fetches every bucket of c.log through n and returns the rows,
// checking that offsets are contiguous.
func countLog(t *testing.T, n *node, buckets int32) int {
	t.Helper()
	total := 0
	for b := range buckets {
		var next int64
		for {
			resp, err := n.read.Fetch(context.Background(), connect.NewRequest(&stromv1.FetchRequest{
				Database: "c", Table: "log", Bucket: b, Offset: next,
			}))
			if err != nil {
				t.Fatalf("fetch bucket %d at %d via %s: %v", b, next, n.id, err)
			}
			got := resp.Msg.GetRows()
			if len(got) == 0 {
				break
			}
			var offsets []int64
			for _, r := range got {
				offsets = append(offsets, int64(r.GetFields()["_offset"].GetNumberValue()))
			}
			for i, o := range offsets {
				if o != next+int64(i) {
					t.Fatalf("bucket %d: offsets %v after %d", b, offsets, next)
				}
			}
			next += int64(len(got))
			total += len(got)
		}
	}
	return total
}

func metricsText(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
