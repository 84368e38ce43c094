package server

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// fuzzProcedures are the handlers FuzzConnectJSON sends bodies to.
var fuzzProcedures = []string{
	"/strom.v1.WriteService/Append",
	"/strom.v1.WriteService/Upsert",
	"/strom.v1.ReadService/Scan",
}

// FuzzConnectJSON sends arbitrary Connect JSON bodies to the Append, Upsert
// and Scan handlers of an in-process server with a log table (f.l) and a
// primary-key table (f.k): no body may crash it, get a server error
// (5xx), or show a stack trace.
//
//	go test ./server -run '^$' -fuzz FuzzConnectJSON -fuzztime 1m
func FuzzConnectJSON(f *testing.F) {
	for _, seed := range []string{
		``, `{}`, `{`, `null`, `[]`, `"x"`,
		`{"database": "f", "table": "l", "rows": [{"id": 1, "s": "a"}]}`,
		`{"database": "f", "table": "k", "rows": [{"id": 1, "s": "a"}], "target_columns": ["s"]}`,
		`{"database": "f", "table": "k", "limit": 10}`,
		`{"database": "f", "table": "l", "limit": 5, "union": true}`,
		`{"database": "f", "table": "l", "rows": [{"id": "x"}]}`,
		`{"database": "f", "table": "l", "rows": [{"id": 1e400}]}`,
		`{"database": "f", "table": "l", "rows": [null, 1, "x", []]}`,
		`{"database": "f", "table": "l", "arrow_ipc": "QVJST1cx"}`,
		`{"database": "f", "table": "k", "rows": [{"id": 9223372036854775808}]}`,
		`{"database": "f", "table": "l", "limit": -1}`,
		`{"database": "f", "table": "k", "rows": [{"id": 1, "s": "a"}], "target_column": ["s"]}`,
		`{"database": "f", "table": "k", "columns": ["s", "nope"], "format": "FORMAT_ARROWS"}`,
		`{"database": "f", "table": "k", "columns": ["s"], "format": 99, "union": true}`,
	} {
		for i := range fuzzProcedures {
			f.Add(uint8(i), []byte(seed))
		}
	}
	h := fuzzServer(f)
	f.Fuzz(func(t *testing.T, proc uint8, body []byte) {
		path := fuzzProcedures[int(proc)%len(fuzzProcedures)]
		req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Errorf("%s %q: HTTP %d %s", path, body, w.Code, w.Body)
		}
		for _, leak := range []string{"goroutine ", ".go:", "panic"} {
			if strings.Contains(w.Body.String(), leak) {
				t.Errorf("%s %q: the answer shows %q: %s", path, body, leak, w.Body)
			}
		}
	})
}

// fuzzServer runs a server with embedded defaults until the fuzz test ends
// and returns its API handler, with tables f.l (log) and f.k (primary key).
func fuzzServer(f *testing.F) http.Handler {
	cfg, err := LoadConfig("fuzz", []string{"-data-dir", f.TempDir(), "-server.http-listen-address", "127.0.0.1:0",
		"-server.internal-listen-address", "127.0.0.1:0", "-server.max-request-bytes", "65536", "-frontend.flush-interval", "5ms"}, nil)
	if err != nil {
		f.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := New(ctx, cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		f.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		f.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	f.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			f.Errorf("serve: %v", err)
		}
	})
	h := s.http.Handler
	for _, call := range []struct{ path, body string }{
		{"/strom.v1.AdminService/CreateDatabase", `{"name": "f"}`},
		{"/strom.v1.AdminService/CreateTable", `{"database": "f", "name": "l", "buckets": 2, "schema": {"columns": [{"name": "id", "type": "BIGINT"}, {"name": "s", "type": "STRING", "nullable": true}]}}`},
		{"/strom.v1.AdminService/CreateTable", `{"database": "f", "name": "k", "buckets": 2, "schema": {"columns": [{"name": "id", "type": "BIGINT"}, {"name": "s", "type": "STRING", "nullable": true}], "primary_key": ["id"]}}`},
		{"/strom.v1.WriteService/Append", `{"database": "f", "table": "l", "rows": [{"id": 1, "s": "a"}]}`},
	} {
		req := httptest.NewRequest(http.MethodPost, call.path, strings.NewReader(call.body))
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			f.Fatalf("%s: %d %s", call.path, w.Code, w.Body)
		}
	}
	return h
}
