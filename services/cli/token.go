package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/strom-io/strom/api/client"
	"github.com/strom-io/strom/services/auth"
)

// tokenFlags are the client commands' credentials.
type tokenFlags struct {
	token     string
	tokenFile string
}

// addTokenFlags registers --token and --token-file. Their defaults are not
// taken from the environment here, so that --help never shows a token.
func (g *globals) addTokenFlags(fs *pflag.FlagSet) {
	fs.StringVar(&g.auth.token, "token", "", "Bearer token for a server with authentication (env STROM_TOKEN). Prefer --token-file or the variable: a flag shows in the process list.")
	fs.StringVar(&g.auth.tokenFile, "token-file", "", "File holding the bearer token (env STROM_TOKEN_FILE).")
}

// bearerToken resolves the token: --token, else --token-file, else
// STROM_TOKEN, else STROM_TOKEN_FILE; "" for none.
func (g *globals) bearerToken() (string, error) {
	if g.auth.token != "" && g.auth.tokenFile != "" {
		return "", errors.New("--token and --token-file: give one, not both")
	}
	switch {
	case g.auth.token != "":
		return strings.TrimSpace(g.auth.token), nil
	case g.auth.tokenFile != "":
		return readTokenFile("--token-file", g.auth.tokenFile)
	}
	if t := strings.TrimSpace(os.Getenv("STROM_TOKEN")); t != "" {
		return t, nil
	}
	if f := os.Getenv("STROM_TOKEN_FILE"); f != "" {
		return readTokenFile("STROM_TOKEN_FILE", f)
	}
	return "", nil
}

func readTokenFile(what, name string) (string, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("%s %s: the file is empty", what, name)
	}
	return t, nil
}

// withToken makes c send the bearer token, if there is one. If the token
// file does not load, every request fails with the reason.
func (g *globals) withToken(c connect.HTTPClient) connect.HTTPClient {
	token, err := g.bearerToken()
	switch {
	case err != nil:
		return failingClient{err}
	case token == "":
		return c
	}
	return client.BearerHTTPClient(c, token)
}

func newTokenCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Make API tokens and their hashes for the server's tokens file",
		Long: `Make API tokens. The server's -auth.tokens-file holds only the SHA-256
hashes of the tokens, with each token's name and grants (docs/security.md);
the tokens themselves go to the clients (--token-file, STROM_TOKEN, or an
"Authorization: Bearer <token>" header).`,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "generate",
		Short: "Print a new random token and its SHA-256",
		Long: `Print a new random token (256 random bits) on the first line and its
SHA-256 hex, for the tokens file, on the second.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			token, err := auth.Generate()
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "token:  %s\nsha256: %s\n", token, auth.Hash(token))
			return err
		},
	}, &cobra.Command{
		Use:   "hash",
		Short: "Read a token from stdin and print its SHA-256 hex",
		Long: `Read a token from stdin (its first line; surrounding white space is
dropped) and print its SHA-256 hex, the sha256 of a tokens file entry:

  strom token hash < token.txt`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
			if err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("reading the token from stdin: %w", err)
			}
			token := strings.TrimSpace(line)
			if token == "" {
				return errors.New("no token on stdin: pipe one in, e.g. strom token hash < token.txt")
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), auth.Hash(token))
			return err
		},
	})
	return cmd
}
