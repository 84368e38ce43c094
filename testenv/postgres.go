package testenv

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresURLEnv names the environment variable that points the harness at
// an existing PostgreSQL server (a URL such as
// postgres://user:pass@host:5432/postgres?sslmode=disable); the user must be
// allowed to create databases.
const PostgresURLEnv = "STROM_TEST_POSTGRES_URL"

var (
	pgOnce  sync.Once
	pgAdmin string // DSN of the admin database of the cluster
	pgErr   error
	pgSeq   atomic.Int64
)

// Postgres returns the DSN (a postgres:// URL, or key=value string when
// STROM_TEST_POSTGRES_URL is one) of a fresh, empty database created for
// the caller. The server is the one named by STROM_TEST_POSTGRES_URL or,
// when that is unset, a throwaway cluster started once per test binary from
// the machine's PostgreSQL binaries on a free 127.0.0.1 port (stopped by
// [Main]). The database is dropped when tb's test ends. A server that can be
// neither found nor started fails the test.
func Postgres(tb testing.TB) string {
	tb.Helper()
	pgOnce.Do(func() { pgAdmin, pgErr = startPostgres() })
	if pgErr != nil {
		tb.Fatalf("testenv: PostgreSQL: %v", pgErr)
	}
	name := fmt.Sprintf("strom_test_%d_%d", os.Getpid(), pgSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := adminExec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("testenv: create database %s: %v", name, err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := adminExec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			tb.Logf("testenv: drop database %s: %v", name, err)
		}
	})
	dsn, err := withDatabase(pgAdmin, name)
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	return dsn
}

func adminExec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, pgAdmin)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(context.Background()) }()
	_, err = conn.Exec(ctx, sql)
	return err
}

// withDatabase returns dsn with its database replaced by name.
func withDatabase(dsn, name string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("parse %s: %w", PostgresURLEnv, err)
		}
		u.Path = "/" + name
		return u.String(), nil
	}
	return dsn + " dbname=" + name, nil // later keys override earlier ones
}

// startPostgres returns the admin DSN of the server to use, starting a
// cluster when STROM_TEST_POSTGRES_URL is unset.
func startPostgres() (string, error) {
	if u := os.Getenv(PostgresURLEnv); u != "" {
		return u, nil
	}
	srv, err := newPostgresServer()
	if err != nil {
		return "", err
	}
	atExit(srv.remove)
	return srv.URL(), nil
}

// PostgresServer is a throwaway PostgreSQL cluster of the caller's own,
// which it may stop and start again to test what happens while the catalog
// is down.
type PostgresServer struct {
	dir, data, pgCtl string
	asUser           []string
	port             int
}

// StartPostgres initialises and starts a dedicated cluster on a free
// 127.0.0.1 port from the machine's PostgreSQL binaries; it is removed when
// tb's test ends. Unlike [Postgres], it never uses STROM_TEST_POSTGRES_URL:
// a test that stops its server must own it.
func StartPostgres(tb testing.TB) *PostgresServer {
	tb.Helper()
	srv, err := newPostgresServer()
	if err != nil {
		tb.Fatalf("testenv: PostgreSQL: %v", err)
	}
	tb.Cleanup(srv.remove)
	return srv
}

// URL is the DSN of the cluster's "postgres" database.
func (s *PostgresServer) URL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.port)
}

// Stop shuts the server down at once (-m immediate), as a crash would.
func (s *PostgresServer) Stop(tb testing.TB) {
	tb.Helper()
	if err := s.run(s.pgCtl, "-D", s.data, "-m", "immediate", "-w", "stop"); err != nil {
		tb.Fatalf("testenv: stop PostgreSQL: %v", err)
	}
}

// Start starts a stopped server again on the same port.
func (s *PostgresServer) Start(tb testing.TB) {
	tb.Helper()
	if err := s.start(); err != nil {
		tb.Fatalf("testenv: start PostgreSQL: %v", err)
	}
}

func (s *PostgresServer) run(args ...string) error {
	argv := append(slices.Clone(s.asUser), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = s.dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	return nil
}

func (s *PostgresServer) start() error {
	// fsync=off is safe here: tests crash the server process, never the
	// machine, so the page cache survives. synchronous_commit stays on, or
	// an immediate stop would lose acknowledged commits.
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s -c fsync=off -c full_page_writes=off -c max_connections=300", s.port, s.dir)
	return s.run(s.pgCtl, "-D", s.data, "-l", filepath.Join(s.dir, "server.log"), "-w", "-t", "60", "-o", opts, "start")
}

// remove stops the server if it runs and deletes its directory.
func (s *PostgresServer) remove() {
	if _, err := os.Stat(filepath.Join(s.data, "postmaster.pid")); err == nil {
		if err := s.run(s.pgCtl, "-D", s.data, "-m", "immediate", "stop"); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: stop PostgreSQL: %v\n", err)
		}
	}
	os.RemoveAll(s.dir)
}

// newPostgresServer runs initdb in a temp dir and starts the server.
func newPostgresServer() (*PostgresServer, error) {
	initdb, err := lookBinary("initdb", postgresBinDirs()...)
	if err != nil {
		return nil, fmt.Errorf("%w; install PostgreSQL (apt-get install postgresql) or set %s", err, PostgresURLEnv)
	}
	pgCtl := filepath.Join(filepath.Dir(initdb), "pg_ctl")
	if _, err := os.Stat(pgCtl); err != nil {
		if pgCtl, err = lookBinary("pg_ctl", postgresBinDirs()...); err != nil {
			return nil, fmt.Errorf("%w; install PostgreSQL (apt-get install postgresql) or set %s", err, PostgresURLEnv)
		}
	}
	dir, err := os.MkdirTemp("", "strom-pg-")
	if err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	s := &PostgresServer{dir: dir, data: filepath.Join(dir, "data"), pgCtl: pgCtl}
	// PostgreSQL refuses to run as root: run it as the postgres user.
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("running as root, PostgreSQL needs the unprivileged user \"postgres\" (created by apt-get install postgresql): %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("chown %s to postgres: %w", dir, err)
		}
		runuser, err := lookBinary("runuser", "/usr/sbin", "/sbin")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("running as root, the harness needs runuser to start PostgreSQL as \"postgres\": %w", err)
		}
		s.asUser = []string{runuser, "-u", "postgres", "--"}
	}
	if err := s.run(initdb, "-D", s.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	// The free port may be taken before the server binds it: retry.
	for attempt := 0; ; attempt++ {
		if s.port, err = freePort(); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		if err = s.start(); err == nil {
			return s, nil
		}
		if attempt == 2 {
			log, _ := os.ReadFile(filepath.Join(dir, "server.log"))
			os.RemoveAll(dir)
			return nil, fmt.Errorf("%w\nserver log:\n%s", err, log)
		}
	}
}

// postgresBinDirs lists /usr/lib/postgresql/*/bin, newest major first.
func postgresBinDirs() []string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(d string) int {
		v, _ := strconv.Atoi(filepath.Base(filepath.Dir(d)))
		return v
	}
	slices.SortFunc(dirs, func(a, b string) int { return version(b) - version(a) })
	return dirs
}
