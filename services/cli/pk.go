package cli

import (
	"encoding/json"
	"fmt"
	"strings"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strom-io/strom/api/client"
	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/api/gen/strom/v1/stromv1connect"
)

func (g *globals) read() stromv1connect.ReadServiceClient { return g.client().Read() }

// parseObjects parses each argument as a JSON object, e.g. '{"id": 1}'.
func parseObjects(flag string, in []string) ([]*structpb.Struct, error) {
	out := make([]*structpb.Struct, 0, len(in))
	for _, s := range in {
		var m map[string]any
		dec := json.NewDecoder(strings.NewReader(s))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			return nil, fmt.Errorf("%s %q: want a JSON object such as '{\"id\": 1}': %w", flag, s, err)
		}
		for k, v := range m {
			if n, ok := v.(json.Number); ok {
				// Keep integers exact: the server parses numeric strings.
				m[k] = n.String()
			}
		}
		st, err := structpb.NewStruct(m)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", flag, s, err)
		}
		out = append(out, st)
	}
	return out, nil
}

// printRows writes rows as JSON lines.
func printRows(cmd *cobra.Command, rows []*structpb.Struct) error {
	for _, r := range rows {
		b, err := protojson.Marshal(r)
		if err != nil {
			return err
		}
		fmt.Fprintln(cmd.OutOrStdout(), string(b))
	}
	return nil
}

func newLookupCommand(g *globals) *cobra.Command {
	var keys []string
	var prefix string
	cmd := &cobra.Command{
		Use:   "lookup DATABASE.TABLE --key '{\"id\": 1}'... | --prefix '{\"region\": \"eu\"}'",
		Short: "Look rows of a primary-key table up by key, or by bucket-key prefix",
		Example: `  strom lookup shop.customers --key '{"id": 1}' --key '{"id": 2}'
  strom lookup shop.orders --prefix '{"customer_id": 7}'   # every order of customer 7 (bucket key)`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			db, table, err := splitTableName(args[0])
			if err != nil {
				return err
			}
			if (len(keys) == 0) == (prefix == "") {
				return fmt.Errorf("give --key (repeatable) or --prefix")
			}
			if prefix != "" {
				p, err := parseObjects("--prefix", []string{prefix})
				if err != nil {
					return err
				}
				resp, err := g.read().PrefixLookup(cmd.Context(), connect.NewRequest(&stromv1.PrefixLookupRequest{Database: db, Table: table, Prefix: p[0]}))
				if err != nil {
					return err
				}
				return printRows(cmd, resp.Msg.GetRows())
			}
			k, err := parseObjects("--key", keys)
			if err != nil {
				return err
			}
			resp, err := g.read().Lookup(cmd.Context(), connect.NewRequest(&stromv1.LookupRequest{Database: db, Table: table, Keys: k}))
			if err != nil {
				return err
			}
			return printRows(cmd, resp.Msg.GetRows())
		},
	}
	cmd.Flags().StringArrayVarP(&keys, "key", "k", nil, "Primary key as a JSON object (repeatable).")
	cmd.Flags().StringVar(&prefix, "prefix", "", "Bucket key as a JSON object: every row with it.")
	return cmd
}

func newScanCommand(g *globals) *cobra.Command {
	var (
		limit    int64
		union    bool
		columns  []string
		pageSize int32
	)
	cmd := &cobra.Command{
		Use:   "scan DATABASE.TABLE [--limit N] [--union] [--columns a,b]",
		Short: "Print the current rows of a primary-key table, or with --union any table from the lake and the stream, as JSON lines",
		Long: `Print the current rows of a primary-key table as JSON lines, read page by
page with ReadService.ScanStream: the server holds one page, not the table.
With --union the table is read as one from the lake snapshot and the stream
after it, as of offsets fixed when the scan starts: a log table's records or
a primary-key table's current rows, with _bucket, _offset and _timestamp.`,
		Example: `  strom scan shop.customers --limit 10
  strom scan shop.orders --union --limit 0 --columns id,amount   # every row`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			db, table, err := splitTableName(args[0])
			if err != nil {
				return err
			}
			if limit < 0 {
				return fmt.Errorf("--limit: want 0 (all) or more, got %d", limit)
			}
			opts := []client.ScanOption{client.ScanLimit(limit), client.ScanPageSize(pageSize)}
			if union {
				opts = append(opts, client.ScanUnion())
			}
			if len(columns) > 0 {
				opts = append(opts, client.ScanColumns(columns...))
			}
			for page, err := range g.client().Scan(db, table, opts...).Pages(cmd.Context()) {
				if err != nil {
					return err
				}
				if err := printRows(cmd, page.GetRows()); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().Int64Var(&limit, "limit", 100, "Most rows to print (0: all).")
	cmd.Flags().BoolVar(&union, "union", false, "Read the table from the lake and the stream as one (any table).")
	cmd.Flags().StringSliceVar(&columns, "columns", nil, "Columns to print (default all).")
	cmd.Flags().Int32Var(&pageSize, "page-size", 1000, "Rows per page the server sends (at most 10000).")
	return cmd
}

func newCountCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "count DATABASE.TABLE",
		Short: "Print the exact number of rows of a primary-key table",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			db, table, err := splitTableName(args[0])
			if err != nil {
				return err
			}
			resp, err := g.read().Count(cmd.Context(), connect.NewRequest(&stromv1.CountRequest{Database: db, Table: table}))
			if err != nil {
				return err
			}
			return g.print(cmd, resp.Msg, func(p *printer) { p.line("%d", resp.Msg.GetCount()) })
		},
	}
}

func newUpsertCommand(g *globals) *cobra.Command {
	var rows, targets []string
	cmd := &cobra.Command{
		Use:   "upsert DATABASE.TABLE --row '{...}'... [--target-columns a,b]",
		Short: "Insert or update rows of a primary-key table (partial update with --target-columns)",
		Example: `  strom upsert shop.customers --row '{"id": 1, "name": "ada", "city": "paris"}'
  strom upsert shop.customers --row '{"id": 1, "city": "rome"}' --target-columns id,city`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			db, table, err := splitTableName(args[0])
			if err != nil {
				return err
			}
			r, err := parseObjects("--row", rows)
			if err != nil {
				return err
			}
			resp, err := g.client().Write().Upsert(cmd.Context(), connect.NewRequest(&stromv1.UpsertRequest{Database: db, Table: table, Rows: r, TargetColumns: targets}))
			if err != nil {
				return err
			}
			return g.print(cmd, resp.Msg, func(p *printer) {
				p.line("upserted %d rows: %d changelog rows", len(r), changelogRows(resp.Msg.GetOffsets()))
			})
		},
	}
	cmd.Flags().StringArrayVar(&rows, "row", nil, "Row as a JSON object (repeatable).")
	cmd.Flags().StringSliceVar(&targets, "target-columns", nil, "Columns to change (they must include the primary key); the others keep their values.")
	return cmd
}

func newDeleteCommand(g *globals) *cobra.Command {
	var keys []string
	cmd := &cobra.Command{
		Use:     "delete DATABASE.TABLE --key '{...}'...",
		Short:   "Delete rows of a primary-key table by key",
		Example: `  strom delete shop.customers --key '{"id": 1}'`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			db, table, err := splitTableName(args[0])
			if err != nil {
				return err
			}
			k, err := parseObjects("--key", keys)
			if err != nil {
				return err
			}
			resp, err := g.client().Write().Delete(cmd.Context(), connect.NewRequest(&stromv1.DeleteRequest{Database: db, Table: table, Keys: k}))
			if err != nil {
				return err
			}
			return g.print(cmd, resp.Msg, func(p *printer) { p.line("deleted: %d changelog rows", changelogRows(resp.Msg.GetOffsets())) })
		},
	}
	cmd.Flags().StringArrayVarP(&keys, "key", "k", nil, "Primary key as a JSON object (repeatable).")
	return cmd
}

func changelogRows(offsets []*stromv1.BucketOffsets) int64 {
	var n int64
	for _, o := range offsets {
		n += o.GetCount()
	}
	return n
}
