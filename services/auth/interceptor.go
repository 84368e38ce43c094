package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"connectrpc.com/connect"
)

// Authorize authenticates the Authorization header value and checks that
// its identity holds need on database ("" for a cluster-wide operation).
// what names the operation in messages and logs, e.g. a procedure. The
// error wraps ErrUnauthenticated or ErrPermissionDenied and names what,
// the database and the scope needed, never the token.
func (s *Source) Authorize(header, what, database string, need Scope) (*Identity, error) {
	id, err := s.Authenticate(header)
	if err != nil {
		s.metrics.count(nil, resultUnauthenticated)
		s.logger.Debug("unauthenticated request", slog.String("call", what), slog.Any("err", err))
		return nil, err
	}
	if err := s.check(id, what, database, need); err != nil {
		return nil, err
	}
	return id, nil
}

// Allowed reports whether the Authorization header value carries a valid
// token that holds need on database. Unlike Authorize it neither logs nor
// counts: it filters (say, a list down to what the caller may read).
func (s *Source) Allowed(header, database string, need Scope) bool {
	id, err := s.Authenticate(header)
	return err == nil && id.Allows(database, need)
}

// check checks that id holds need on database, counting the outcome.
func (s *Source) check(id *Identity, what, database string, need Scope) error {
	if id.Allows(database, need) {
		s.metrics.count(id, resultAllowed)
		return nil
	}
	s.metrics.count(id, resultPermissionDenied)
	on := fmt.Sprintf("on database %q", database)
	if database == "" {
		on = `on every database (a grant on database "*")`
	}
	s.logger.Info("permission denied", slog.String("identity", id.Name), slog.String("call", what),
		slog.String("database", database), slog.String("needs", need.String()))
	return denied(ErrPermissionDenied, "%s needs %s %s; token %q has %s",
		what, need, on, id.Name, describeGrants(id))
}

func describeGrants(id *Identity) string {
	g := id.Grants()
	if len(g) == 0 {
		return "no grants"
	}
	return "the grants " + strings.Join(g, ", ")
}

// Interceptor returns the Connect interceptor that authenticates every
// call a handler receives and authorizes it by the procedure's rule (see
// [Requirement]): a call without a valid token fails with unauthenticated,
// one whose token lacks the scope with permission_denied, naming the
// procedure, the database and the scope. Streaming calls are authenticated
// before the handler runs and authorized on each message received.
// Procedures without a rule are refused. The handler finds the caller in
// its context ([IdentityFrom]). Client calls pass unchanged.
func (s *Source) Interceptor() connect.Interceptor { return interceptor{s} }

type interceptor struct{ s *Source }

func (i interceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		proc := req.Spec().Procedure
		id, err := i.s.Authenticate(req.Header().Get("Authorization"))
		if err != nil {
			return nil, i.s.refuseUnauthenticated(proc, req.Peer().Addr, err)
		}
		if err := i.s.checkCall(id, proc, req.Any()); err != nil {
			return nil, err
		}
		return next(WithIdentity(ctx, id), req)
	}
}

func (i interceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i interceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		proc := conn.Spec().Procedure
		id, err := i.s.Authenticate(conn.RequestHeader().Get("Authorization"))
		if err != nil {
			return i.s.refuseUnauthenticated(proc, conn.Peer().Addr, err)
		}
		if r, ok := rules[proc]; ok && r.scope == ScopeAny {
			i.s.metrics.count(id, resultAllowed)
			return next(WithIdentity(ctx, id), conn)
		}
		return next(WithIdentity(ctx, id), &authorizingConn{StreamingHandlerConn: conn, s: i.s, id: id})
	}
}

// refuseUnauthenticated counts and logs a call without a valid token and
// returns its Connect error.
func (s *Source) refuseUnauthenticated(proc, peer string, err error) error {
	s.metrics.count(nil, resultUnauthenticated)
	s.logger.Debug("unauthenticated request", slog.String("call", strings.TrimPrefix(proc, "/")), slog.String("peer", peer), slog.Any("err", err))
	return connectError(err)
}

// checkCall authorizes one request message of procedure for id.
func (s *Source) checkCall(id *Identity, proc string, msg any) error {
	what := strings.TrimPrefix(proc, "/")
	database, need, ok := Requirement(proc, msg)
	if !ok {
		s.metrics.count(id, resultPermissionDenied)
		s.logger.Error("no authorization rule for a procedure; refused", slog.String("call", what))
		return connect.NewError(connect.CodePermissionDenied, fmt.Errorf("%s has no authorization rule on this server", what))
	}
	return connectError(s.check(id, what, database, need))
}

// connectError maps a refusal to its Connect error; nil stays nil.
func connectError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrUnauthenticated):
		return connect.NewError(connect.CodeUnauthenticated, err)
	case errors.Is(err, ErrPermissionDenied):
		return connect.NewError(connect.CodePermissionDenied, err)
	}
	return err
}

// authorizingConn authorizes each request message of a stream as it is
// received, before the handler sees it.
type authorizingConn struct {
	connect.StreamingHandlerConn
	s  *Source
	id *Identity
}

func (c *authorizingConn) Receive(msg any) error {
	if err := c.StreamingHandlerConn.Receive(msg); err != nil {
		return err
	}
	return c.s.checkCall(c.id, c.Spec().Procedure, msg)
}
