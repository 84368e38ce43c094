package auth

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config configures API authentication.
type Config struct {
	// TokensFile is the YAML file of token hashes and grants; empty turns
	// authentication off.
	TokensFile string `yaml:"tokens_file"`
	// ReloadInterval is how often the file's modification time and size
	// are checked; a changed file is reloaded.
	ReloadInterval time.Duration `yaml:"reload_interval"`
}

// RegisterFlags registers the settings under prefix.
func (c *Config) RegisterFlags(prefix string, f *flag.FlagSet) {
	f.StringVar(&c.TokensFile, prefix+"tokens-file", "", "YAML file of API tokens: per token a name, the SHA-256 of the token (strom token hash) and its grants (database and scopes read, write, admin); see docs/security.md. Empty: no authentication, every caller may do everything.")
	f.DurationVar(&c.ReloadInterval, prefix+"reload-interval", 5*time.Second, "How often the tokens file is checked for changes (modification time and size); a changed file is reloaded, a bad one is logged and the old tokens stay.")
}

// Validate reports an invalid setting, naming it.
func (c *Config) Validate() error {
	if c.TokensFile != "" && c.ReloadInterval < 100*time.Millisecond {
		return fmt.Errorf("auth.reload_interval: must be at least 100ms, got %s", c.ReloadInterval)
	}
	return nil
}

// Source holds the tokens of a file and reloads them when the file
// changes. It is safe for concurrent use.
type Source struct {
	path     string
	interval time.Duration
	logger   *slog.Logger
	metrics  *metrics

	tokens  atomic.Pointer[Tokens]
	modTime time.Time // of the file last tried; touched by Run only
	size    int64
}

// NewSource loads the tokens file named by cfg. A missing or bad file is an
// error: a server must not start with authentication it cannot enforce.
// reg may be nil.
func NewSource(cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*Source, error) {
	if cfg.TokensFile == "" {
		return nil, errors.New("auth: no tokens file")
	}
	if cfg.ReloadInterval <= 0 {
		cfg.ReloadInterval = 5 * time.Second
	}
	s := &Source{path: cfg.TokensFile, interval: cfg.ReloadInterval, logger: logger, metrics: newMetrics(reg)}
	fi, err := os.Stat(s.path)
	if err != nil {
		return nil, fmt.Errorf("auth.tokens_file: %w", err)
	}
	if err := s.load(fi); err != nil {
		return nil, fmt.Errorf("auth.tokens_file %s: %w", s.path, err)
	}
	return s, nil
}

// NewStaticSource serves fixed tokens, for tests and embedding.
func NewStaticSource(t *Tokens, logger *slog.Logger) *Source {
	s := &Source{logger: logger, metrics: newMetrics(nil)}
	s.tokens.Store(t)
	s.metrics.loaded(t)
	return s
}

// Tokens returns the tokens in force.
func (s *Source) Tokens() *Tokens { return s.tokens.Load() }

// load reads and parses the file described by fi and, if it is good, puts
// its tokens in force.
func (s *Source) load(fi os.FileInfo) error {
	s.modTime, s.size = fi.ModTime(), fi.Size()
	data, err := os.ReadFile(s.path)
	if err != nil {
		return err
	}
	t, err := Parse(data)
	if err != nil {
		return err
	}
	s.tokens.Store(t)
	s.metrics.loaded(t)
	if t.Len() == 0 {
		s.logger.Warn("the tokens file has no tokens: every API request is refused", slog.String("file", s.path))
	} else {
		s.logger.Info("loaded API tokens", slog.String("file", s.path), slog.Any("names", t.Names()))
	}
	return nil
}

// Run checks the file every reload interval until ctx is done, and reloads
// it when its modification time or size changed. A file that cannot be
// read or parsed is logged once per change; the tokens in force stay.
func (s *Source) Run(ctx context.Context) {
	if s.path == "" {
		return
	}
	tick := time.NewTicker(s.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s.Check()
	}
}

// Check reloads the file if it changed since the last check; Run calls it.
// It must not be called concurrently with itself.
func (s *Source) Check() {
	fi, err := os.Stat(s.path)
	if err != nil {
		if s.size != -1 {
			s.logger.Error("cannot read the tokens file; the tokens loaded before stay in force", slog.String("file", s.path), slog.Any("err", err))
			s.metrics.reloads.WithLabelValues("failed").Inc()
		}
		s.modTime, s.size = time.Time{}, -1
		return
	}
	if fi.ModTime().Equal(s.modTime) && fi.Size() == s.size {
		return
	}
	if err := s.load(fi); err != nil {
		s.logger.Error("bad tokens file; the tokens loaded before stay in force", slog.String("file", s.path), slog.Any("err", err))
		s.metrics.reloads.WithLabelValues("failed").Inc()
		return
	}
	s.metrics.reloads.WithLabelValues("loaded").Inc()
}

// Authenticate returns the identity of the bearer token in an
// Authorization header value, or an error wrapping ErrUnauthenticated. Its
// message never holds the token.
func (s *Source) Authenticate(header string) (*Identity, error) {
	token, err := bearerToken(header)
	if err != nil {
		return nil, err
	}
	if id := s.tokens.Load().Lookup(token); id != nil {
		return id, nil
	}
	return nil, denied(ErrUnauthenticated, "unknown bearer token: no entry of the server's tokens file has its SHA-256")
}

// metrics counts authentication outcomes and reloads.
type metrics struct {
	requests *prometheus.CounterVec
	reloads  *prometheus.CounterVec
	tokens   prometheus.Gauge
}

// Outcomes of an authorization decision, the result label of
// strom_auth_requests_total.
const (
	resultAllowed          = "allowed"
	resultUnauthenticated  = "unauthenticated"
	resultPermissionDenied = "permission_denied"
	// unknownIdentity labels requests without a valid token.
	unknownIdentity = "-"
)

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strom_auth_requests_total", Help: "Authorization decisions on API and Iceberg catalog requests by token name (- without a valid token) and result (allowed, unauthenticated, permission_denied).",
		}, []string{"identity", "result"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strom_auth_reloads_total", Help: "Reloads of the changed tokens file by result (loaded, or failed: the old tokens stay).",
		}, []string{"result"}),
		tokens: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "strom_auth_tokens", Help: "Tokens in force from the tokens file.",
		}),
	}
	m.requests.WithLabelValues(unknownIdentity, resultUnauthenticated)
	m.reloads.WithLabelValues("loaded")
	m.reloads.WithLabelValues("failed")
	if reg != nil {
		reg.MustRegister(m.requests, m.reloads, m.tokens)
	}
	return m
}

// loaded pre-initialises the label values of t's identities.
func (m *metrics) loaded(t *Tokens) {
	m.tokens.Set(float64(t.Len()))
	for _, id := range t.ids {
		m.requests.WithLabelValues(id.Name, resultAllowed)
		m.requests.WithLabelValues(id.Name, resultPermissionDenied)
	}
}

func (m *metrics) count(id *Identity, result string) {
	name := unknownIdentity
	if id != nil {
		name = id.Name
	}
	m.requests.WithLabelValues(name, result).Inc()
}
