// Package testenv starts the real dependencies that Strom's tests run
// against: a throwaway PostgreSQL cluster (initdb + pg_ctl on a free loopback
// port) and a versitygw S3 server over a temporary directory. Each is started
// at most once per test binary, lazily, and torn down by [Main].
//
// Instead of starting its own, the harness uses an existing server when
// STROM_TEST_POSTGRES_URL or STROM_TEST_S3_ENDPOINT is set.
//
// A dependency that can be neither found nor started fails the test: it is
// never turned into a skip. `make test` installs what is missing first.
//
// Every package whose tests use the harness declares
//
//	func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// cleanups run after all tests of the binary, in reverse order.
var (
	cleanupMu sync.Mutex
	cleanups  []func()
)

func atExit(f func()) {
	cleanupMu.Lock()
	defer cleanupMu.Unlock()
	cleanups = append(cleanups, f)
}

// Main runs the tests and then stops every server the harness started. Its
// result is the exit code for os.Exit.
func Main(m *testing.M) int {
	code := m.Run()
	cleanupMu.Lock()
	defer cleanupMu.Unlock()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	cleanups = nil
	return code
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("testenv: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// CacheBinDir is where `make tools` installs pinned binaries
// ($XDG_CACHE_HOME/strom/bin, usually ~/.cache/strom/bin), outside the
// repository so that a clean clone stays clean.
func CacheBinDir() string {
	if d := os.Getenv("STROM_CACHE_BIN"); d != "" {
		return d
	}
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	return filepath.Join(base, "strom", "bin")
}

// lookBinary finds name in dirs, then on PATH.
func lookBinary(name string, dirs ...string) (string, error) {
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("testenv: %s not found in %v or on PATH (run `make tools`): %w", name, dirs, err)
	}
	return p, nil
}

// Binary returns the path of a pinned tool installed by `make tools` (in
// CacheBinDir or on PATH), failing the test when it is missing.
func Binary(tb testing.TB, name string) string {
	tb.Helper()
	p, err := lookBinary(name, CacheBinDir())
	if err != nil {
		tb.Fatal(err)
	}
	return p
}
