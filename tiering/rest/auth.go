package rest

import (
	"errors"
	"net/http"
)

// Errors an [Authorizer] returns, wrapped with a message for the client:
// ErrNotAuthorized (no valid credentials) is sent as 401
// NotAuthorizedException with a WWW-Authenticate challenge, ErrForbidden
// (valid credentials without access) as 403 ForbiddenException.
var (
	ErrNotAuthorized = errors.New("rest: not authorized")
	ErrForbidden     = errors.New("rest: forbidden")
)

// typeNotAuthorized is the ErrorModel type of a 401, as in the spec's
// UnauthorizedResponse.
const typeNotAuthorized = "NotAuthorizedException"

// Authorizer decides whether a request may read a namespace. It must be
// safe for concurrent use.
type Authorizer interface {
	// Authorize is called for every request with a nil namespace first
	// (the request must carry valid credentials), then with the namespace
	// the route names, if any. It returns nil, or an error wrapping
	// ErrNotAuthorized or ErrForbidden whose message goes to the client
	// (any other error is an internal error).
	Authorize(r *http.Request, namespace []string) error
	// Visible reports whether an authorized request may see namespace in
	// the list of top-level namespaces; the others are left out. It is a
	// filter, not a refusal: it should not log or count a denial.
	Visible(r *http.Request, namespace []string) bool
}

// Option configures the handler.
type Option func(*handler)

// WithAuthorizer guards every route with a. Without it, the catalog
// serves anyone who can reach it.
func WithAuthorizer(a Authorizer) Option { return func(h *handler) { h.authorizer = a } }

// allow runs the authorizer, if any, on namespace.
func (h *handler) allow(r *http.Request, namespace []string) error {
	if h.authorizer == nil {
		return nil
	}
	err := h.authorizer.Authorize(r, namespace)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNotAuthorized):
		return &apiError{status: http.StatusUnauthorized, typ: typeNotAuthorized, msg: err.Error(),
			header: map[string]string{"WWW-Authenticate": `Bearer realm="strom-iceberg"`}}
	case errors.Is(err, ErrForbidden):
		return &apiError{status: http.StatusForbidden, typ: typeForbidden, msg: err.Error()}
	}
	return err
}
