// Package cli holds the strom command line: `strom server` and the client
// commands that talk to a server over Connect.
package cli

import (
	"os"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	"github.com/strom-io/strom/api/gen/strom/v1/stromv1connect"
)

// defaultAddr is where the client commands look for a server unless --addr
// or STROM_ADDR says otherwise.
const defaultAddr = "http://localhost:9123"

// globals are the flags every client command shares.
type globals struct {
	addr      string
	output    string
	tlsCAFile string     // tls.go
	auth      tokenFlags // token.go
}

func (g *globals) admin() stromv1connect.AdminServiceClient {
	return stromv1connect.NewAdminServiceClient(g.withToken(g.httpClient()), g.baseURL(), connect.WithProtoJSON())
}

// NewRoot returns the strom command tree.
func NewRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "strom",
		Short: "Strom: streaming storage for real-time analytics on object storage",
		Long: `Strom keeps tables as columnar streams in object storage, serves them over
Connect RPC (gRPC and HTTP JSON), and tiers them into Apache Iceberg.

Run a server with 'strom server'; the other commands talk to one.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	addr := os.Getenv("STROM_ADDR")
	if addr == "" {
		addr = defaultAddr
	}
	root.PersistentFlags().StringVar(&g.addr, "addr", addr, "Server address (env STROM_ADDR).")
	root.PersistentFlags().StringVarP(&g.output, "output", "o", "text", "Output format: text or json.")
	root.PersistentFlags().StringVar(&g.tlsCAFile, "tls-ca-file", os.Getenv("STROM_TLS_CA_FILE"), "PEM CA certificates to trust for an https:// server instead of the system's; an --addr without a scheme then means https:// (env STROM_TLS_CA_FILE).")
	g.addTokenFlags(root.PersistentFlags())
	root.AddCommand(newServerCommand(), newTokenCommand(), newStatusCommand(g), newLakeCommand(g), newDatabaseCommand(g), newTableCommand(g), newProduceCommand(g), newConsumeCommand(g),
		newUpsertCommand(g), newDeleteCommand(g), newLookupCommand(g), newScanCommand(g), newCountCommand(g))
	return root
}
