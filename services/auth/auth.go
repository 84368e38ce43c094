// Package auth authenticates API callers by bearer token and authorizes
// them by database and scope.
//
// Tokens are static: an operator lists them in a YAML file (in Kubernetes,
// a mounted Secret) that holds only their SHA-256 hashes, each with a name
// and its grants:
//
//	tokens:
//	  - name: ingest              # identity in logs and metrics, never the token
//	    sha256: 9f86d0818...      # hex SHA-256 of the token (strom token hash)
//	    grants:
//	      - {database: shop, scopes: [write]}
//	      - {database: "*", scopes: [read]}
//
// A [Source] loads the file and reloads it when it changes; its
// [Source.Interceptor] guards every public RPC (see [Requirement] for the
// scope each needs). [InternalSecret] guards the internal port between
// frontends with a shared secret.
//
// Tokens and their hashes are never logged: identities appear by name.
package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Sentinel errors. A request without a usable token fails with
// ErrUnauthenticated; an authenticated one without the grant it needs
// fails with ErrPermissionDenied.
var (
	ErrUnauthenticated  = errors.New("auth: unauthenticated")
	ErrPermissionDenied = errors.New("auth: permission denied")
)

// Scope is what a grant allows on a database. Scopes are ordered: admin
// includes write, write includes read.
type Scope int8

// Scopes, weakest first. ScopeNone is no access; ScopeAny asks only for a
// valid token (reflection, the Iceberg catalog's configuration).
const (
	ScopeNone Scope = iota
	ScopeRead
	ScopeWrite
	ScopeAdmin

	// ScopeAny needs no grant, only an authenticated caller.
	ScopeAny Scope = -1
)

// AllDatabases in a grant means every database, and the cluster-wide
// operations that name no database (creating and listing databases, the
// cluster and lake status of every table).
const AllDatabases = "*"

// String returns the scope as the tokens file spells it.
func (s Scope) String() string {
	switch s {
	case ScopeAny:
		return "any valid token"
	case ScopeNone:
		return "none"
	case ScopeRead:
		return "read"
	case ScopeWrite:
		return "write"
	case ScopeAdmin:
		return "admin"
	}
	return fmt.Sprintf("Scope(%d)", int(s))
}

// ParseScope parses read, write or admin.
func ParseScope(s string) (Scope, error) {
	switch s {
	case "read":
		return ScopeRead, nil
	case "write":
		return ScopeWrite, nil
	case "admin":
		return ScopeAdmin, nil
	}
	return ScopeNone, fmt.Errorf("scope %q: want read, write or admin", s)
}

// Identity is an authenticated caller: a token's name and its grants. It
// is immutable.
type Identity struct {
	// Name identifies the token in logs and metrics.
	Name   string
	grants map[string]Scope // database or AllDatabases -> strongest scope
}

// Allows reports whether the identity holds need (or a stronger scope) on
// database. An empty database stands for a cluster-wide operation, which
// only a grant on AllDatabases covers; so does a grant on AllDatabases
// cover every single database. ScopeAny is always allowed.
func (id *Identity) Allows(database string, need Scope) bool {
	if need <= ScopeNone {
		return need == ScopeAny || need == ScopeNone
	}
	if id.grants[AllDatabases] >= need {
		return true
	}
	return database != "" && id.grants[database] >= need
}

// Grants returns the identity's grants as "database:scope" strings, sorted
// by database, for logs and tests.
func (id *Identity) Grants() []string {
	out := make([]string, 0, len(id.grants))
	for db, s := range id.grants {
		out = append(out, db+":"+s.String())
	}
	slices.Sort(out)
	return out
}

type identityKey struct{}

// WithIdentity returns ctx carrying id.
func WithIdentity(ctx context.Context, id *Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// IdentityFrom returns the identity the interceptor authenticated, or nil
// when authentication is off.
func IdentityFrom(ctx context.Context) *Identity {
	id, _ := ctx.Value(identityKey{}).(*Identity)
	return id
}

// deniedError is a refusal: its message goes to the caller as is, and it
// wraps ErrUnauthenticated or ErrPermissionDenied.
type deniedError struct {
	sentinel error
	msg      string
}

func (e *deniedError) Error() string { return e.msg }
func (e *deniedError) Unwrap() error { return e.sentinel }

func denied(sentinel error, format string, args ...any) error {
	return &deniedError{sentinel: sentinel, msg: fmt.Sprintf(format, args...)}
}

// bearerToken extracts the token of an "Authorization: Bearer TOKEN"
// header value; the scheme is case-insensitive.
func bearerToken(header string) (string, error) {
	if header == "" {
		return "", denied(ErrUnauthenticated, "no bearer token: send the header \"Authorization: Bearer <token>\" (strom CLI: --token, --token-file or STROM_TOKEN)")
	}
	scheme, token, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", denied(ErrUnauthenticated, "the Authorization header must be \"Bearer <token>\"")
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return "", denied(ErrUnauthenticated, "the bearer token is empty")
	}
	return token, nil
}
