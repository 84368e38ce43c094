package server_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
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

// internalURL is the address of the server's internal port.
func internalURL(t *testing.T, base string) string {
	t.Helper()
	status, err := stromv1connect.NewAdminServiceClient(http.DefaultClient, base).GetClusterStatus(context.Background(), connect.NewRequest(&stromv1.GetClusterStatusRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	return "http://" + status.Msg.GetMembers()[0].GetInternalAddress()
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
	stream := rpc == "ReadService.Subscribe" || rpc == "ReadService.ScanStream"
	return rawCall(addr, "/"+pkg+"."+svc+"/"+method, stream, []byte(body), http.DefaultClient, connect.WithCodec(rawCodec{"json"}))
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
	if got := strings.Join(takes, " "); got != "ReadService.Fetch ReadService.Scan ReadService.ScanStream ReadService.Subscribe" {
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
	// ScanStream's pages.
	scan, err := stromv1connect.NewReadServiceClient(http.DefaultClient, base).ScanStream(context.Background(),
		connect.NewRequest(&stromv1.ScanStreamRequest{Scan: &stromv1.ScanRequest{Database: "r", Table: "kv", Columns: []string{"b", "id"}, PageSize: 1}}))
	if err != nil {
		t.Fatal(err)
	}
	pages := 0
	for scan.Receive() {
		pages++
		for _, r := range scan.Msg().GetPage().GetRows() {
			if got := strings.Join(slices.Sorted(maps.Keys(r.AsMap())), ","); got != "b,id" {
				t.Errorf("scan stream row has columns %s", got)
			}
		}
	}
	if err := scan.Err(); err != nil || pages != 2 {
		t.Errorf("scan stream: %d pages, %v; want 2", pages, err)
	}
	scan.Close()

	// Unknown and repeated columns, for every table kind and path.
	for _, tc := range []struct{ rpc, body, want string }{
		{"ReadService.Scan", `{"database":"r","table":"kv","columns":["id","nope"]}`, `unknown column "nope" in table r.kv; its columns are id, a, b`},
		{"ReadService.Scan", `{"database":"r","table":"kv","columns":["id","id"]}`, `column "id" named twice`},
		{"ReadService.Scan", `{"database":"r","table":"kv","union":true,"columns":["nope"]}`, `unknown column "nope"`},
		{"ReadService.Scan", `{"database":"r","table":"lg","union":true,"columns":["nope"]}`, `unknown column "nope"`},
		{"ReadService.Fetch", `{"database":"r","table":"lg","columns":["nope"]}`, `unknown column "nope" in table r.lg; its columns are id, a, b`},
		{"ReadService.Fetch", `{"database":"r","table":"kv","columns":["nope"]}`, `unknown column "nope"`},
		{"ReadService.Subscribe", `{"fetch":{"database":"r","table":"lg","columns":["a","nope"]}}`, `unknown column "nope"`},
		{"ReadService.ScanStream", `{"scan":{"database":"r","table":"kv","columns":["a","nope"]}}`, `unknown column "nope" in table r.kv`},
		{"ReadService.ScanStream", `{"scan":{"database":"r","table":"lg","union":true,"columns":["a","a"]}}`, `column "a" named twice`},
	} {
		err := callRPC(t, base, tc.rpc, tc.body)
		if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %s: %v, want invalid_argument with %q", tc.rpc, tc.body, err, tc.want)
		}
	}
}

// TestRequiredFields: every RPC refuses a request without a field it
// needs as invalid_argument naming the field (not as not_found of an
// empty name); RPCs without required fields accept {}.
func TestRequiredFields(t *testing.T) {
	base := refusalsServer(t)
	internal := internalURL(t, base)
	type step struct{ body, want string }
	table := func(name string) []step {
		return []step{{`{}`, "database: required"}, {`{"database":"r"}`, name + ": required"}}
	}
	want := map[string][]step{
		"AdminService.CreateDatabase":   {{`{}`, "name: required"}},
		"AdminService.ListDatabases":    nil,
		"AdminService.GetDatabase":      {{`{}`, "name: required"}},
		"AdminService.DropDatabase":     {{`{}`, "name: required"}},
		"AdminService.CreateTable":      table("name"),
		"AdminService.GetTable":         table("name"),
		"AdminService.ListTables":       {{`{}`, "database: required"}},
		"AdminService.DropTable":        table("name"),
		"AdminService.AlterTable":       table("name"),
		"AdminService.GetClusterStatus": nil,
		"AdminService.GetLakeStatus":    {{`{"table":"lg"}`, "table: name the database too"}},
		"ReadService.ListOffsets":       table("table"),
		"ReadService.Fetch":             table("table"),
		"ReadService.Subscribe": {{`{}`, "fetch: required"}, {`{"fetch":{}}`, "fetch.database: required"},
			{`{"fetch":{"database":"r"}}`, "fetch.table: required"}},
		"ReadService.Lookup":       append(table("table"), step{`{"database":"r","table":"kv","keys":[]}`, "keys: name at least one key"}),
		"ReadService.PrefixLookup": table("table"),
		"ReadService.Scan":         table("table"),
		"ReadService.ScanStream": {{`{}`, "scan: required"}, {`{"scan":{}}`, "scan.database: required"},
			{`{"scan":{"database":"r"}}`, "scan.table: required"}},
		"ReadService.Count":   table("table"),
		"WriteService.Append": append(table("table"), step{`{"database":"r","table":"lg","rows":[]}`, "no rows: send rows (JSON objects) or arrow_ipc"}),
		"WriteService.Upsert": append(table("table"), step{`{"database":"r","table":"kv","rows":[]}`, "no rows: send rows (JSON objects) or arrow_ipc"}),
		"WriteService.Delete": append(table("table"),
			step{`{"database":"r","table":"kv","keys":[]}`, "keys: required: name at least one key"},
			step{`{"database":"r","table":"kv"}`, "keys: required: name at least one key"}),
		"ClusterService.Write":        {{`{}`, "table_id: required"}, {`{"table_id":"1"}`, "parts: required"}},
		"ClusterService.Lookup":       {{`{}`, "table_id: required"}},
		"ClusterService.PrefixLookup": {{`{}`, "table_id: required"}},
		"ClusterService.Scan":         {{`{}`, "table_id: required"}},
		"ClusterService.Count":        {{`{}`, "table_id: required"}},
	}
	var rpcs []string
	for _, svc := range apiServices(t) {
		for i := range svc.Methods().Len() {
			rpcs = append(rpcs, string(svc.Name())+"."+string(svc.Methods().Get(i).Name()))
		}
	}
	slices.Sort(rpcs)
	if listed := slices.Sorted(maps.Keys(want)); !slices.Equal(rpcs, listed) {
		t.Fatalf("RPCs %v, the test lists %v: say what each requires", rpcs, listed)
	}
	for _, rpc := range rpcs {
		addr := base
		if strings.HasPrefix(rpc, "ClusterService.") {
			addr = internal
		}
		if want[rpc] == nil {
			if err := callRPC(t, addr, rpc, `{}`); err != nil {
				t.Errorf("%s {}: %v", rpc, err)
			}
		}
		for _, s := range want[rpc] {
			err := callRPC(t, addr, rpc, s.body)
			if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), s.want) {
				t.Errorf("%s %s: %v, want invalid_argument with %q", rpc, s.body, err, s.want)
			}
		}
	}
	// Nothing was deleted.
	if code, msg := postJSON(t, base+"/strom.v1.ReadService/Count", `{"database":"r","table":"kv"}`); code != "" || !strings.Contains(msg, `"count":"2"`) {
		t.Fatalf("count after refused deletes: %s %s", code, msg)
	}
}

// TestPartitionRefusals: a partition on an unpartitioned table, none on a
// partitioned one, or one that cannot be a value of the partition column
// is invalid_argument, for every RPC that takes a partition.
func TestPartitionRefusals(t *testing.T) {
	base := refusalsServer(t)
	for _, tc := range []struct{ rpc, body, want string }{
		{"ReadService.ListOffsets", `{"database":"r","table":"lg","partition":"x"}`, "partition: table r.lg is not partitioned"},
		{"ReadService.Fetch", `{"database":"r","table":"lg","partition":"x"}`, "partition: table r.lg is not partitioned"},
		{"ReadService.Subscribe", `{"fetch":{"database":"r","table":"lg","partition":"x"}}`, "partition: table r.lg is not partitioned"},
		{"ReadService.ListOffsets", `{"database":"r","table":"pt"}`, `partition: required: table r.pt is partitioned by column "day" (DATE)`},
		{"ReadService.Fetch", `{"database":"r","table":"pt"}`, "partition: required"},
		{"ReadService.Subscribe", `{"fetch":{"database":"r","table":"pt"}}`, "partition: required"},
		{"ReadService.ListOffsets", `{"database":"r","table":"pt","partition":"2025-1-2"}`, "write it as YYYY-MM-DD"},
		{"ReadService.Fetch", `{"database":"r","table":"pt","partition":"tomorrow"}`, "write it as YYYY-MM-DD"},
	} {
		err := callRPC(t, base, tc.rpc, tc.body)
		if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %s: %v, want invalid_argument with %q", tc.rpc, tc.body, err, tc.want)
		}
	}
	// A partition that exists, and one that has no rows yet.
	for part, want := range map[string]string{"2025-01-02": `"offset":"1"`, "2025-01-03": `"partition":"2025-01-03"`} {
		code, msg := postJSON(t, base+"/strom.v1.ReadService/ListOffsets", fmt.Sprintf(`{"database":"r","table":"pt","partition":%q}`, part))
		if code != "" || !strings.Contains(msg, want) {
			t.Errorf("ListOffsets of partition %s: %s %s, want %s", part, code, msg, want)
		}
	}
}
