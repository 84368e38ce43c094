package testenv_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/strom-io/strom/testenv"
)

// TestPostgres checks that every call returns a distinct, empty database.
func TestPostgres(t *testing.T) {
	ctx := context.Background()
	a, b := testenv.Postgres(t), testenv.Postgres(t)
	if a == b {
		t.Fatalf("two calls returned the same database %s", a)
	}
	for _, dsn := range []string{a, b} {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatalf("connect %s: %v", dsn, err)
		}
		var n int
		err = conn.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'`).Scan(&n)
		conn.Close(ctx)
		if err != nil || n != 0 {
			t.Fatalf("%s: %d tables, %v; want an empty database", dsn, n, err)
		}
	}
}
