// Package server runs a Strom frontend: the Connect, gRPC and gRPC-Web API
// on one h2c port, health and readiness endpoints, and Prometheus metrics.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/strom-io/strom/api/gen/strom/v1/stromv1connect"
	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/services/admin"
	"github.com/strom-io/strom/services/cache"
	"github.com/strom-io/strom/services/lease"
	"github.com/strom-io/strom/services/notify"
	"github.com/strom-io/strom/services/objstore"
	"github.com/strom-io/strom/services/reader"
	"github.com/strom-io/strom/services/readsvc"
	"github.com/strom-io/strom/services/retention"
	"github.com/strom-io/strom/services/segment"
	"github.com/strom-io/strom/services/wal"
	"github.com/strom-io/strom/services/writer"
	"github.com/strom-io/strom/services/writesvc"
)

// readyTimeout bounds each dependency check of /readyz.
const readyTimeout = 2 * time.Second

// Server is one Strom frontend process.
type Server struct {
	cfg      Config
	logger   *slog.Logger
	store    catalog.Store
	bucket   objstore.Bucket
	gatherer prometheus.Gatherer
	checker  *grpchealth.StaticChecker
	http     *http.Server
	listener net.Listener

	wal       *wal.WAL
	hub       *notify.Hub
	keeper    *lease.Keeper
	writer    *writer.Writer
	retention *retention.Retention
}

// services lists the fully-qualified names of the served gRPC services, for
// health checks and reflection.
var services = []string{stromv1connect.AdminServiceName, stromv1connect.WriteServiceName, stromv1connect.ReadServiceName}

// New opens the catalog and the object store named by cfg and builds the
// server. It does not listen yet; call Listen and Serve, or Run.
func New(ctx context.Context, cfg Config, logger *slog.Logger, reg *prometheus.Registry) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	store, err := openCatalog(ctx, cfg)
	if err != nil {
		return nil, err
	}
	bucket, err := openObjStore(ctx, cfg)
	if err != nil {
		_ = store.Close()
		return nil, err
	}
	wpm := newWritePathMetrics(reg)
	walOpts := cfg.WAL
	walOpts.Logger = logger.With(slog.String("component", "wal"))
	walOpts.OnCommit = wpm.onWALCommit
	log, err := wal.Open(walOpts)
	if err != nil {
		_ = bucket.Close()
		_ = store.Close()
		return nil, fmt.Errorf("wal: %w", err)
	}
	s := &Server{
		cfg:      cfg,
		logger:   logger,
		store:    store,
		bucket:   bucket,
		gatherer: reg,
		checker:  grpchealth.NewStaticChecker(services...),
		wal:      log,
		hub:      notify.NewHub(),
	}
	fe := cfg.Frontend
	var ranges segment.RangeReader = bucket
	if !cfg.Cache.Disabled {
		c, err := cache.New(cfg.Cache, bucket, logger.With(slog.String("component", "cache")))
		if err != nil {
			_ = log.Close()
			_ = bucket.Close()
			_ = store.Close()
			return nil, fmt.Errorf("cache: %w", err)
		}
		ranges = c
	}
	rd := reader.New(store, ranges, s.hub)
	s.keeper = lease.NewKeeper(store, cfg.frontendID(), lease.Config{TTL: fe.LeaseTTL, RenewInterval: fe.LeaseRenew}, logger)
	s.writer = writer.New(writer.Config{
		FlushInterval: fe.FlushInterval, FlushBytes: fe.FlushBytes,
		MaxPendingBytes: fe.MaxPendingBytes, CommitTimeout: fe.CommitTimeout,
		OnFlush: wpm.onFlush,
		KVDir:   filepath.Join(cfg.DataDir, "kv"), KVMaxPendingBytes: fe.KVMaxPendingBytes,
	}, store, bucket, log, s.keeper, s.hub, rd, logger.With(slog.String("component", "writer")))
	s.retention = retention.New(cfg.Retention, store, bucket, logger.With(slog.String("component", "retention")))
	metrics := newAPIMetrics(reg)
	opts := []connect.HandlerOption{
		connect.WithInterceptors(metrics.interceptor()),
		connect.WithReadMaxBytes(cfg.Server.MaxRequestBytes),
		// No gzip responses: on Arrow fetches it cost ~70% of the CPU and
		// made full reads 7x slower (make bench). Requests may still come
		// gzip-compressed.
		connect.WithCompressMinBytes(math.MaxInt),
	}

	mux := http.NewServeMux()
	mux.Handle(stromv1connect.NewAdminServiceHandler(admin.New(store, logger), opts...))
	mux.Handle(stromv1connect.NewWriteServiceHandler(writesvc.New(store, s.writer, logger, int64(cfg.Server.MaxRequestBytes)), opts...))
	mux.Handle(stromv1connect.NewReadServiceHandler(readsvc.New(store, store, rd, s.writer, logger), opts...))
	mux.Handle(grpchealth.NewHandler(s.checker))
	reflector := grpcreflect.NewStaticReflector(append([]string{grpchealth.HealthV1ServiceName, grpcreflect.ReflectV1ServiceName}, services...)...)
	mux.Handle(grpcreflect.NewHandlerV1(reflector))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))

	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true) // h2c: gRPC without TLS
	s.http = &http.Server{
		Handler:           mux,
		Protocols:         protocols,
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    1 << 20,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// Listen binds the configured address. Addr reports the bound address.
func (s *Server) Listen() error {
	l, err := net.Listen("tcp", s.cfg.Server.HTTPListenAddress)
	if err != nil {
		return fmt.Errorf("server.http_listen_address %q: %w", s.cfg.Server.HTTPListenAddress, err)
	}
	s.listener = l
	return nil
}

// Addr is the address the server listens on, after Listen.
func (s *Server) Addr() net.Addr { return s.listener.Addr() }

// Serve recovers the WAL, then answers requests until ctx is done; then it
// drains in-flight requests for at most the configured graceful shutdown
// timeout, commits what is pending, releases its bucket leases and closes
// the catalog and object store.
func (s *Server) Serve(ctx context.Context) error {
	defer s.close()
	bg, stopBG := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() {
		stopBG()
		wg.Wait()
	}()
	wg.Add(4)
	go func() { defer wg.Done(); s.hub.Follow(bg, s.store, s.logger) }()
	go func() { defer wg.Done(); _ = s.keeper.Run(bg) }()
	go func() { defer wg.Done(); _ = s.retention.Run(bg) }()
	go func() {
		defer wg.Done()
		_ = s.writer.RunSnapshots(bg, s.cfg.Frontend.KVSnapshotInterval, s.cfg.Frontend.KVSnapshotKeep)
	}()
	if err := s.writer.Recover(ctx); err != nil {
		return err
	}
	writerCtx, stopWriter := context.WithCancel(context.Background())
	writerDone := make(chan error, 1)
	go func() { writerDone <- s.writer.Run(writerCtx) }()
	defer func() {
		stopWriter()
		if err := <-writerDone; err != nil {
			s.logger.Error("shutdown", slog.Any("err", err))
		}
	}()
	errc := make(chan error, 1)
	go func() { errc <- s.http.Serve(s.listener) }()
	select {
	case err := <-errc:
		return fmt.Errorf("server: %w", err)
	case <-ctx.Done():
	}
	for _, svc := range services {
		s.checker.SetStatus(svc, grpchealth.StatusNotServing)
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), s.cfg.Server.GracefulShutdownTimeout)
	defer cancel()
	if err := s.http.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("server: graceful shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("server: %w", err)
	}
	return nil
}

func (s *Server) close() {
	if err := s.wal.Close(); err != nil {
		s.logger.Warn("closing WAL", slog.Any("err", err))
	}
	if err := s.bucket.Close(); err != nil {
		s.logger.Warn("closing object store", slog.Any("err", err))
	}
	if err := s.store.Close(); err != nil {
		s.logger.Warn("closing catalog", slog.Any("err", err))
	}
}

// readyz answers 200 when the catalog and the object store answer, 503 with
// the failing dependency otherwise.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	checks := map[string]string{"catalog": "ok", "objstore": "ok"}
	ready := true
	if _, err := s.store.ListDatabases(ctx); err != nil {
		checks["catalog"], ready = err.Error(), false
	}
	if _, err := s.bucket.Size(ctx, readinessProbeKey); err != nil && !objstore.IsNotExist(err) {
		checks["objstore"], ready = err.Error(), false
	}
	w.Header().Set("Content-Type", "application/json")
	if !ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"ready": ready, "checks": checks})
}

// readinessProbeKey is looked up (and never written) to check that the
// object store answers.
const readinessProbeKey = "strom/readiness-probe"
