package cli

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
)

func newTableCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "table",
		Short: "Create, list, describe, alter and drop tables",
	}
	cmd.AddCommand(newTableCreateCommand(g), newTableListCommand(g), newTableDescribeCommand(g), newTableAlterCommand(g), newTableDropCommand(g))
	return cmd
}

// splitTableName splits "db.table".
func splitTableName(s string) (db, table string, err error) {
	db, table, ok := strings.Cut(s, ".")
	if !ok || db == "" || table == "" {
		return "", "", fmt.Errorf("table name %q: want DATABASE.TABLE", s)
	}
	return db, table, nil
}

// parseColumn parses "name TYPE [NOT NULL]"; columns are nullable unless
// NOT NULL is given, as in SQL.
func parseColumn(s string) (*stromv1.Column, error) {
	s = strings.TrimSpace(s)
	name, rest, ok := strings.Cut(s, " ")
	rest = strings.TrimSpace(rest)
	if !ok || name == "" || rest == "" {
		return nil, fmt.Errorf("column %q: want \"NAME TYPE [NOT NULL]\", e.g. \"id BIGINT NOT NULL\"", s)
	}
	nullable := true
	upper := strings.ToUpper(rest)
	switch {
	case strings.HasSuffix(upper, " NOT NULL"):
		nullable = false
		rest = strings.TrimSpace(rest[:len(rest)-len(" NOT NULL")])
	case strings.HasSuffix(upper, " NULL"):
		rest = strings.TrimSpace(rest[:len(rest)-len(" NULL")])
	}
	return &stromv1.Column{Name: name, Type: rest, Nullable: nullable}, nil
}

func parseProperties(kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	props := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--property %q: want KEY=VALUE", kv)
		}
		props[k] = v
	}
	return props, nil
}

func newTableCreateCommand(g *globals) *cobra.Command {
	var (
		columns, primaryKey, bucketKey, properties []string
		buckets                                    int32
		partitionKey, fromFile                     string
		ifNotExists                                bool
	)
	cmd := &cobra.Command{
		Use:   "create DATABASE.TABLE --column 'NAME TYPE [NOT NULL]'... | --from-file FILE",
		Short: "Create a log table or, with --primary-key, a primary-key table",
		Example: `  strom table create shop.orders --column 'id BIGINT NOT NULL' --column 'amount DECIMAL(10,2)' \
      --column 'ts TIMESTAMP_LTZ(3)' --buckets 4 --property table.log.ttl=7d
  strom table create shop.customers --column 'id BIGINT NOT NULL' --column 'name STRING' --primary-key id
  strom table create --from-file table.json   # a CreateTableRequest as JSON`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &stromv1.CreateTableRequest{}
			if fromFile != "" {
				raw, err := os.ReadFile(fromFile)
				if err != nil {
					return err
				}
				if err := protojson.Unmarshal(raw, req); err != nil {
					return fmt.Errorf("--from-file %s: %w", fromFile, err)
				}
			}
			if len(args) == 1 {
				db, table, err := splitTableName(args[0])
				if err != nil {
					return err
				}
				req.Database, req.Name = db, table
			}
			if req.GetDatabase() == "" || req.GetName() == "" {
				return fmt.Errorf("name the table as DATABASE.TABLE (or in --from-file)")
			}
			if len(columns) > 0 {
				req.Schema = &stromv1.Schema{}
				for _, c := range columns {
					col, err := parseColumn(c)
					if err != nil {
						return err
					}
					req.Schema.Columns = append(req.Schema.Columns, col)
				}
			}
			if len(primaryKey) > 0 {
				if req.Schema == nil {
					req.Schema = &stromv1.Schema{}
				}
				req.Schema.PrimaryKey = primaryKey
			}
			if cmd.Flags().Changed("buckets") {
				req.Buckets = &buckets
			}
			if len(bucketKey) > 0 {
				req.BucketKey = bucketKey
			}
			if partitionKey != "" {
				req.PartitionKey = partitionKey
			}
			props, err := parseProperties(properties)
			if err != nil {
				return err
			}
			for k, v := range props {
				if req.Properties == nil {
					req.Properties = map[string]string{}
				}
				req.Properties[k] = v
			}
			if ifNotExists {
				req.IfNotExists = true
			}
			resp, err := g.admin().CreateTable(cmd.Context(), connect.NewRequest(req))
			if err != nil {
				return err
			}
			return g.print(cmd, resp.Msg, func(p *printer) {
				t := resp.Msg.GetTable()
				if resp.Msg.GetExisted() {
					p.line("%s table %s.%s already exists (schema version %d); nothing was changed", kindName(t.GetKind()), t.GetDatabase(), t.GetName(), t.GetSchemaVersion())
					return
				}
				p.line("created %s table %s.%s", kindName(t.GetKind()), t.GetDatabase(), t.GetName())
			})
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&columns, "column", "c", nil, "Column as 'NAME TYPE [NOT NULL]' (repeatable, in order).")
	f.StringSliceVar(&primaryKey, "primary-key", nil, "Primary-key columns (comma-separated); makes a primary-key table.")
	f.Int32Var(&buckets, "buckets", 1, "Buckets per partition (1 to 1024).")
	f.StringSliceVar(&bucketKey, "bucket-key", nil, "Bucket-key columns (comma-separated).")
	f.StringVar(&partitionKey, "partition-key", "", "Partition column.")
	f.StringArrayVarP(&properties, "property", "p", nil, "Table property KEY=VALUE (repeatable), e.g. table.log.ttl=7d.")
	f.StringVar(&fromFile, "from-file", "", "Read a CreateTableRequest as JSON; flags override its fields.")
	f.BoolVar(&ifNotExists, "if-not-exists", false, "Succeed without change if the table exists (and say so; its schema may differ from the flags).")
	return cmd
}

func newTableListCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list DATABASE",
		Short: "List the tables of a database",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := g.admin().ListTables(cmd.Context(), connect.NewRequest(&stromv1.ListTablesRequest{Database: args[0]}))
			if err != nil {
				return err
			}
			return g.print(cmd, resp.Msg, func(p *printer) { printTableList(p, resp.Msg.GetTables()) })
		},
	}
}

func newTableDescribeCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "describe DATABASE.TABLE",
		Short: "Describe a table: schema, keys, properties and buckets",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			db, table, err := splitTableName(args[0])
			if err != nil {
				return err
			}
			resp, err := g.admin().GetTable(cmd.Context(), connect.NewRequest(&stromv1.GetTableRequest{Database: db, Name: table}))
			if err != nil {
				return err
			}
			return g.print(cmd, resp.Msg, func(p *printer) { describeTable(p, resp.Msg) })
		},
	}
}

func describeTable(p *printer, resp *stromv1.GetTableResponse) {
	t := resp.GetTable()
	p.line("table %s.%s (%s, id %d, schema version %d, created %s)", t.GetDatabase(), t.GetName(), kindName(t.GetKind()), t.GetId(), t.GetSchemaVersion(), formatTime(t.GetCreateTime()))
	p.line("")
	pk := map[string]bool{}
	for _, c := range t.GetSchema().GetPrimaryKey() {
		pk[c] = true
	}
	p.row("COLUMN", "TYPE", "NULL", "KEY")
	for _, c := range t.GetSchema().GetColumns() {
		null, key := "NOT NULL", ""
		if c.GetNullable() {
			null = "NULL"
		}
		if pk[c.GetName()] {
			key = "PRIMARY KEY"
		}
		p.row(c.GetName(), c.GetType(), null, key)
	}
	p.line("")
	p.line("buckets:\t%d", t.GetBuckets())
	if len(t.GetBucketKey()) > 0 {
		p.line("bucket key:\t%s", strings.Join(t.GetBucketKey(), ", "))
	}
	if t.GetPartitionKey() != "" {
		p.line("partition key:\t%s", t.GetPartitionKey())
	}
	keys := make([]string, 0, len(t.GetProperties()))
	for k := range t.GetProperties() {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p.line("property %s:\t%s", k, t.GetProperties()[k])
	}
	p.line("")
	p.row("PARTITION", "BUCKET", "LEADER", "EPOCH", "NEXT OFFSET")
	for _, b := range resp.GetBuckets() {
		part, leader := b.GetPartition(), b.GetLeader()
		if part == "" {
			part = "-"
		}
		if leader == "" {
			leader = "-"
		}
		p.row(part, fmt.Sprint(b.GetBucket()), leader, fmt.Sprint(b.GetEpoch()), fmt.Sprint(b.GetNextOffset()))
	}
}

func newTableAlterCommand(g *globals) *cobra.Command {
	var addColumns []string
	cmd := &cobra.Command{
		Use:     "alter DATABASE.TABLE --add-column 'NAME TYPE'...",
		Short:   "Add nullable columns to a table",
		Example: `  strom table alter shop.orders --add-column 'note STRING'`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			db, table, err := splitTableName(args[0])
			if err != nil {
				return err
			}
			req := &stromv1.AlterTableRequest{Database: db, Name: table}
			for _, c := range addColumns {
				col, err := parseColumn(c)
				if err != nil {
					return err
				}
				req.AddColumns = append(req.AddColumns, col)
			}
			resp, err := g.admin().AlterTable(cmd.Context(), connect.NewRequest(req))
			if err != nil {
				return err
			}
			return g.print(cmd, resp.Msg, func(p *printer) {
				p.line("altered table %s.%s: schema version %d", db, table, resp.Msg.GetTable().GetSchemaVersion())
			})
		},
	}
	cmd.Flags().StringArrayVar(&addColumns, "add-column", nil, "Nullable column to add as 'NAME TYPE' (repeatable).")
	return cmd
}

func newTableDropCommand(g *globals) *cobra.Command {
	var ifExists bool
	cmd := &cobra.Command{
		Use:   "drop DATABASE.TABLE",
		Short: "Drop a table and its data",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			db, table, err := splitTableName(args[0])
			if err != nil {
				return err
			}
			resp, err := g.admin().DropTable(cmd.Context(), connect.NewRequest(&stromv1.DropTableRequest{Database: db, Name: table, IfExists: ifExists}))
			if err != nil {
				return err
			}
			return g.print(cmd, resp.Msg, func(p *printer) { p.line("dropped table %s.%s", db, table) })
		},
	}
	cmd.Flags().BoolVar(&ifExists, "if-exists", false, "Succeed if the table does not exist.")
	return cmd
}
