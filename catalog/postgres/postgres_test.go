package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/tern/v2/migrate"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/catalog/catalogtest"
	"github.com/strom-io/strom/catalog/postgres"
	"github.com/strom-io/strom/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

func open(t *testing.T, dsn string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), dsn)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestAcceptance(t *testing.T) {
	var dsns sync.Map // *postgres.Store -> dsn
	catalogtest.Run(t,
		func(t *testing.T) catalog.Store {
			dsn := testenv.Postgres(t)
			s := open(t, dsn)
			dsns.Store(s, dsn)
			return s
		},
		catalogtest.WithHandles(func(t *testing.T, s catalog.Store) catalog.Store {
			dsn, _ := dsns.Load(s)
			return open(t, dsn.(string))
		}),
	)
}

// TestOpenMigratesOnce opens several stores on one database at once: the
// migrations run once, every one of them (the schema is at the version of
// the newest), and every store works; a store opened later runs no DDL at
// all (the catalog rows of the schema's tables, columns, constraints and
// indexes are the very ones, same transaction ids, as before it).
func TestOpenMigratesOnce(t *testing.T) {
	ctx := context.Background()
	dsn := testenv.Postgres(t)
	const stores = 4
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, stores)
	for range stores {
		wg.Go(func() {
			<-start // all at once
			s, err := postgres.Open(ctx, dsn)
			if err != nil {
				errs <- err
				return
			}
			defer s.Close()
			_, err = s.ListDatabases(ctx)
			errs <- err
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	c := connect(t, dsn)
	m, err := migrate.NewMigrator(ctx, c, postgres.VersionTable)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.LoadMigrations(os.DirFS("migrations")); err != nil {
		t.Fatal(err)
	}
	version, err := m.GetCurrentVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := int32(len(m.Migrations)); version != want || want < 3 {
		t.Fatalf("schema version %d after concurrent opens, want %d (every migration)", version, want)
	}

	before := schemaRows(t, c)
	s := open(t, dsn)
	if _, err := s.ListDatabases(ctx); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if after := schemaRows(t, c); after != before {
		t.Fatalf("opening a migrated catalog changed its schema:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// schemaRows lists the system catalog rows of the public schema's
// relations, columns, constraints and indexes with the transaction that
// last wrote each (xmin): any DDL on them writes new rows.
func schemaRows(t *testing.T, c *pgx.Conn) string {
	t.Helper()
	rows, err := c.Query(context.Background(), `
		SELECT 'relation ' || r.relname || ' ' || r.xmin FROM pg_class r
			WHERE r.relnamespace = 'public'::regnamespace
		UNION ALL
		SELECT 'column ' || r.relname || '.' || a.attname || ' ' || a.xmin FROM pg_attribute a
			JOIN pg_class r ON r.oid = a.attrelid
			WHERE r.relnamespace = 'public'::regnamespace AND a.attnum > 0
		UNION ALL
		SELECT 'constraint ' || n.conname || ' ' || n.xmin FROM pg_constraint n
			WHERE n.connamespace = 'public'::regnamespace
		UNION ALL
		SELECT 'index ' || r.relname || ' ' || i.xmin FROM pg_index i
			JOIN pg_class r ON r.oid = i.indexrelid
			WHERE r.relnamespace = 'public'::regnamespace
		ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) < 10 {
		t.Fatalf("the migrated schema has only %d catalog rows: %q", len(lines), lines)
	}
	return strings.Join(lines, "\n")
}

// TestUnavailable checks that an unreachable server is ErrUnavailable.
func TestUnavailable(t *testing.T) {
	_, err := postgres.Open(context.Background(), "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=2")
	if err == nil || !errors.Is(err, catalog.ErrUnavailable) {
		t.Fatalf("Open of an unreachable server: %v, want ErrUnavailable", err)
	}
	s := open(t, testenv.Postgres(t))
	s.Close()
	if _, err := s.ListDatabases(context.Background()); !errors.Is(err, catalog.ErrUnavailable) {
		t.Fatalf("ListDatabases on a closed store: %v, want ErrUnavailable", err)
	}
}

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// leaseAll creates database db and a 4-bucket log table t and leases its
// buckets 0 and 1.
func leaseAll(t *testing.T, s *postgres.Store) (catalog.BucketID, catalog.BucketID, [2]int64) {
	t.Helper()
	ctx := context.Background()
	if _, err := s.CreateDatabase(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	tbl, err := s.CreateTable(ctx, catalog.TableSpec{Database: "db", Name: "t", Buckets: 4, PartitionKey: "day",
		Schema: catalog.Schema{Columns: []catalog.Column{{Name: "id", Type: catalog.BigInt}, {Name: "day", Type: catalog.Date}}}})
	if err != nil {
		t.Fatal(err)
	}
	b0 := catalog.BucketID{TableID: tbl.ID, Partition: "2024-05-01", Bucket: 0}
	b1 := catalog.BucketID{TableID: tbl.ID, Bucket: 1}
	var epochs [2]int64
	for i, b := range []catalog.BucketID{b0, b1} {
		l, err := s.AcquireLease(ctx, b, "w", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		epochs[i] = l.Epoch
	}
	return b0, b1, epochs
}

// TestNotifyPayload checks the wire contract on NotifyChannel: one JSON
// notification per committed range, none for a failed commit.
func TestNotifyPayload(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dsn := testenv.Postgres(t)
	s := open(t, dsn)
	defer s.Close()
	b0, b1, epochs := leaseAll(t, s)
	c := connect(t, dsn)
	if _, err := c.Exec(ctx, "LISTEN "+postgres.NotifyChannel); err != nil {
		t.Fatal(err)
	}
	if err := s.CommitSegment(ctx, catalog.Segment{ObjectKey: "gap", Ranges: []catalog.SegmentRange{{Bucket: b1, Epoch: epochs[1], BaseOffset: 1, EndOffset: 2}}}); !errors.Is(err, catalog.ErrOffsetGap) {
		t.Fatalf("gap commit: %v", err)
	}
	if err := s.CommitSegment(ctx, catalog.Segment{ObjectKey: "o", Ranges: []catalog.SegmentRange{
		{Bucket: b0, Epoch: epochs[0], BaseOffset: 0, EndOffset: 5},
		{Bucket: b1, Epoch: epochs[1], BaseOffset: 0, EndOffset: 3},
	}}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		fmt.Sprintf(`{"table_id":%d,"partition":"","bucket":1,"next_offset":3}`, b1.TableID),
		fmt.Sprintf(`{"table_id":%d,"partition":"2024-05-01","bucket":0,"next_offset":5}`, b0.TableID),
	}
	for i, w := range want {
		wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
		n, err := c.WaitForNotification(wctx)
		wcancel()
		if err != nil {
			t.Fatalf("notification %d: %v", i, err)
		}
		if n.Channel != postgres.NotifyChannel || n.Payload != w {
			t.Fatalf("notification %d = %s %s, want %s", i, n.Channel, n.Payload, w)
		}
	}
	wctx, wcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer wcancel()
	if n, err := c.WaitForNotification(wctx); err == nil {
		t.Fatalf("unexpected notification %s", n.Payload)
	}
}

// TestTablesPayload checks the wire contract on TablesChannel: one JSON
// notification per created, altered or dropped table, none for a failed
// change.
func TestTablesPayload(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dsn := testenv.Postgres(t)
	s := open(t, dsn)
	defer s.Close()
	c := connect(t, dsn)
	if _, err := c.Exec(ctx, "LISTEN "+postgres.TablesChannel); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateDatabase(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	spec := catalog.TableSpec{Database: "db", Name: "t", Buckets: 1,
		Schema: catalog.Schema{Columns: []catalog.Column{{Name: "id", Type: catalog.BigInt}}}}
	tbl, err := s.CreateTable(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddColumns(ctx, "db", "t", []catalog.Column{{Name: "id", Type: catalog.Int, Nullable: true}}); !errors.Is(err, catalog.ErrInvalid) {
		t.Fatalf("AddColumns of an existing column: %v", err)
	}
	if _, err := s.AddColumns(ctx, "db", "t", []catalog.Column{{Name: "v", Type: catalog.Int, Nullable: true}}); err != nil {
		t.Fatal(err)
	}
	if err := s.DropDatabase(ctx, "db", true); err != nil {
		t.Fatal(err)
	}
	want := []string{
		fmt.Sprintf(`{"table_id":%d,"database":"db","name":"t","schema_version":1}`, tbl.ID),
		fmt.Sprintf(`{"table_id":%d,"database":"db","name":"t","schema_version":2}`, tbl.ID),
		fmt.Sprintf(`{"table_id":%d,"database":"db","name":"t","schema_version":0}`, tbl.ID),
	}
	for i, w := range want {
		wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
		n, err := c.WaitForNotification(wctx)
		wcancel()
		if err != nil {
			t.Fatalf("notification %d: %v", i, err)
		}
		if n.Channel != postgres.TablesChannel || n.Payload != w {
			t.Fatalf("notification %d = %s %s, want %s", i, n.Channel, n.Payload, w)
		}
	}
	wctx, wcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer wcancel()
	if n, err := c.WaitForNotification(wctx); err == nil {
		t.Fatalf("unexpected notification %s", n.Payload)
	}
}

// waitListening waits up to 5s until a backend of the database has run
// LISTEN and is idle, and returns its pid.
func waitListening(t *testing.T, c *pgx.Conn) int32 {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var pid int32
		err := c.QueryRow(context.Background(), `SELECT pid FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'idle' AND query LIKE 'LISTEN %'`).Scan(&pid)
		if err == nil {
			return pid
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("no backend is listening after 5s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWatchSkipsForeignPayloads: payloads that are not a
// notification (the bare table ids of older binaries) are skipped.
func TestWatchSkipsForeignPayloads(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dsn := testenv.Postgres(t)
	s := open(t, dsn)
	defer s.Close()
	_, b1, epochs := leaseAll(t, s)
	type call struct {
		b    catalog.BucketID
		next int64
	}
	calls := make(chan call, 10)
	wctx, wcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- s.Watch(wctx, catalog.Events{
			Commit: func(b catalog.BucketID, next int64) { calls <- call{b, next} },
			Table:  func(c catalog.TableChange) { t.Errorf("table change %+v reported for a foreign payload", c) },
		})
	}()
	c := connect(t, dsn)
	waitListening(t, c)
	for _, ch := range []string{postgres.NotifyChannel, postgres.TablesChannel} {
		for _, p := range []string{"7", "not json", `{"table_id":`} {
			if _, err := c.Exec(ctx, `SELECT pg_notify($1, $2)`, ch, p); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.CommitSegment(ctx, catalog.Segment{ObjectKey: "o", Ranges: []catalog.SegmentRange{{Bucket: b1, Epoch: epochs[1], BaseOffset: 0, EndOffset: 3}}}); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-calls:
		if got != (call{b1, 3}) {
			t.Fatalf("first call = %+v, want %v 3", got, b1)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no call within 5s")
	}
	wcancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Watch = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return within 5s of cancel")
	}
}

// TestWatchConnectionLost: a terminated listening connection ends
// the watch with ErrUnavailable.
func TestWatchConnectionLost(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dsn := testenv.Postgres(t)
	s := open(t, dsn)
	defer s.Close()
	done := make(chan error, 1)
	go func() { done <- s.Watch(ctx, catalog.Events{}) }()
	c := connect(t, dsn)
	pid := waitListening(t, c)
	if _, err := c.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, catalog.ErrUnavailable) || ctx.Err() != nil {
			t.Fatalf("Watch after its connection died = %v, want ErrUnavailable", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return within 5s of losing its connection")
	}
}

// TestMigrateFromVersion1 upgrades a version-1 database holding data: the
// new column defaults to 0, old rows keep working, and the down migrations
// of versions 3 and 2 apply cleanly.
func TestMigrateFromVersion1(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dsn := testenv.Postgres(t)
	c := connect(t, dsn)
	m, err := migrate.NewMigrator(ctx, c, postgres.VersionTable)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.LoadMigrations(os.DirFS("migrations")); err != nil {
		t.Fatal(err)
	}
	if err := m.MigrateTo(ctx, 1); err != nil {
		t.Fatal(err)
	}
	_, err = c.Exec(ctx, `
		INSERT INTO databases (name) VALUES ('db');
		INSERT INTO tables (database, name, schema_version, buckets, bucket_key, partition_key, properties)
			OVERRIDING SYSTEM VALUE VALUES ('db', 't', 1, 1, '{}', '', '{}');
		INSERT INTO schema_versions (table_id, version, schema)
			SELECT id, 1, '{"columns":[{"name":"id","type":"BIGINT","nullable":false}]}' FROM tables;
		INSERT INTO buckets (table_id, partition, bucket, leader, epoch, lease_expiry, next_offset)
			SELECT id, '', 0, 'old', 1, now() + interval '1 hour', 5 FROM tables;
		INSERT INTO segments (object_key, size) VALUES ('old/1', 10);
		INSERT INTO segment_ranges (table_id, partition, bucket, base_offset, end_offset, segment_id, epoch,
			byte_offset, byte_length, row_count, min_timestamp, max_timestamp)
			SELECT t.id, '', 0, 0, 5, s.id, 1, 0, 10, 5, now(), now() FROM tables t, segments s`)
	if err != nil {
		t.Fatal(err)
	}
	s := open(t, dsn)
	defer s.Close()
	tbl, err := s.GetTable(ctx, "db", "t")
	if err != nil {
		t.Fatal(err)
	}
	b := catalog.BucketID{TableID: tbl.ID}
	bs, err := s.ListBuckets(ctx, tbl.ID)
	if err != nil || len(bs) != 1 || bs[0].StartOffset != 0 || bs[0].NextOffset != 5 {
		t.Fatalf("ListBuckets after upgrade = %+v, %v", bs, err)
	}
	if err := s.CommitSegment(ctx, catalog.Segment{ObjectKey: "new/1", Ranges: []catalog.SegmentRange{{Bucket: b, Epoch: 1, BaseOffset: 5, EndOffset: 6,
		Writers: []catalog.WriterSequence{{WriterID: "w", Sequence: 1, BaseOffset: 5, EndOffset: 6}}}}}); err != nil {
		t.Fatal(err)
	}
	orphans, err := s.DeleteRangesBefore(ctx, b, 5)
	if err != nil || len(orphans) != 1 || orphans[0] != "old/1" {
		t.Fatalf("DeleteRangesBefore after upgrade = %q, %v", orphans, err)
	}
	if err := m.MigrateTo(ctx, 1); err != nil {
		t.Fatalf("down migration of version 2: %v", err)
	}
	var n int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM information_schema.columns WHERE table_name = 'buckets' AND column_name = 'start_offset'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("start_offset after down migration: %d, %v", n, err)
	}
	if err := c.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables WHERE table_name = 'members'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("members table after down migration: %d, %v", n, err)
	}
}

// TestHeartbeatDeletesStaleMembers: Heartbeat deletes the rows of other
// members that expired over an hour ago, keeps more recently expired ones
// (never listed), and a member back after such a deletion starts anew.
func TestHeartbeatDeletesStaleMembers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dsn := testenv.Postgres(t)
	s := open(t, dsn)
	defer s.Close()
	c := connect(t, dsn)
	if _, err := c.Exec(ctx, `INSERT INTO members (id, roles, started, expiry) VALUES
		('stale', '{write}', now() - interval '3 hours', now() - interval '2 hours'),
		('recent', '{}', now() - interval '1 hour', now() - interval '30 minutes')`); err != nil {
		t.Fatal(err)
	}
	if ms, err := s.ListMembers(ctx); err != nil || len(ms) != 0 {
		t.Fatalf("ListMembers with only expired rows = %+v, %v; want none", ms, err)
	}
	if _, err := s.Heartbeat(ctx, catalog.Member{ID: "live"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	rows, _ := c.Query(ctx, `SELECT id FROM members ORDER BY id`)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(ids) != 2 || ids[0] != "live" || ids[1] != "recent" {
		t.Fatalf("rows after Heartbeat = %q, %v; want [live recent]", ids, err)
	}
	m, err := s.Heartbeat(ctx, catalog.Member{ID: "recent"}, time.Minute)
	if err != nil || time.Since(m.Started) > 10*time.Minute || m.Roles != nil {
		t.Fatalf("Heartbeat of a member expired 30m ago = %+v, %v; want a new start now without roles", m, err)
	}
	// Its own stale row is updated, never deleted and re-inserted.
	if _, err := c.Exec(ctx, `UPDATE members SET expiry = now() - interval '2 hours' WHERE id = 'live'`); err != nil {
		t.Fatal(err)
	}
	if m, err := s.Heartbeat(ctx, catalog.Member{ID: "live", Address: "h:1"}, time.Minute); err != nil || m.Address != "h:1" || time.Since(m.Started) > 10*time.Minute {
		t.Fatalf("Heartbeat of a member expired 2h ago = %+v, %v; want a new start now", m, err)
	}
	if ms, err := s.ListMembers(ctx); err != nil || len(ms) != 2 || ms[0].ID != "live" || ms[1].ID != "recent" {
		t.Fatalf("ListMembers = %+v, %v; want live and recent", ms, err)
	}
}
