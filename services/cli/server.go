package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/strom-io/strom/services/server"
)

func newServerCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "server [flags]",
		Short: "Run a Strom server (with embedded defaults when given no flags)",
		Long: `Run a Strom frontend. With no flags it needs nothing installed: the catalog
and the objects live under ./data. Point it at PostgreSQL and S3 with
-catalog.backend=postgres and -objstore.backend=s3, or a -config.file.

Run 'strom server -h' for every setting.`,
		DisableFlagParsing: true, // settings are Go flags, shared with the YAML file
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := server.LoadConfig("strom server", args, os.Stderr)
			if errors.Is(err, flag.ErrHelp) {
				return nil
			}
			if err != nil {
				return err
			}
			logger := newLogger(cfg.Log)
			reg := prometheus.NewRegistry()
			reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

			ctx := cmd.Context()
			srv, err := server.New(ctx, cfg, logger, reg)
			if err != nil {
				return err
			}
			if err := srv.Listen(); err != nil {
				return err
			}
			logger.Info("strom server listening",
				slog.String("addr", srv.Addr().String()),
				slog.String("catalog", cfg.Catalog.Backend),
				slog.String("objstore", cfg.ObjStore.Backend),
				slog.String("data_dir", cfg.DataDir))
			banner := newStartBanner(os.Stderr, fmt.Sprintf("Strom is ready: curl -s %s://%s/readyz", srv.Scheme(), displayAddr(srv.Addr().String())))
			srv.WatchReadiness(func(ready bool, checks map[string]string) { banner.report(time.Now(), ready, checks) })
			err = srv.Serve(ctx)
			logger.Info("strom server stopped")
			return err
		},
	}
}

func newLogger(cfg server.LogConfig) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.Level}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// displayAddr turns a wildcard listen address into one a user can curl.
func displayAddr(addr string) string {
	for _, wildcard := range []string{"[::]:", "0.0.0.0:"} {
		if len(addr) > len(wildcard) && addr[:len(wildcard)] == wildcard {
			return "localhost:" + addr[len(wildcard):]
		}
	}
	return addr
}

// startBanner prints "Strom is ready: …" once the server passes the checks
// of /readyz, and while it does not, what it waits for: "Strom is starting:
// waiting for objstore: <error>", after a grace period (a normal start
// takes a moment), then whenever the failing checks change and at least
// every interval.
type startBanner struct {
	w         io.Writer
	readyLine string
	start     time.Time
	grace     time.Duration
	every     time.Duration
	lastLine  time.Time // when a waiting line was printed; zero: never
	lastWhat  string    // the failing checks it named
	done      bool
}

func newStartBanner(w io.Writer, readyLine string) *startBanner {
	return &startBanner{w: w, readyLine: readyLine, start: time.Now(), grace: 2 * time.Second, every: 10 * time.Second}
}

// report takes the outcome of the readiness checks at now.
func (b *startBanner) report(now time.Time, ready bool, checks map[string]string) {
	if b.done {
		return
	}
	if ready {
		fmt.Fprintln(b.w, b.readyLine)
		b.done = true
		return
	}
	if now.Sub(b.start) < b.grace {
		return
	}
	var names, parts []string
	for name, state := range checks {
		if state != "ok" {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		parts = append(parts, name+": "+checks[name])
	}
	what := strings.Join(names, ",")
	if !b.lastLine.IsZero() && what == b.lastWhat && now.Sub(b.lastLine) < b.every {
		return
	}
	fmt.Fprintf(b.w, "Strom is starting: waiting for %s\n", strings.Join(parts, "; "))
	b.lastLine, b.lastWhat = now, what
}
