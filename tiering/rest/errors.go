package rest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	icebergcatalog "github.com/apache/iceberg-go/catalog"
)

// Error types of the spec's ErrorModel that this server sends. Java, Python
// and Go clients map the 404 types to their NoSuchNamespace/NoSuchTable/
// NoSuchView exceptions and the 403 type to ForbiddenException.
const (
	typeBadRequest         = "BadRequestException"
	typeForbidden          = "ForbiddenException"
	typeNoSuchNamespace    = "NoSuchNamespaceException"
	typeNoSuchTable        = "NoSuchTableException"
	typeNoSuchView         = "NoSuchViewException"
	typeMethodNotAllowed   = "MethodNotAllowedException"
	typeUnsupported        = "UnsupportedOperationException"
	typeServiceUnavailable = "ServiceUnavailableException"
	typeInternal           = "InternalServerError"
)

// readOnlyMessage explains every refused write.
const readOnlyMessage = "the Strom lake is read-only through this catalog: its Iceberg tables are created and written only by Strom's tiering role; write to the Strom table instead and let tiering commit it"

// apiError is an error with the HTTP status and ErrorModel type it is sent
// with. Its message goes to users: it says what was wrong and, where it can,
// what to change.
type apiError struct {
	status int
	typ    string
	msg    string
	allow  []string          // Allow header of a 405
	header map[string]string // more response headers (WWW-Authenticate of a 401)
}

func (e *apiError) Error() string { return e.typ + ": " + e.msg }

// errorModel is the spec's ErrorModel; responses wrap it as
// {"error": ErrorModel} (IcebergErrorResponse). It never carries a stack.
type errorModel struct {
	Message string `json:"message"`
	Type    string `json:"type"`
	Code    int    `json:"code"`
}

type errorResponse struct {
	Error errorModel `json:"error"`
}

func badRequest(format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, typ: typeBadRequest, msg: fmt.Sprintf(format, args...)}
}

func readOnly(method, path string) *apiError {
	return &apiError{status: http.StatusForbidden, typ: typeForbidden, msg: readOnlyMessage + " (refused " + method + " " + path + ")"}
}

func noSuchNamespace(ns []string) *apiError {
	return &apiError{status: http.StatusNotFound, typ: typeNoSuchNamespace, msg: fmt.Sprintf("namespace %s does not exist", dotted(ns))}
}

func noSuchTable(ns []string, name string) *apiError {
	return &apiError{status: http.StatusNotFound, typ: typeNoSuchTable, msg: fmt.Sprintf("table %s does not exist", dotted(append(ns[:len(ns):len(ns)], name)))}
}

func noSuchView(ns []string, name string) *apiError {
	return &apiError{status: http.StatusNotFound, typ: typeNoSuchView, msg: fmt.Sprintf("view %s does not exist: the Strom lake has no views", dotted(append(ns[:len(ns):len(ns)], name)))}
}

func methodNotAllowed(method string, allow []string) *apiError {
	return &apiError{
		status: http.StatusMethodNotAllowed, typ: typeMethodNotAllowed, allow: allow,
		msg: fmt.Sprintf("method %s is not defined on this path; allowed: %s", method, strings.Join(allow, ", ")),
	}
}

// internal is the error for a failure the client cannot fix. The cause goes
// to the server log only.
func internal(op string) *apiError {
	return &apiError{status: http.StatusInternalServerError, typ: typeInternal, msg: op + " failed on the server; its log has the cause"}
}

// catalogError maps an error of the Iceberg catalog to the response for op
// on the namespace ns (and table name, if not empty). Table operations answer
// NoSuchTableException even when the namespace is missing, as the spec's
// loadTable and tableExists define only that 404.
func catalogError(err error, op string, ns []string, name string) *apiError {
	switch {
	case name != "" && (errors.Is(err, icebergcatalog.ErrNoSuchTable) || errors.Is(err, icebergcatalog.ErrNoSuchNamespace)):
		return noSuchTable(ns, name)
	case errors.Is(err, icebergcatalog.ErrNoSuchNamespace):
		return noSuchNamespace(ns)
	case errors.Is(err, icebergcatalog.ErrInvalidIdentifier):
		return badRequest("%s: invalid identifier", op)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &apiError{status: http.StatusServiceUnavailable, typ: typeServiceUnavailable, msg: op + " was cancelled or timed out; retry"}
	default:
		return internal(op)
	}
}

// dotted joins identifier levels for messages.
func dotted(levels []string) string { return strings.Join(levels, ".") }
