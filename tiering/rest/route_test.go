package rest

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestParsePath(t *testing.T) {
	ns := func(l ...string) []string { return l }
	for _, c := range []struct {
		path   string
		prefix string
		want   route
		err    string // substring of the 400 message; empty for success
	}{
		{path: "/v1/config", want: route{res: resConfig}},
		{path: "/v1/config", prefix: "strom", want: route{res: resConfig}},
		{path: "/v1/namespaces", want: route{res: resNamespaces}},
		{path: "/v1/strom/namespaces", prefix: "strom", want: route{res: resNamespaces}},
		{path: "/v1/namespaces", prefix: "strom", want: route{res: resNamespaces}},
		{path: "/v1/namespaces/a", want: route{res: resNamespace, namespace: ns("a")}},
		{path: "/v1/namespaces/a%1Fb%1Fc", want: route{res: resNamespace, namespace: ns("a", "b", "c")}},
		{path: "/v1/namespaces/a%1fb", want: route{res: resNamespace, namespace: ns("a", "b")}},
		{path: "/v1/namespaces/a.b", want: route{res: resNamespace, namespace: ns("a.b")}},
		{path: "/v1/namespaces/a%2Fb%20c%25", want: route{res: resNamespace, namespace: ns("a/b c%")}},
		{path: "/v1/namespaces/%C3%BC", want: route{res: resNamespace, namespace: ns("ü")}},
		{path: "/v1/namespaces/a/properties", want: route{res: resNamespaceProperties, namespace: ns("a")}},
		{path: "/v1/namespaces/a/register", want: route{res: resRegisterTable, namespace: ns("a")}},
		{path: "/v1/namespaces/a/register-view", want: route{res: resRegisterView, namespace: ns("a")}},
		{path: "/v1/namespaces/a/tables", want: route{res: resTables, namespace: ns("a")}},
		{path: "/v1/namespaces/a/views", want: route{res: resViews, namespace: ns("a")}},
		{path: "/v1/namespaces/a%1Fb/tables/t", want: route{res: resTable, namespace: ns("a", "b"), name: "t"}},
		{path: "/v1/namespaces/a/tables/t%2Fx", want: route{res: resTable, namespace: ns("a"), name: "t/x"}},
		{path: "/v1/namespaces/a/tables/tables", want: route{res: resTable, namespace: ns("a"), name: "tables"}},
		{path: "/v1/namespaces/namespaces/tables/t", want: route{res: resTable, namespace: ns("namespaces"), name: "t"}},
		{path: "/v1/namespaces/a/views/v", want: route{res: resView, namespace: ns("a"), name: "v"}},
		{path: "/v1/namespaces/a/tables/t/metrics", want: route{res: resTableMetrics, namespace: ns("a"), name: "t"}},
		{path: "/v1/namespaces/a/tables/t/credentials", want: route{res: resTableUnsupported, namespace: ns("a"), name: "t"}},
		{path: "/v1/namespaces/a/tables/t/plan/p1", want: route{res: resTableUnsupported, namespace: ns("a"), name: "t"}},
		{path: "/v1/tables/rename", want: route{res: resRenameTable}},
		{path: "/v1/views/rename", want: route{res: resRenameView}},
		{path: "/v1/transactions/commit", want: route{res: resCommitTransaction}},
		{path: "/v1/strom/transactions/commit", prefix: "strom", want: route{res: resCommitTransaction}},

		{path: "", err: "start with /v1/"},
		{path: "/", err: "start with /v1/"},
		{path: "/v1", err: "start with /v1/"},
		{path: "/v1/", err: "empty segment"},
		{path: "/v2/config", err: "start with /v1/"},
		{path: "/v1//namespaces", err: "empty segment"},
		{path: "/v1/namespaces/", err: "empty segment"},
		{path: "/v1/namespaces/a%zz", err: "percent-encoding"},
		{path: "/v1/namespaces/a%", err: "percent-encoding"},
		{path: "/v1/namespaces/%FF", err: "not UTF-8"},
		{path: "/v1/namespaces/%1F", err: "empty level"},
		{path: "/v1/namespaces/a%1F", err: "empty level"},
		{path: "/v1/namespaces/a%1F%1Fb", err: "empty level"},
		{path: "/v1/namespaces/a%00b", err: "control character"},
		{path: "/v1/namespaces/a%0Ab", err: "control character"},
		{path: "/v1/namespaces/a/tables/t%7F", err: "control character"},
		{path: "/v1/namespaces/a/tables/t%1Fu", err: "control character"},
		{path: "/v1/namespaces/a/frobs", err: "no Iceberg REST route"},
		{path: "/v1/namespaces/a/views/v/metrics", err: "no Iceberg REST route"},
		{path: "/v1/namespaces/a/tables/t/metrics/x", err: "no Iceberg REST route"},
		{path: "/v1/namespaces/a/properties/x", err: "no Iceberg REST route"},
		{path: "/v1/tables", err: "no Iceberg REST route"},
		{path: "/v1/tables/rename/x", err: "no Iceberg REST route"},
		{path: "/v1/strom/namespaces", err: "uses no prefix"},
		{path: "/v1/other/namespaces", prefix: "strom", err: `prefix is "strom"`},
		{path: "/v1/strom", prefix: "strom", err: "names no resource"},
		{path: "/v1/strom/config", prefix: "strom", err: "no Iceberg REST route"},
	} {
		got, err := parsePath(c.path, c.prefix)
		if c.err != "" {
			var ae *apiError
			if !errors.As(err, &ae) || ae.status != http.StatusBadRequest || !strings.Contains(ae.msg, c.err) {
				t.Errorf("parsePath(%q, %q) = %+v, %v; want 400 with %q", c.path, c.prefix, got, err, c.err)
			}
			continue
		}
		if err != nil || got.res != c.want.res || got.name != c.want.name || !slices.Equal(got.namespace, c.want.namespace) {
			t.Errorf("parsePath(%q, %q) = %+v, %v; want %+v", c.path, c.prefix, got, err, c.want)
		}
	}
}

// formatPath is the inverse of parsePath for the routes whose template
// determines the path, encoding the way the Java and Go clients do.
func formatPath(rt route, prefix string) (string, bool) {
	enc := make([]string, len(rt.namespace))
	for i, l := range rt.namespace {
		enc[i] = url.PathEscape(l)
	}
	base := "/v1/"
	if prefix != "" {
		base += prefix + "/"
	}
	ns := base + "namespaces/" + strings.Join(enc, "%1F")
	switch rt.res {
	case resNamespaces:
		return base + "namespaces", true
	case resNamespace:
		return ns, true
	case resTables:
		return ns + "/tables", true
	case resTable:
		return ns + "/tables/" + url.PathEscape(rt.name), true
	case resView:
		return ns + "/views/" + url.PathEscape(rt.name), true
	case resTableMetrics:
		return ns + "/tables/" + url.PathEscape(rt.name) + "/metrics", true
	}
	return "", false
}

// FuzzParsePath: parsePath never panics, fails only with a 400, returns
// only well-formed identifiers, and round-trips what it accepts through the
// clients' encoding.
func FuzzParsePath(f *testing.F) {
	for _, s := range []string{
		"", "/", "/v1/", "/v1/config", "/v1/namespaces", "/v1/strom/namespaces",
		"/v1/namespaces/a%1Fb/tables/t", "/v1/namespaces/a%1F%1Fb", "/v1/namespaces/%",
		"/v1/namespaces/a%2Fb/tables/t%20u/metrics", "/v1/namespaces/%FF%FE",
		"/v1/namespaces/a/tables/t/plan/x", "/v1/namespaces/a/views/v", "/v1/namespaces/a%00",
		"/v1/tables/rename", "/v1//", "/v1/namespaces/a/tables/",
	} {
		f.Add(s, "")
		f.Add(s, "strom")
	}
	f.Fuzz(func(t *testing.T, path, prefix string) {
		if c := (Config{Prefix: prefix}); c.Validate() != nil {
			prefix = ""
		}
		rt, err := parsePath(path, prefix)
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) || ae.status != http.StatusBadRequest || ae.msg == "" {
				t.Fatalf("parsePath(%q) error %v is not a 400 apiError", path, err)
			}
			return
		}
		if rt.res == 0 {
			t.Fatalf("parsePath(%q) = %+v without a resource", path, rt)
		}
		for _, l := range rt.namespace {
			if l == "" || !utf8.ValidString(l) || strings.IndexFunc(l, unicode.IsControl) >= 0 {
				t.Fatalf("parsePath(%q): bad namespace level %q", path, l)
			}
		}
		if (rt.res == resTable || rt.res == resView) && rt.name == "" {
			t.Fatalf("parsePath(%q): empty name", path)
		}
		p, ok := formatPath(rt, prefix)
		if !ok {
			return
		}
		again, err := parsePath(p, prefix)
		if err != nil || again.res != rt.res || again.name != rt.name || !slices.Equal(again.namespace, rt.namespace) {
			t.Fatalf("round trip %q -> %+v -> %q -> %+v, %v", path, rt, p, again, err)
		}
	})
}

// FuzzParseNamespace: what parseNamespace accepts joins back to its input.
func FuzzParseNamespace(f *testing.F) {
	for _, s := range []string{"", "a", "a\x1fb", "\x1f", "a\x1f", "a\x00", "a.b", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		levels, err := parseNamespace(s)
		if err != nil {
			return
		}
		if strings.Join(levels, namespaceSeparator) != s {
			t.Fatalf("parseNamespace(%q) = %q does not join back", s, levels)
		}
		for _, l := range levels {
			if l == "" || strings.IndexFunc(l, unicode.IsControl) >= 0 {
				t.Fatalf("parseNamespace(%q) accepted level %q", s, l)
			}
		}
	})
}
