package server_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/api/gen/strom/v1/stromv1connect"
	"github.com/strom-io/strom/testenv"
)

// tlsClient trusts ca only; gRPC forces HTTP/2 (negotiated by ALPN).
func tlsClient(ca *testenv.CA, http2Only bool) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: ca.Pool()}
	if http2Only {
		t.Protocols = new(http.Protocols)
		t.Protocols.SetHTTP2(true)
	}
	return &http.Client{Transport: t, Timeout: 30 * time.Second}
}

// TestTLS serves the API over HTTPS: Connect JSON over HTTP/1.1 and
// HTTP/2, gRPC over HTTP/2 by ALPN, gRPC-Web; plain HTTP and h2c get no
// answer from the API.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testenv.NewCA(t)
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	ca.WriteServerCert(t, certFile, keyFile)
	base := startServer(t, "-server.tls-cert-file", certFile, "-server.tls-key-file", keyFile)
	if !strings.HasPrefix(base, "https://") {
		t.Fatalf("server URL %s, want https://", base)
	}
	ctx := context.Background()

	h1 := tlsClient(ca, false)
	h1.Transport.(*http.Transport).Protocols = new(http.Protocols)
	h1.Transport.(*http.Transport).Protocols.SetHTTP1(true)
	for name, c := range map[string]struct {
		client *http.Client
		opts   []connect.ClientOption
		proto  string
	}{
		"connect-json/http1": {h1, []connect.ClientOption{connect.WithProtoJSON()}, "HTTP/1.1"},
		"connect/http2":      {tlsClient(ca, false), nil, "HTTP/2.0"},
		"grpc":               {tlsClient(ca, true), []connect.ClientOption{connect.WithGRPC()}, "HTTP/2.0"},
		"grpc-web":           {tlsClient(ca, false), []connect.ClientOption{connect.WithGRPCWeb()}, "HTTP/2.0"},
	} {
		t.Run(name, func(t *testing.T) {
			var proto string
			hc := &protoRecorder{next: c.client, proto: &proto}
			admin := stromv1connect.NewAdminServiceClient(hc, base, c.opts...)
			db := "tls_" + strings.NewReplacer("-", "_", "/", "_").Replace(name)
			if _, err := admin.CreateDatabase(ctx, connect.NewRequest(&stromv1.CreateDatabaseRequest{Name: db})); err != nil {
				t.Fatal(err)
			}
			if proto != c.proto {
				t.Errorf("protocol %s, want %s", proto, c.proto)
			}
		})
	}

	// Plain HTTP/1.1 and h2c reach no handler.
	plain := strings.Replace(base, "https://", "http://", 1)
	resp, err := http.Post(plain+"/strom.v1.AdminService/ListDatabases", "application/json", strings.NewReader("{}"))
	if err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || bytes.Contains(body, []byte("databases")) {
			t.Errorf("plain HTTP to the TLS port: %d %s, want 400", resp.StatusCode, body)
		}
	}
	_, err = stromv1connect.NewAdminServiceClient(h2cClient(), plain, connect.WithGRPC()).ListDatabases(ctx, connect.NewRequest(&stromv1.ListDatabasesRequest{}))
	if err == nil {
		t.Error("h2c to the TLS port succeeded")
	}
	// A client that does not trust the CA fails the handshake.
	resp, err = http.Get(base + "/healthz")
	if err == nil {
		resp.Body.Close()
	}
	var verr *tls.CertificateVerificationError
	if err == nil || !errors.As(err, &verr) {
		t.Errorf("client without the CA: %v, want an unknown-authority error", err)
	}
}

// protoRecorder records the HTTP protocol of the last response.
type protoRecorder struct {
	next  *http.Client
	proto *string
}

func (r *protoRecorder) Do(req *http.Request) (*http.Response, error) {
	resp, err := r.next.Do(req)
	if err == nil {
		*r.proto = resp.Proto
	}
	return resp, err
}

// TestRequestSizeLimit: a message over -server.max-request-bytes fails with
// resource_exhausted over every protocol, and the server goes on serving.
func TestRequestSizeLimit(t *testing.T) {
	base := startServer(t, "-server.max-request-bytes", "4096")
	ctx := context.Background()
	admin := stromv1connect.NewAdminServiceClient(http.DefaultClient, base)
	if _, err := admin.CreateDatabase(ctx, connect.NewRequest(&stromv1.CreateDatabaseRequest{Name: "lim"})); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 8000)
	row, err := structpb.NewStruct(map[string]any{"v": big})
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]stromv1connect.WriteServiceClient{
		"connect":      stromv1connect.NewWriteServiceClient(http.DefaultClient, base),
		"connect-json": stromv1connect.NewWriteServiceClient(http.DefaultClient, base, connect.WithProtoJSON()),
		"grpc":         stromv1connect.NewWriteServiceClient(h2cClient(), base, connect.WithGRPC()),
		"grpc-web":     stromv1connect.NewWriteServiceClient(http.DefaultClient, base, connect.WithGRPCWeb()),
	} {
		_, err := c.Append(ctx, connect.NewRequest(&stromv1.AppendRequest{Database: "lim", Table: "t", Rows: []*structpb.Struct{row}}))
		if connect.CodeOf(err) != connect.CodeResourceExhausted {
			t.Errorf("%s: %v, want resource_exhausted", name, err)
		}
	}
	resp, err := http.Post(base+"/strom.v1.WriteService/Append", "application/json",
		strings.NewReader(`{"database": "lim", "table": "t", "rows": [{"v": "`+big+`"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || !bytes.Contains(body, []byte(`"resource_exhausted"`)) {
		t.Errorf("curl-style JSON over the limit: %d %s, want 429 resource_exhausted", resp.StatusCode, body)
	}
	if _, err := admin.ListDatabases(ctx, connect.NewRequest(&stromv1.ListDatabasesRequest{})); err != nil {
		t.Errorf("after the refused requests: %v", err)
	}
}

// TestRateLimit: with -server.rate-limit a client over its burst gets
// resource_exhausted (HTTP 429 with Retry-After for JSON clients) naming
// the limit; health checks are not limited.
func TestRateLimit(t *testing.T) {
	base := startServer(t, "-server.rate-limit", "0.5", "-server.rate-limit-burst", "3")
	ctx := context.Background()
	admin := stromv1connect.NewAdminServiceClient(h2cClient(), base, connect.WithGRPC())
	for i := range 3 {
		if _, err := admin.ListDatabases(ctx, connect.NewRequest(&stromv1.ListDatabasesRequest{})); err != nil {
			t.Fatalf("call %d within the burst: %v", i, err)
		}
	}
	_, err := admin.ListDatabases(ctx, connect.NewRequest(&stromv1.ListDatabasesRequest{}))
	if connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "-server.rate-limit") || !strings.Contains(err.Error(), "retry in") {
		t.Fatalf("gRPC call over the burst: %v, want resource_exhausted naming -server.rate-limit with a retry hint", err)
	}
	resp, err := http.Post(base+"/strom.v1.AdminService/ListDatabases", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !bytes.Contains(body, []byte("resource_exhausted")) {
		t.Errorf("JSON call over the burst: %d Retry-After %q %s, want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	// A server stream is limited when it starts.
	read := stromv1connect.NewReadServiceClient(http.DefaultClient, base)
	stream, err := read.Subscribe(ctx, connect.NewRequest(&stromv1.SubscribeRequest{Fetch: &stromv1.FetchRequest{Database: "x", Table: "y"}}))
	if err == nil {
		for stream.Receive() {
		}
		err = stream.Err()
		stream.Close()
	}
	if connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Errorf("stream over the burst: %v, want resource_exhausted", err)
	}
	for range 5 {
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("/healthz: %d", resp.StatusCode)
		}
	}
}
