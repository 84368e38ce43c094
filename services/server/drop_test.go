package server_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/structpb"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/api/gen/strom/v1/stromv1connect"
	"github.com/strom-io/strom/services/server"
)

// syncBuffer keeps what a server logs, safe for concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// metricValue reads one sample, e.g. `strom_x_total{result="ok"}`, from a
// server's /metrics.
func metricValue(t *testing.T, base, sample string) float64 {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(metricsText(t, base)))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", sample, err)
			}
			return f
		}
	}
	t.Fatalf("metric %s not exported", sample)
	return 0
}

// eventually polls cond until it holds, failing the test after a minute.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Dropping a primary-key table with rows ends its buckets' leases at the
// next renewal instead of renewing them forever: its KV directory is
// removed, the logs hold no renewal failure while the other tables' leases
// go on being renewed, and a table created again under the same name gets
// a new id and takes writes.
func TestDropTableEndsItsLeases(t *testing.T) {
	for name, flags := range backends(t) {
		t.Run(name, func(t *testing.T) {
			dataDir := t.TempDir()
			logs := &syncBuffer{}
			args := append([]string{
				"-data-dir", dataDir, "-server.http-listen-address", "127.0.0.1:0", "-server.internal-listen-address", "127.0.0.1:0",
				"-frontend.lease-renew-interval", "50ms", "-frontend.flush-interval", "10ms",
			}, flags(t)...)
			cfg, err := server.LoadConfig("test", args, nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			logger := slog.New(slog.NewTextHandler(io.MultiWriter(os.Stderr, logs), &slog.HandlerOptions{Level: slog.LevelWarn}))
			srv, err := server.New(ctx, cfg, logger, prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			if err := srv.Listen(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- srv.Serve(ctx) }()
			t.Cleanup(func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("serve: %v", err)
				}
			})
			base := srv.URL()
			admin := stromv1connect.NewAdminServiceClient(http.DefaultClient, base)
			write := stromv1connect.NewWriteServiceClient(http.DefaultClient, base)
			read := stromv1connect.NewReadServiceClient(http.DefaultClient, base)

			for _, db := range []string{"shop", "other"} {
				if _, err := admin.CreateDatabase(ctx, connect.NewRequest(&stromv1.CreateDatabaseRequest{Name: db})); err != nil {
					t.Fatal(err)
				}
			}
			two := int32(2)
			createUsers := func() *stromv1.Table {
				t.Helper()
				resp, err := admin.CreateTable(ctx, connect.NewRequest(&stromv1.CreateTableRequest{
					Database: "shop", Name: "users", Buckets: &two,
					Schema: &stromv1.Schema{
						Columns:    []*stromv1.Column{{Name: "id", Type: "BIGINT"}, {Name: "name", Type: "STRING", Nullable: true}},
						PrimaryKey: []string{"id"},
					},
				}))
				if err != nil {
					t.Fatal(err)
				}
				return resp.Msg.GetTable()
			}
			upsert := func(from, to int) {
				t.Helper()
				req := &stromv1.UpsertRequest{Database: "shop", Table: "users"}
				for id := from; id < to; id++ {
					st, err := structpb.NewStruct(map[string]any{"id": id, "name": fmt.Sprint("u", id)})
					if err != nil {
						t.Fatal(err)
					}
					req.Rows = append(req.Rows, st)
				}
				if _, err := write.Upsert(ctx, connect.NewRequest(req)); err != nil {
					t.Fatal(err)
				}
			}
			users := createUsers()
			upsert(0, 20)
			// A table that stays: its leases go on being renewed.
			if _, err := admin.CreateTable(ctx, connect.NewRequest(&stromv1.CreateTableRequest{
				Database: "other", Name: "events",
				Schema: &stromv1.Schema{Columns: []*stromv1.Column{{Name: "id", Type: "BIGINT"}}},
			})); err != nil {
				t.Fatal(err)
			}
			st, err := structpb.NewStruct(map[string]any{"id": 1})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := write.Append(ctx, connect.NewRequest(&stromv1.AppendRequest{Database: "other", Table: "events", Rows: []*structpb.Struct{st}})); err != nil {
				t.Fatal(err)
			}
			kvDir := filepath.Join(dataDir, "kv", fmt.Sprint(users.GetId()))
			if _, err := os.Stat(kvDir); err != nil {
				t.Fatalf("KV directory of the primary-key table: %v", err)
			}

			if _, err := admin.DropTable(ctx, connect.NewRequest(&stromv1.DropTableRequest{Database: "shop", Name: "users"})); err != nil {
				t.Fatal(err)
			}
			eventually(t, "the dropped table's KV directory is removed", func() bool {
				_, err := os.Stat(kvDir)
				return errors.Is(err, os.ErrNotExist)
			})
			eventually(t, "both of its leaderships ended as dropped", func() bool {
				return metricValue(t, base, `strom_bucket_leadership_changes_total{change="dropped"}`) == 2
			})
			renewed := metricValue(t, base, `strom_bucket_lease_renewals_total{result="renewed"}`)
			eventually(t, "the other table's lease is renewed 5 more times", func() bool {
				return metricValue(t, base, `strom_bucket_lease_renewals_total{result="renewed"}`) >= renewed+5
			})
			if n := strings.Count(logs.String(), "lease renewal failed"); n > 0 {
				t.Errorf("%d renewal failures logged after the drop", n)
			}
			if n := metricValue(t, base, `strom_bucket_lease_renewals_total{result="failed"}`); n > 0 {
				t.Errorf("%v renewals failed", n)
			}
			if n := metricValue(t, base, "strom_bucket_leaderships"); n != 1 {
				t.Errorf("%v leaderships held, want 1 (the other table's)", n)
			}

			// The same name again: a new id, and writes go through.
			again := createUsers()
			if again.GetId() == users.GetId() {
				t.Fatalf("re-created table has the dropped one's id %d", again.GetId())
			}
			upsert(100, 103)
			count, err := read.Count(ctx, connect.NewRequest(&stromv1.CountRequest{Database: "shop", Table: "users"}))
			if err != nil {
				t.Fatal(err)
			}
			if count.Msg.GetCount() != 3 {
				t.Fatalf("re-created table counts %d rows, want 3", count.Msg.GetCount())
			}
			resp, err := read.Lookup(ctx, connect.NewRequest(&stromv1.LookupRequest{Database: "shop", Table: "users", Keys: []*structpb.Struct{
				mustStruct(t, map[string]any{"id": 101}), mustStruct(t, map[string]any{"id": 1}),
			}}))
			if err != nil {
				t.Fatal(err)
			}
			if rows := resp.Msg.GetRows(); len(rows) != 1 || rows[0].AsMap()["name"] != "u101" {
				t.Fatalf("lookup in the re-created table: %v, want only id 101", rows)
			}
		})
	}
}

func mustStruct(t *testing.T, m map[string]any) *structpb.Struct {
	t.Helper()
	st, err := structpb.NewStruct(m)
	if err != nil {
		t.Fatal(err)
	}
	return st
}
