// Package rest serves Strom's lake as an Apache Iceberg REST catalog, so
// that Spark, Trino, PyIceberg, DuckDB and iceberg-go find the Iceberg tables
// the tiering role writes. It implements the read side of the spec
// (open-api/rest-catalog-open-api.yaml in apache/iceberg): configuration,
// namespaces, tables and (empty) views. Every write route answers 403
// ForbiddenException: the lake is written only by the tiering role.
//
// Strom mounts the handler at /iceberg/, so the catalog URI engines are
// given is http://host:9123/iceberg:
//
//	mux.Handle("/iceberg/", http.StripPrefix("/iceberg", rest.NewHandler(cat, cfg, logger)))
//
// Engines read data files straight from S3. GET /v1/config gives them the
// endpoint, region and addressing style; the keys they bring themselves, or
// get vended per table when [Config.VendCredentials] is on.
package rest

import (
	"context"
	"encoding/json"
	"errors"
	"iter"
	"log/slog"
	"net/http"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"
)

// Catalog is the read-only part of an iceberg-go catalog
// (github.com/apache/iceberg-go/catalog.Catalog) that the handler serves;
// iceberg-go's SQL catalog on Strom's PostgreSQL is the one Strom passes.
// The handler calls nothing that writes. Implementations must be safe for
// concurrent use.
type Catalog interface {
	ListNamespaces(ctx context.Context, parent table.Identifier) ([]table.Identifier, error)
	LoadNamespaceProperties(ctx context.Context, namespace table.Identifier) (iceberg.Properties, error)
	CheckNamespaceExists(ctx context.Context, namespace table.Identifier) (bool, error)
	ListTables(ctx context.Context, namespace table.Identifier) iter.Seq2[table.Identifier, error]
	LoadTable(ctx context.Context, identifier table.Identifier) (*table.Table, error)
	CheckTableExists(ctx context.Context, identifier table.Identifier) (bool, error)
}

type handler struct {
	cat        Catalog
	cfg        Config
	log        *slog.Logger
	authorizer Authorizer // nil: no authorization
}

// op serves one method on one resource. An error it returns is sent as the
// spec's error response; an *apiError keeps its status and type.
type op func(h *handler, w http.ResponseWriter, r *http.Request, rt route) error

type endpoint struct {
	res    resource
	method string
}

// ops maps every (resource, method) pair this server answers to its op.
var ops = map[endpoint]op{
	{resConfig, http.MethodGet}: (*handler).getConfig,

	{resNamespaces, http.MethodGet}:          (*handler).listNamespaces,
	{resNamespace, http.MethodGet}:           (*handler).loadNamespace,
	{resNamespace, http.MethodHead}:          (*handler).namespaceExists,
	{resTables, http.MethodGet}:              (*handler).listTables,
	{resTable, http.MethodGet}:               (*handler).loadTable,
	{resTable, http.MethodHead}:              (*handler).tableExists,
	{resTableMetrics, http.MethodPost}:       (*handler).reportMetrics,
	{resTableUnsupported, http.MethodGet}:    (*handler).unsupported,
	{resTableUnsupported, http.MethodPost}:   (*handler).unsupported,
	{resTableUnsupported, http.MethodDelete}: (*handler).unsupported,
	{resViews, http.MethodGet}:               (*handler).listViews,
	{resView, http.MethodGet}:                (*handler).loadView,
	{resView, http.MethodHead}:               (*handler).loadView,

	// Writes, all refused.
	{resNamespaces, http.MethodPost}:          (*handler).refuse,
	{resNamespace, http.MethodDelete}:         (*handler).refuse,
	{resNamespaceProperties, http.MethodPost}: (*handler).refuse,
	{resTables, http.MethodPost}:              (*handler).refuse,
	{resRegisterTable, http.MethodPost}:       (*handler).refuse,
	{resTable, http.MethodPost}:               (*handler).refuse,
	{resTable, http.MethodDelete}:             (*handler).refuse,
	{resRenameTable, http.MethodPost}:         (*handler).refuse,
	{resCommitTransaction, http.MethodPost}:   (*handler).refuse,
	{resViews, http.MethodPost}:               (*handler).refuse,
	{resView, http.MethodPost}:                (*handler).refuse,
	{resView, http.MethodDelete}:              (*handler).refuse,
	{resRenameView, http.MethodPost}:          (*handler).refuse,
	{resRegisterView, http.MethodPost}:        (*handler).refuse,
}

// NewHandler returns the REST catalog over cat. It serves paths starting
// with /v1/; mount it below a path with [http.StripPrefix]. cfg must be
// valid ([Config.Validate]); logger receives one line per failed request.
// Without [WithAuthorizer], anyone who reaches the handler may read.
func NewHandler(cat Catalog, cfg Config, logger *slog.Logger, opts ...Option) http.Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &handler{cat: cat, cfg: cfg, log: logger}
	for _, o := range opts {
		o(h)
	}
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			h.log.Error("iceberg rest: panic serving request", "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
			h.fail(w, r, internal(r.Method+" "+r.URL.Path))
		}
	}()
	// Credentials first: a caller without them learns nothing, not even
	// whether its path is valid.
	err := h.allow(r, nil)
	var rt route
	if err == nil {
		rt, err = parsePath(r.URL.EscapedPath(), h.cfg.Prefix)
	}
	if err == nil && rt.namespace != nil {
		err = h.allow(r, rt.namespace)
	}
	if err == nil {
		if o, ok := ops[endpoint{rt.res, r.Method}]; ok {
			err = o(h, w, r, rt)
		} else {
			err = methodNotAllowed(r.Method, allowed(rt.res))
		}
	}
	if err != nil {
		h.fail(w, r, err)
	}
}

// allowed lists the methods defined on res, for the Allow header.
func allowed(res resource) []string {
	var m []string
	for e := range ops {
		if e.res == res {
			m = append(m, e.method)
		}
	}
	slices.Sort(m)
	return m
}

// fail sends err as the spec's error response and logs it.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = internal(r.Method + " " + r.URL.Path)
	}
	level := slog.LevelDebug
	if ae.status >= 500 {
		level = slog.LevelError
	}
	h.log.Log(r.Context(), level, "iceberg rest: request failed", "method", r.Method, "path", r.URL.Path, "status", ae.status, "type", ae.typ, "err", err)
	if len(ae.allow) > 0 {
		w.Header().Set("Allow", strings.Join(ae.allow, ", "))
	}
	for k, v := range ae.header {
		w.Header().Set(k, v)
	}
	_ = writeJSON(w, r, ae.status, errorResponse{Error: errorModel{Message: ae.msg, Type: ae.typ, Code: ae.status}})
}

// writeJSON sends v with status. A HEAD request gets the status alone.
func writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) error {
	if r.Method == http.MethodHead {
		w.WriteHeader(status)
		return nil
	}
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	body = append(body, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
	return nil
}

// refuse answers every write: the lake is read-only here.
func (h *handler) refuse(_ http.ResponseWriter, r *http.Request, _ route) error {
	return readOnly(r.Method, r.URL.Path)
}

// unsupported answers the table routes the spec defines but this server
// does not serve (credential refresh, server-side scan planning); it does
// not advertise them, so clients plan scans themselves.
func (h *handler) unsupported(_ http.ResponseWriter, r *http.Request, _ route) error {
	return &apiError{status: http.StatusNotAcceptable, typ: typeUnsupported,
		msg: r.Method + " " + r.URL.Path + " is not supported by this catalog: plan scans client-side with the table metadata"}
}
