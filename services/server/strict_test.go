package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	clusterv1 "github.com/strom-io/strom/api/gen/strom/cluster/v1"
	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/api/gen/strom/v1/stromv1connect"
)

// rawCodec sends request bytes as they are, so that a test can send
// fields the schema does not define.
type rawCodec struct{ name string }

type rawMessage struct{ data []byte }

func (c rawCodec) Name() string { return c.name }

func (rawCodec) Marshal(v any) ([]byte, error) {
	if r, ok := v.(*rawMessage); ok {
		return r.data, nil
	}
	return proto.Marshal(v.(proto.Message))
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	if r, ok := v.(*rawMessage); ok {
		r.data = append([]byte(nil), data...)
		return nil
	}
	return proto.Unmarshal(data, v.(proto.Message)) // gRPC error details
}

// call sends body to procedure at base with a raw client and returns the
// error, for unary and server-streaming methods alike.
func rawCall(base, procedure string, streaming bool, body []byte, hc *http.Client, opts ...connect.ClientOption) error {
	c := connect.NewClient[rawMessage, rawMessage](hc, base+procedure, opts...)
	// Bounds a stream that was not refused: it would wait for rows.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if !streaming {
		_, err := c.CallUnary(ctx, connect.NewRequest(&rawMessage{data: body}))
		return err
	}
	stream, err := c.CallServerStream(ctx, connect.NewRequest(&rawMessage{data: body}))
	if err != nil {
		return err
	}
	defer stream.Close()
	for stream.Receive() {
	}
	return stream.Err()
}

// apiServices returns the services of the public and internal APIs, from
// the generated descriptors.
func apiServices(t *testing.T) []protoreflect.ServiceDescriptor {
	t.Helper()
	// Referenced so that their files are registered.
	_ = stromv1.File_strom_v1_admin_proto
	_ = clusterv1.File_strom_cluster_v1_cluster_proto
	var out []protoreflect.ServiceDescriptor
	for _, pkg := range []protoreflect.FullName{"strom.v1", "strom.cluster.v1"} {
		protoregistry.GlobalFiles.RangeFilesByPackage(pkg, func(fd protoreflect.FileDescriptor) bool {
			for i := range fd.Services().Len() {
				out = append(out, fd.Services().Get(i))
			}
			return true
		})
	}
	var names []string
	for _, s := range out {
		names = append(names, string(s.FullName()))
	}
	slices.Sort(names)
	if want := "strom.cluster.v1.ClusterService,strom.v1.AdminService,strom.v1.ReadService,strom.v1.WriteService"; strings.Join(names, ",") != want {
		t.Fatalf("services %v, want %s", names, want)
	}
	return out
}

// TestStrictDecodingEveryRPC sends an unknown field to every RPC of every
// service (the internal ClusterService on the internal port) in JSON and
// binary over each protocol; each answers invalid_argument naming the
// field and the message. A misspelled field gets the closest name.
func TestStrictDecodingEveryRPC(t *testing.T) {
	base := startServer(t)
	ctx := context.Background()
	status, err := stromv1connect.NewAdminServiceClient(http.DefaultClient, base).GetClusterStatus(ctx, connect.NewRequest(&stromv1.GetClusterStatusRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	internal := "http://" + status.Msg.GetMembers()[0].GetInternalAddress()
	unknownBinary := protowire.AppendVarint(protowire.AppendTag(nil, 999, protowire.VarintType), 1)
	rpcs := 0
	for _, svc := range apiServices(t) {
		addr := base
		if svc.FullName() == "strom.cluster.v1.ClusterService" {
			addr = internal
		}
		for i := range svc.Methods().Len() {
			m := svc.Methods().Get(i)
			rpcs++
			procedure := fmt.Sprintf("/%s/%s", svc.FullName(), m.Name())
			in := m.Input()
			streaming := m.IsStreamingServer()
			t.Run(string(svc.Name())+"."+string(m.Name()), func(t *testing.T) {
				wantJSON := fmt.Sprintf(`unknown field "not_a_field" in %s`, in.FullName())
				wantBinary := fmt.Sprintf(`unknown field number 999 in %s`, in.FullName())
				check := func(how string, err error, want string) {
					t.Helper()
					if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), want) {
						t.Errorf("%s: got %v, want invalid_argument with %q", how, err, want)
					}
				}
				jsonBody := []byte(`{"not_a_field": 1}`)
				if streaming {
					check("connect+json", rawCall(addr, procedure, true, jsonBody, http.DefaultClient, connect.WithCodec(rawCodec{"json"})), wantJSON)
				} else {
					// As curl sends it.
					code, msg := postJSON(t, addr+procedure, string(jsonBody))
					if code != "invalid_argument" || !strings.Contains(msg, wantJSON) {
						t.Errorf("POST JSON: %s %s, want invalid_argument with %q", code, msg, wantJSON)
					}
				}
				if m.Options().(*descriptorpb.MethodOptions).GetIdempotencyLevel() == descriptorpb.MethodOptions_NO_SIDE_EFFECTS && !streaming {
					q := url.Values{"encoding": {"json"}, "message": {string(jsonBody)}}
					resp, err := http.Get(addr + procedure + "?" + q.Encode())
					if err != nil {
						t.Fatal(err)
					}
					if code, msg := decodeAnswer(t, resp); code != "invalid_argument" || !strings.Contains(msg, wantJSON) {
						t.Errorf("GET: %s %s, want invalid_argument with %q", code, msg, wantJSON)
					}
				}
				check("grpc+json", rawCall(addr, procedure, streaming, jsonBody, h2cClient(), connect.WithGRPC(), connect.WithCodec(rawCodec{"json"})), wantJSON)
				for proto, opts := range map[string][]connect.ClientOption{
					"connect+proto": {connect.WithCodec(rawCodec{"proto"})},
					"grpc":          {connect.WithGRPC(), connect.WithCodec(rawCodec{"proto"})},
					"grpc-web":      {connect.WithGRPCWeb(), connect.WithCodec(rawCodec{"proto"})},
				} {
					hc := http.DefaultClient
					if proto == "grpc" {
						hc = h2cClient()
					}
					check(proto, rawCall(addr, procedure, streaming, unknownBinary, hc, opts...), wantBinary)
				}
				// A misspelling gets the closest name.
				if in.Fields().Len() > 0 {
					name := string(in.Fields().Get(0).Name())
					typo := name[:len(name)-1]
					want := fmt.Sprintf(`unknown field %q in %s; did you mean %q?`, typo, in.FullName(), name)
					check("typo", rawCall(addr, procedure, streaming, []byte(fmt.Sprintf(`{%q: null}`, typo)), http.DefaultClient, connect.WithCodec(rawCodec{"json"})), want)
				}
			})
		}
	}
	if rpcs < 20 {
		t.Fatalf("only %d RPCs in the descriptors", rpcs)
	}
}

// postJSON posts body as curl does and returns the error code and message
// (empty for a success).
func postJSON(t *testing.T, url, body string) (code, message string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return decodeAnswer(t, resp)
}

func decodeAnswer(t *testing.T, resp *http.Response) (code, message string) {
	t.Helper()
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode == http.StatusOK {
		return "", string(data)
	}
	var e struct{ Code, Message string }
	if err := json.Unmarshal(data, &e); err != nil {
		t.Fatalf("answer %d %s: %v", resp.StatusCode, data, err)
	}
	return e.Code, e.Message
}

// TestStrictDecodingCases: the typos that used to change what was written
// are refused, and nothing is written; both spellings of field names are
// still accepted.
func TestStrictDecodingCases(t *testing.T) {
	base := startServer(t, "-frontend.flush-interval", "5ms")
	api := func(method string) string { return base + "/strom.v1." + method }
	ok := func(method, body string) string {
		t.Helper()
		code, msg := postJSON(t, api(method), body)
		if code != "" {
			t.Fatalf("%s %s: %s %s", method, body, code, msg)
		}
		return msg
	}
	refused := func(method, body, want string) {
		t.Helper()
		code, msg := postJSON(t, api(method), body)
		if code != "invalid_argument" || !strings.Contains(msg, want) {
			t.Fatalf("%s %s: %s %q, want invalid_argument with %q", method, body, code, msg, want)
		}
	}
	ok("AdminService/CreateDatabase", `{"name":"s"}`)

	// A misspelled primary_key would create a log table.
	refused("AdminService/CreateTable", `{"database":"s","name":"pk","schema":{"columns":[{"name":"id","type":"BIGINT"},{"name":"a","type":"STRING","nullable":true},{"name":"b","type":"STRING","nullable":true}],"primarykey":["id"]}}`,
		`unknown field "primarykey" in strom.v1.Schema at schema.primarykey; did you mean "primaryKey"?`)
	if code, msg := postJSON(t, api("AdminService/GetTable"), `{"database":"s","name":"pk"}`); code != "not_found" {
		t.Fatalf("refused table was created: %s %s", code, msg)
	}
	ok("AdminService/CreateTable", `{"database":"s","name":"pk","schema":{"columns":[{"name":"id","type":"BIGINT"},{"name":"a","type":"STRING","nullable":true},{"name":"b","type":"STRING","nullable":true}],"primary_key":["id"]}}`)
	ok("AdminService/CreateTable", `{"database":"s","name":"lg","schema":{"columns":[{"name":"id","type":"BIGINT"}]}}`)

	// A misspelled target_columns would overwrite every column.
	ok("WriteService/Upsert", `{"database":"s","table":"pk","rows":[{"id":1,"a":"a1","b":"b1"}]}`)
	refused("WriteService/Upsert", `{"database":"s","table":"pk","rows":[{"id":1,"a":"a2"}],"target_column":["id","a"]}`,
		`unknown field "target_column" in strom.v1.UpsertRequest; did you mean "target_columns"?`)
	ok("WriteService/Upsert", `{"database":"s","table":"pk","rows":[{"id":1,"a":"a2"}],"target_columns":["id","a"]}`)
	ok("WriteService/Upsert", `{"database":"s","table":"pk","rows":[{"id":1,"b":"b3"}],"targetColumns":["id","b"],"durability":"DURABILITY_DURABLE"}`)
	if got := ok("ReadService/Lookup", `{"database":"s","table":"pk","keys":[{"id":1}]}`); !strings.Contains(got, `"a":"a2"`) || !strings.Contains(got, `"b":"b3"`) {
		t.Fatalf("after partial updates: %s", got)
	}

	refused("WriteService/Append", `{"database":"s","table":"lg","rows":[{"id":1}],"durability":"DURABILITY_BOGUS"}`,
		`unknown value "DURABILITY_BOGUS" for field durability of strom.v1.AppendRequest (enum strom.v1.Durability); want one of DURABILITY_UNSPECIFIED, DURABILITY_DURABLE, DURABILITY_WAL`)
	refused("WriteService/Append", `{"database":"s","table":"lg","rows":[{"id":1}],"durability":7}`, `unknown value 7 for field durability`)
	if got := ok("ReadService/ListOffsets", `{"database":"s","table":"lg","spec":"OFFSET_SPEC_LATEST"}`); strings.Contains(got, `"offset"`) {
		t.Fatalf("a refused append was written: %s", got)
	}
	ok("WriteService/Append", `{"database":"s","table":"lg","rows":[{"id":1},{"id":2}],"durability":1}`)

	refused("ReadService/ListOffsets", `{"database":"s","table":"lg","spec":"OFFSET_SPEC_EARLYEST"}`, `did you mean "OFFSET_SPEC_EARLIEST"?`)
	refused("ReadService/ListOffsets", `{"database":"s","table":"lg","spec":99}`, `unknown value 99 for field spec of strom.v1.ListOffsetsRequest`)
	if got := ok("ReadService/ListOffsets", `{"database":"s","table":"lg","spec":"OFFSET_SPEC_EARLIEST"}`); strings.Contains(got, `"offset"`) {
		t.Fatalf("earliest offset: %s", got)
	}
	refused("ReadService/Fetch", `{"database":"s","table":"lg","format":"FORMAT_ARROWS"}`, `did you mean "FORMAT_ARROW"?`)
	refused("ReadService/Fetch", `{"database":"s","table":"lg","colums":["id"]}`, `unknown field "colums" in strom.v1.FetchRequest; did you mean "columns"?`)
	for _, body := range []string{
		`{"database":"s","table":"lg","columns":["id"],"max_wait_ms":1,"max_bytes":1000000,"format":"FORMAT_JSON"}`,
		`{"database":"s","table":"lg","columns":["id"],"maxWaitMs":1,"maxBytes":1000000,"format":1}`,
	} {
		if got := ok("ReadService/Fetch", body); !strings.Contains(got, `"nextOffset":"2"`) {
			t.Fatalf("fetch %s: %s", body, got)
		}
	}

	// GET requests decode strictly too.
	q := url.Values{"encoding": {"json"}, "message": {`{"database":"s","table":"lg","colums":["id"]}`}}
	resp, err := http.Get(api("ReadService/Fetch") + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if code, msg := decodeAnswer(t, resp); code != "invalid_argument" || !strings.Contains(msg, `unknown field "colums" in strom.v1.FetchRequest`) {
		t.Fatalf("GET: %s %s", code, msg)
	}
}
