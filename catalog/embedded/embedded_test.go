package embedded_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/catalog/catalogtest"
	"github.com/strom-io/strom/catalog/embedded"
	bolt "go.etcd.io/bbolt"
)

func open(t *testing.T, path string) *embedded.Store {
	t.Helper()
	s, err := embedded.Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestAcceptance(t *testing.T) {
	catalogtest.Run(t, func(t *testing.T) catalog.Store {
		return open(t, filepath.Join(t.TempDir(), "catalog.db"))
	})
}

// TestReopen checks that everything survives closing and reopening the file.
func TestReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "catalog.db")
	s := open(t, path)
	if _, err := s.CreateDatabase(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	tbl, err := s.CreateTable(ctx, catalog.TableSpec{
		Database: "db", Name: "t", Buckets: 2,
		Schema: catalog.Schema{Columns: []catalog.Column{{Name: "id", Type: catalog.BigInt}, {Name: "ts", Type: catalog.TimestampLTZ(3), Nullable: true}}, PrimaryKey: []string{"id"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	b := catalog.BucketID{TableID: tbl.ID, Bucket: 1}
	l, err := s.AcquireLease(ctx, b, "a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CommitSegment(ctx, catalog.Segment{ObjectKey: "o1", Size: 9, Ranges: []catalog.SegmentRange{{Bucket: b, Epoch: l.Epoch, BaseOffset: 0, EndOffset: 7}}}); err != nil {
		t.Fatal(err)
	}
	snap, err := s.PutKVSnapshot(ctx, catalog.KVSnapshot{Bucket: b, Epoch: l.Epoch, LogOffset: 7, Files: []string{"f"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetTieredOffsets(ctx, []catalog.TieredOffset{{Bucket: b, Offset: 7, LakeSnapshotID: 3}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, path)
	defer s.Close()
	got, err := s.GetTable(ctx, "db", "t")
	if err != nil || got.ID != tbl.ID || got.Schema.Columns[1].Type != catalog.TimestampLTZ(3) {
		t.Fatalf("GetTable after reopen = %+v, %v", got, err)
	}
	bs, err := s.ListBuckets(ctx, tbl.ID)
	if err != nil || bs[1].Leader != "a" || bs[1].Epoch != l.Epoch || bs[1].NextOffset != 7 || !bs[1].LeaseExpiry.Equal(l.Expiry) {
		t.Fatalf("ListBuckets after reopen = %+v, %v", bs, err)
	}
	if err := s.CommitSegment(ctx, catalog.Segment{ObjectKey: "o2", Ranges: []catalog.SegmentRange{{Bucket: b, Epoch: l.Epoch, BaseOffset: 7, EndOffset: 8}}}); err != nil {
		t.Fatalf("commit after reopen: %v", err)
	}
	rs, err := s.ListSegments(ctx, b, 0, 0)
	if err != nil || len(rs) != 2 || rs[0].ObjectKey != "o1" {
		t.Fatalf("ListSegments after reopen = %+v, %v", rs, err)
	}
	ss, err := s.ListKVSnapshots(ctx, b)
	if err != nil || len(ss) != 1 || ss[0].ID != snap.ID {
		t.Fatalf("ListKVSnapshots after reopen = %+v, %v", ss, err)
	}
	to, err := s.TieredOffsets(ctx, tbl.ID)
	if err != nil || len(to) != 1 || to[0].Offset != 7 {
		t.Fatalf("TieredOffsets after reopen = %+v, %v", to, err)
	}
	// Ids keep increasing across reopen.
	if err := s.DropTable(ctx, "db", "t"); err != nil {
		t.Fatal(err)
	}
	again, err := s.CreateTable(ctx, got.TableSpec)
	if err != nil || again.ID <= tbl.ID {
		t.Fatalf("recreate after reopen = %+v, %v", again, err)
	}
}

// TestReopenRetention checks that writer sequences and start offsets
// survive reopening, and that a file without the writers bucket (written
// before it existed) opens.
func TestReopenRetention(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "catalog.db")
	s := open(t, path)
	if _, err := s.CreateDatabase(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	tbl, err := s.CreateTable(ctx, catalog.TableSpec{Database: "db", Name: "t", Buckets: 1,
		Schema: catalog.Schema{Columns: []catalog.Column{{Name: "id", Type: catalog.BigInt}}}})
	if err != nil {
		t.Fatal(err)
	}
	b := catalog.BucketID{TableID: tbl.ID}
	l, err := s.AcquireLease(ctx, b, "a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for i, key := range []string{"o1", "o2"} {
		base := int64(i) * 5
		if err := s.CommitSegment(ctx, catalog.Segment{ObjectKey: key, Ranges: []catalog.SegmentRange{{Bucket: b, Epoch: l.Epoch, BaseOffset: base, EndOffset: base + 5,
			Writers: []catalog.WriterSequence{{WriterID: "w", Sequence: int64(i), BaseOffset: base, EndOffset: base + 5}}}}}); err != nil {
			t.Fatal(err)
		}
	}
	if orphans, err := s.DeleteRangesBefore(ctx, b, 5); err != nil || len(orphans) != 1 || orphans[0] != "o1" {
		t.Fatalf("DeleteRangesBefore = %q, %v", orphans, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Make it a file from before the writers bucket existed.
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket([]byte("writers")) }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, path)
	bs, err := s.ListBuckets(ctx, tbl.ID)
	if err != nil || bs[0].StartOffset != 5 || bs[0].NextOffset != 10 {
		t.Fatalf("ListBuckets after reopen = %+v, %v", bs, err)
	}
	if ws, err := s.WriterSequences(ctx, b); err != nil || len(ws) != 0 {
		t.Fatalf("WriterSequences of an old file = %+v, %v", ws, err)
	}
	if err := s.CommitSegment(ctx, catalog.Segment{ObjectKey: "o3", Ranges: []catalog.SegmentRange{{Bucket: b, Epoch: l.Epoch, BaseOffset: 10, EndOffset: 11,
		Writers: []catalog.WriterSequence{{WriterID: "w", Sequence: 9, BaseOffset: 10, EndOffset: 11}}}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, path)
	defer s.Close()
	if ws, err := s.WriterSequences(ctx, b); err != nil || len(ws) != 1 || ws[0].Sequence != 9 || ws[0].BaseOffset != 10 {
		t.Fatalf("WriterSequences after reopen = %+v, %v", ws, err)
	}
}

// TestReopenMembers checks that members survive reopening, and that a file
// without the members bucket (written before it existed) opens.
func TestReopenMembers(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "catalog.db")
	s := open(t, path)
	m, err := s.Heartbeat(ctx, catalog.Member{ID: "a", Address: "h:1", Roles: []string{"write"}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, path)
	ms, err := s.ListMembers(ctx)
	if err != nil || len(ms) != 1 || ms[0].Address != "h:1" || !ms[0].Started.Equal(m.Started) || !ms[0].Expiry.Equal(m.Expiry) {
		t.Fatalf("ListMembers after reopen = %+v, %v; want %+v", ms, err, m)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket([]byte("members")) }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, path)
	defer s.Close()
	if ms, err := s.ListMembers(ctx); err != nil || len(ms) != 0 {
		t.Fatalf("ListMembers of an old file = %+v, %v", ms, err)
	}
	if _, err := s.Heartbeat(ctx, catalog.Member{ID: "a"}, time.Minute); err != nil {
		t.Fatalf("Heartbeat on an old file: %v", err)
	}
}
