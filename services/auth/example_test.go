package auth_test

import (
	"fmt"
	"log/slog"

	"github.com/strom-io/strom/services/auth"
)

func Example() {
	file := `
tokens:
  - name: ingest
    sha256: ` + auth.Hash("s3cret") + `
    grants:
      - {database: shop, scopes: [write]}
      - {database: "*", scopes: [read]}
`
	tokens, err := auth.Parse([]byte(file))
	if err != nil {
		panic(err)
	}
	// A server builds a Source from -auth.tokens-file with NewSource, which
	// reloads it; its Interceptor guards the Connect handlers.
	src := auth.NewStaticSource(tokens, slog.New(slog.DiscardHandler))

	id, _ := src.Authorize("Bearer s3cret", "append", "shop", auth.ScopeWrite)
	fmt.Println(id.Name, id.Grants())
	_, err = src.Authorize("Bearer s3cret", "create table", "shop", auth.ScopeAdmin)
	fmt.Println(err)
	_, err = src.Authorize("Bearer guess", "append", "shop", auth.ScopeWrite)
	fmt.Println(err)
	// Output:
	// ingest [*:read shop:write]
	// create table needs admin on database "shop"; token "ingest" has the grants *:read, shop:write
	// unknown bearer token: no entry of the server's tokens file has its SHA-256
}
