package cli

import (
	"fmt"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
)

func newDatabaseCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "database",
		Aliases: []string{"db"},
		Short:   "Create, list, describe and drop databases",
	}

	var ifNotExists bool
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a database",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := g.admin().CreateDatabase(cmd.Context(), connect.NewRequest(&stromv1.CreateDatabaseRequest{Name: args[0], IfNotExists: ifNotExists}))
			if err != nil {
				return err
			}
			return g.print(cmd, resp.Msg, func(p *printer) {
				if resp.Msg.GetExisted() {
					p.line("database %s already exists", resp.Msg.GetDatabase().GetName())
					return
				}
				p.line("created database %s", resp.Msg.GetDatabase().GetName())
			})
		},
	}
	create.Flags().BoolVar(&ifNotExists, "if-not-exists", false, "Succeed without change if the database exists (and say so).")

	list := &cobra.Command{
		Use:   "list",
		Short: "List databases",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := g.admin().ListDatabases(cmd.Context(), connect.NewRequest(&stromv1.ListDatabasesRequest{}))
			if err != nil {
				return err
			}
			return g.print(cmd, resp.Msg, func(p *printer) {
				p.row("NAME", "CREATED")
				for _, db := range resp.Msg.GetDatabases() {
					p.row(db.GetName(), formatTime(db.GetCreateTime()))
				}
			})
		},
	}

	describe := &cobra.Command{
		Use:   "describe NAME",
		Short: "Describe a database and list its tables",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			client := g.admin()
			db, err := client.GetDatabase(cmd.Context(), connect.NewRequest(&stromv1.GetDatabaseRequest{Name: args[0]}))
			if err != nil {
				return err
			}
			tables, err := client.ListTables(cmd.Context(), connect.NewRequest(&stromv1.ListTablesRequest{Database: args[0]}))
			if err != nil {
				return err
			}
			return g.print(cmd, tables.Msg, func(p *printer) {
				p.line("database %s (created %s)", db.Msg.GetDatabase().GetName(), formatTime(db.Msg.GetDatabase().GetCreateTime()))
				p.line("")
				printTableList(p, tables.Msg.GetTables())
			})
		},
	}

	var cascade, ifExists bool
	drop := &cobra.Command{
		Use:   "drop NAME",
		Short: "Drop a database (with --cascade, also its tables)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := g.admin().DropDatabase(cmd.Context(), connect.NewRequest(&stromv1.DropDatabaseRequest{Name: args[0], Cascade: cascade, IfExists: ifExists}))
			if err != nil {
				return err
			}
			return g.print(cmd, resp.Msg, func(p *printer) { p.line("dropped database %s", args[0]) })
		},
	}
	drop.Flags().BoolVar(&cascade, "cascade", false, "Drop the database's tables too.")
	drop.Flags().BoolVar(&ifExists, "if-exists", false, "Succeed if the database does not exist.")

	cmd.AddCommand(create, list, describe, drop)
	return cmd
}

func printTableList(p *printer, tables []*stromv1.Table) {
	p.row("TABLE", "KIND", "COLUMNS", "BUCKETS", "SCHEMA VERSION")
	for _, t := range tables {
		p.row(t.GetName(), kindName(t.GetKind()), fmt.Sprint(len(t.GetSchema().GetColumns())), fmt.Sprint(t.GetBuckets()), fmt.Sprint(t.GetSchemaVersion()))
	}
}
