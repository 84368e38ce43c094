package rest

import (
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"
)

// resource is a path template of the REST spec, relative to /v1/{prefix}.
type resource int

const (
	resConfig              resource = iota + 1 // /v1/config (never prefixed)
	resNamespaces                              // /namespaces
	resNamespace                               // /namespaces/{namespace}
	resNamespaceProperties                     // /namespaces/{namespace}/properties
	resRegisterTable                           // /namespaces/{namespace}/register
	resTables                                  // /namespaces/{namespace}/tables
	resTable                                   // /namespaces/{namespace}/tables/{table}
	resTableMetrics                            // /namespaces/{namespace}/tables/{table}/metrics
	resTableUnsupported                        // .../tables/{table}/credentials, /plan[/{plan-id}], /tasks
	resViews                                   // /namespaces/{namespace}/views
	resView                                    // /namespaces/{namespace}/views/{view}
	resRegisterView                            // /namespaces/{namespace}/register-view
	resRenameTable                             // /tables/rename
	resRenameView                              // /views/rename
	resCommitTransaction                       // /transactions/commit
)

// route is a request path decoded: the resource and its path parameters.
type route struct {
	res       resource
	namespace []string // levels of {namespace}; nil when the path has none
	name      string   // {table} or {view}
}

// Namespace levels in a path segment or in the parent query parameter are
// separated by the unit separator 0x1F (sent as %1F), the spec's default
// namespace-separator, which this server does not change.
const namespaceSeparator = "\x1f"

// topLevel are the words that may follow /v1/ (or /v1/{prefix}/); a
// [Config.Prefix] must not be one of them.
var topLevel = map[string]bool{"config": true, "namespaces": true, "tables": true, "views": true, "transactions": true, "oauth": true}

// parsePath decodes the escaped path of a request (as [url.URL.EscapedPath]
// gives it, below the mount point) into a route. prefix is the optional
// {prefix} segment this server answers to; paths without it are accepted too.
// Each segment is percent-decoded on its own, so an encoded '/' (%2F) stays
// inside its segment. Malformed and unknown paths are 400 errors.
func parsePath(escaped, prefix string) (route, error) {
	rest, ok := strings.CutPrefix(escaped, "/v1/")
	if !ok {
		return route{}, badRequest("path %q is not an Iceberg REST path: they start with /v1/ below the catalog URI", escaped)
	}
	raw := strings.Split(rest, "/")
	segs := make([]string, len(raw))
	for i, s := range raw {
		d, err := url.PathUnescape(s)
		if err != nil {
			return route{}, badRequest("path segment %q is not valid percent-encoding", s)
		}
		if d == "" {
			return route{}, badRequest("path %q has an empty segment", escaped)
		}
		if !utf8.ValidString(d) {
			return route{}, badRequest("path segment %q is not UTF-8", s)
		}
		segs[i] = d
	}
	if len(segs) == 1 && segs[0] == "config" {
		return route{res: resConfig}, nil
	}
	if !topLevel[segs[0]] {
		if prefix == "" {
			return route{}, badRequest("unknown catalog prefix %q: this catalog uses no prefix (see GET /v1/config)", segs[0])
		}
		if segs[0] != prefix {
			return route{}, badRequest("unknown catalog prefix %q: this catalog's prefix is %q (see GET /v1/config)", segs[0], prefix)
		}
		segs = segs[1:]
		if len(segs) == 0 {
			return route{}, badRequest("path %q names no resource", escaped)
		}
	}
	switch {
	case len(segs) == 2 && segs[0] == "tables" && segs[1] == "rename":
		return route{res: resRenameTable}, nil
	case len(segs) == 2 && segs[0] == "views" && segs[1] == "rename":
		return route{res: resRenameView}, nil
	case len(segs) == 2 && segs[0] == "transactions" && segs[1] == "commit":
		return route{res: resCommitTransaction}, nil
	case segs[0] != "namespaces":
		return route{}, unknownPath(escaped)
	case len(segs) == 1:
		return route{res: resNamespaces}, nil
	}
	ns, err := parseNamespace(segs[1])
	if err != nil {
		return route{}, err
	}
	rt := route{namespace: ns}
	switch len(segs) {
	case 2:
		rt.res = resNamespace
		return rt, nil
	case 3:
		switch segs[2] {
		case "properties":
			rt.res = resNamespaceProperties
		case "register":
			rt.res = resRegisterTable
		case "tables":
			rt.res = resTables
		case "views":
			rt.res = resViews
		case "register-view":
			rt.res = resRegisterView
		default:
			return route{}, unknownPath(escaped)
		}
		return rt, nil
	}
	switch segs[2] {
	case "tables":
		rt.res = resTable
	case "views":
		rt.res = resView
	default:
		return route{}, unknownPath(escaped)
	}
	if err := checkName(segs[3]); err != nil {
		return route{}, err
	}
	rt.name = segs[3]
	switch {
	case len(segs) == 4:
		return rt, nil
	case rt.res != resTable:
		return route{}, unknownPath(escaped)
	case len(segs) == 5 && segs[4] == "metrics":
		rt.res = resTableMetrics
	case len(segs) == 5 && (segs[4] == "credentials" || segs[4] == "plan" || segs[4] == "tasks"),
		len(segs) == 6 && segs[4] == "plan":
		rt.res = resTableUnsupported
	default:
		return route{}, unknownPath(escaped)
	}
	return rt, nil
}

func unknownPath(escaped string) *apiError {
	return badRequest("no Iceberg REST route matches %q", escaped)
}

// parseNamespace splits a decoded namespace (a path segment or the parent
// query parameter) into its levels. Every level must be non-empty and free
// of control characters.
func parseNamespace(s string) ([]string, error) {
	if s == "" {
		return nil, badRequest("namespace is empty")
	}
	levels := strings.Split(s, namespaceSeparator)
	for _, l := range levels {
		if l == "" {
			return nil, badRequest("namespace %q has an empty level (levels are separated by %%1F)", s)
		}
		if !utf8.ValidString(l) || strings.IndexFunc(l, unicode.IsControl) >= 0 {
			return nil, badRequest("namespace level %q holds a control character or is not UTF-8", l)
		}
	}
	return levels, nil
}

// checkName checks a table or view name.
func checkName(s string) error {
	if strings.IndexFunc(s, unicode.IsControl) >= 0 {
		return badRequest("name %q holds a control character", s)
	}
	return nil
}
