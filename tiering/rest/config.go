package rest

import (
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
)

// Config configures the REST catalog: what it tells engines about the
// warehouse and the object store that holds the data files.
type Config struct {
	// Warehouse is the lake's root location, e.g. s3://strom/lake, sent to
	// engines as the "warehouse" default. Informational: the tables' own
	// metadata names where their files are.
	Warehouse string `yaml:"warehouse"`
	// Prefix, if set, is the {prefix} path segment of every catalog route
	// (/v1/{prefix}/namespaces...), sent as the "prefix" override. Engines
	// use it without being told; paths without it are accepted as well.
	Prefix string `yaml:"prefix"`
	// S3Endpoint is the S3 endpoint URL engines read data files from, e.g.
	// http://minio:9000; empty for AWS S3.
	S3Endpoint string `yaml:"s3_endpoint"`
	// S3Region is the region of the bucket.
	S3Region string `yaml:"s3_region"`
	// S3PathStyle tells engines to address the bucket path-style
	// (http://endpoint/bucket/key), as MinIO and most S3-compatible servers need.
	S3PathStyle bool `yaml:"s3_path_style"`

	// VendCredentials hands S3AccessKeyID, S3SecretAccessKey and
	// S3SessionToken to every client that loads a table and asks for vended
	// credentials (header X-Iceberg-Access-Delegation: vended-credentials).
	// WARNING: without an Authorizer ([WithAuthorizer]) the catalog has no
	// authentication, so anyone who can reach it gets these keys; with one,
	// every reader of a table does. Turn it on only with keys that may read
	// the lake and nothing else, behind a network boundary you trust. When
	// off (the default), the keys are never sent: engines bring their own
	// s3.access-key-id and s3.secret-access-key.
	VendCredentials bool `yaml:"vend_credentials"`
	// S3AccessKeyID is the access key vended with VendCredentials.
	S3AccessKeyID string `yaml:"s3_access_key_id"`
	// S3SecretAccessKey is the secret key vended with VendCredentials.
	S3SecretAccessKey string `yaml:"s3_secret_access_key"`
	// S3SessionToken is the optional session token vended with VendCredentials.
	S3SessionToken string `yaml:"s3_session_token"`
}

// RegisterFlags registers the flags of Config, each name prefixed with
// prefix (e.g. "iceberg-rest." gives -iceberg-rest.warehouse).
func (c *Config) RegisterFlags(prefix string, f *flag.FlagSet) {
	f.StringVar(&c.Warehouse, prefix+"warehouse", "", "Root location of the lake (e.g. s3://strom/lake), sent to engines as the catalog's warehouse.")
	f.StringVar(&c.Prefix, prefix+"prefix", "", "Optional {prefix} path segment of the REST routes (letters, digits, '.', '_', '-'); engines learn it from GET /v1/config.")
	f.StringVar(&c.S3Endpoint, prefix+"s3-endpoint", "", "S3 endpoint URL engines read data files from (e.g. http://minio:9000); empty for AWS S3.")
	f.StringVar(&c.S3Region, prefix+"s3-region", "us-east-1", "Region of the lake's S3 bucket.")
	f.BoolVar(&c.S3PathStyle, prefix+"s3-path-style", true, "Tell engines to use path-style S3 addressing (MinIO and most S3-compatible servers need it).")
	f.BoolVar(&c.VendCredentials, prefix+"vend-credentials", false, "Send the S3 keys below to every client that loads a table and asks for vended credentials. WARNING: the catalog has no authentication; use read-only keys behind a trusted network.")
	f.StringVar(&c.S3AccessKeyID, prefix+"s3-access-key-id", "", "S3 access key vended with -"+prefix+"vend-credentials.")
	f.StringVar(&c.S3SecretAccessKey, prefix+"s3-secret-access-key", "", "S3 secret key vended with -"+prefix+"vend-credentials.")
	f.StringVar(&c.S3SessionToken, prefix+"s3-session-token", "", "Optional S3 session token vended with -"+prefix+"vend-credentials.")
}

var prefixPattern = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// Validate reports the first invalid field.
func (c *Config) Validate() error {
	if c.Prefix != "" {
		if !prefixPattern.MatchString(c.Prefix) || c.Prefix == "." || c.Prefix == ".." {
			return fmt.Errorf("rest: prefix: %q must be one path segment of letters, digits, '.', '_' and '-'", c.Prefix)
		}
		if topLevel[c.Prefix] {
			return fmt.Errorf("rest: prefix: %q is a route name of the REST spec; choose another", c.Prefix)
		}
	}
	if c.S3Endpoint != "" {
		u, err := url.Parse(c.S3Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("rest: s3_endpoint: %q is not an http:// or https:// URL", c.S3Endpoint)
		}
	}
	if c.VendCredentials && (c.S3AccessKeyID == "" || c.S3SecretAccessKey == "") {
		return errors.New("rest: vend_credentials: on, but s3_access_key_id or s3_secret_access_key is empty")
	}
	return nil
}

// Catalog properties engines understand (Iceberg Java's S3FileIO, PyIceberg,
// iceberg-go). Both path-style spellings are sent: Java reads
// s3.path-style-access, PyIceberg and iceberg-go s3.force-virtual-addressing.
const (
	propWarehouse          = "warehouse"
	propPrefix             = "prefix"
	propS3Endpoint         = "s3.endpoint"
	propS3Region           = "s3.region"
	propClientRegion       = "client.region"
	propS3PathStyle        = "s3.path-style-access"
	propS3ForceVirtual     = "s3.force-virtual-addressing"
	propS3AccessKeyID      = "s3.access-key-id"
	propS3SecretAccessKey  = "s3.secret-access-key"
	propS3SessionToken     = "s3.session-token"
	headerAccessDelegation = "X-Iceberg-Access-Delegation"
)

// endpoints are the routes this server supports, in the spec's
// "<verb> <path template>" form. Clients that read the list (Iceberg Java
// 1.7+, iceberg-go) call nothing else, so they refuse writes before sending
// them; older clients get 403 from the server.
var endpoints = []string{
	"GET /v1/{prefix}/namespaces",
	"GET /v1/{prefix}/namespaces/{namespace}",
	"HEAD /v1/{prefix}/namespaces/{namespace}",
	"GET /v1/{prefix}/namespaces/{namespace}/tables",
	"GET /v1/{prefix}/namespaces/{namespace}/tables/{table}",
	"HEAD /v1/{prefix}/namespaces/{namespace}/tables/{table}",
	"GET /v1/{prefix}/namespaces/{namespace}/views",
	"GET /v1/{prefix}/namespaces/{namespace}/views/{view}",
	"HEAD /v1/{prefix}/namespaces/{namespace}/views/{view}",
}

// catalogConfig is the spec's CatalogConfig.
type catalogConfig struct {
	Defaults  map[string]string `json:"defaults"`
	Overrides map[string]string `json:"overrides"`
	Endpoints []string          `json:"endpoints"`
}

// catalogConfig returns the answer of GET /v1/config. It never holds
// credentials: those go only into LoadTableResult.config, and only when
// vended.
func (c *Config) catalogConfig() catalogConfig {
	cc := catalogConfig{Defaults: map[string]string{}, Overrides: map[string]string{}, Endpoints: endpoints}
	set := func(m map[string]string, k, v string) {
		if v != "" {
			m[k] = v
		}
	}
	set(cc.Defaults, propWarehouse, c.Warehouse)
	set(cc.Defaults, propS3Endpoint, c.S3Endpoint)
	set(cc.Defaults, propS3Region, c.S3Region)
	set(cc.Defaults, propClientRegion, c.S3Region)
	cc.Defaults[propS3PathStyle] = strconv.FormatBool(c.S3PathStyle)
	cc.Defaults[propS3ForceVirtual] = strconv.FormatBool(!c.S3PathStyle)
	set(cc.Overrides, propPrefix, c.Prefix)
	return cc
}

// getConfig serves GET /v1/config. The warehouse query parameter is
// accepted and ignored: this server serves one catalog.
func (h *handler) getConfig(w http.ResponseWriter, r *http.Request, _ route) error {
	return writeJSON(w, r, http.StatusOK, h.cfg.catalogConfig())
}
