package e2e

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// malformedAnswer is what the server said to a malformed request.
type malformedAnswer struct {
	status     int
	grpcStatus string // "" unless a gRPC answer
	text       string // body, and for gRPC the grpc-message
}

// leaks are what a response must never show: Go stack traces and source
// paths.
var leaks = []string{"goroutine ", ".go:", "panic"}

// grpcFrame is a gRPC length-prefixed message: flags, then a big-endian
// length that may lie about the payload.
func grpcFrame(flags byte, length uint32, payload []byte) []byte {
	b := make([]byte, 5, 5+len(payload))
	b[0] = flags
	binary.BigEndian.PutUint32(b[1:], length)
	return append(b, payload...)
}

// rawHTTP writes req to a new connection as is and returns the status line
// the server answers with and the head and body it sends (until it closes
// or 2 s pass).
func rawHTTP(t *testing.T, addr string, req []byte) (statusLine, all string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	go func() { // the server may answer before it has read it all
		_, _ = conn.Write(req)
		_ = conn.(*net.TCPConn).CloseWrite() // a body cut short ends here
	}()
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("no answer to a raw request (%d bytes): %v", len(req), err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	rest, _ := io.ReadAll(io.LimitReader(r, 1<<20))
	return strings.TrimSpace(line), line + string(rest)
}

// TestMalformedRequests sends malformed requests of every kind to the real
// binary — bad JSON, wrong content types, lying and corrupt gRPC frames,
// oversized headers and URLs, garbage on the wire, unknown procedures — and
// checks that each gets a client error (4xx, or a gRPC/Connect error code)
// with no stack trace or source path in it, and that the server stays up.
func TestMalformedRequests(t *testing.T) {
	p := startServer(t, t.TempDir(), "-server.max-request-bytes", "65536")
	cli(t, p, "db", "create", "e2e")
	cli(t, p, "table", "create", "e2e.m", "-c", "id BIGINT NOT NULL", "-c", "name STRING", "--buckets", "2", "--bucket-key", "id")
	cli(t, p, "table", "create", "e2e.mk", "-c", "id BIGINT NOT NULL", "-c", "name STRING", "--primary-key", "id", "--buckets", "2")

	h1 := &http.Client{Timeout: 30 * time.Second}
	h2c := func() *http.Client {
		tr := &http.Transport{Protocols: new(http.Protocols)}
		tr.Protocols.SetUnencryptedHTTP2(true)
		return &http.Client{Transport: tr, Timeout: 30 * time.Second}
	}()
	send := func(t *testing.T, c *http.Client, method, path string, header map[string]string, body []byte) malformedAnswer {
		t.Helper()
		req, err := http.NewRequest(method, p.url()+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		a := malformedAnswer{status: resp.StatusCode, text: string(b)}
		if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/grpc") {
			a.grpcStatus = resp.Trailer.Get("Grpc-Status")
			if a.grpcStatus == "" { // trailers-only answer
				a.grpcStatus = resp.Header.Get("Grpc-Status")
			}
			a.text += " " + resp.Trailer.Get("Grpc-Message") + resp.Header.Get("Grpc-Message")
		}
		return a
	}
	grpcHeader := map[string]string{"Content-Type": "application/grpc", "Te": "trailers"}
	goodAppend := []byte(`{"database": "e2e", "table": "m", "rows": [{"id": 1, "name": "a"}]}`)

	httpCases := []struct {
		name   string
		client *http.Client
		method string
		path   string
		header map[string]string
		body   []byte
		// wantStatus is the HTTP status; for gRPC (wantGRPC != "") 200.
		wantStatus int
		// wantGRPC is the gRPC status code, "" for no gRPC answer. A
		// protocol violation (a frame cut short, a compressed flag without
		// grpc-encoding) is 13 internal, as the gRPC spec and grpc-go
		// answer it; bad content is 3 invalid_argument.
		wantGRPC string
	}{
		// Connect over HTTP/1.1 (curl).
		{"bad JSON", h1, "POST", "/strom.v1.WriteService/Append", map[string]string{"Content-Type": "application/json"},
			[]byte(`{"database": "e2e", "table": "m", "rows": [{"id": 1,,]`), 400, ""},
		{"JSON of the wrong shape", h1, "POST", "/strom.v1.WriteService/Upsert", map[string]string{"Content-Type": "application/json"},
			[]byte(`{"database": ["e2e"], "table": {"m": 1}, "rows": "nope"}`), 400, ""},
		{"JSON not an object", h1, "POST", "/strom.v1.ReadService/Scan", map[string]string{"Content-Type": "application/json"},
			[]byte(`[1, 2, 3]`), 400, ""},
		{"invalid UTF-8 in JSON", h1, "POST", "/strom.v1.ReadService/Scan", map[string]string{"Content-Type": "application/json"},
			[]byte("{\"database\": \"\xff\xfe\", \"table\": \"m\"}"), 400, ""},
		{"text/plain", h1, "POST", "/strom.v1.WriteService/Append", map[string]string{"Content-Type": "text/plain"}, goodAppend, 415, ""},
		{"no content type", h1, "POST", "/strom.v1.WriteService/Append", nil, goodAppend, 415, ""},
		{"multipart", h1, "POST", "/strom.v1.WriteService/Append", map[string]string{"Content-Type": "multipart/form-data; boundary=x"}, goodAppend, 415, ""},
		{"invalid protobuf", h1, "POST", "/strom.v1.WriteService/Append", map[string]string{"Content-Type": "application/proto"},
			[]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01}, 400, ""},
		{"gzip header, body not gzip", h1, "POST", "/strom.v1.WriteService/Append", map[string]string{"Content-Type": "application/json", "Content-Encoding": "gzip"},
			goodAppend, 400, ""},
		{"GET with a message that is not base64", h1, "GET", "/strom.v1.ReadService/ListOffsets?encoding=json&base64=1&message=" + url.QueryEscape("!!!"), nil, nil, 400, ""},
		{"GET of a write", h1, "GET", "/strom.v1.WriteService/Append?encoding=json&message=" + url.QueryEscape(string(goodAppend)), nil, nil, 405, ""},
		{"unknown method", h1, "POST", "/strom.v1.WriteService/Nope", map[string]string{"Content-Type": "application/json"}, []byte(`{}`), 404, ""},
		{"unknown service", h1, "POST", "/strom.v1.NopeService/Append", map[string]string{"Content-Type": "application/json"}, []byte(`{}`), 404, ""},
		{"path traversal", h1, "GET", "/strom.v1.WriteService/../../../etc/passwd", nil, nil, 404, ""},
		{"Connect stream, truncated envelope", h1, "POST", "/strom.v1.ReadService/Subscribe", map[string]string{"Content-Type": "application/connect+json"},
			grpcFrame(0, 1000, []byte(`{"fetch": {}}`)), 200, ""},

		// gRPC over h2c.
		{"gRPC frame longer than the body", h2c, "POST", "/strom.v1.WriteService/Append", grpcHeader, grpcFrame(0, 1000, []byte{0x0a, 0x03, 'e', '2', 'e'}), 200, "13"},
		{"gRPC frame of 4 GiB", h2c, "POST", "/strom.v1.WriteService/Append", grpcHeader, grpcFrame(0, 0xffffffff, []byte{0x0a}), 200, "8"},
		{"gRPC header cut short", h2c, "POST", "/strom.v1.AdminService/ListDatabases", grpcHeader, []byte{0, 0, 0}, 200, "13"},
		{"gRPC invalid protobuf", h2c, "POST", "/strom.v1.WriteService/Append", grpcHeader, grpcFrame(0, 6, []byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}), 200, "3"},
		{"gRPC compressed flag without grpc-encoding", h2c, "POST", "/strom.v1.AdminService/ListDatabases", grpcHeader, grpcFrame(1, 2, []byte{0x0a, 0x00}), 200, "13"},
		{"gRPC unknown grpc-encoding", h2c, "POST", "/strom.v1.AdminService/ListDatabases",
			map[string]string{"Content-Type": "application/grpc", "Te": "trailers", "Grpc-Encoding": "snappy-9000"}, grpcFrame(1, 2, []byte{0x0a, 0x00}), 200, "12"},
		{"gRPC gzip flag, body not gzip", h2c, "POST", "/strom.v1.AdminService/ListDatabases",
			map[string]string{"Content-Type": "application/grpc", "Te": "trailers", "Grpc-Encoding": "gzip"}, grpcFrame(1, 4, []byte("nope")), 200, "3"},
		{"gRPC unknown content subtype", h2c, "POST", "/strom.v1.AdminService/ListDatabases",
			map[string]string{"Content-Type": "application/grpc+yaml", "Te": "trailers"}, grpcFrame(0, 0, nil), 415, ""},
		{"gRPC unknown method", h2c, "POST", "/strom.v1.WriteService/Nope", grpcHeader, grpcFrame(0, 0, nil), 404, ""},
		{"gRPC two messages to a unary method", h2c, "POST", "/strom.v1.AdminService/ListDatabases", grpcHeader,
			append(grpcFrame(0, 0, nil), grpcFrame(0, 0, nil)...), 200, "12"},
	}
	for _, c := range httpCases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			a := send(t, c.client, c.method, c.path, c.header, c.body)
			t.Logf("%d grpc-status %q: %.300s", a.status, a.grpcStatus, a.text)
			if a.status >= 500 {
				t.Errorf("HTTP %d: a server error", a.status)
			}
			if a.status != c.wantStatus {
				t.Errorf("HTTP %d, want %d", a.status, c.wantStatus)
			}
			if a.grpcStatus != c.wantGRPC {
				t.Errorf("grpc-status %q, want %q", a.grpcStatus, c.wantGRPC)
			}
			if c.wantStatus == 200 && c.wantGRPC == "" && !strings.Contains(a.text, `"error"`) {
				t.Errorf("Connect stream without an error in its end message: %q", a.text)
			}
			for _, leak := range leaks {
				if strings.Contains(a.text, leak) {
					t.Errorf("the answer shows %q: %q", leak, a.text)
				}
			}
		})
	}

	// Requests no HTTP client library sends, written to the socket as is.
	huge := strings.Repeat("a", 2<<20)
	rawCases := []struct {
		name string
		req  string
		want string // start of the status line
	}{
		{"garbage request line", "\x16\x03\x01 HELLO THERE \x00\x01\r\n\r\n", "HTTP/1.1 400"},
		{"request line without a version", "GET /healthz\r\n\r\n", "HTTP/1.1 400"},
		{"unsupported HTTP version", "GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n", "HTTP/1.1 505"},
		{"headers over MaxHeaderBytes", "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + huge + "\r\n\r\n", "HTTP/1.1 431"},
		{"many headers", "GET /healthz HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-A: b\r\n", 200_000) + "\r\n", "HTTP/1.1 431"},
		{"URL over MaxHeaderBytes", "GET /" + huge + " HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 431"},
		{"long URL under the limit", "GET /strom.v1.ReadService/" + strings.Repeat("b", 100<<10) + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "HTTP/1.1 404"},
		{"header without a colon", "GET /healthz HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", "HTTP/1.1 400"},
		{"bad Content-Length", "POST /strom.v1.WriteService/Append HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: -5\r\n\r\n{}", "HTTP/1.1 400"},
		{"body shorter than Content-Length", "POST /strom.v1.WriteService/Append HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n" + string(goodAppend), "HTTP/1.1 400"},
		{"bad chunked encoding", "POST /strom.v1.WriteService/Append HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n", "HTTP/1.1 400"},
		{"h2c preface then garbage", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + strings.Repeat("\xff", 64), ""},
	}
	for _, c := range rawCases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			if strings.HasPrefix(c.req, "PRI") {
				// HTTP/2 answers with a GOAWAY frame, or just closes.
				conn, err := net.DialTimeout("tcp", p.addr, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
				_, _ = conn.Write([]byte(c.req))
				b, _ := io.ReadAll(io.LimitReader(conn, 1<<16))
				for _, leak := range leaks {
					if bytes.Contains(b, []byte(leak)) {
						t.Errorf("the answer shows %q: %q", leak, b)
					}
				}
				return
			}
			line, all := rawHTTP(t, p.addr, []byte(c.req))
			t.Logf("%d bytes → %q", len(c.req), line)
			if !strings.HasPrefix(line, c.want) {
				t.Errorf("status line %q, want %s", line, c.want)
			}
			for _, leak := range leaks {
				if strings.Contains(all, leak) {
					t.Errorf("the answer shows %q: %.500q", leak, all)
				}
			}
		})
	}

	// Still up, still serving, nothing written, no panic logged.
	waitReady(t, p)
	resp, err := http.Get(p.url() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: %d", resp.StatusCode)
	}
	if out := strings.TrimSpace(cli(t, p, "count", "e2e.mk")); out != "0" {
		t.Errorf("rows written by malformed requests: %s", out)
	}
	if a := send(t, h1, "POST", "/strom.v1.ReadService/ListOffsets", map[string]string{"Content-Type": "application/json"},
		[]byte(`{"database": "e2e", "table": "m", "spec": "OFFSET_SPEC_LATEST"}`)); a.status != 200 || strings.Contains(a.text, `"offset"`) {
		t.Errorf("rows written by malformed requests: latest offsets %d %s", a.status, a.text)
	}
	if a := send(t, h1, "POST", "/strom.v1.WriteService/Append", map[string]string{"Content-Type": "application/json"}, goodAppend); a.status != 200 {
		t.Fatalf("a good append after the malformed ones: %d %s", a.status, a.text)
	}
	select {
	case <-p.exited:
		t.Fatalf("the server exited: %v", p.err)
	default:
	}
	if strings.Contains(p.log(), "panic") {
		t.Errorf("the server logged a panic:\n%s", p.log())
	}
}
