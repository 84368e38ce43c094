package cli

import (
	"fmt"
	"strings"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
)

func newStatusCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the running frontends and which one leads each bucket",
		Long: `Show the cluster: every live Strom process with its roles and addresses,
and for every bucket of every table its leader, epoch and next offset. A
bucket whose leader is "-" has no live lease: it is taken over (after a
frontend died, within the lease TTL) or led on its first write.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := g.admin().GetClusterStatus(cmd.Context(), connect.NewRequest(&stromv1.GetClusterStatusRequest{}))
			if err != nil {
				return err
			}
			return g.print(cmd, resp.Msg, func(p *printer) {
				p.row("MEMBER", "ROLES", "API", "INTERNAL", "BUCKETS", "STARTED")
				for _, m := range resp.Msg.GetMembers() {
					p.row(m.GetId(), strings.Join(m.GetRoles(), ","), dash(m.GetApiAddress()), dash(m.GetInternalAddress()),
						fmt.Sprint(m.GetLeaderOf()), formatTime(m.GetStartTime()))
				}
				p.line("")
				p.row("TABLE", "PARTITION", "BUCKET", "LEADER", "EPOCH", "NEXT OFFSET")
				for _, b := range resp.Msg.GetBuckets() {
					leader := "-"
					if b.GetLive() {
						leader = b.GetBucket().GetLeader()
					}
					p.row(b.GetDatabase()+"."+b.GetTable(), dash(b.GetBucket().GetPartition()), fmt.Sprint(b.GetBucket().GetBucket()),
						leader, fmt.Sprint(b.GetBucket().GetEpoch()), fmt.Sprint(b.GetBucket().GetNextOffset()))
				}
			})
		},
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
