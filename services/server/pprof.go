package server

import (
	"errors"
	"net/http"
	"net/http/pprof"

	"github.com/strom-io/strom/services/auth"
)

// registerPprof serves Go's runtime profiles (CPU, heap, goroutines, ...)
// under /debug/pprof/ on the API port when -server.pprof-enabled is set:
// `go tool pprof http://host:9123/debug/pprof/profile?seconds=30`. It is
// off by default, since profiles expose internals; with authentication on,
// only tokens with admin on "*" may fetch them.
func (s *Server) registerPprof(mux *http.ServeMux) {
	h := http.NewServeMux()
	h.HandleFunc("/debug/pprof/", pprof.Index)
	h.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	h.HandleFunc("/debug/pprof/profile", pprof.Profile)
	h.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	h.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("GET /debug/pprof/", s.auth.clusterAdmin(h))
}

// clusterAdmin guards a plain HTTP handler with a token that has admin on
// every database ("*"); it passes everything when authentication is off.
func (a *serverAuth) clusterAdmin(h http.Handler) http.Handler {
	if a.tokens == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := a.tokens.Authorize(r.Header.Get("Authorization"), "the runtime profiles", "*", auth.ScopeAdmin); err != nil {
			code := http.StatusForbidden
			if errors.Is(err, auth.ErrUnauthenticated) {
				code = http.StatusUnauthorized
			}
			http.Error(w, err.Error(), code)
			return
		}
		h.ServeHTTP(w, r)
	})
}
