package auth_test

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/strom-io/strom/services/auth"
)

func writeFile(t *testing.T, path, content string, mtime time.Time) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

// TestSourceReload: a changed file is reloaded; a bad or missing one keeps
// the tokens in force and is logged without its values.
func TestSourceReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.yaml")
	t0 := time.Now().Add(-time.Hour)
	writeFile(t, path, string(tokensFile(goodFile)), t0)
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	src, err := auth.NewSource(auth.Config{TokensFile: path}, slog.New(slog.NewTextHandler(&logs, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	valid := func(token string) bool {
		_, err := src.Authenticate("Bearer " + token)
		return err == nil
	}
	if !valid("ingest-token") || valid("new-token") {
		t.Fatal("initial tokens wrong")
	}

	// Unchanged: nothing happens.
	src.Check()
	if got := reloads(t, reg, "loaded"); got != 0 {
		t.Errorf("reloads after an unchanged check = %v", got)
	}

	// Changed: the new token works, the removed one no longer does.
	writeFile(t, path, "tokens:\n  - {name: new, sha256: "+auth.Hash("new-token")+", grants: [{database: shop, scopes: [read]}]}\n", t0.Add(time.Second))
	src.Check()
	if valid("ingest-token") || !valid("new-token") {
		t.Fatal("reload did not replace the tokens")
	}

	// Bad: the old tokens stay, the error is logged once, without the hash.
	bad := "tokens:\n  - {name: new, sha256: " + auth.Hash("other") + ", grants: oops}\n"
	writeFile(t, path, bad, t0.Add(2*time.Second))
	src.Check()
	src.Check()
	if !valid("new-token") {
		t.Fatal("a bad file dropped the tokens in force")
	}
	if n := strings.Count(logs.String(), "bad tokens file"); n != 1 {
		t.Errorf("bad file logged %d times, want once:\n%s", n, logs.String())
	}

	// Missing: the old tokens stay.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	src.Check()
	if !valid("new-token") {
		t.Fatal("a missing file dropped the tokens in force")
	}

	// Back, good again.
	writeFile(t, path, string(tokensFile(goodFile)), t0.Add(3*time.Second))
	src.Check()
	if !valid("ingest-token") || valid("new-token") {
		t.Fatal("the restored file was not loaded")
	}
	for _, secret := range []string{"ingest-token", "new-token", auth.Hash("other"), auth.Hash("new-token"), ingestHash} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the log holds the secret or hash %q:\n%s", secret, logs.String())
		}
	}
	if got := reloads(t, reg, "loaded"); got != 2 {
		t.Errorf("loaded reloads = %v, want 2", got)
	}
	if got := reloads(t, reg, "failed"); got != 2 {
		t.Errorf("failed reloads = %v, want 2", got)
	}
}

// reloads is strom_auth_reloads_total{result}.
func reloads(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "strom_auth_reloads_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no strom_auth_reloads_total{result=%q}", result)
	return 0
}

func TestNewSourceErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := auth.NewSource(auth.Config{TokensFile: filepath.Join(dir, "missing")}, slog.New(slog.DiscardHandler), nil); err == nil {
		t.Error("a missing file was accepted")
	}
	bad := filepath.Join(dir, "bad")
	writeFile(t, bad, "tokens: [{name: a}]", time.Now())
	if _, err := auth.NewSource(auth.Config{TokensFile: bad}, slog.New(slog.DiscardHandler), nil); err == nil || !strings.Contains(err.Error(), "auth.tokens_file") {
		t.Errorf("a bad file: %v", err)
	}
}

func TestAuthorize(t *testing.T) {
	tok, err := auth.Parse(tokensFile(goodFile))
	if err != nil {
		t.Fatal(err)
	}
	src := auth.NewStaticSource(tok, slog.New(slog.DiscardHandler))
	for _, c := range []struct {
		header, database string
		need             auth.Scope
		want             error
		msg              string
	}{
		{"", "shop", auth.ScopeRead, auth.ErrUnauthenticated, "no bearer token"},
		{"Basic abc", "shop", auth.ScopeRead, auth.ErrUnauthenticated, "must be \"Bearer <token>\""},
		{"Bearer ", "shop", auth.ScopeRead, auth.ErrUnauthenticated, "must be"},
		{"Bearer wrong", "shop", auth.ScopeRead, auth.ErrUnauthenticated, "unknown bearer token"},
		{"bearer ingest-token", "shop", auth.ScopeWrite, nil, ""},
		{"Bearer ingest-token", "shop", auth.ScopeAdmin, auth.ErrPermissionDenied, `op needs admin on database "shop"; token "ingest" has the grants *:read, shop:write`},
		{"Bearer ingest-token", "", auth.ScopeWrite, auth.ErrPermissionDenied, `op needs write on every database (a grant on database "*")`},
		{"Bearer admin-token", "", auth.ScopeAdmin, nil, ""},
	} {
		_, err := src.Authorize(c.header, "op", c.database, c.need)
		if !errors.Is(err, c.want) || (err != nil && !strings.Contains(err.Error(), c.msg)) {
			t.Errorf("Authorize(%q, %q, %s) = %v, want %v holding %q", c.header, c.database, c.need, err, c.want, c.msg)
		}
		if err != nil && strings.Contains(err.Error(), "token\"") && strings.Contains(err.Error(), "-token") {
			t.Errorf("error %q holds the token", err)
		}
	}
}

func TestInternalSecret(t *testing.T) {
	dir := t.TempDir()
	for content, want := range map[string]string{"": "empty", "short\n": "at least 16", "with space in the secret": "white space"} {
		p := filepath.Join(dir, "s")
		writeFile(t, p, content, time.Now())
		if _, err := auth.LoadInternalSecret(p); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("LoadInternalSecret(%q) = %v, want %q", content, err, want)
		}
	}
	p := filepath.Join(dir, "s")
	writeFile(t, p, "0123456789abcdef-secret\n", time.Now())
	s, err := auth.LoadInternalSecret(p)
	if err != nil {
		t.Fatal(err)
	}
	if s.Token() != "0123456789abcdef-secret" {
		t.Errorf("Token = %q", s.Token())
	}
	h := s.Handler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) }), slog.New(slog.DiscardHandler))
	for header, want := range map[string]int{
		"":                               http.StatusUnauthorized,
		"Bearer 0123456789abcdef":        http.StatusUnauthorized,
		"Bearer 0123456789abcdef-secret": http.StatusTeapot,
	} {
		r := httptest.NewRequest(http.MethodPost, "/strom.cluster.v1.ClusterService/Write", nil)
		r.Header.Set("Content-Type", "application/proto")
		if header != "" {
			r.Header.Set("Authorization", header)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("Authorization %q: status %d, want %d", header, w.Code, want)
		}
	}
}
