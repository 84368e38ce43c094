package server

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/strom-io/strom/services/auth"
	"github.com/strom-io/strom/tiering/rest"
)

// serverAuth is the authentication of a frontend: the API tokens (nil when
// authentication is off) and the internal port's shared secret (nil when
// the internal port is open).
type serverAuth struct {
	tokens   *auth.Source
	internal *auth.InternalSecret
	logger   *slog.Logger
}

// openAuth loads the tokens file and the internal secret named by cfg. It
// warns when the API or the internal port is open beyond loopback.
func openAuth(cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*serverAuth, error) {
	a := &serverAuth{logger: logger.With(slog.String("component", "auth"))}
	var err error
	if cfg.Auth.TokensFile != "" {
		if a.tokens, err = auth.NewSource(cfg.Auth, a.logger, reg); err != nil {
			return nil, err
		}
	} else if !loopbackOnly(cfg.Server.HTTPListenAddress) {
		logger.Warn("authentication is off and the API listens beyond loopback: anyone who reaches it may read, write and drop every table; set -auth.tokens-file (docs/security.md)",
			slog.String("address", cfg.Server.HTTPListenAddress))
	}
	if cfg.Server.InternalTokenFile != "" {
		if a.internal, err = auth.LoadInternalSecret(cfg.Server.InternalTokenFile); err != nil {
			return nil, err
		}
	} else if a.tokens != nil && !loopbackOnly(cfg.Server.InternalListenAddress) {
		logger.Warn("the internal port has no shared secret: anyone who reaches it may write forwarded rows without a token; set -server.internal-token-file on every frontend (docs/security.md)",
			slog.String("address", cfg.Server.InternalListenAddress))
	}
	return a, nil
}

// loopbackOnly reports whether a listen address binds loopback alone.
func loopbackOnly(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// run reloads the tokens file when it changes, until ctx is done.
func (a *serverAuth) run(ctx context.Context) {
	if a.tokens != nil {
		a.tokens.Run(ctx)
	}
}

// interceptors authenticate and authorize every call of the public
// services and of reflection; none when authentication is off. They record
// the caller's name for the per-client limits, which come after them.
func (a *serverAuth) interceptors() []connect.Interceptor {
	if a.tokens == nil {
		return nil
	}
	return []connect.Interceptor{a.tokens.Interceptor(), clientIDFromIdentity{}}
}

// handlerOptions are interceptors as a handler option.
func (a *serverAuth) handlerOptions() []connect.HandlerOption {
	if a.tokens == nil {
		return nil
	}
	return []connect.HandlerOption{connect.WithInterceptors(a.interceptors()...)}
}

// forwardToken is the bearer token forwarded calls carry.
func (a *serverAuth) forwardToken() string {
	if a.internal == nil {
		return ""
	}
	return a.internal.Token()
}

// internalHandler guards the internal port with the shared secret.
func (a *serverAuth) internalHandler(h http.Handler) http.Handler {
	if a.internal == nil {
		return h
	}
	return a.internal.Handler(h, a.logger)
}

// restOptions make the Iceberg REST catalog ask for a token with read on
// the database of the namespace a request names (its first level), and any
// valid token for the configuration and the namespace list, which shows
// only the readable databases.
func (a *serverAuth) restOptions() []rest.Option {
	if a.tokens == nil {
		return nil
	}
	return []rest.Option{rest.WithAuthorizer(icebergAuthorizer{a.tokens})}
}

// icebergAuthorizer maps Iceberg namespaces to Strom databases.
type icebergAuthorizer struct{ tokens *auth.Source }

func (i icebergAuthorizer) Authorize(r *http.Request, ns []string) error {
	what, database, need := "the Iceberg REST catalog", "", auth.ScopeAny
	if len(ns) > 0 {
		what, database, need = "Iceberg namespace "+strings.Join(ns, "."), ns[0], auth.ScopeRead
	}
	_, err := i.tokens.Authorize(r.Header.Get("Authorization"), what, database, need)
	switch {
	case errors.Is(err, auth.ErrUnauthenticated):
		return refusal{rest.ErrNotAuthorized, err.Error()}
	case errors.Is(err, auth.ErrPermissionDenied):
		return refusal{rest.ErrForbidden, err.Error()}
	}
	return err
}

// refusal is an error of the REST catalog's kind with auth's message.
type refusal struct {
	kind error
	msg  string
}

func (e refusal) Error() string { return e.msg }
func (e refusal) Unwrap() error { return e.kind }

func (i icebergAuthorizer) Visible(r *http.Request, ns []string) bool {
	return len(ns) > 0 && i.tokens.Allowed(r.Header.Get("Authorization"), ns[0], auth.ScopeRead)
}

// requireToken guards a plain HTTP handler below /iceberg with any valid
// token, answering 401 with the Iceberg ErrorModel.
func (a *serverAuth) requireToken(h http.Handler) http.Handler {
	if a.tokens == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := a.tokens.Authorize(r.Header.Get("Authorization"), "the Iceberg REST catalog", "", auth.ScopeAny); err != nil {
			body, _ := json.Marshal(map[string]any{"error": map[string]any{"message": err.Error(), "type": "NotAuthorizedException", "code": http.StatusUnauthorized}})
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("WWW-Authenticate", `Bearer realm="strom-iceberg"`)
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write(append(body, '\n'))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// clientIDFromIdentity names the authenticated caller for the per-client
// limits (withClientID).
type clientIDFromIdentity struct{}

func (clientIDFromIdentity) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if id := auth.IdentityFrom(ctx); id != nil {
			ctx = withClientID(ctx, id.Name)
		}
		return next(ctx, req)
	}
}

func (clientIDFromIdentity) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (clientIDFromIdentity) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		if id := auth.IdentityFrom(ctx); id != nil {
			ctx = withClientID(ctx, id.Name)
		}
		return next(ctx, conn)
	}
}
