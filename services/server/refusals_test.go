package server_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"google.golang.org/protobuf/reflect/protoreflect"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/api/gen/strom/v1/stromv1connect"
)

// refusalsServer starts a server with database r holding a primary-key
// table kv, a log table lg and a log table pt partitioned by day, each
// with rows.
func refusalsServer(t *testing.T) string {
	t.Helper()
	base := startServer(t, "-frontend.flush-interval", "5ms")
	for _, call := range []struct{ method, body string }{
		{"AdminService/CreateDatabase", `{"name":"r"}`},
		{"AdminService/CreateTable", `{"database":"r","name":"kv","buckets":2,"schema":{"columns":[{"name":"id","type":"BIGINT"},{"name":"a","type":"STRING","nullable":true},{"name":"b","type":"STRING","nullable":true}],"primary_key":["id"]}}`},
		{"AdminService/CreateTable", `{"database":"r","name":"lg","schema":{"columns":[{"name":"id","type":"BIGINT"},{"name":"a","type":"STRING","nullable":true},{"name":"b","type":"STRING","nullable":true}]}}`},
		{"AdminService/CreateTable", `{"database":"r","name":"pt","partition_key":"day","schema":{"columns":[{"name":"day","type":"DATE"},{"name":"id","type":"BIGINT"}]}}`},
		{"WriteService/Upsert", `{"database":"r","table":"kv","rows":[{"id":1,"a":"a1","b":"b1"},{"id":2,"a":"a2","b":"b2"}]}`},
		{"WriteService/Append", `{"database":"r","table":"lg","rows":[{"id":1,"a":"a1","b":"b1"},{"id":2,"a":"a2","b":"b2"}]}`},
		{"WriteService/Append", `{"database":"r","table":"pt","rows":[{"day":"2025-01-02","id":1}]}`},
	} {
		if code, msg := postJSON(t, base+"/strom.v1."+call.method, call.body); code != "" {
			t.Fatalf("%s: %s %s", call.method, code, msg)
		}
	}
	return base
}

// callRPC sends the JSON body to an RPC (Service.Method, of strom.v1 or, at
// an internal address, strom.cluster.v1) and returns the error; a stream
// is read to its end.
func callRPC(t *testing.T, addr, rpc, body string) error {
	t.Helper()
	svc, method, _ := strings.Cut(rpc, ".")
	pkg := "strom.v1"
	if svc == "ClusterService" {
		pkg = "strom.cluster.v1"
	}
	return rawCall(addr, "/"+pkg+"."+svc+"/"+method, rpc == "ReadService.Subscribe", []byte(body), http.DefaultClient, connect.WithCodec(rawCodec{"json"}))
}

// rowKeys returns the sorted keys of each JSON row.
func rowKeys(t *testing.T, answer string) []string {
	t.Helper()
	var resp struct{ Rows []map[string]any }
	if err := json.Unmarshal([]byte(answer), &resp); err != nil {
		t.Fatalf("answer %s: %v", answer, err)
	}
	if len(resp.Rows) == 0 {
		t.Fatalf("no rows in %s", answer)
	}
	var out []string
	for _, r := range resp.Rows {
		out = append(out, strings.Join(slices.Sorted(maps.Keys(r)), ","))
	}
	return slices.Compact(out)
}

// TestColumnsProject: every RPC that takes columns returns those columns
// only, and refuses a column the table does not have, naming it.
func TestColumnsProject(t *testing.T) {
	// The RPCs whose request has a projection (repeated string columns),
	// directly or in a message field.
	projects := func(md protoreflect.MessageDescriptor) bool {
		fd := md.Fields().ByName("columns")
		return fd != nil && fd.IsList() && fd.Kind() == protoreflect.StringKind
	}
	var takes []string
	for _, svc := range apiServices(t) {
		for i := range svc.Methods().Len() {
			m := svc.Methods().Get(i)
			in := m.Input()
			found := projects(in)
			for j := range in.Fields().Len() {
				if md := in.Fields().Get(j).Message(); md != nil && projects(md) {
					found = true
				}
			}
			if found {
				takes = append(takes, string(svc.Name())+"."+string(m.Name()))
			}
		}
	}
	slices.Sort(takes)
	if got := strings.Join(takes, " "); got != "ReadService.Fetch ReadService.Scan ReadService.Subscribe" {
		t.Fatalf("RPCs taking columns: %s; test each here", got)
	}

	base := refusalsServer(t)
	read := func(method, body string) string {
		t.Helper()
		code, msg := postJSON(t, base+"/strom.v1.ReadService/"+method, body)
		if code != "" {
			t.Fatalf("%s %s: %s %s", method, body, code, msg)
		}
		return msg
	}
	for _, tc := range []struct {
		method, body, want string
	}{
		{"Scan", `{"database":"r","table":"kv","columns":["b","id"]}`, "b,id"},
		{"Scan", `{"database":"r","table":"kv","union":true,"columns":["a"]}`, "_bucket,_offset,_timestamp,a"},
		{"Scan", `{"database":"r","table":"lg","union":true,"columns":["a"]}`, "_bucket,_offset,_timestamp,a"},
		{"Fetch", `{"database":"r","table":"lg","columns":["b"]}`, "_offset,_timestamp,b"},
		{"Fetch", `{"database":"r","table":"kv","columns":["_change_type","a"]}`, "_change_type,_offset,_timestamp,a"},
	} {
		if got := rowKeys(t, read(tc.method, tc.body)); strings.Join(got, " ") != tc.want {
			t.Errorf("%s %s: rows have columns %v, want %s", tc.method, tc.body, got, tc.want)
		}
	}
	// Arrow: the projection's schema, in the order named.
	var arrowResp struct{ ArrowIpc string }
	if err := json.Unmarshal([]byte(read("Scan", `{"database":"r","table":"kv","columns":["b","id"],"format":"FORMAT_ARROW"}`)), &arrowResp); err != nil {
		t.Fatal(err)
	}
	data, err := base64.StdEncoding.DecodeString(arrowResp.ArrowIpc)
	if err != nil {
		t.Fatal(err)
	}
	rdr, err := ipc.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range rdr.Schema().Fields() {
		names = append(names, f.Name)
	}
	rows := 0
	for rdr.Next() {
		rows += int(rdr.RecordBatch().NumRows())
	}
	rdr.Release()
	if strings.Join(names, ",") != "b,id" || rows != 2 {
		t.Errorf("Arrow scan: columns %v, %d rows; want b,id and 2 rows", names, rows)
	}
	// Subscribe's first batch.
	stream, err := stromv1connect.NewReadServiceClient(http.DefaultClient, base).Subscribe(context.Background(),
		connect.NewRequest(&stromv1.SubscribeRequest{Fetch: &stromv1.FetchRequest{Database: "r", Table: "lg", Columns: []string{"b"}}}))
	if err != nil {
		t.Fatal(err)
	}
	if !stream.Receive() {
		t.Fatalf("subscribe: %v", stream.Err())
	}
	for _, r := range stream.Msg().GetRecords().GetRows() {
		if got := strings.Join(slices.Sorted(maps.Keys(r.AsMap())), ","); got != "_offset,_timestamp,b" {
			t.Errorf("subscribe row has columns %s", got)
		}
	}
	stream.Close()

	// Unknown and repeated columns, for every table kind and path.
	for _, tc := range []struct{ rpc, body, want string }{
		{"ReadService.Scan", `{"database":"r","table":"kv","columns":["id","nope"]}`, `unknown column "nope" in table r.kv; its columns are id, a, b`},
		{"ReadService.Scan", `{"database":"r","table":"kv","columns":["id","id"]}`, `column "id" named twice`},
		{"ReadService.Scan", `{"database":"r","table":"kv","union":true,"columns":["nope"]}`, `unknown column "nope"`},
		{"ReadService.Scan", `{"database":"r","table":"lg","union":true,"columns":["nope"]}`, `unknown column "nope"`},
		{"ReadService.Fetch", `{"database":"r","table":"lg","columns":["nope"]}`, `unknown column "nope" in table r.lg; its columns are id, a, b`},
		{"ReadService.Fetch", `{"database":"r","table":"kv","columns":["nope"]}`, `unknown column "nope"`},
		{"ReadService.Subscribe", `{"fetch":{"database":"r","table":"lg","columns":["a","nope"]}}`, `unknown column "nope"`},
	} {
		err := callRPC(t, base, tc.rpc, tc.body)
		if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %s: %v, want invalid_argument with %q", tc.rpc, tc.body, err, tc.want)
		}
	}
}
