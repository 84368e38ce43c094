package rest

import (
	"net/http"
	"net/url"
	"slices"

	"github.com/apache/iceberg-go/table"
)

// listNamespacesResponse is the spec's ListNamespacesResponse. This server
// does not paginate: it ignores pageToken and pageSize and omits
// next-page-token, as the spec asks of such servers.
type listNamespacesResponse struct {
	Namespaces [][]string `json:"namespaces"`
}

// getNamespaceResponse is the spec's GetNamespaceResponse.
type getNamespaceResponse struct {
	Namespace  []string          `json:"namespace"`
	Properties map[string]string `json:"properties"`
}

// listNamespaces serves GET /v1/{prefix}/namespaces[?parent=a%1Fb]: the
// namespaces one level below parent (the top level without it). If a.b.c
// exists, parent=a lists [a b] only, even when a.b has no entry of its own.
func (h *handler) listNamespaces(w http.ResponseWriter, r *http.Request, _ route) error {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return badRequest("query %q is not valid URL encoding", r.URL.RawQuery)
	}
	var parent []string
	if p := q.Get("parent"); p != "" { // the spec treats an empty parent as absent
		if parent, err = parseNamespace(p); err != nil {
			return err
		}
	}
	if parent != nil {
		if err := h.allow(r, parent); err != nil {
			return err
		}
	}
	all, err := h.cat.ListNamespaces(r.Context(), parent)
	if err != nil {
		return catalogError(err, "list namespaces", parent, "")
	}
	list := children(parent, all)
	if parent == nil && h.authorizer != nil {
		// The top level lists only the namespaces the caller may read.
		list = slices.DeleteFunc(list, func(ns []string) bool { return !h.authorizer.Visible(r, ns) })
	}
	return writeJSON(w, r, http.StatusOK, listNamespacesResponse{Namespaces: list})
}

// children returns, sorted and without duplicates, the namespaces one level
// below parent among all and their descendants.
func children(parent []string, all []table.Identifier) [][]string {
	out := [][]string{}
	for _, ns := range all {
		if len(ns) > len(parent) && slices.Equal(ns[:len(parent)], parent) {
			out = append(out, slices.Clone(ns[:len(parent)+1]))
		}
	}
	slices.SortFunc(out, func(a, b []string) int { return slices.Compare(a, b) })
	return slices.CompactFunc(out, func(a, b []string) bool { return slices.Equal(a, b) })
}

// loadNamespace serves GET /v1/{prefix}/namespaces/{namespace}.
func (h *handler) loadNamespace(w http.ResponseWriter, r *http.Request, rt route) error {
	props, err := h.cat.LoadNamespaceProperties(r.Context(), rt.namespace)
	if err != nil {
		return catalogError(err, "load namespace "+dotted(rt.namespace), rt.namespace, "")
	}
	if props == nil {
		props = map[string]string{}
	}
	return writeJSON(w, r, http.StatusOK, getNamespaceResponse{Namespace: rt.namespace, Properties: props})
}

// namespaceExists serves HEAD /v1/{prefix}/namespaces/{namespace}: 204 or 404.
func (h *handler) namespaceExists(w http.ResponseWriter, r *http.Request, rt route) error {
	ok, err := h.cat.CheckNamespaceExists(r.Context(), rt.namespace)
	if err != nil {
		return catalogError(err, "check namespace "+dotted(rt.namespace), rt.namespace, "")
	}
	if !ok {
		return noSuchNamespace(rt.namespace)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// listViews serves GET /v1/{prefix}/namespaces/{namespace}/views. The lake
// has no views, so the list is empty for every namespace that exists.
func (h *handler) listViews(w http.ResponseWriter, r *http.Request, rt route) error {
	ok, err := h.cat.CheckNamespaceExists(r.Context(), rt.namespace)
	if err != nil {
		return catalogError(err, "list views of "+dotted(rt.namespace), rt.namespace, "")
	}
	if !ok {
		return noSuchNamespace(rt.namespace)
	}
	return writeJSON(w, r, http.StatusOK, listTablesResponse{Identifiers: []tableIdentifier{}})
}

// loadView serves GET and HEAD /v1/{prefix}/namespaces/{namespace}/views/{view}:
// always 404, as the lake has no views.
func (h *handler) loadView(_ http.ResponseWriter, _ *http.Request, rt route) error {
	return noSuchView(rt.namespace, rt.name)
}
