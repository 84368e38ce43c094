package rest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/apache/iceberg-go/table"
)

// tableIdentifier is the spec's TableIdentifier.
type tableIdentifier struct {
	Namespace []string `json:"namespace"`
	Name      string   `json:"name"`
}

// listTablesResponse is the spec's ListTablesResponse, unpaginated.
type listTablesResponse struct {
	Identifiers []tableIdentifier `json:"identifiers"`
}

// loadTableResult is the spec's LoadTableResult. Metadata is the table
// metadata JSON; Config overrides the catalog configuration for this table
// and holds the vended S3 keys when there are any.
type loadTableResult struct {
	MetadataLocation string            `json:"metadata-location"`
	Metadata         json.RawMessage   `json:"metadata"`
	Config           map[string]string `json:"config"`
}

// listTables serves GET /v1/{prefix}/namespaces/{namespace}/tables, sorted
// by name.
func (h *handler) listTables(w http.ResponseWriter, r *http.Request, rt route) error {
	ids := []tableIdentifier{}
	for id, err := range h.cat.ListTables(r.Context(), rt.namespace) {
		if err != nil {
			return catalogError(err, "list tables of "+dotted(rt.namespace), rt.namespace, "")
		}
		if len(id) < 2 {
			continue
		}
		ids = append(ids, tableIdentifier{Namespace: id[:len(id)-1], Name: id[len(id)-1]})
	}
	slices.SortFunc(ids, func(a, b tableIdentifier) int {
		if c := slices.Compare(a.Namespace, b.Namespace); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return writeJSON(w, r, http.StatusOK, listTablesResponse{Identifiers: ids})
}

// loadTable serves GET /v1/{prefix}/namespaces/{namespace}/tables/{table}.
// The response carries an ETag derived from the metadata file's location
// (metadata files are immutable, and every commit writes a new one); a
// matching If-None-Match gets 304. snapshots=refs is accepted and answered
// with all snapshots, a superset the spec allows clients to receive.
func (h *handler) loadTable(w http.ResponseWriter, r *http.Request, rt route) error {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return badRequest("query %q is not valid URL encoding", r.URL.RawQuery)
	}
	if s := q.Get("snapshots"); s != "" && s != "all" && s != "refs" {
		return badRequest("snapshots: %q is not \"all\" or \"refs\"", s)
	}
	ident := append(table.Identifier{}, rt.namespace...)
	ident = append(ident, rt.name)
	t, err := h.cat.LoadTable(r.Context(), ident)
	if err != nil {
		return catalogError(err, "load table "+dotted(ident), rt.namespace, rt.name)
	}
	vend := h.cfg.VendCredentials && wantsVendedCredentials(r.Header)
	etag := entityTag(t.MetadataLocation(), vend)
	w.Header().Set("ETag", etag)
	if vend {
		w.Header().Set("Cache-Control", "no-store")
	}
	if etagMatches(r.Header.Get("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	meta, err := json.Marshal(t.Metadata())
	if err != nil {
		h.log.Error("iceberg rest: encode table metadata", "table", dotted(ident), "err", err)
		return internal("load table " + dotted(ident))
	}
	cfg := map[string]string{}
	if vend {
		cfg[propS3AccessKeyID] = h.cfg.S3AccessKeyID
		cfg[propS3SecretAccessKey] = h.cfg.S3SecretAccessKey
		if h.cfg.S3SessionToken != "" {
			cfg[propS3SessionToken] = h.cfg.S3SessionToken
		}
	}
	return writeJSON(w, r, http.StatusOK, loadTableResult{MetadataLocation: t.MetadataLocation(), Metadata: meta, Config: cfg})
}

// tableExists serves HEAD /v1/{prefix}/namespaces/{namespace}/tables/{table}:
// 204 or 404.
func (h *handler) tableExists(w http.ResponseWriter, r *http.Request, rt route) error {
	ident := append(table.Identifier{}, rt.namespace...)
	ident = append(ident, rt.name)
	ok, err := h.cat.CheckTableExists(r.Context(), ident)
	if err != nil {
		return catalogError(err, "check table "+dotted(ident), rt.namespace, rt.name)
	}
	if !ok {
		return noSuchTable(rt.namespace, rt.name)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// reportMetrics serves POST .../tables/{table}/metrics: the report is read
// and dropped (204). The route is not advertised; older clients send reports
// regardless, and an error would only fill their logs.
func (h *handler) reportMetrics(w http.ResponseWriter, r *http.Request, _ route) error {
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// wantsVendedCredentials reports whether the client asked for vended
// credentials in X-Iceberg-Access-Delegation, a comma-separated list.
func wantsVendedCredentials(hdr http.Header) bool {
	for _, v := range hdr.Values(headerAccessDelegation) {
		for m := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(m), "vended-credentials") {
				return true
			}
		}
	}
	return false
}

// entityTag is the strong ETag of a LoadTableResult: the metadata location
// names the content, and whether keys were vended changes the config.
func entityTag(metadataLocation string, vended bool) string {
	h := sha256.New()
	_, _ = io.WriteString(h, metadataLocation) // a hash never fails to write
	if vended {
		_, _ = io.WriteString(h, "\x00vended")
	}
	return `"` + hex.EncodeToString(h.Sum(nil)[:16]) + `"`
}

// etagMatches reports whether an If-None-Match header value matches etag
// (weak comparison, as RFC 9110 asks for If-None-Match).
func etagMatches(ifNoneMatch, etag string) bool {
	for t := range strings.SplitSeq(ifNoneMatch, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}
