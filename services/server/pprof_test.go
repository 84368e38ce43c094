package server_test

import (
	"net/http"
	"path/filepath"
	"testing"
)

// TestPprof: the runtime profiles are served only with
// -server.pprof-enabled, and with authentication on only to a token with
// admin on every database.
func TestPprof(t *testing.T) {
	get := func(base, token string) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, base+"/debug/pprof/heap?debug=1", nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(startServer(t), ""); code != http.StatusNotFound {
		t.Errorf("without -server.pprof-enabled: %d, want 404", code)
	}
	if code := get(startServer(t, "-server.pprof-enabled"), ""); code != http.StatusOK {
		t.Errorf("with -server.pprof-enabled: %d, want 200", code)
	}
	tokens := filepath.Join(t.TempDir(), "tokens.yaml")
	writeTokensFile(t, tokens)
	base := startServer(t, "-server.pprof-enabled", "-auth.tokens-file", tokens)
	for token, want := range map[string]int{
		"":                 http.StatusUnauthorized,
		"token-all-reader": http.StatusForbidden,
		"token-shop-admin": http.StatusForbidden,
		"token-admin":      http.StatusOK,
	} {
		if code := get(base, token); code != want {
			t.Errorf("token %q: %d, want %d", token, code, want)
		}
	}
}
