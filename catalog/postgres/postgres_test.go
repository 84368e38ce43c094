package postgres_test

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/catalog/catalogtest"
	"github.com/strom-io/strom/catalog/postgres"
	"github.com/strom-io/strom/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

func open(t *testing.T, dsn string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), dsn)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestAcceptance(t *testing.T) {
	var dsns sync.Map // *postgres.Store -> dsn
	catalogtest.Run(t,
		func(t *testing.T) catalog.Store {
			dsn := testenv.Postgres(t)
			s := open(t, dsn)
			dsns.Store(s, dsn)
			return s
		},
		catalogtest.WithHandles(func(t *testing.T, s catalog.Store) catalog.Store {
			dsn, _ := dsns.Load(s)
			return open(t, dsn.(string))
		}),
	)
}

// TestOpenMigratesOnce opens several stores on one database at once: the
// migrations run once and every store works.
func TestOpenMigratesOnce(t *testing.T) {
	dsn := testenv.Postgres(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := postgres.Open(context.Background(), dsn)
			if err != nil {
				errs <- err
				return
			}
			defer s.Close()
			_, err = s.ListDatabases(context.Background())
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestUnavailable checks that an unreachable server is ErrUnavailable.
func TestUnavailable(t *testing.T) {
	_, err := postgres.Open(context.Background(), "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=2")
	if err == nil || !errors.Is(err, catalog.ErrUnavailable) {
		t.Fatalf("Open of an unreachable server: %v, want ErrUnavailable", err)
	}
	s := open(t, testenv.Postgres(t))
	s.Close()
	if _, err := s.ListDatabases(context.Background()); !errors.Is(err, catalog.ErrUnavailable) {
		t.Fatalf("ListDatabases on a closed store: %v, want ErrUnavailable", err)
	}
}
