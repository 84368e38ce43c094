package cli

import (
	"fmt"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
)

func newLakeCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lake",
		Short: "Inspect the Iceberg lake that the tiering role keeps",
	}
	status := &cobra.Command{
		Use:   "status [DATABASE[.TABLE]]",
		Short: "Show each lake-enabled table's tiered offsets and lag",
		Long: `Show, for every table with table.datalake.enabled=true (or the named
database or table), how far each bucket is tiered into its Iceberg table
and how many committed records the lake still lacks.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &stromv1.GetLakeStatusRequest{}
			if len(args) == 1 {
				req.Database = args[0]
				if strings.Contains(args[0], ".") {
					db, table, err := splitTableName(args[0])
					if err != nil {
						return err
					}
					req.Database, req.Table = db, table
				}
			}
			resp, err := g.admin().GetLakeStatus(cmd.Context(), connect.NewRequest(req))
			if err != nil {
				return err
			}
			return g.print(cmd, resp.Msg, func(p *printer) {
				if len(resp.Msg.GetTables()) == 0 {
					p.line("no lake-enabled tables (set table.datalake.enabled=true on a table)")
					return
				}
				p.row("TABLE", "PARTITION", "BUCKET", "TIERED OFFSET", "NEXT OFFSET", "LAG", "TIERED AT")
				for _, t := range resp.Msg.GetTables() {
					for _, b := range t.GetBuckets() {
						p.row(t.GetDatabase()+"."+t.GetTable(), dash(b.GetPartition()), fmt.Sprint(b.GetBucket()),
							fmt.Sprint(b.GetTieredOffset()), fmt.Sprint(b.GetNextOffset()), fmt.Sprint(b.GetNextOffset()-b.GetTieredOffset()),
							formatTime(b.GetTieredTime()))
					}
				}
				p.line("")
				p.row("TABLE", "FRESHNESS", "LAG RECORDS", "SNAPSHOT")
				for _, t := range resp.Msg.GetTables() {
					p.row(t.GetDatabase()+"."+t.GetTable(), (time.Duration(t.GetFreshnessMs()) * time.Millisecond).String(),
						fmt.Sprint(t.GetLagRecords()), fmt.Sprint(t.GetSnapshotId()))
				}
			})
		},
	}
	cmd.AddCommand(status)
	return cmd
}
