package rest_test

import (
	"context"
	"fmt"
	"iter"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/apache/iceberg-go"
	icebergcatalog "github.com/apache/iceberg-go/catalog"
	"github.com/apache/iceberg-go/table"

	"github.com/strom-io/strom/tiering/rest"
)

// namespacesCatalog has the namespaces shop, other and shop.nested, no
// tables.
type namespacesCatalog struct{ rest.Catalog }

func (namespacesCatalog) ListNamespaces(_ context.Context, parent table.Identifier) ([]table.Identifier, error) {
	if len(parent) > 0 {
		return []table.Identifier{{"shop", "nested"}}, nil
	}
	return []table.Identifier{{"other"}, {"shop"}, {"shop", "nested"}}, nil
}

func (namespacesCatalog) LoadNamespaceProperties(context.Context, table.Identifier) (iceberg.Properties, error) {
	return iceberg.Properties{}, nil
}

func (namespacesCatalog) CheckNamespaceExists(context.Context, table.Identifier) (bool, error) {
	return true, nil
}

func (namespacesCatalog) ListTables(context.Context, table.Identifier) iter.Seq2[table.Identifier, error] {
	return func(func(table.Identifier, error) bool) {}
}

func (namespacesCatalog) LoadTable(context.Context, table.Identifier) (*table.Table, error) {
	return nil, icebergcatalog.ErrNoSuchTable
}

// testAuthorizer authorizes by a function; Visible calls it too.
type testAuthorizer func(r *http.Request, ns []string) error

func (a testAuthorizer) Authorize(r *http.Request, ns []string) error { return a(r, ns) }
func (a testAuthorizer) Visible(r *http.Request, ns []string) bool    { return a(r, ns) == nil }

// TestAuthorizer: the token "reader" may read the namespace shop (and
// below), "nobody" nothing; no token is 401 everywhere, even on a bad path.
func TestAuthorizer(t *testing.T) {
	authorize := testAuthorizer(func(r *http.Request, ns []string) error {
		switch tok := r.Header.Get("Authorization"); {
		case tok != "Bearer reader" && tok != "Bearer nobody":
			return fmt.Errorf("%w: no valid token", rest.ErrNotAuthorized)
		case ns == nil:
			return nil
		case tok == "Bearer reader" && ns[0] == "shop":
			return nil
		}
		return fmt.Errorf("%w: no read on database %q", rest.ErrForbidden, ns[0])
	})
	srv := httptest.NewServer(rest.NewHandler(namespacesCatalog{}, rest.Config{}, nil, rest.WithAuthorizer(authorize)))
	defer srv.Close()

	const (
		ok, noContent, unauthorized, forbidden, notFound = http.StatusOK, http.StatusNoContent, http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound
		get, head, post                                  = http.MethodGet, http.MethodHead, http.MethodPost
	)
	reader := map[string]string{"Authorization": "Bearer reader"}
	nobody := map[string]string{"Authorization": "Bearer nobody"}
	wrong := map[string]string{"Authorization": "Bearer wrong"}
	cases := []httpCase{
		{name: "config without token", method: get, path: "/v1/config", status: unauthorized, errType: "NotAuthorizedException", body: "no valid token"},
		{name: "config wrong token", method: get, path: "/v1/config", header: wrong, status: unauthorized, errType: "NotAuthorizedException"},
		{name: "config any token", method: get, path: "/v1/config", header: nobody, status: ok},
		{name: "bad path without token", method: get, path: "/v2/nothing", status: unauthorized, errType: "NotAuthorizedException"},
		{name: "list top filtered", method: get, path: "/v1/namespaces", header: reader, status: ok, body: `{"namespaces":[["shop"]]}`},
		{name: "list top none", method: get, path: "/v1/namespaces", header: nobody, status: ok, body: `{"namespaces":[]}`},
		{name: "list top without token", method: get, path: "/v1/namespaces", status: unauthorized, errType: "NotAuthorizedException"},
		{name: "list under shop", method: get, path: "/v1/namespaces?parent=shop", header: reader, status: ok, body: `{"namespaces":[["shop","nested"]]}`},
		{name: "list under other", method: get, path: "/v1/namespaces?parent=other", header: reader, status: forbidden, errType: "ForbiddenException", body: `no read on database \"other\"`},
		{name: "load shop", method: get, path: "/v1/namespaces/shop", header: reader, status: ok},
		{name: "load nested", method: get, path: "/v1/namespaces/shop%1Fnested", header: reader, status: ok},
		{name: "load other", method: get, path: "/v1/namespaces/other", header: reader, status: forbidden, errType: "ForbiddenException"},
		{name: "load shop nobody", method: get, path: "/v1/namespaces/shop", header: nobody, status: forbidden, errType: "ForbiddenException"},
		{name: "exists other", method: head, path: "/v1/namespaces/other", header: reader, status: forbidden},
		{name: "exists shop", method: head, path: "/v1/namespaces/shop", header: reader, status: noContent},
		{name: "table shop", method: get, path: "/v1/namespaces/shop/tables/t", header: reader, status: notFound, errType: "NoSuchTableException"},
		{name: "table other", method: get, path: "/v1/namespaces/other/tables/t", header: reader, status: forbidden, errType: "ForbiddenException"},
		{name: "table without token", method: get, path: "/v1/namespaces/shop/tables/t", status: unauthorized, errType: "NotAuthorizedException"},
		{name: "write shop still read-only", method: post, path: "/v1/namespaces/shop/tables", header: reader, status: forbidden, errType: "ForbiddenException", body: "read-only"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { check(t, srv.URL, c) })
	}
	rsp, _ := do(t, srv.URL, httpCase{method: get, path: "/v1/config"})
	if got := rsp.Header.Get("WWW-Authenticate"); got == "" {
		t.Errorf("401 without WWW-Authenticate header")
	}
}
