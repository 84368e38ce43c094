package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strom-io/strom/api/client"
	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/api/gen/strom/v1/stromv1connect"
)

// fakeRead serves a table with two buckets of three rows each.
type fakeRead struct {
	stromv1connect.UnimplementedAdminServiceHandler
	stromv1connect.UnimplementedReadServiceHandler
}

func (fakeRead) GetTable(context.Context, *connect.Request[stromv1.GetTableRequest]) (*connect.Response[stromv1.GetTableResponse], error) {
	return connect.NewResponse(&stromv1.GetTableResponse{Table: &stromv1.Table{Buckets: 2}}), nil
}

func (fakeRead) ListOffsets(_ context.Context, req *connect.Request[stromv1.ListOffsetsRequest]) (*connect.Response[stromv1.ListOffsetsResponse], error) {
	off := int64(3)
	if req.Msg.GetSpec() == stromv1.OffsetSpec_OFFSET_SPEC_EARLIEST {
		off = 0
	}
	return connect.NewResponse(&stromv1.ListOffsetsResponse{Offsets: []*stromv1.BucketOffset{{Bucket: 0, Offset: off}, {Bucket: 1, Offset: off}}}), nil
}

func (fakeRead) Fetch(_ context.Context, req *connect.Request[stromv1.FetchRequest]) (*connect.Response[stromv1.FetchResponse], error) {
	resp := &stromv1.FetchResponse{NextOffset: req.Msg.GetOffset(), HighWatermark: 3}
	for off := req.Msg.GetOffset(); off < 3; off++ {
		s, _ := structpb.NewStruct(map[string]any{"_offset": off, "_timestamp": "2025-01-02T03:04:05Z", "id": float64(req.Msg.GetBucket()*10) + float64(off), "name": "x"})
		resp.Rows = append(resp.Rows, s)
		resp.NextOffset = off + 1
	}
	return connect.NewResponse(resp), nil
}

func consumeFrom(t *testing.T, limit int64, flags ...string) []map[string]any {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(stromv1connect.NewAdminServiceHandler(fakeRead{}))
	mux.Handle(stromv1connect.NewReadServiceHandler(fakeRead{}))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	opts, err := consumeOptions(flags[0], nil, -1, false)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := client.New(srv.URL).Subscribe(t.Context(), "db", "t", opts...)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := consume(t.Context(), sub, &out, limit, false); err != nil {
		t.Fatal(err)
	}
	var rows []map[string]any
	dec := json.NewDecoder(&out)
	for dec.More() {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		rows = append(rows, m)
	}
	return rows
}

func TestConsumePrintsRows(t *testing.T) {
	rows := consumeFrom(t, 0, "earliest")
	if len(rows) != 6 {
		t.Fatalf("%d rows, want 6", len(rows))
	}
	for _, r := range rows {
		if r["id"] != r["_bucket"].(float64)*10+r["_offset"].(float64) || r["_timestamp"] != "2025-01-02T03:04:05Z" || r["name"] != "x" {
			t.Errorf("row %v", r)
		}
	}
	if rows := consumeFrom(t, 4, "offset:1"); len(rows) != 4 {
		t.Errorf("--limit 4: %d rows", len(rows))
	}
	if rows := consumeFrom(t, 0, "latest"); len(rows) != 0 {
		t.Errorf("--from latest without --follow: %d rows, want 0", len(rows))
	}
}

func TestConsumeOptions(t *testing.T) {
	for _, ok := range []string{"earliest", "latest", "offset:0", "offset:42", "timestamp:2025-01-02T15:04:05Z", "timestamp:2025-01-02T15:04:05.123+02:00"} {
		if _, err := consumeOptions(ok, nil, -1, false); err != nil {
			t.Errorf("--from %s: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "first", "offset:", "offset:-1", "offset:x", "timestamp:yesterday", "latest:1"} {
		if _, err := consumeOptions(bad, nil, -1, false); err == nil || !strings.Contains(err.Error(), "--from") {
			t.Errorf("--from %q: err %v", bad, err)
		}
	}
}

func TestRowObject(t *testing.T) {
	ts := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	m := rowObject(client.Row{BucketID: client.BucketID{Partition: "2025-01-02", Bucket: 3}, Offset: 7, Timestamp: ts, Values: map[string]any{"a": 1.0}})
	b, _ := json.Marshal(m)
	if want := `{"_bucket":3,"_offset":7,"_partition":"2025-01-02","_timestamp":"2025-01-02T03:04:05Z","a":1}`; string(b) != want {
		t.Errorf("got %s, want %s", b, want)
	}
}
