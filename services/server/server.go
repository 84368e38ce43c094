// Package server runs a Strom frontend: the Connect, gRPC and gRPC-Web API
// on one h2c port, health and readiness endpoints, and Prometheus metrics.
package server

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/strom-io/strom/api/gen/strom/cluster/v1/clusterv1connect"
	"github.com/strom-io/strom/api/gen/strom/v1/stromv1connect"
	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/catalog/tablecache"
	"github.com/strom-io/strom/services/admin"
	"github.com/strom-io/strom/services/cache"
	"github.com/strom-io/strom/services/cluster"
	"github.com/strom-io/strom/services/forward"
	"github.com/strom-io/strom/services/lease"
	"github.com/strom-io/strom/services/notify"
	"github.com/strom-io/strom/services/objstore"
	"github.com/strom-io/strom/services/reader"
	"github.com/strom-io/strom/services/readsvc"
	"github.com/strom-io/strom/services/retention"
	"github.com/strom-io/strom/services/segment"
	"github.com/strom-io/strom/services/strict"
	"github.com/strom-io/strom/services/wal"
	"github.com/strom-io/strom/services/writer"
	"github.com/strom-io/strom/services/writesvc"
	"github.com/strom-io/strom/tiering"
	"github.com/strom-io/strom/tiering/lake"
)

// readyTimeout bounds each dependency check of /readyz.
const readyTimeout = 2 * time.Second

// Server is one Strom frontend process.
type Server struct {
	cfg      Config
	logger   *slog.Logger
	store    catalog.Store // the table cache over the counted catalog
	tables   *tablecache.Store
	bucket   objstore.Bucket
	gatherer prometheus.Gatherer
	checker  *grpchealth.StaticChecker
	http     *http.Server
	listener net.Listener
	// internal serves the ClusterService to other frontends (write role).
	internal         *http.Server
	internalListener net.Listener

	roles     cluster.Roles
	id        string
	wal       *wal.WAL // nil without the write role, like keeper and writer
	hub       *notify.Hub
	keeper    *lease.Keeper
	writer    *writer.Writer
	retention *retention.Retention
	cluster   *cluster.Cluster
	lake      *lake.Lake      // nil without PostgreSQL and S3
	lakeWhy   string          // why there is no lake
	tierer    *tiering.Tierer // nil without the tiering role or the lake
	started   atomic.Bool     // recovered and joined the cluster
	auth      *serverAuth     // API tokens and the internal secret (auth.go)
	draining  atomic.Bool
	onReady   func(ready bool, checks map[string]string) // WatchReadiness
}

// readinessInterval is how often Serve runs the readiness checks for
// WatchReadiness until they pass.
const readinessInterval = 500 * time.Millisecond

// WatchReadiness makes Serve run the checks of /readyz (see Readiness) at
// once and then every half second, and pass their outcome to report, until
// they pass for the first time (report's last call has ready true) or Serve
// stops. report is called from one goroutine, never after Serve returned.
// Call it before Serve; `strom server` prints its start banner with it.
func (s *Server) WatchReadiness(report func(ready bool, checks map[string]string)) {
	s.onReady = report
}

// watchReadiness is WatchReadiness's loop.
func (s *Server) watchReadiness(ctx context.Context) {
	t := time.NewTicker(readinessInterval)
	defer t.Stop()
	for {
		ready, checks := s.Readiness(ctx)
		if ctx.Err() != nil {
			return
		}
		s.onReady(ready, checks)
		if ready {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
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
	authn, err := openAuth(cfg, logger, reg)
	if err != nil {
		return nil, err
	}
	opened, err := openCatalog(ctx, cfg)
	if err != nil {
		return nil, err
	}
	// Every component reads tables through the cache (catalog/tablecache),
	// and every catalog call is counted (strom_catalog_calls_total).
	tables := tablecache.New(instrumentCatalog(opened, reg), tablecache.Config{
		MaxStaleness: cfg.Catalog.TableCacheMaxStaleness,
		Shared:       cfg.Catalog.Backend == CatalogPostgres,
		OnLookup:     tableCacheLookups(reg),
	})
	var store catalog.Store = tables
	bucket, err := openObjStore(ctx, cfg)
	if err != nil {
		_ = store.Close()
		return nil, err
	}
	roles, err := cluster.ParseRoles(cfg.Roles)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		logger:   logger,
		store:    store,
		tables:   tables,
		bucket:   bucket,
		gatherer: reg,
		checker:  grpchealth.NewStaticChecker(services...),
		hub:      notify.NewHub(),
		roles:    roles,
		id:       cfg.frontendID(logger),
		auth:     authn,
	}
	fe := cfg.Frontend
	var ranges segment.RangeReader = bucket
	if !cfg.Cache.Disabled {
		c, err := cache.New(cfg.Cache, bucket, logger.With(slog.String("component", "cache")))
		if err != nil {
			_ = bucket.Close()
			_ = store.Close()
			return nil, fmt.Errorf("cache: %w", err)
		}
		ranges = c
	}
	rd := reader.New(store, ranges, s.hub)
	cm := newClusterMetrics(reg)
	// leader and local stay nil interfaces without the write role.
	var (
		leader cluster.Leader
		local  forward.Local
	)
	if roles.Has(cluster.RoleWrite) {
		wpm := newWritePathMetrics(reg)
		walOpts := cfg.WAL
		walOpts.Logger = logger.With(slog.String("component", "wal"))
		walOpts.OnCommit = wpm.onWALCommit
		s.wal, err = wal.Open(walOpts)
		if err != nil {
			_ = bucket.Close()
			_ = store.Close()
			return nil, fmt.Errorf("wal: %w", err)
		}
		registerWALMetrics(reg, s.wal, walOpts.MinFreeBytes)
		s.keeper = lease.NewKeeper(store, s.id, lease.Config{TTL: fe.LeaseTTL, RenewInterval: fe.LeaseRenew, OnChange: cm.onLeaseChange, OnRenew: cm.onLeaseRenew}, logger)
		s.writer = writer.New(writer.Config{
			FlushInterval: fe.FlushInterval, FlushLinger: fe.FlushLinger, FlushBytes: fe.FlushBytes,
			MaxPendingBytes: fe.MaxPendingBytes, CommitTimeout: fe.CommitTimeout,
			OnFlush: wpm.onFlush, OnLead: cm.onTakeover, OnHandoffWait: cm.onHandoffWait,
			KVDir: filepath.Join(cfg.DataDir, "kv"), KVMaxPendingBytes: fe.KVMaxPendingBytes,
		}, store, bucket, s.wal, s.keeper, s.hub, rd, logger.With(slog.String("component", "writer")))
		s.retention = retention.New(cfg.Retention, store, bucket, logger.With(slog.String("component", "retention")))
		leader, local = s.writer, s.writer
		cm.leaderships(reg, s.keeper)
	}
	s.cluster = cluster.New(cluster.Config{
		Self:     catalog.Member{ID: s.id, Roles: roles},
		TTL:      fe.LeaseTTL,
		Interval: fe.BalanceInterval, KeepSnapshots: fe.KVSnapshotKeep,
	}, store, leader, logger.With(slog.String("component", "cluster")))
	router := forward.NewRouter(forward.Config{Timeout: fe.ForwardTimeout, OnForward: cm.onForward, Token: s.auth.forwardToken()}, s.cluster, local, logger.With(slog.String("component", "forward")))
	metrics := newAPIMetrics(reg)
	opts := []connect.HandlerOption{
		connect.WithInterceptors(metrics.interceptor()),
		connect.WithInterceptors(s.auth.interceptors()...), // authentication (auth.go)
		// Per-client limits (limits.go), after authentication: it names
		// the client.
		connect.WithInterceptors(limitInterceptors(newRateLimiter(cfg.Server, clientKey, reg))...),
		connect.WithReadMaxBytes(cfg.Server.MaxRequestBytes),
		// No gzip responses: on Arrow fetches it cost ~70% of the CPU and
		// made full reads 7x slower (make bench). Requests may still come
		// gzip-compressed.
		connect.WithCompressMinBytes(math.MaxInt),
	}
	// Unknown fields and enum values are refused, not ignored (strict).
	opts = append(opts, strict.HandlerOptions()...)

	mux := http.NewServeMux()
	mux.Handle(stromv1connect.NewAdminServiceHandler(admin.New(store, logger), opts...))
	ws := writesvc.New(store, router, logger, int64(cfg.Server.MaxRequestBytes))
	if s.writer != nil {
		ws.WithExpecter(s.writer)
	}
	mux.Handle(stromv1connect.NewWriteServiceHandler(ws, opts...))
	mux.Handle(grpchealth.NewHandler(s.checker))
	reflector := grpcreflect.NewStaticReflector(append([]string{grpchealth.HealthV1ServiceName, grpcreflect.ReflectV1ServiceName}, services...)...)
	mux.Handle(grpcreflect.NewHandlerV1(reflector, s.auth.handlerOptions()...))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector, s.auth.handlerOptions()...))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	if err := s.openLake(ctx, mux, rd, cm); err != nil {
		s.close()
		return nil, err
	}
	// After openLake, which sets s.lake; lk stays a nil interface (not a
	// nil *lake.Lake) without the lake, so union scans read the stream alone.
	var lk readsvc.Lake
	if s.lake != nil {
		lk = s.lake
	}
	mux.Handle(stromv1connect.NewReadServiceHandler(readsvc.New(store, store, rd, router, lk, logger, readsvc.OnScan(newScanMetrics(reg).onScan)), opts...))
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	if cfg.Server.PprofEnabled {
		s.registerPprof(mux)
	}

	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true) // h2c: gRPC without TLS
	s.http = &http.Server{
		Handler:           clientErrors(mux), // malformed requests get 4xx (clienterrors.go)
		Protocols:         protocols,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute, // idle keep-alive connections do not pile up
		MaxHeaderBytes:    1 << 20,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	if err := s.configureTLS(); err != nil { // HTTPS instead of h2c (tls.go)
		s.close()
		return nil, err
	}
	if local != nil {
		internal := http.NewServeMux()
		internal.Handle(clusterv1connect.NewClusterServiceHandler(
			forward.NewHandler(tables, local, s.cluster, logger.With(slog.String("component", "forward")), int64(cfg.Server.MaxRequestBytes)),
			append(strict.HandlerOptions(), connect.WithReadMaxBytes(cfg.Server.MaxRequestBytes), connect.WithCompressMinBytes(math.MaxInt))...))
		s.internal = &http.Server{
			Handler:           s.auth.internalHandler(internal),
			Protocols:         protocols,
			ReadHeaderTimeout: 10 * time.Second,
			MaxHeaderBytes:    1 << 20,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		}
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
	if s.internal == nil {
		s.cluster.SetAddresses(l.Addr().String(), "")
		return nil
	}
	il, err := net.Listen("tcp", s.cfg.Server.InternalListenAddress)
	if err != nil {
		_ = l.Close()
		return fmt.Errorf("server.internal_listen_address %q: %w", s.cfg.Server.InternalListenAddress, err)
	}
	s.internalListener = il
	advertise := s.cfg.Frontend.AdvertiseAddress
	if advertise == "" {
		advertise = advertiseAddress(il.Addr())
	}
	s.cluster.SetAddresses(l.Addr().String(), advertise)
	return nil
}

// advertiseAddress is the bound address, with the host name in place of an
// unspecified IP (every interface).
func advertiseAddress(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return a.String()
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	return net.JoinHostPort(host, strconv.Itoa(tcp.Port))
}

// Addr is the address the server listens on, after Listen.
func (s *Server) Addr() net.Addr { return s.listener.Addr() }

// Serve recovers the WAL, joins the cluster, then answers requests until
// ctx is done. Then it drains (see drain) and closes the catalog and the
// object store.
func (s *Server) Serve(ctx context.Context) error {
	defer s.close()
	bg, stopBG := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() {
		stopBG()
		wg.Wait()
	}()
	goBG := func(fn func(context.Context)) {
		wg.Add(1)
		go func() { defer wg.Done(); fn(bg) }()
	}
	// One catalog watch feeds the commit hub and the table cache.
	goBG(func(ctx context.Context) { s.hub.Follow(ctx, s.store, s.tables.Events(), s.logger) })
	if s.onReady != nil {
		goBG(s.watchReadiness)
	}
	goBG(s.auth.run)
	if s.writer != nil {
		goBG(func(ctx context.Context) { _ = s.keeper.Run(ctx) })
		goBG(func(ctx context.Context) { _ = s.retention.Run(ctx) })
		goBG(func(ctx context.Context) {
			_ = s.writer.RunSnapshots(ctx, s.cfg.Frontend.KVSnapshotInterval, s.cfg.Frontend.KVSnapshotKeep)
		})
		// The writer flushes from the start: recovering a primary-key
		// bucket commits the changes taken back from the WAL.
		writerCtx, stopWriter := context.WithCancel(context.Background())
		writerDone := make(chan error, 1)
		go func() { writerDone <- s.writer.Run(writerCtx) }()
		defer func() {
			stopWriter()
			if err := <-writerDone; err != nil {
				s.logger.Error("shutdown", slog.Any("err", err))
			}
		}()
		if err := s.writer.Recover(ctx); err != nil {
			return err
		}
	}
	if err := s.cluster.Start(ctx); err != nil {
		return err
	}
	s.started.Store(true)
	s.warnNoLake(ctx)
	if s.tierer != nil {
		goBG(func(ctx context.Context) { _ = s.tierer.Run(ctx) })
	}
	clusterCtx, stopCluster := context.WithCancel(context.Background())
	clusterDone := make(chan struct{})
	go func() { defer close(clusterDone); _ = s.cluster.Run(clusterCtx) }()
	defer func() { stopCluster(); <-clusterDone }()

	errc := make(chan error, 2)
	go func() { errc <- s.serveAPI() }()
	if s.internal != nil {
		go func() { errc <- s.internal.Serve(s.internalListener) }()
	}
	select {
	case err := <-errc:
		return fmt.Errorf("server: %w", err)
	case <-ctx.Done():
	}
	return s.drain(stopCluster, clusterDone)
}

// drain shuts down without client-visible errors: it turns not ready,
// leaves the cluster (nobody assigns it buckets any more, but it stays
// listed, without roles, so that others still reach it for the buckets it
// leads), hands every bucket over (flush, commit, release the lease: the
// new leaders take them at once; requests that reach a bucket meanwhile
// wait for its handoff to end), departs from the member list, and only
// then stops accepting requests, finishing the in-flight ones — until
// then, requests for the handed-over buckets are forwarded to their new
// leaders. The graceful shutdown timeout bounds all of it.
func (s *Server) drain(stopCluster context.CancelFunc, clusterDone <-chan struct{}) error {
	start := time.Now()
	s.draining.Store(true)
	for _, svc := range services {
		s.checker.SetStatus(svc, grpchealth.StatusNotServing)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Server.GracefulShutdownTimeout)
	defer cancel()
	// The cluster keeps running meanwhile: it renews the member entry
	// and re-reads the leaders, but takes over and balances nothing.
	s.cluster.Leave(ctx)
	if s.writer != nil {
		if err := s.writer.Drain(ctx, s.cfg.Frontend.KVSnapshotKeep); err != nil {
			s.logger.Warn("drain: some buckets were not handed over; their leases expire instead", slog.Any("err", err))
		}
	}
	s.cluster.Depart(ctx)
	stopCluster()
	<-clusterDone
	if err := s.http.Shutdown(ctx); err != nil {
		return fmt.Errorf("server: graceful shutdown: %w", err)
	}
	if s.internal != nil {
		if err := s.internal.Shutdown(ctx); err != nil {
			return fmt.Errorf("server: graceful shutdown of the internal listener: %w", err)
		}
	}
	s.logger.Info("drained", slog.Duration("took", time.Since(start)))
	return nil
}

func (s *Server) close() {
	if s.lake != nil {
		if err := s.lake.Close(); err != nil {
			s.logger.Warn("closing the lake", slog.Any("err", err))
		}
	}
	if s.wal != nil {
		if err := s.wal.Close(); err != nil {
			s.logger.Warn("closing WAL", slog.Any("err", err))
		}
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
	ready, checks := s.Readiness(r.Context())
	w.Header().Set("Content-Type", "application/json")
	if !ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"ready": ready, "checks": checks})
}

// Readiness runs the checks /readyz answers with: the server has started
// (recovered its WAL, joined the cluster) and is not draining, the catalog
// and the object store answer, the WAL's disk has room. checks maps each
// check ("server" only when it fails, "catalog", "objstore", "wal") to "ok"
// or what is wrong; ready is true when all are ok.
func (s *Server) Readiness(ctx context.Context) (ready bool, checks map[string]string) {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	checks = map[string]string{"catalog": "ok", "objstore": "ok"}
	ready = true
	switch {
	case s.draining.Load():
		checks["server"], ready = "draining: shutting down", false
	case !s.started.Load():
		checks["server"], ready = "starting: recovering the WAL and joining the cluster", false
	}
	if _, err := s.store.ListDatabases(ctx); err != nil {
		checks["catalog"], ready = err.Error(), false
	}
	if _, err := s.bucket.Size(ctx, readinessProbeKey); err != nil && !objstore.IsNotExist(err) {
		checks["objstore"], ready = err.Error(), false
	}
	if s.wal != nil {
		var ok bool
		if checks["wal"], ok = walReadiness(s.wal, s.cfg.WAL); !ok {
			ready = false
		}
	}
	return ready, checks
}

// readinessProbeKey is looked up (and never written) to check that the
// object store answers.
const readinessProbeKey = "strom/readiness-probe"
