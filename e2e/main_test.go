// Package e2e runs the real strom binary as users run it: processes, flags,
// config files, the CLI, curl-style HTTP JSON, gRPC and signals.
//
// Which catalog and object store a test's server uses depends on what the
// test is about:
//
//   - PostgreSQL and S3, the test harness's own (testenv: a PostgreSQL
//     cluster and versitygw processes, each test with its own database and
//     bucket): the tests of durability and failure — kills, restarts and
//     outages of either, full disks, clusters of frontends, leases, primary
//     keys and their recovery, tiering and the lake, the Go client — since a
//     deployment runs there, and only there can a dependency fail on its own
//     or be shared by several processes.
//   - Both, as subtests "embedded" and "postgres+s3" (onBackends): the
//     user-facing sessions whose outcome goes through the catalog or the
//     object store — TestQuickStart (databases and tables from the CLI),
//     TestBadInput (refused writes leave no trace; catalog errors such as a
//     missing table get the same codes), TestPrimaryKeyCLI and
//     TestRetentionDeletesExpiredSegments (the sweep deletes from both the
//     catalog and the objects).
//   - The embedded defaults only: the tests of the transport — TestGRPCurl
//     (reflection and health), TestMalformedRequests (protocol errors) and
//     TestTLS — whose requests are decided by the HTTP, Connect, gRPC and
//     TLS layers the same way on any backend; and the quick start's
//     defaults themselves (TestQuickStart's "embedded").
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/strom-io/strom/testenv"
)

// stromBin is the binary built once for the whole run.
var stromBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "strom-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	stromBin = filepath.Join(dir, "strom")
	build := exec.Command("go", "build", "-o", stromBin, "github.com/strom-io/strom/services/cmd/strom")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building strom:", err)
		os.Exit(1)
	}
	code := testenv.Main(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

// process is a running `strom server`.
type process struct {
	cmd    *exec.Cmd
	addr   string // host:port it listens on
	scheme string // http (h2c) or https
	client *http.Client
	mu     sync.Mutex
	stderr bytes.Buffer
	exited chan struct{}
	err    error
}

var readyLine = regexp.MustCompile(`Strom is ready: curl -s (https?)://(\S+)/readyz`)

// startServer starts `strom server args...` in dir and waits until it
// prints its address and /readyz answers 200.
func startServer(t testing.TB, dir string, args ...string) *process {
	t.Helper()
	return startServerClient(t, dir, http.DefaultClient, args...)
}

// startServerClient is startServer with the HTTP client that checks
// /readyz (for TLS, one that trusts the server's CA).
func startServerClient(t testing.TB, dir string, hc *http.Client, args ...string) *process {
	t.Helper()
	p, readyc := launchServer(t, dir, hc, args...)
	select {
	case m := <-readyc:
		p.scheme, p.addr = m[0], m[1]
	case <-p.exited:
		t.Fatalf("strom server exited before it was ready: %v\n%s", p.err, p.log())
	case <-time.After(60 * time.Second):
		t.Fatalf("strom server not ready after 60s:\n%s", p.log())
	}
	waitReady(t, p)
	return p
}

// launchServer starts `strom server args...` in dir without waiting: the
// channel receives the scheme and address of its ready line when it prints
// it. The server is killed when the test ends.
func launchServer(t testing.TB, dir string, hc *http.Client, args ...string) (*process, <-chan []string) {
	t.Helper()
	args = append([]string{"server", "-server.http-listen-address", "127.0.0.1:0", "-server.internal-listen-address", "127.0.0.1:0"}, args...)
	cmd := exec.Command(stromBin, args...)
	cmd.Dir = dir
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, exited: make(chan struct{}), client: hc}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrc := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			if p.stderr.Len() < 4<<20 { // long benchmark runs log a lot
				p.stderr.WriteString(line + "\n")
			}
			p.mu.Unlock()
			if m := readyLine.FindStringSubmatch(line); m != nil {
				addrc <- m[1:]
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("server stderr:\n%s", p.log())
		}
	})
	return p, addrc
}

func (p *process) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

func (p *process) url() string {
	if p.scheme == "" {
		return "http://" + p.addr
	}
	return p.scheme + "://" + p.addr
}

// stop sends SIGTERM and waits for a clean exit.
func (p *process) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("strom server did not stop within 30s of SIGTERM")
	}
	if p.err != nil {
		t.Fatalf("strom server exited with %v after SIGTERM:\n%s", p.err, p.log())
	}
}

func waitReady(t testing.TB, p *process) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		hc := p.client
		if hc == nil {
			hc = http.DefaultClient
		}
		resp, err := hc.Get(p.url() + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			err = fmt.Errorf("%d %s", resp.StatusCode, body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cli runs a strom client command against p and returns its stdout. It
// fails the test if the command fails.
func cli(t *testing.T, p *process, args ...string) string {
	t.Helper()
	out, errOut, err := runCLI(p, args...)
	if err != nil {
		t.Fatalf("strom %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// cliFails runs a strom client command that must fail and returns stderr.
func cliFails(t *testing.T, p *process, args ...string) string {
	t.Helper()
	out, errOut, err := runCLI(p, args...)
	if err == nil {
		t.Fatalf("strom %s succeeded, want failure; stdout: %s", strings.Join(args, " "), out)
	}
	return errOut
}

func runCLI(p *process, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, stromBin, append([]string{"--addr", p.addr}, args...)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// kill sends SIGKILL, as a crash would, and waits for the exit.
func (p *process) kill(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Kill()
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("strom server did not die of SIGKILL")
	}
}
