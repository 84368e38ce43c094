package rest_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/apache/iceberg-go/table"

	"github.com/strom-io/strom/tiering/rest"
)

type httpCase struct {
	name    string
	method  string
	path    string // below the catalog URI, escaped as sent
	header  map[string]string
	status  int
	errType string // ErrorModel type of an error response
	body    string // substring the body must hold
	allow   string // Allow header of a 405
}

// reply is what do keeps of a response (its body is read and closed).
type reply struct {
	StatusCode int
	Header     http.Header
}

func do(t *testing.T, uri string, c httpCase) (reply, []byte) {
	t.Helper()
	req, err := http.NewRequest(c.method, uri+c.path, strings.NewReader(`{"any":"body"}`))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	rsp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer rsp.Body.Close()
	body, err := io.ReadAll(rsp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{StatusCode: rsp.StatusCode, Header: rsp.Header}, body
}

func check(t *testing.T, uri string, c httpCase) {
	t.Helper()
	rsp, body := do(t, uri, c)
	if rsp.StatusCode != c.status {
		t.Fatalf("%s %s: status %d, want %d; body %s", c.method, c.path, rsp.StatusCode, c.status, body)
	}
	if c.method == http.MethodHead || c.status == http.StatusNoContent || c.status == http.StatusNotModified {
		if len(body) != 0 {
			t.Errorf("%s %s: body %q, want none", c.method, c.path, body)
		}
		return
	}
	if ct := rsp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	if c.errType != "" {
		var e struct {
			Error map[string]any `json:"error"`
		}
		if err := json.Unmarshal(body, &e); err != nil {
			t.Fatalf("error body %q: %v", body, err)
		}
		keys := make([]string, 0, len(e.Error))
		for k := range e.Error {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if !slices.Equal(keys, []string{"code", "message", "type"}) {
			t.Errorf("ErrorModel keys = %v, want code, message, type", keys)
		}
		if e.Error["type"] != c.errType || e.Error["code"] != float64(c.status) {
			t.Errorf("error = %v, want type %s code %d", e.Error, c.errType, c.status)
		}
		if msg, _ := e.Error["message"].(string); msg == "" {
			t.Errorf("error message is empty")
		}
	}
	if !strings.Contains(string(body), c.body) {
		t.Errorf("body %s\ndoes not contain %s", body, c.body)
	}
	if c.allow != "" && rsp.Header.Get("Allow") != c.allow {
		t.Errorf("Allow = %q, want %q", rsp.Header.Get("Allow"), c.allow)
	}
}

// TestHTTP drives the handler over HTTP with the raw requests an engine
// sends, on a real lake, with the prefix "strom" (and without it).
func TestHTTP(t *testing.T) {
	l := newLake(t)
	cfg := l.cfg
	cfg.Prefix = "strom"
	cfg.VendCredentials = true
	cfg.S3AccessKeyID = "AKIA-vended"
	cfg.S3SecretAccessKey = "vended-secret"
	uri := l.serve(t, cfg)

	const (
		ok, noContent, bad, forbidden, notFound = http.StatusOK, http.StatusNoContent, http.StatusBadRequest, http.StatusForbidden, http.StatusNotFound
		get, head, post, del                    = http.MethodGet, http.MethodHead, http.MethodPost, http.MethodDelete
		nested                                  = "/v1/strom/namespaces/db%1Fnested"
		events                                  = nested + "/tables/events"
	)
	cases := []httpCase{
		// Reads.
		{name: "config", method: get, path: "/v1/config?warehouse=anything", status: ok, body: `"overrides":{"prefix":"strom"}`},
		{name: "config endpoint", method: get, path: "/v1/config", status: ok, body: `"s3.endpoint":"` + l.s3.Endpoint + `"`},
		{name: "config path style", method: get, path: "/v1/config", status: ok, body: `"s3.path-style-access":"true"`},
		{name: "config endpoints", method: get, path: "/v1/config", status: ok, body: `"HEAD /v1/{prefix}/namespaces/{namespace}/tables/{table}"`},
		{name: "list top", method: get, path: "/v1/strom/namespaces", status: ok, body: `{"namespaces":[["db"],["odd level%"]]}`},
		{name: "list top unprefixed", method: get, path: "/v1/namespaces?pageToken=&pageSize=1", status: ok, body: `{"namespaces":[["db"],["odd level%"]]}`},
		{name: "list empty parent", method: get, path: "/v1/strom/namespaces?parent=", status: ok, body: `{"namespaces":[["db"],["odd level%"]]}`},
		{name: "list under db", method: get, path: "/v1/strom/namespaces?parent=db", status: ok, body: `{"namespaces":[["db","nested"]]}`},
		{name: "list under nested", method: get, path: "/v1/strom/namespaces?parent=db%1Fnested", status: ok, body: `{"namespaces":[]}`},
		{name: "load namespace", method: get, path: nested, status: ok, body: `{"namespace":["db","nested"],"properties":{"owner":"strom-tiering"}}`},
		{name: "namespace exists", method: head, path: nested, status: noContent},
		{name: "odd namespace exists", method: head, path: "/v1/strom/namespaces/odd%20level%25", status: noContent},
		{name: "list tables", method: get, path: nested + "/tables", status: ok, body: `{"identifiers":[{"namespace":["db","nested"],"name":"events"}]}`},
		{name: "list tables empty", method: get, path: "/v1/strom/namespaces/db/tables", status: ok, body: `{"identifiers":[]}`},
		{name: "load table", method: get, path: events, status: ok, body: `"config":{}`},
		{name: "load table refs", method: get, path: events + "?snapshots=refs", status: ok, body: `"metadata-location":"s3://`},
		{name: "table exists", method: head, path: events, status: noContent},
		{name: "list views", method: get, path: nested + "/views", status: ok, body: `{"identifiers":[]}`},
		{name: "metrics dropped", method: post, path: events + "/metrics", status: noContent},

		// Missing namespaces, tables and views.
		{name: "load missing namespace", method: get, path: "/v1/strom/namespaces/nope", status: notFound, errType: "NoSuchNamespaceException", body: "namespace nope does not exist"},
		{name: "head missing namespace", method: head, path: "/v1/strom/namespaces/db%1Fnope", status: notFound},
		{name: "list under missing", method: get, path: "/v1/strom/namespaces?parent=nope", status: notFound, errType: "NoSuchNamespaceException"},
		{name: "tables of missing", method: get, path: "/v1/strom/namespaces/nope/tables", status: notFound, errType: "NoSuchNamespaceException"},
		{name: "views of missing", method: get, path: "/v1/strom/namespaces/nope/views", status: notFound, errType: "NoSuchNamespaceException"},
		{name: "load missing table", method: get, path: nested + "/tables/nope", status: notFound, errType: "NoSuchTableException", body: "table db.nested.nope does not exist"},
		{name: "load table of missing namespace", method: get, path: "/v1/strom/namespaces/nope/tables/events", status: notFound, errType: "NoSuchTableException"},
		{name: "head missing table", method: head, path: nested + "/tables/nope", status: notFound},
		{name: "load view", method: get, path: nested + "/views/v", status: notFound, errType: "NoSuchViewException"},
		{name: "head view", method: head, path: nested + "/views/v", status: notFound},

		// Writes are refused.
		{name: "create namespace", method: post, path: "/v1/strom/namespaces", status: forbidden, errType: "ForbiddenException", body: "read-only"},
		{name: "drop namespace", method: del, path: nested, status: forbidden, errType: "ForbiddenException", body: "tiering role"},
		{name: "namespace properties", method: post, path: nested + "/properties", status: forbidden, errType: "ForbiddenException"},
		{name: "create table", method: post, path: nested + "/tables", status: forbidden, errType: "ForbiddenException"},
		{name: "register table", method: post, path: nested + "/register", status: forbidden, errType: "ForbiddenException"},
		{name: "commit table", method: post, path: events, status: forbidden, errType: "ForbiddenException"},
		{name: "drop table", method: del, path: events + "?purgeRequested=true", status: forbidden, errType: "ForbiddenException"},
		{name: "rename table", method: post, path: "/v1/strom/tables/rename", status: forbidden, errType: "ForbiddenException"},
		{name: "commit transaction", method: post, path: "/v1/transactions/commit", status: forbidden, errType: "ForbiddenException"},
		{name: "create view", method: post, path: nested + "/views", status: forbidden, errType: "ForbiddenException"},
		{name: "replace view", method: post, path: nested + "/views/v", status: forbidden, errType: "ForbiddenException"},
		{name: "drop view", method: del, path: nested + "/views/v", status: forbidden, errType: "ForbiddenException"},
		{name: "rename view", method: post, path: "/v1/strom/views/rename", status: forbidden, errType: "ForbiddenException"},
		{name: "register view", method: post, path: nested + "/register-view", status: forbidden, errType: "ForbiddenException"},

		// Methods a path does not define.
		{name: "put namespaces", method: http.MethodPut, path: "/v1/strom/namespaces", status: http.StatusMethodNotAllowed, errType: "MethodNotAllowedException", allow: "GET, POST"},
		{name: "post config", method: post, path: "/v1/config", status: http.StatusMethodNotAllowed, errType: "MethodNotAllowedException", allow: "GET"},
		{name: "head list", method: head, path: "/v1/strom/namespaces", status: http.StatusMethodNotAllowed},
		{name: "patch table", method: http.MethodPatch, path: events, status: http.StatusMethodNotAllowed, allow: "DELETE, GET, HEAD, POST"},

		// Spec routes this server does not serve.
		{name: "credentials", method: get, path: events + "/credentials", status: http.StatusNotAcceptable, errType: "UnsupportedOperationException"},
		{name: "plan", method: post, path: events + "/plan", status: http.StatusNotAcceptable, errType: "UnsupportedOperationException"},

		// Malformed paths and parameters.
		{name: "empty level", method: get, path: "/v1/strom/namespaces/db%1F%1Fnested", status: bad, errType: "BadRequestException", body: "empty level"},
		{name: "leading separator", method: get, path: "/v1/strom/namespaces/%1Fdb", status: bad, errType: "BadRequestException"},
		{name: "trailing slash", method: get, path: "/v1/strom/namespaces/db/tables/", status: bad, errType: "BadRequestException", body: "empty segment"},
		{name: "control character", method: get, path: "/v1/strom/namespaces/db/tables/a%00b", status: bad, errType: "BadRequestException"},
		{name: "not utf-8", method: get, path: "/v1/strom/namespaces/%FF", status: bad, errType: "BadRequestException"},
		{name: "unknown prefix", method: get, path: "/v1/other/namespaces", status: bad, errType: "BadRequestException", body: `prefix is \"strom\"`},
		{name: "not v1", method: get, path: "/v2/config", status: bad, errType: "BadRequestException"},
		{name: "root", method: get, path: "/", status: bad, errType: "BadRequestException"},
		{name: "unknown sub-resource", method: get, path: nested + "/frobs", status: bad, errType: "BadRequestException"},
		{name: "too deep", method: get, path: events + "/metrics/x", status: bad, errType: "BadRequestException"},
		{name: "bad parent", method: get, path: "/v1/strom/namespaces?parent=db%1F", status: bad, errType: "BadRequestException"},
		{name: "bad query", method: get, path: "/v1/strom/namespaces?parent=%zz", status: bad, errType: "BadRequestException"},
		{name: "bad snapshots", method: get, path: events + "?snapshots=some", status: bad, errType: "BadRequestException"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { check(t, uri, c) })
	}

	t.Run("config has no secrets", func(t *testing.T) {
		_, body := do(t, uri, httpCase{method: get, path: "/v1/config"})
		for _, s := range []string{"vended-secret", "AKIA-vended", "s3.secret-access-key", "s3.access-key-id"} {
			if strings.Contains(string(body), s) {
				t.Errorf("GET /v1/config leaks %q: %s", s, body)
			}
		}
	})

	t.Run("etag", func(t *testing.T) {
		rsp, body := do(t, uri, httpCase{method: get, path: events})
		etag := rsp.Header.Get("ETag")
		if !strings.HasPrefix(etag, `"`) || len(etag) < 10 {
			t.Fatalf("ETag = %q, want a strong entity tag", etag)
		}
		var res struct {
			MetadataLocation string            `json:"metadata-location"`
			Metadata         map[string]any    `json:"metadata"`
			Config           map[string]string `json:"config"`
		}
		if err := json.Unmarshal(body, &res); err != nil {
			t.Fatal(err)
		}
		if res.Metadata["format-version"] == nil || res.Metadata["table-uuid"] == nil {
			t.Errorf("metadata %v lacks format-version or table-uuid", res.Metadata)
		}
		check(t, uri, httpCase{method: get, path: events, header: map[string]string{"If-None-Match": etag}, status: http.StatusNotModified})
		check(t, uri, httpCase{method: get, path: events, header: map[string]string{"If-None-Match": `"other", W/` + etag}, status: http.StatusNotModified})
		check(t, uri, httpCase{method: get, path: events, header: map[string]string{"If-None-Match": `"other"`}, status: ok, body: `"metadata-location"`})
	})

	t.Run("vended credentials", func(t *testing.T) {
		hdr := map[string]string{"X-Iceberg-Access-Delegation": "remote-signing, vended-credentials"}
		rsp, body := do(t, uri, httpCase{method: get, path: events, header: hdr})
		if !strings.Contains(string(body), `"config":{"s3.access-key-id":"AKIA-vended","s3.secret-access-key":"vended-secret"}`) {
			t.Errorf("vended load table config missing keys: %s", body)
		}
		if rsp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("Cache-Control = %q, want no-store", rsp.Header.Get("Cache-Control"))
		}
		plain, _ := do(t, uri, httpCase{method: get, path: events})
		if rsp.Header.Get("ETag") == plain.Header.Get("ETag") {
			t.Errorf("vended and plain responses share ETag %s", rsp.Header.Get("ETag"))
		}
	})
}

// brokenCatalog fails every call: the embedded nil interface panics, and
// ListNamespaces returns an error carrying internals.
type brokenCatalog struct{ rest.Catalog }

func (brokenCatalog) ListNamespaces(context.Context, table.Identifier) ([]table.Identifier, error) {
	return nil, errors.New("dial tcp 10.0.0.7:5432: password authentication failed for user strom")
}

// TestInternalErrors: catalog failures and panics become 500 with the
// ErrorModel, and neither the cause nor a stack trace reaches the client.
func TestInternalErrors(t *testing.T) {
	srv := httptest.NewServer(rest.NewHandler(brokenCatalog{}, rest.Config{}, nil))
	defer srv.Close()
	for _, path := range []string{"/v1/namespaces", "/v1/namespaces/db", "/v1/namespaces/db/tables/t"} {
		c := httpCase{method: http.MethodGet, path: path, status: http.StatusInternalServerError, errType: "InternalServerError"}
		check(t, srv.URL, c)
		_, body := do(t, srv.URL, c)
		for _, leak := range []string{"password", "10.0.0.7", "goroutine", "panic", ".go:"} {
			if strings.Contains(string(body), leak) {
				t.Errorf("GET %s: body leaks %q: %s", path, leak, body)
			}
		}
	}
}
