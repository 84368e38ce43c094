package server_test

import (
	"bytes"
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/api/gen/strom/v1/stromv1connect"
)

// fullSubscriber reads a Subscribe stream of a one-bucket table that one
// writer filled in id order, so id n is at offset n, and checks every row
// against unionRowValues.
type fullSubscriber struct {
	t       *testing.T
	stream  *connect.ServerStreamForClient[stromv1.SubscribeResponse]
	columns []string // nil: all
	next    int64    // the offset the next row must have
}

// receive reads until the rows below offset n arrived: each exactly once,
// in offset order.
func (s *fullSubscriber) receive(n int64) {
	t := s.t
	t.Helper()
	for s.next < n {
		if !s.stream.Receive() {
			t.Fatalf("stream ended at offset %d of %d: %v", s.next, n, s.stream.Err())
		}
		recs := s.stream.Msg().GetRecords()
		before := s.next
		if ipcBytes := recs.GetArrowIpc(); len(ipcBytes) > 0 {
			s.arrowRows(ipcBytes)
		} else {
			for _, st := range recs.GetRows() {
				f := st.AsMap()
				s.check(int64(f["_offset"].(float64)), int64(f["id"].(float64)))
				if _, ok := f["_bucket"]; ok {
					t.Fatalf("offset %d: row has _bucket: %v", s.next, f)
				}
				if _, err := time.Parse(time.RFC3339Nano, f["_timestamp"].(string)); err != nil {
					t.Fatalf("offset %d: _timestamp: %v", s.next, err)
				}
				want := unionRowValues(s.next)
				for _, c := range []string{"note", "small", "at"} {
					v, ok := f[c]
					if !ok {
						if s.columns == nil || slices.Contains(s.columns, c) {
							if _, null := want[c]; !null {
								t.Fatalf("row %v lacks column %s", f, c)
							}
						}
						continue
					}
					if c == "small" {
						v = int64(v.(float64))
					}
					if v != want[c] {
						t.Fatalf("offset %d: %s = %v, want %v", s.next, c, v, want[c])
					}
				}
				s.next++
			}
		}
		if got := recs.GetNextOffset(); s.next > before && got != s.next {
			t.Fatalf("response next_offset %d, its rows end at %d", got, s.next)
		}
	}
}

func (s *fullSubscriber) check(offset, id int64) {
	s.t.Helper()
	if offset != s.next {
		s.t.Fatalf("offset %d, want %d (a gap or a duplicate)", offset, s.next)
	}
	if id != offset {
		s.t.Fatalf("offset %d holds id %d, want %d", offset, id, offset)
	}
}

func (s *fullSubscriber) arrowRows(data []byte) {
	t := s.t
	t.Helper()
	rdr, err := ipc.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer rdr.Release()
	want := []string{"id", "note", "small", "at"}
	if s.columns != nil {
		want = s.columns
	}
	want = append(slices.Clone(want), "_offset", "_timestamp")
	var names []string
	for _, f := range rdr.Schema().Fields() {
		names = append(names, f.Name)
	}
	if !slices.Equal(names, want) {
		t.Fatalf("schema %v, want %v", names, want)
	}
	for rdr.Next() {
		rec := rdr.RecordBatch()
		col := func(name string) arrow.Array { return rec.Column(rec.Schema().FieldIndices(name)[0]) }
		ids, offsets := col("id").(*array.Int64), col("_offset").(*array.Int64)
		if _, ok := col("_timestamp").(*array.Timestamp); !ok {
			t.Fatalf("_timestamp is %s", col("_timestamp").DataType())
		}
		for i := range int(rec.NumRows()) {
			s.check(offsets.Value(i), ids.Value(i))
			id := ids.Value(i)
			if slices.Contains(names, "at") {
				ts, ok := col("at").(*array.Timestamp)
				if !ok || col("at").DataType().(*arrow.TimestampType).Unit != arrow.Millisecond || int64(ts.Value(i)) != unionEpoch.Add(time.Duration(id)*time.Millisecond).UnixMilli() {
					t.Fatalf("id %d: at is %s %v", id, col("at").DataType(), col("at"))
				}
			}
			if slices.Contains(names, "small") {
				if v, ok := col("small").(*array.Int8); !ok || int64(v.Value(i)) != id%100 {
					t.Fatalf("id %d: small is %s, want int8 %d", id, col("small").DataType(), id%100)
				}
			}
			s.next++
		}
	}
	if err := rdr.Err(); err != nil {
		t.Fatal(err)
	}
}

// TestSubscribeFull: once tiering copied a log table to the lake and
// retention deleted the oldest stream segments, a subscribe from offset 0
// fails, and a full subscribe from 0 (or any offset) streams every row
// once in offset order — the lake's, then the stream's — and then goes on
// live.
func TestSubscribeFull(t *testing.T) {
	flags := backends(t)["postgres+s3"](t)
	base := startServer(t, append(flags, "-lake.tiering.interval", "100ms", "-retention.interval", "100ms", "-frontend.flush-interval", "20ms")...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin := stromv1connect.NewAdminServiceClient(http.DefaultClient, base)
	if _, err := admin.CreateDatabase(ctx, connect.NewRequest(&stromv1.CreateDatabaseRequest{Name: "f"})); err != nil {
		t.Fatal(err)
	}
	one := int32(1)
	if _, err := admin.CreateTable(ctx, connect.NewRequest(&stromv1.CreateTableRequest{
		Database: "f", Name: "events", Buckets: &one, BucketKey: []string{"id"},
		Schema: &stromv1.Schema{Columns: unionTableColumns},
		Properties: map[string]string{
			"table.datalake.enabled": "true", "table.datalake.freshness": "1s", "table.log.ttl": "200ms",
		},
	})); err != nil {
		t.Fatal(err)
	}
	write := stromv1connect.NewWriteServiceClient(http.DefaultClient, base)
	read := stromv1connect.NewReadServiceClient(http.DefaultClient, base)
	stream := stromv1connect.NewReadServiceClient(h2cClient(), base, connect.WithGRPC())

	// One writer, in id order: id n is at offset n.
	var total int64
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); total += 20 {
		if err := appendUnionRows(ctx, write, "f", "events", total, total+20); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Wait until the lake holds everything and retention deleted the
	// oldest rows from the stream.
	for start := time.Now(); ; {
		resp, err := admin.GetLakeStatus(ctx, connect.NewRequest(&stromv1.GetLakeStatusRequest{Database: "f", Table: "events"}))
		if err != nil {
			t.Fatal(err)
		}
		tiered := resp.Msg.GetTables()[0].GetBuckets()[0].GetTieredOffset()
		first := nextOffsets(t, ctx, read, "f", "events", stromv1.OffsetSpec_OFFSET_SPEC_EARLIEST)[0]
		if tiered == total && first > 0 {
			t.Logf("%d rows: tiered, the stream starts at %d", total, first)
			break
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("tiered %d of %d rows, the stream starts at %d", tiered, total, first)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Rows only the stream holds (unless tiering is quick).
	if err := appendUnionRows(ctx, write, "f", "events", total, total+30); err != nil {
		t.Fatal(err)
	}
	total += 30

	subscribe := func(from int64, full bool, format stromv1.Format, columns []string) *fullSubscriber {
		t.Helper()
		s, err := stream.Subscribe(ctx, connect.NewRequest(&stromv1.SubscribeRequest{Full: full, Fetch: &stromv1.FetchRequest{
			Database: "f", Table: "events", Offset: from, Format: format, Columns: columns,
		}}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return &fullSubscriber{t: t, stream: s, columns: columns, next: from}
	}

	// Without full, the deleted offsets are out of range.
	plain := subscribe(0, false, stromv1.Format_FORMAT_JSON, nil)
	if plain.stream.Receive() {
		t.Fatalf("subscribe from 0 without full: got %v", plain.stream.Msg())
	}
	wantCode(t, plain.stream.Err(), connect.CodeOutOfRange)

	subs := []*fullSubscriber{
		subscribe(0, true, stromv1.Format_FORMAT_JSON, nil),
		subscribe(0, true, stromv1.Format_FORMAT_ARROW, nil),
		subscribe(7, true, stromv1.Format_FORMAT_ARROW, []string{"at", "id"}),
		subscribe(13, true, stromv1.Format_FORMAT_JSON, []string{"id", "small"}),
	}
	for _, s := range subs {
		s.receive(total)
	}
	// Then live.
	for _, n := range []int64{5, 12} {
		if err := appendUnionRows(ctx, write, "f", "events", total, total+n); err != nil {
			t.Fatal(err)
		}
		total += n
		for i, s := range subs {
			s.receive(total)
			if s.next != total {
				t.Fatalf("subscriber %d at %d, want %d", i, s.next, total)
			}
		}
	}
}

// TestSubscribeFullWithoutLake: without a lake, a full subscribe is the
// normal one.
func TestSubscribeFullWithoutLake(t *testing.T) {
	base := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	admin := stromv1connect.NewAdminServiceClient(http.DefaultClient, base)
	if _, err := admin.CreateDatabase(ctx, connect.NewRequest(&stromv1.CreateDatabaseRequest{Name: "f"})); err != nil {
		t.Fatal(err)
	}
	one := int32(1)
	if _, err := admin.CreateTable(ctx, connect.NewRequest(&stromv1.CreateTableRequest{
		Database: "f", Name: "events", Buckets: &one, BucketKey: []string{"id"},
		Schema:     &stromv1.Schema{Columns: unionTableColumns},
		Properties: map[string]string{"table.datalake.enabled": "true"},
	})); err != nil {
		t.Fatal(err)
	}
	write := stromv1connect.NewWriteServiceClient(http.DefaultClient, base)
	read := stromv1connect.NewReadServiceClient(h2cClient(), base, connect.WithGRPC())
	if err := appendUnionRows(ctx, write, "f", "events", 0, 10); err != nil {
		t.Fatal(err)
	}
	st, err := read.Subscribe(ctx, connect.NewRequest(&stromv1.SubscribeRequest{Full: true, Fetch: &stromv1.FetchRequest{Database: "f", Table: "events", Offset: 3}}))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := &fullSubscriber{t: t, stream: st, next: 3}
	s.receive(10)
	if err := appendUnionRows(ctx, write, "f", "events", 10, 14); err != nil {
		t.Fatal(err)
	}
	s.receive(14)
}
