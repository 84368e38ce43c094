package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/strom-io/strom/api/client"
	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/api/gen/strom/v1/stromv1connect"
	"github.com/strom-io/strom/testenv"
)

// tlsHTTPClient trusts only ca. New connections each time when fresh, so
// that every request shakes hands (and sees the current certificate).
func tlsHTTPClient(ca *testenv.CA, fresh bool) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: ca.Pool()}
	t.DisableKeepAlives = fresh
	return &http.Client{Transport: t, Timeout: 30 * time.Second}
}

// servedSerial is the serial of the certificate the server presents to a
// new connection.
func servedSerial(t *testing.T, p *process, ca *testenv.CA) *big.Int {
	t.Helper()
	conn, err := tls.Dial("tcp", p.addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber
}

// TestTLS runs the binary with a certificate from a test CA: the CLI with
// --tls-ca-file and the Go client with a TLS http.Client produce and
// consume over HTTPS (Connect and gRPC), plain HTTP and h2c are refused,
// and a replaced certificate is served without a restart.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testenv.NewCA(t)
	caFile := ca.WriteCAFile(t, dir)
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	serial1 := ca.WriteServerCert(t, certFile, keyFile)
	p := startServerClient(t, dir, tlsHTTPClient(ca, false), "-server.tls-cert-file", certFile, "-server.tls-key-file", keyFile)
	if p.scheme != "https" {
		t.Fatalf("the server announced %s://, want https://", p.scheme)
	}
	if got := servedSerial(t, p, ca); got.Cmp(serial1) != 0 {
		t.Fatalf("served serial %s, want %s", got, serial1)
	}

	// The CLI: https:// and --tls-ca-file; an address without a scheme
	// means https:// with --tls-ca-file.
	tlsCLI := func(args ...string) string {
		return cli(t, p, append([]string{"--addr", p.addr, "--tls-ca-file", caFile}, args...)...)
	}
	cli(t, p, append([]string{"--addr", "https://" + p.addr, "--tls-ca-file", caFile}, "db", "create", "e2e")...)
	tlsCLI("table", "create", "e2e.t", "-c", "id BIGINT NOT NULL", "-c", "s STRING", "--buckets", "2", "--bucket-key", "id")
	rows := filepath.Join(dir, "rows.jsonl")
	var jl strings.Builder
	for i := range 100 {
		fmt.Fprintf(&jl, `{"id": %d, "s": "cli-%d"}`+"\n", i, i)
	}
	if err := os.WriteFile(rows, []byte(jl.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	tlsCLI("produce", "e2e.t", rows)

	// Without the CA the CLI fails verification, with a bad CA file it says so.
	if errOut := cliFails(t, p, "--addr", "https://"+p.addr, "db", "list"); !strings.Contains(errOut, "certificate") {
		t.Errorf("CLI without the CA: %s, want a certificate error", errOut)
	}
	if errOut := cliFails(t, p, "--addr", "https://"+p.addr, "--tls-ca-file", filepath.Join(dir, "missing.pem"), "db", "list"); !strings.Contains(errOut, "--tls-ca-file") {
		t.Errorf("CLI with a missing CA file: %s, want an error naming --tls-ca-file", errOut)
	}

	// The Go client over Connect and over gRPC (HTTP/2 by ALPN).
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for name, c := range map[string]*client.Client{
		"connect": client.New(p.url(), client.WithHTTPClient(tlsHTTPClient(ca, false))),
		"grpc":    client.New(p.url(), client.WithHTTPClient(tlsHTTPClient(ca, false)), client.WithProtocol(client.ProtocolGRPC)),
	} {
		prod := c.NewProducer("e2e", "t")
		for i := range 50 {
			if err := prod.Send(ctx, map[string]any{"id": 1000 + i, "s": name}); err != nil {
				t.Fatalf("%s: Send: %v", name, err)
			}
		}
		if err := prod.Close(ctx); err != nil {
			t.Fatalf("%s: Close: %v", name, err)
		}
		offs, err := c.Read().ListOffsets(ctx, connect.NewRequest(&stromv1.ListOffsetsRequest{Database: "e2e", Table: "t", Spec: stromv1.OffsetSpec_OFFSET_SPEC_LATEST}))
		if err != nil {
			t.Fatalf("%s: ListOffsets: %v", name, err)
		}
		t.Logf("%s: latest offsets %v", name, offs.Msg.GetOffsets())
	}
	consumed := parseConsumed(t, tlsCLI("consume", "e2e.t", "--from", "earliest"))
	if len(consumed) != 200 {
		t.Errorf("consumed %d rows over TLS, want 200", len(consumed))
	}

	// Plain HTTP/1.1 gets 400 from the TLS listener, h2c no answer at all.
	resp, err := http.Get("http://" + p.addr + "/healthz")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP to the TLS port: %d, want 400", resp.StatusCode)
		}
	}
	h2c := &http.Transport{Protocols: new(http.Protocols)}
	h2c.Protocols.SetUnencryptedHTTP2(true)
	_, err = stromv1connect.NewAdminServiceClient(&http.Client{Transport: h2c, Timeout: 10 * time.Second}, "http://"+p.addr, connect.WithGRPC()).
		ListDatabases(ctx, connect.NewRequest(&stromv1.ListDatabasesRequest{}))
	if err == nil {
		t.Error("h2c to the TLS port succeeded")
	}

	// A new certificate is served within the check interval, no restart;
	// open connections keep working.
	keep := client.New(p.url(), client.WithHTTPClient(tlsHTTPClient(ca, false)))
	if _, err := keep.Admin().ListDatabases(ctx, connect.NewRequest(&stromv1.ListDatabasesRequest{})); err != nil {
		t.Fatal(err)
	}
	serial2 := ca.WriteServerCert(t, certFile, keyFile)
	start := time.Now()
	for servedSerial(t, p, ca).Cmp(serial2) != 0 {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("still serving serial %s 10s after the files changed to %s", servedSerial(t, p, ca), serial2)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("new certificate served after %v", time.Since(start).Round(time.Millisecond))
	if _, err := keep.Admin().ListDatabases(ctx, connect.NewRequest(&stromv1.ListDatabasesRequest{})); err != nil {
		t.Errorf("a client connected before the reload: %v", err)
	}
	if _, err := client.New(p.url(), client.WithHTTPClient(tlsHTTPClient(ca, true))).Admin().
		ListDatabases(ctx, connect.NewRequest(&stromv1.ListDatabasesRequest{})); err != nil {
		t.Errorf("a new client after the reload: %v", err)
	}
	if !strings.Contains(p.log(), "TLS certificate reloaded") {
		t.Errorf("the reload was not logged")
	}
	p.stop(t)
}
