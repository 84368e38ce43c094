package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/structpb"

	clusterv1 "github.com/strom-io/strom/api/gen/strom/cluster/v1"
	"github.com/strom-io/strom/api/gen/strom/cluster/v1/clusterv1connect"
	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/api/gen/strom/v1/stromv1connect"
	"github.com/strom-io/strom/services/auth"
)

// testTokens are the tokens of the authentication tests: name -> grants.
// Each token is "token-" + name.
var testTokens = map[string]string{
	"admin":       `[{database: "*", scopes: [admin]}]`,
	"all-reader":  `[{database: "*", scopes: [read]}]`,
	"shop-admin":  `[{database: shop, scopes: [admin]}]`,
	"shop-writer": `[{database: shop, scopes: [write]}]`,
	"shop-reader": `[{database: shop, scopes: [read]}]`,
	"other-admin": `[{database: other, scopes: [admin]}]`,
	"nothing":     `[]`,
}

// writeTokensFile writes testTokens (and extra entries) as a tokens file.
func writeTokensFile(t *testing.T, path string, extra ...string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("tokens:\n")
	for name, grants := range testTokens {
		fmt.Fprintf(&b, "  - name: %s\n    sha256: %s\n    grants: %s\n", name, auth.Hash("token-"+name), grants)
	}
	for _, e := range extra {
		b.WriteString(e)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

const internalSecret = "internal-secret-0123456789"

// startAuthServer starts an embedded server with authentication on and
// returns its base URL and its tokens file.
func startAuthServer(t *testing.T) (base, tokensFile string) {
	t.Helper()
	dir := t.TempDir()
	tokensFile = filepath.Join(dir, "tokens.yaml")
	writeTokensFile(t, tokensFile)
	secret := filepath.Join(dir, "internal-token")
	if err := os.WriteFile(secret, []byte(internalSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base = startServer(t, "-auth.tokens-file", tokensFile, "-auth.reload-interval", "100ms", "-server.internal-token-file", secret)
	return base, tokensFile
}

// procedureScopes is the scope every public RPC needs, and whether it is
// cluster-wide (needs the scope on "*"): docs/security.md has the same
// table. A new RPC fails the test until it is added here.
var procedureScopes = map[string]struct {
	scope       string
	clusterWide bool
}{
	"/strom.v1.AdminService/CreateDatabase":   {"admin", true},
	"/strom.v1.AdminService/ListDatabases":    {"read", true},
	"/strom.v1.AdminService/GetDatabase":      {"read", false},
	"/strom.v1.AdminService/DropDatabase":     {"admin", false},
	"/strom.v1.AdminService/CreateTable":      {"admin", false},
	"/strom.v1.AdminService/GetTable":         {"read", false},
	"/strom.v1.AdminService/ListTables":       {"read", false},
	"/strom.v1.AdminService/DropTable":        {"admin", false},
	"/strom.v1.AdminService/AlterTable":       {"admin", false},
	"/strom.v1.AdminService/GetClusterStatus": {"read", true},
	"/strom.v1.AdminService/GetLakeStatus":    {"read", false},
	"/strom.v1.WriteService/Append":           {"write", false},
	"/strom.v1.WriteService/Upsert":           {"write", false},
	"/strom.v1.WriteService/Delete":           {"write", false},
	"/strom.v1.ReadService/ListOffsets":       {"read", false},
	"/strom.v1.ReadService/Fetch":             {"read", false},
	"/strom.v1.ReadService/Subscribe":         {"read", false},
	"/strom.v1.ReadService/Lookup":            {"read", false},
	"/strom.v1.ReadService/PrefixLookup":      {"read", false},
	"/strom.v1.ReadService/Scan":              {"read", false},
	"/strom.v1.ReadService/ScanStream":        {"read", false},
	"/strom.v1.ReadService/Count":             {"read", false},
}

// publicMethods lists every RPC of the public services, from their
// registered descriptors.
func publicMethods(t *testing.T) map[string]protoreflect.MethodDescriptor {
	t.Helper()
	out := map[string]protoreflect.MethodDescriptor{}
	for _, name := range []string{stromv1connect.AdminServiceName, stromv1connect.WriteServiceName, stromv1connect.ReadServiceName} {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
		if err != nil {
			t.Fatal(err)
		}
		methods := d.(protoreflect.ServiceDescriptor).Methods()
		for i := range methods.Len() {
			m := methods.Get(i)
			out["/"+name+"/"+string(m.Name())] = m
		}
	}
	return out
}

// requestFor returns an empty request of md naming the database db (the
// database field, the name of a database request, Subscribe's fetch).
func requestFor(md protoreflect.MethodDescriptor, db string) *dynamicpb.Message {
	m := dynamicpb.NewMessage(md.Input())
	var set func(m protoreflect.Message)
	set = func(m protoreflect.Message) {
		fields := m.Descriptor().Fields()
		if f := fields.ByName("database"); f != nil && f.Kind() == protoreflect.StringKind {
			m.Set(f, protoreflect.ValueOfString(db))
			return
		}
		if f := fields.ByName("name"); f != nil && strings.HasSuffix(string(m.Descriptor().Name()), "DatabaseRequest") {
			m.Set(f, protoreflect.ValueOfString(db))
			return
		}
		for _, name := range []protoreflect.Name{"fetch", "scan"} { // Subscribe's, ScanStream's request
			if f := fields.ByName(name); f != nil && f.Kind() == protoreflect.MessageKind {
				set(m.Mutable(f).Message())
			}
		}
	}
	set(m)
	return m
}

// call calls md with msg and the token (none if empty) and returns the
// error code, 0 for success. A server stream that starts without an
// error counts as success.
func call(t *testing.T, base string, md protoreflect.MethodDescriptor, msg *dynamicpb.Message, token string, opts ...connect.ClientOption) connect.Code {
	t.Helper()
	procedure := "/" + string(md.Parent().FullName()) + "/" + string(md.Name())
	opts = append(opts, connect.WithSchema(md), connect.WithResponseInitializer(func(_ connect.Spec, m any) error {
		*m.(*dynamicpb.Message) = *dynamicpb.NewMessage(md.Output())
		return nil
	}))
	c := connect.NewClient[dynamicpb.Message, dynamicpb.Message](h2cClient(), base+procedure, opts...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req := connect.NewRequest(msg)
	if token != "" {
		req.Header().Set("Authorization", "Bearer "+token)
	}
	var err error
	if md.IsStreamingServer() {
		var s *connect.ServerStreamForClient[dynamicpb.Message]
		if s, err = c.CallServerStream(ctx, req); err == nil {
			s.Receive()
			err = s.Err()
			_ = s.Close()
		}
		if errors.Is(err, context.DeadlineExceeded) || connect.CodeOf(err) == connect.CodeDeadlineExceeded {
			err = nil // streaming, authorized
		}
	} else {
		_, err = c.CallUnary(ctx, req)
	}
	if err == nil {
		return 0
	}
	if ce := new(connect.Error); errors.As(err, &ce) && ce.Code() == connect.CodePermissionDenied {
		if !strings.Contains(ce.Message(), strings.TrimPrefix(procedure, "/")) {
			t.Errorf("%s: permission_denied message %q does not name the procedure", procedure, ce.Message())
		}
	}
	if strings.Contains(err.Error(), token) && token != "" {
		t.Errorf("%s: the error %q holds the token", procedure, err)
	}
	return connect.CodeOf(err)
}

// TestAuthEveryRPC calls every RPC of the public services with no token,
// a wrong one, tokens without the scope or for another database, and the
// least token that has the scope, over Connect and gRPC.
func TestAuthEveryRPC(t *testing.T) {
	base, _ := startAuthServer(t)
	methods := publicMethods(t)
	for proc := range procedureScopes {
		if methods[proc] == nil {
			t.Errorf("procedureScopes names %s, which the services do not have", proc)
		}
	}
	protocols := map[string][]connect.ClientOption{"connect": nil, "grpc": {connect.WithGRPC()}}
	for proc, md := range methods {
		want, ok := procedureScopes[proc]
		if !ok {
			t.Errorf("%s is not in procedureScopes: add it with its scope (and to docs/security.md)", proc)
			continue
		}
		// right is the least token that has the scope; lacking ones have
		// weaker scopes on the database, or none.
		var right string
		lacking := []string{"nothing", "other-admin"}
		switch {
		case want.clusterWide && want.scope == "admin":
			right = "admin"
			lacking = append(lacking, "all-reader", "shop-admin")
		case want.clusterWide:
			right = "all-reader"
			lacking = append(lacking, "shop-admin")
		case want.scope == "admin":
			right = "shop-admin"
			lacking = append(lacking, "shop-writer", "all-reader")
		case want.scope == "write":
			right = "shop-writer"
			lacking = append(lacking, "shop-reader", "all-reader")
		default:
			right = "shop-reader"
		}
		for pname, popts := range protocols {
			t.Run(strings.TrimPrefix(proc, "/")+"/"+pname, func(t *testing.T) {
				msg := requestFor(md, "shop")
				for token, code := range map[string]connect.Code{"": connect.CodeUnauthenticated, "token-wrong": connect.CodeUnauthenticated} {
					if got := call(t, base, md, msg, token, popts...); got != code {
						t.Errorf("token %q: %v, want %v", token, got, code)
					}
				}
				for _, name := range lacking {
					if got := call(t, base, md, msg, "token-"+name, popts...); got != connect.CodePermissionDenied {
						t.Errorf("token %s: %v, want permission_denied", name, got)
					}
				}
				for _, name := range []string{right, "admin"} {
					if got := call(t, base, md, msg, "token-"+name, popts...); got == connect.CodeUnauthenticated || got == connect.CodePermissionDenied {
						t.Errorf("token %s: %v, want the call authorized", name, got)
					}
				}
			})
		}
	}
}

// TestAuthProbesReflectionAndIceberg: probes and metrics stay open,
// reflection and the Iceberg catalog need a valid token.
func TestAuthProbesReflectionAndIceberg(t *testing.T) {
	base, _ := startAuthServer(t)
	ctx := context.Background()
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		rsp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		_ = rsp.Body.Close()
		if rsp.StatusCode == http.StatusUnauthorized || rsp.StatusCode == http.StatusForbidden {
			t.Errorf("GET %s without a token: %s", path, rsp.Status)
		}
	}
	if _, err := grpchealth.NewClient(h2cClient(), base, connect.WithGRPC()).Check(ctx, &grpchealth.CheckRequest{}); err != nil {
		t.Errorf("gRPC health check without a token: %v", err)
	}

	reflect := grpcreflect.NewClient(h2cClient(), base, connect.WithGRPC())
	for token, want := range map[string]connect.Code{"": connect.CodeUnauthenticated, "token-wrong": connect.CodeUnauthenticated, "token-nothing": 0} {
		h := http.Header{}
		if token != "" {
			h.Set("Authorization", "Bearer "+token)
		}
		s := reflect.NewStream(ctx, grpcreflect.WithRequestHeaders(h))
		_, err := s.ListServices()
		_, _ = s.Close()
		if got := connect.CodeOf(err); (err == nil && want != 0) || (err != nil && got != want) {
			t.Errorf("reflection with token %q: %v, want %v", token, err, want)
		}
	}

	for _, c := range []struct {
		token, path string
		status      int
	}{
		{"", "/iceberg/v1/config", http.StatusUnauthorized},
		{"token-wrong", "/iceberg/v1/config", http.StatusUnauthorized},
		{"token-nothing", "/iceberg/v1/config", http.StatusNotImplemented}, // no lake in this deployment
		{"", "/iceberg/v1/namespaces/shop", http.StatusUnauthorized},
	} {
		req, _ := http.NewRequest(http.MethodGet, base+c.path, nil)
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		rsp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(rsp.Body)
		_ = rsp.Body.Close()
		if rsp.StatusCode != c.status {
			t.Errorf("GET %s with token %q: %d %s, want %d", c.path, c.token, rsp.StatusCode, body, c.status)
			continue
		}
		if c.status == http.StatusUnauthorized {
			var e struct {
				Error struct {
					Type string `json:"type"`
					Code int    `json:"code"`
				} `json:"error"`
			}
			if err := json.Unmarshal(body, &e); err != nil || e.Error.Type != "NotAuthorizedException" || e.Error.Code != 401 {
				t.Errorf("GET %s: body %s, want an Iceberg ErrorModel NotAuthorizedException", c.path, body)
			}
		}
	}
}

// TestAuthReload: a token added to the file works within the reload
// interval; a bad file keeps the tokens in force.
func TestAuthReload(t *testing.T) {
	base, file := startAuthServer(t)
	admin := stromv1connect.NewAdminServiceClient(http.DefaultClient, base)
	list := func(token string) error {
		req := connect.NewRequest(&stromv1.ListDatabasesRequest{})
		req.Header().Set("Authorization", "Bearer "+token)
		_, err := admin.ListDatabases(context.Background(), req)
		return err
	}
	if err := list("token-late"); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("unknown token: %v", err)
	}
	writeTokensFile(t, file, "  - {name: late, sha256: "+auth.Hash("token-late")+", grants: [{database: '*', scopes: [read]}]}\n")
	waitFor(t, func() bool { return list("token-late") == nil })

	if err := os.WriteFile(file, []byte("tokens: [{name: broken}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond) // several reload intervals
	if err := list("token-late"); err != nil {
		t.Errorf("after a bad file: %v, want the old tokens in force", err)
	}
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !ok(); {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAuthInternalPort: the internal port refuses calls without the
// frontends' shared secret.
func TestAuthInternalPort(t *testing.T) {
	base, _ := startAuthServer(t)
	req := connect.NewRequest(&stromv1.GetClusterStatusRequest{})
	req.Header().Set("Authorization", "Bearer token-admin")
	st, err := stromv1connect.NewAdminServiceClient(http.DefaultClient, base).GetClusterStatus(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	internal := "http://" + st.Msg.GetMembers()[0].GetInternalAddress()
	for name, opts := range map[string][]connect.ClientOption{"connect": nil, "grpc": {connect.WithGRPC()}} {
		c := clusterv1connect.NewClusterServiceClient(h2cClient(), internal, opts...)
		for token, wantAuth := range map[string]bool{"": false, "token-admin": false, internalSecret[:16]: false, internalSecret: true} {
			req := connect.NewRequest(&clusterv1.CountRequest{TableId: 1})
			if token != "" {
				req.Header().Set("Authorization", "Bearer "+token)
			}
			_, err := c.Count(context.Background(), req)
			if gotAuth := connect.CodeOf(err) != connect.CodeUnauthenticated; gotAuth != wantAuth {
				t.Errorf("%s: internal call with token %q: %v", name, token, err)
			}
		}
	}
}

// TestAuthClusterForwarding: frontends that share the internal secret
// forward writes to each other's buckets.
func TestAuthClusterForwarding(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "internal-token")
	if err := os.WriteFile(secret, []byte(internalSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	shared := append(backends(t)["postgres+s3"](t), "-server.internal-token-file", secret)
	nodes := []*node{startNode(t, "a1", shared), startNode(t, "a2", shared)}
	ctx := context.Background()
	if _, err := nodes[0].admin.CreateDatabase(ctx, connect.NewRequest(&stromv1.CreateDatabaseRequest{Name: "fwd"})); err != nil {
		t.Fatal(err)
	}
	two := int32(2)
	if _, err := nodes[0].admin.CreateTable(ctx, connect.NewRequest(&stromv1.CreateTableRequest{
		Database: "fwd", Name: "log", Buckets: &two, BucketKey: []string{"id"},
		Schema: &stromv1.Schema{Columns: []*stromv1.Column{{Name: "id", Type: "BIGINT"}}},
	})); err != nil {
		t.Fatal(err)
	}
	waitLeaders(t, nodes[0], "log", map[string]int{"a1": 1, "a2": 1})
	for _, n := range nodes {
		var rows []*structpb.Struct
		for i := range 20 {
			st, _ := structpb.NewStruct(map[string]any{"id": i})
			rows = append(rows, st)
		}
		resp, err := n.write.Append(ctx, connect.NewRequest(&stromv1.AppendRequest{Database: "fwd", Table: "log", Rows: rows}))
		if err != nil {
			t.Fatalf("append via %s: %v", n.id, err)
		}
		if len(resp.Msg.GetOffsets()) != 2 {
			t.Errorf("append via %s: offsets %v, want both buckets", n.id, resp.Msg.GetOffsets())
		}
	}
}

// TestAuthIcebergWithLake: the REST catalog of a deployment with a lake
// asks for read on the namespace's database.
func TestAuthIcebergWithLake(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens.yaml")
	writeTokensFile(t, tokens)
	base := startServer(t, append(backends(t)["postgres+s3"](t), "-auth.tokens-file", tokens)...)
	for _, c := range []struct {
		token, path string
		status      int
		errType     string
	}{
		{"", "/iceberg/v1/config", http.StatusUnauthorized, "NotAuthorizedException"},
		{"token-wrong", "/iceberg/v1/namespaces", http.StatusUnauthorized, "NotAuthorizedException"},
		{"token-nothing", "/iceberg/v1/config", http.StatusOK, ""},
		{"token-nothing", "/iceberg/v1/namespaces", http.StatusOK, ""},
		{"token-shop-reader", "/iceberg/v1/namespaces/shop", http.StatusNotFound, "NoSuchNamespaceException"},
		{"token-shop-reader", "/iceberg/v1/namespaces/other", http.StatusForbidden, "ForbiddenException"},
		{"token-shop-reader", "/iceberg/v1/namespaces/other", http.StatusForbidden, `"message":"Iceberg namespace other needs read on database \"other\"; token \"shop-reader\" has the grants shop:read"`},
		{"", "/iceberg/v1/namespaces", http.StatusUnauthorized, `"message":"no bearer token`},
		{"token-nothing", "/iceberg/v1/namespaces/shop/tables/t", http.StatusForbidden, "ForbiddenException"},
		{"token-other-admin", "/iceberg/v1/namespaces/other/tables/t", http.StatusNotFound, "NoSuchTableException"},
	} {
		req, _ := http.NewRequest(http.MethodGet, base+c.path, nil)
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		rsp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(rsp.Body)
		_ = rsp.Body.Close()
		if rsp.StatusCode != c.status || !strings.Contains(string(body), c.errType) {
			t.Errorf("GET %s with %q: %d %s, want %d %s", c.path, c.token, rsp.StatusCode, body, c.status, c.errType)
		}
	}
}
