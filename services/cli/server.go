package cli

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"

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
			fmt.Fprintf(os.Stderr, "Strom is ready: curl -s %s://%s/readyz\n", srv.Scheme(), displayAddr(srv.Addr().String()))
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
