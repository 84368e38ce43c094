package cli

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"connectrpc.com/connect"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/api/gen/strom/v1/stromv1connect"
	"github.com/strom-io/strom/services/auth"
)

// runStrom runs the strom command with args and stdin, and returns its stdout.
func runStrom(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	root := NewRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func TestTokenGenerateAndHash(t *testing.T) {
	out, err := runStrom(t, "", "token", "generate")
	if err != nil {
		t.Fatal(err)
	}
	var token, hash string
	for line := range strings.Lines(out) {
		k, v, _ := strings.Cut(line, ":")
		switch k {
		case "token":
			token = strings.TrimSpace(v)
		case "sha256":
			hash = strings.TrimSpace(v)
		}
	}
	if !strings.HasPrefix(token, auth.TokenPrefix) || hash != auth.Hash(token) {
		t.Fatalf("generate printed %q", out)
	}
	got, err := runStrom(t, token+"\n", "token", "hash")
	if err != nil || strings.TrimSpace(got) != hash {
		t.Errorf("hash = %q, %v; want %s", got, err, hash)
	}
	if _, err := runStrom(t, "\n", "token", "hash"); err == nil {
		t.Error("hash of an empty stdin succeeded")
	}
}

type listAdmin struct {
	stromv1connect.UnimplementedAdminServiceHandler
}

func (listAdmin) ListDatabases(context.Context, *connect.Request[stromv1.ListDatabasesRequest]) (*connect.Response[stromv1.ListDatabasesResponse], error) {
	return connect.NewResponse(&stromv1.ListDatabasesResponse{Databases: []*stromv1.Database{{Name: "shop"}}}), nil
}

type countRead struct {
	stromv1connect.UnimplementedReadServiceHandler
}

func (countRead) Count(context.Context, *connect.Request[stromv1.CountRequest]) (*connect.Response[stromv1.CountResponse], error) {
	return connect.NewResponse(&stromv1.CountResponse{Count: 42}), nil
}

// TestTokenFlags: the client commands send --token, --token-file or
// STROM_TOKEN to a server that checks it.
func TestTokenFlags(t *testing.T) {
	tokens, err := auth.Parse([]byte("tokens:\n  - {name: cli, sha256: " + auth.Hash("cli-token") + ", grants: [{database: '*', scopes: [read]}]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	opt := connect.WithInterceptors(auth.NewStaticSource(tokens, slog.New(slog.DiscardHandler)).Interceptor())
	mux := http.NewServeMux()
	mux.Handle(stromv1connect.NewAdminServiceHandler(listAdmin{}, opt))
	mux.Handle(stromv1connect.NewReadServiceHandler(countRead{}, opt))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("cli-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("STROM_TOKEN", "")
	t.Setenv("STROM_TOKEN_FILE", "")

	for _, c := range []struct {
		name string
		env  map[string]string
		args []string
		want string // in the output or the error
	}{
		{name: "no token", args: []string{"database", "list"}, want: "unauthenticated"},
		{name: "wrong token", args: []string{"--token", "nope", "database", "list"}, want: "unknown bearer token"},
		{name: "token", args: []string{"--token", "cli-token", "database", "list"}, want: "shop"},
		{name: "token file", args: []string{"--token-file", file, "database", "list"}, want: "shop"},
		{name: "env", env: map[string]string{"STROM_TOKEN": "cli-token"}, args: []string{"database", "list"}, want: "shop"},
		{name: "env file", env: map[string]string{"STROM_TOKEN_FILE": file}, args: []string{"database", "list"}, want: "shop"},
		{name: "flag over env", env: map[string]string{"STROM_TOKEN": "nope"}, args: []string{"--token", "cli-token", "database", "list"}, want: "shop"},
		{name: "go client", args: []string{"--token", "cli-token", "count", "shop.t"}, want: "42"},
		{name: "go client without token", args: []string{"count", "shop.t"}, want: "unauthenticated"},
		{name: "missing file", args: []string{"--token-file", file + ".missing", "database", "list"}, want: "--token-file"},
		{name: "both", args: []string{"--token", "x", "--token-file", file, "database", "list"}, want: "not both"},
	} {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			out, err := runStrom(t, "", append([]string{"--addr", srv.URL}, c.args...)...)
			if err != nil {
				out += err.Error()
			}
			if !strings.Contains(out, c.want) {
				t.Errorf("output %q does not hold %q", out, c.want)
			}
			if c.want == "shop" && err != nil {
				t.Error(err)
			}
		})
	}
}
