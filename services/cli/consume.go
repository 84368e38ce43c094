package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/strom-io/strom/api/client"
)

func newConsumeCommand(g *globals) *cobra.Command {
	var (
		columns []string
		from    string
		bucket  int32
		follow  bool
		limit   int64
	)
	cmd := &cobra.Command{
		Use:   "consume DATABASE.TABLE",
		Short: "Print the rows of a log table as JSON lines",
		Long: `Print the rows of a log table as JSON lines: one object per row with the
columns read plus _bucket, _offset and _timestamp (and _partition for a
partitioned table). Rows of one bucket come in offset order; buckets
interleave. Without --follow the command stops at the offsets that were the
latest when it started.`,
		Example: `  strom consume shop.orders
  strom consume shop.orders --from latest --follow
  strom consume shop.orders --columns id,amount --from timestamp:2025-01-02T15:04:05Z --limit 10
  strom consume shop.orders --bucket 3 --from offset:1000`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			db, table, err := splitTableName(args[0])
			if err != nil {
				return err
			}
			opts, err := consumeOptions(from, columns, bucket, follow)
			if err != nil {
				return err
			}
			if limit < 0 {
				return fmt.Errorf("--limit: want 0 (no limit) or more, got %d", limit)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			sub, err := g.client().Subscribe(ctx, db, table, opts...)
			if err != nil {
				return err
			}
			return consume(ctx, sub, cmd.OutOrStdout(), limit, follow)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&columns, "columns", nil, "Columns to read (comma-separated); default all.")
	f.StringVar(&from, "from", "earliest", "Where to start: earliest, latest, offset:N or timestamp:RFC3339.")
	f.Int32Var(&bucket, "bucket", -1, "Read only this bucket; default all.")
	f.BoolVarP(&follow, "follow", "f", false, "Keep waiting for new rows instead of stopping at the latest offsets seen at start.")
	f.Int64Var(&limit, "limit", 0, "Stop after this many rows (0: no limit).")
	return cmd
}

// consumeOptions turns the consume flags into subscription options.
func consumeOptions(from string, columns []string, bucket int32, follow bool) ([]client.SubscribeOption, error) {
	var opts []client.SubscribeOption
	kind, arg, _ := strings.Cut(from, ":")
	switch kind {
	case "earliest":
		opts = append(opts, client.FromEarliest())
	case "latest":
		opts = append(opts, client.FromLatest())
	case "offset":
		n, err := strconv.ParseInt(arg, 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("--from %q: want offset:N with N ≥ 0", from)
		}
		opts = append(opts, client.FromOffset(n))
	case "timestamp":
		t, err := time.Parse(time.RFC3339Nano, arg)
		if err != nil {
			return nil, fmt.Errorf("--from %q: want timestamp:RFC3339, e.g. timestamp:2025-01-02T15:04:05Z", from)
		}
		opts = append(opts, client.FromTimestamp(t))
	default:
		return nil, fmt.Errorf("--from %q: want earliest, latest, offset:N or timestamp:RFC3339", from)
	}
	if (kind == "earliest" || kind == "latest") && arg != "" {
		return nil, fmt.Errorf("--from %q: %s takes no argument", from, kind)
	}
	if len(columns) > 0 {
		opts = append(opts, client.WithColumns(columns...))
	}
	if bucket >= 0 {
		opts = append(opts, client.WithBuckets(bucket))
	}
	if !follow {
		opts = append(opts, client.StopAtEnd())
	}
	return opts, nil
}

// consume prints rows as JSON lines until the subscription ends, limit rows
// were printed (limit > 0), or ctx ends (not an error: that is how --follow
// stops).
func consume(ctx context.Context, sub *client.Subscription, out io.Writer, limit int64, follow bool) (err error) {
	w := bufio.NewWriter(out)
	defer func() {
		if ferr := w.Flush(); err == nil {
			err = ferr
		}
	}()
	enc := json.NewEncoder(w)
	var n int64
	for row, err := range sub.Rows(ctx) {
		if err != nil {
			if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
				return nil
			}
			return err
		}
		if err := enc.Encode(rowObject(row)); err != nil {
			return err
		}
		n++
		if limit > 0 && n >= limit {
			break
		}
		if follow {
			if err := w.Flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// rowObject is the JSON object printed for a row.
func rowObject(r client.Row) map[string]any {
	m := make(map[string]any, len(r.Values)+4)
	for k, v := range r.Values {
		m[k] = v
	}
	m["_bucket"] = r.Bucket
	m["_offset"] = r.Offset
	if !r.Timestamp.IsZero() {
		m["_timestamp"] = r.Timestamp.UTC().Format(time.RFC3339Nano)
	} else {
		m["_timestamp"] = nil
	}
	if r.Partition != "" {
		m["_partition"] = r.Partition
	}
	return m
}
