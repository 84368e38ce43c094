package server

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.yaml.in/yaml/v3"

	"github.com/strom-io/strom/catalog/tablecache"
	"github.com/strom-io/strom/services/auth"
	"github.com/strom-io/strom/services/cache"
	"github.com/strom-io/strom/services/cluster"
	"github.com/strom-io/strom/services/objstore"
	"github.com/strom-io/strom/services/retention"
	"github.com/strom-io/strom/services/wal"
)

// Config is the whole configuration of a Strom process. Defaults come from
// RegisterFlags; a YAML file (-config.file) is applied strictly on top of
// them, and flags given on the command line win over the file.
type Config struct {
	// DataDir holds the local state: the WAL, caches and, with embedded
	// defaults, the catalog and the objects.
	DataDir string `yaml:"data_dir"`
	// Roles this process serves: write, read, tiering, or all.
	Roles     string           `yaml:"roles"`
	Log       LogConfig        `yaml:"log"`
	Server    HTTPConfig       `yaml:"server"`
	Catalog   CatalogConfig    `yaml:"catalog"`
	ObjStore  objstore.Config  `yaml:"objstore"`
	Frontend  FrontendConfig   `yaml:"frontend"`
	WAL       wal.Options      `yaml:"wal"`
	Retention retention.Config `yaml:"retention"`
	Cache     cache.Config     `yaml:"cache"`
	Lake      LakeConfig       `yaml:"lake"`
	Auth      auth.Config      `yaml:"auth"`
}

// FrontendConfig configures the write path and bucket leadership.
type FrontendConfig struct {
	// ID names this frontend in bucket leases; unique per process.
	ID         string        `yaml:"id"`
	LeaseTTL   time.Duration `yaml:"lease_ttl"`
	LeaseRenew time.Duration `yaml:"lease_renew_interval"`
	// AdvertiseAddress is where other frontends reach this one's internal
	// listener.
	AdvertiseAddress string        `yaml:"advertise_address"`
	BalanceInterval  time.Duration `yaml:"balance_interval"`
	ForwardTimeout   time.Duration `yaml:"forward_timeout"`
	FlushInterval    time.Duration `yaml:"flush_interval"`
	FlushLinger      time.Duration `yaml:"flush_linger"`
	FlushBytes       int64         `yaml:"flush_bytes"`
	MaxPendingBytes  int64         `yaml:"max_pending_bytes"`
	CommitTimeout    time.Duration `yaml:"commit_timeout"`
	// KVMaxPendingBytes bounds each primary-key bucket's pre-write buffer.
	KVMaxPendingBytes int64 `yaml:"kv_max_pending_bytes"`
	// KVSnapshotInterval is how often changed primary-key buckets are
	// snapshotted to the object store; KVSnapshotKeep snapshots are kept.
	KVSnapshotInterval time.Duration `yaml:"kv_snapshot_interval"`
	KVSnapshotKeep     int           `yaml:"kv_snapshot_keep"`
}

// RegisterFlags registers the frontend settings under prefix.
func (c *FrontendConfig) RegisterFlags(prefix string, f *flag.FlagSet) {
	f.StringVar(&c.ID, prefix+"id", "", "Id of this frontend in bucket leases and the member list (default <hostname>-<random>, kept in <data-dir>/frontend-id so that a restart with the same data directory keeps it).")
	f.DurationVar(&c.LeaseTTL, prefix+"lease-ttl", 10*time.Second, "How long a bucket lease lasts without renewal; another frontend takes the bucket after it.")
	f.DurationVar(&c.LeaseRenew, prefix+"lease-renew-interval", 3*time.Second, "How often held bucket leases are renewed.")
	f.StringVar(&c.AdvertiseAddress, prefix+"advertise-address", "", "host:port at which other frontends reach this one's internal listener (default: the bound -server.internal-listen-address, with the host name when it binds every interface). In Kubernetes, the pod's stable name through a headless Service.")
	f.DurationVar(&c.BalanceInterval, prefix+"balance-interval", time.Second, "How often a frontend heartbeats, re-reads the members and bucket leaders, takes over free buckets and hands buckets to newer members.")
	f.DurationVar(&c.ForwardTimeout, prefix+"forward-timeout", 30*time.Second, "Deadline of a request forwarded to the bucket's leader (the client's deadline applies too).")
	f.DurationVar(&c.FlushInterval, prefix+"flush-interval", 50*time.Millisecond, "How often new batches are flushed as one segment object: the longest new data waits for its flush to start.")
	f.DurationVar(&c.FlushLinger, prefix+"flush-linger", 5*time.Millisecond, "Group commit: new data is flushed this long after it arrives when no flush is under way, and data that arrived during a flush as soon as it ends, instead of at the next flush interval. Lower latency for durable writes; 0 flushes at the interval only.")
	f.Int64Var(&c.FlushBytes, prefix+"flush-bytes", 8<<20, "Flush as soon as this many bytes wait, before the interval ends.")
	f.Int64Var(&c.MaxPendingBytes, prefix+"max-pending-bytes", 256<<20, "Writes are refused with resource_exhausted while this many bytes wait for their commit.")
	f.Int64Var(&c.KVMaxPendingBytes, prefix+"kv-max-pending-bytes", 64<<20, "Upserts to a primary-key bucket are refused with resource_exhausted while this many bytes of changes wait for their commit.")
	f.DurationVar(&c.KVSnapshotInterval, prefix+"kv-snapshot-interval", time.Minute, "How often the KV state of changed primary-key buckets is snapshotted to the object store (incrementally: SST files are uploaded once).")
	f.IntVar(&c.KVSnapshotKeep, prefix+"kv-snapshot-keep", 3, "KV snapshots kept per primary-key bucket; older ones and the files only they use are deleted.")
	f.DurationVar(&c.CommitTimeout, prefix+"commit-timeout", 10*time.Second, "How long a durable write waits for its commit before it fails with unavailable (it is still committed later; idempotent retries are safe).")
}

// LogConfig configures logging to stderr.
type LogConfig struct {
	Level  slog.Level `yaml:"level"`
	Format string     `yaml:"format"`
}

// RegisterFlags registers the log settings under prefix.
func (c *LogConfig) RegisterFlags(prefix string, f *flag.FlagSet) {
	c.Level = slog.LevelInfo
	f.TextVar(&c.Level, prefix+"level", slog.LevelInfo, "Log level: debug, info, warn or error.")
	f.StringVar(&c.Format, prefix+"format", "text", "Log format: text or json.")
}

// HTTPConfig configures the API listener.
type HTTPConfig struct {
	HTTPListenAddress       string        `yaml:"http_listen_address"`
	InternalListenAddress   string        `yaml:"internal_listen_address"`
	GracefulShutdownTimeout time.Duration `yaml:"graceful_shutdown_timeout"`
	MaxRequestBytes         int           `yaml:"max_request_bytes"`
	// InternalTokenFile holds the frontends' shared secret for the
	// internal port (auth.go); empty leaves the port open.
	InternalTokenFile string `yaml:"internal_token_file"`
	// TLS of the API listener (tls.go).
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
	// Per-client limits (limits.go).
	RateLimit      float64 `yaml:"rate_limit"`
	RateLimitBurst int     `yaml:"rate_limit_burst"`
	// PprofEnabled serves Go's runtime profiles under /debug/pprof/
	// (pprof.go).
	PprofEnabled bool `yaml:"pprof_enabled"`
}

// Catalog backends.
const (
	CatalogEmbedded = "embedded"
	CatalogPostgres = "postgres"
)

// CatalogConfig chooses and configures the catalog.
type CatalogConfig struct {
	Backend  string `yaml:"backend"`
	Postgres struct {
		URL string `yaml:"url"`
	} `yaml:"postgres"`
	Embedded struct {
		Dir string `yaml:"dir"`
	} `yaml:"embedded"`
	// TableCacheMaxStaleness bounds how long a frontend serves table
	// definitions from memory without its catalog watch confirming them
	// (catalog/tablecache); 0 disables the cache.
	TableCacheMaxStaleness time.Duration `yaml:"table_cache_max_staleness"`
}

// RegisterFlags registers every setting with its default and help.
func (c *Config) RegisterFlags(f *flag.FlagSet) {
	f.StringVar(&c.DataDir, "data-dir", "./data", "Directory for local state: WAL, caches and, with the embedded defaults, the catalog and objects.")
	f.StringVar(&c.Roles, "roles", "all", "Roles this process serves, comma-separated: write (leads buckets: WAL, segments, KV state), read (fetch, subscribe, lookups), tiering; or all. Every role accepts every request and forwards what it does not serve.")
	c.Log.RegisterFlags("log.", f)
	c.Server.RegisterFlags("server.", f)
	c.Catalog.RegisterFlags("catalog.", f)
	c.ObjStore.RegisterFlags("objstore.", f)
	c.Frontend.RegisterFlags("frontend.", f)
	c.WAL.RegisterFlags("wal.", f)
	c.Retention.RegisterFlags("retention.", f)
	c.Cache.RegisterFlags("cache.", f)
	c.Lake.RegisterFlags("lake.", f)
	c.Auth.RegisterFlags("auth.", f)
}

// RegisterFlags registers the listener settings under prefix.
func (c *HTTPConfig) RegisterFlags(prefix string, f *flag.FlagSet) {
	f.StringVar(&c.HTTPListenAddress, prefix+"http-listen-address", ":9123", "Address of the API (Connect, gRPC, gRPC-Web on one h2c port), /healthz, /readyz and /metrics.")
	f.StringVar(&c.InternalListenAddress, prefix+"internal-listen-address", ":9124", "Address of the internal API to which other frontends forward writes and primary-key reads (write role only).")
	f.DurationVar(&c.GracefulShutdownTimeout, prefix+"graceful-shutdown-timeout", 30*time.Second, "How long a SIGTERM drain may take: hand the buckets over (flush, commit, release the leases), then finish in-flight requests.")
	f.IntVar(&c.MaxRequestBytes, prefix+"max-request-bytes", 64<<20, "Largest accepted request message, in bytes.")
	f.StringVar(&c.InternalTokenFile, prefix+"internal-token-file", "", "File holding the shared secret of the internal port (one line, at least 16 bytes: strom token generate). Frontends send it with forwarded calls and refuse calls without it, so every frontend must read the same file. Empty: the internal port accepts any caller.")
	f.BoolVar(&c.PprofEnabled, prefix+"pprof-enabled", false, "Serve Go's runtime profiles (CPU, heap, goroutines) under /debug/pprof/ on the API port; with authentication on, to tokens with admin on \"*\" only.")
	c.registerTLSFlags(prefix, f)
	c.registerLimitFlags(prefix, f)
}

// RegisterFlags registers the catalog settings under prefix.
func (c *CatalogConfig) RegisterFlags(prefix string, f *flag.FlagSet) {
	f.StringVar(&c.Backend, prefix+"backend", CatalogEmbedded, "Catalog backend: embedded (one process, local disk) or postgres (shared by every frontend).")
	f.StringVar(&c.Postgres.URL, prefix+"postgres.url", "", "PostgreSQL connection URL, e.g. postgres://strom:secret@db:5432/strom. Required with -catalog.backend=postgres.")
	f.StringVar(&c.Embedded.Dir, prefix+"embedded.dir", "", "Directory of the embedded catalog (default <data-dir>/catalog).")
	f.DurationVar(&c.TableCacheMaxStaleness, prefix+"table-cache-max-staleness", tablecache.DefaultMaxStaleness, "How long a frontend serves table definitions from memory after its catalog watch last confirmed it had seen every change (with postgres: a ping through LISTEN/NOTIFY every tenth of it). With postgres, AlterTable, DropTable and DropDatabase wait this long plus a tenth before they return, so that no frontend uses the old definition afterwards: use the same value on every frontend of a catalog. 0 reads every table from the catalog.")
}

// Validate reports the first invalid setting, naming it.
func (c *Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir: must not be empty"))
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		errs = append(errs, fmt.Errorf("log.format: want text or json, got %q", c.Log.Format))
	}
	if c.Server.HTTPListenAddress == "" {
		errs = append(errs, errors.New("server.http_listen_address: must not be empty"))
	}
	roles, err := cluster.ParseRoles(c.Roles)
	if err != nil {
		errs = append(errs, fmt.Errorf("roles: %w", err))
	}
	if roles.Has(cluster.RoleWrite) && c.Server.InternalListenAddress == "" {
		errs = append(errs, errors.New("server.internal_listen_address: must not be empty with the write role"))
	}
	if err == nil && c.Catalog.Backend == CatalogEmbedded && len(roles) < len(cluster.AllRoles) {
		errs = append(errs, fmt.Errorf("roles: %s: the embedded catalog serves one process, which must run every role (roles=all); split roles with catalog.backend=postgres", roles))
	}
	if c.Server.GracefulShutdownTimeout < 0 {
		errs = append(errs, fmt.Errorf("server.graceful_shutdown_timeout: must not be negative, got %s", c.Server.GracefulShutdownTimeout))
	}
	if c.Server.MaxRequestBytes < 1024 {
		errs = append(errs, fmt.Errorf("server.max_request_bytes: must be at least 1024, got %d", c.Server.MaxRequestBytes))
	}
	errs = append(errs, c.Server.validateTLS(), c.Server.validateLimits())
	errs = append(errs, c.Auth.Validate())
	switch c.Catalog.Backend {
	case CatalogEmbedded:
	case CatalogPostgres:
		if c.Catalog.Postgres.URL == "" {
			errs = append(errs, errors.New("catalog.postgres.url: required when catalog.backend is postgres"))
		}
	default:
		errs = append(errs, fmt.Errorf("catalog.backend: want embedded or postgres, got %q", c.Catalog.Backend))
	}
	if st := c.Catalog.TableCacheMaxStaleness; st != 0 && (st < 10*time.Millisecond || st > 10*time.Minute) {
		errs = append(errs, fmt.Errorf("catalog.table_cache_max_staleness: must be 0 (no cache) or between 10ms and 10m, got %s", st))
	}
	fe := c.Frontend
	switch {
	case fe.LeaseTTL < time.Second:
		errs = append(errs, fmt.Errorf("frontend.lease_ttl: must be at least 1s, got %s", fe.LeaseTTL))
	case fe.LeaseRenew <= 0 || fe.LeaseRenew > fe.LeaseTTL/2:
		errs = append(errs, fmt.Errorf("frontend.lease_renew_interval: must be positive and at most half of frontend.lease_ttl (%s), got %s", fe.LeaseTTL, fe.LeaseRenew))
	}
	if fe.BalanceInterval < 10*time.Millisecond || fe.BalanceInterval > fe.LeaseTTL/2 {
		errs = append(errs, fmt.Errorf("frontend.balance_interval: must be at least 10ms and at most half of frontend.lease_ttl (%s), got %s", fe.LeaseTTL, fe.BalanceInterval))
	}
	if fe.ForwardTimeout < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("frontend.forward_timeout: must be at least 100ms, got %s", fe.ForwardTimeout))
	}
	if fe.FlushInterval < time.Millisecond {
		errs = append(errs, fmt.Errorf("frontend.flush_interval: must be at least 1ms, got %s", fe.FlushInterval))
	}
	if fe.FlushBytes < 1<<10 {
		errs = append(errs, fmt.Errorf("frontend.flush_bytes: must be at least 1024, got %d", fe.FlushBytes))
	}
	if fe.MaxPendingBytes < fe.FlushBytes {
		errs = append(errs, fmt.Errorf("frontend.max_pending_bytes: must be at least frontend.flush_bytes (%d), got %d", fe.FlushBytes, fe.MaxPendingBytes))
	}
	if fe.KVSnapshotInterval < time.Second {
		errs = append(errs, fmt.Errorf("frontend.kv_snapshot_interval: must be at least 1s, got %s", fe.KVSnapshotInterval))
	}
	if fe.KVSnapshotKeep < 1 {
		errs = append(errs, fmt.Errorf("frontend.kv_snapshot_keep: must be at least 1, got %d", fe.KVSnapshotKeep))
	}
	if fe.CommitTimeout < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("frontend.commit_timeout: must be at least 100ms, got %s", fe.CommitTimeout))
	}
	if err := c.Lake.Tiering.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("lake.tiering: %w", err))
	}
	if err := c.Cache.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("cache: %w", err))
	}
	if err := c.Retention.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.ObjStore.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// applyDerivedDefaults fills settings whose defaults derive from others.
func (c *Config) applyDerivedDefaults() {
	if c.ObjStore.Filesystem.Dir == "" {
		c.ObjStore.Filesystem.Dir = filepath.Join(c.DataDir, "objects")
	}
	if c.Cache.Dir == "" {
		c.Cache.Dir = filepath.Join(c.DataDir, "cache")
	}
	if c.WAL.Dir == "" {
		c.WAL.Dir = filepath.Join(c.DataDir, "wal")
	}

}

// frontendID is the configured frontend id, else the one kept in the data
// directory from an earlier start, else a new one made of the host name
// and a random suffix, kept there. A frontend that restarts with its data
// directory thus keeps its id: it still holds its unexpired leases and
// takes its buckets back at once, instead of waiting for them to expire.
func (c *Config) frontendID(logger *slog.Logger) string {
	if c.Frontend.ID != "" {
		return c.Frontend.ID
	}
	file := filepath.Join(c.DataDir, "frontend-id")
	if b, err := os.ReadFile(file); err == nil {
		if id := strings.TrimSpace(string(b)); id != "" {
			return id
		}
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "strom"
	}
	id := host + "-" + uuid.NewString()[:8]
	if err := os.MkdirAll(c.DataDir, 0o755); err == nil {
		err = os.WriteFile(file, []byte(id+"\n"), 0o644)
		if err != nil {
			logger.Warn("could not keep the frontend id in the data directory; the next start gets a new one", slog.Any("err", err))
		}
	}
	return id
}

// embeddedCatalogDir is where the embedded catalog lives.
func (c *Config) embeddedCatalogDir() string {
	if c.Catalog.Embedded.Dir != "" {
		return c.Catalog.Embedded.Dir
	}
	return filepath.Join(c.DataDir, "catalog")
}

// LoadConfig builds the configuration from args: flag defaults, then the
// YAML file named by -config.file (unknown keys are errors; with
// -config.expand-env, ${VAR} is replaced from the environment), then the
// flags given in args. It returns flag.ErrHelp for -h.
func LoadConfig(name string, args []string, output io.Writer) (Config, error) {
	var cfg Config
	f := NewFlagSet(name, &cfg, output)
	var file string
	var expandEnv bool
	f.StringVar(&file, "config.file", "", "YAML configuration file; flags given on the command line override it.")
	f.BoolVar(&expandEnv, "config.expand-env", false, "Replace ${VAR} in the configuration file with environment variables.")
	if err := f.Parse(args); err != nil {
		return Config{}, err
	}
	if f.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q", f.Arg(0))
	}
	if file == "" {
		cfg.applyDerivedDefaults()
		return cfg, nil
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		return Config{}, fmt.Errorf("config.file: %w", err)
	}
	if expandEnv {
		raw = []byte(os.ExpandEnv(string(raw)))
	}
	if err := decodeYAMLStrict(raw, &cfg); err != nil {
		return Config{}, fmt.Errorf("config.file %s: %w", file, err)
	}
	// Flags given on the command line win over the file.
	if err := f.Parse(args); err != nil {
		return Config{}, err
	}
	cfg.applyDerivedDefaults()
	return cfg, nil
}

// NewFlagSet returns a flag set with every setting of cfg registered.
func NewFlagSet(name string, cfg *Config, output io.Writer) *flag.FlagSet {
	f := flag.NewFlagSet(name, flag.ContinueOnError)
	if output != nil {
		f.SetOutput(output)
	}
	cfg.RegisterFlags(f)
	return f
}

// decodeYAMLStrict applies raw onto cfg; unknown keys are errors.
func decodeYAMLStrict(raw []byte, cfg *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}
