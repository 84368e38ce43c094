package e2e

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// loadBalancer is a plain L4 TCP load balancer for tests, as a Kubernetes
// Service is: it listens on 127.0.0.1, sends each accepted connection to the
// next backend in round-robin order (skipping backends that refuse the
// dial), splices bytes both ways, and closes both sides as soon as either
// ends. It knows nothing of HTTP or of which frontend leads what.
type loadBalancer struct {
	ln net.Listener

	mu       sync.Mutex
	backends []string
	next     int
	conns    map[net.Conn]struct{}
	closed   bool

	wg sync.WaitGroup
}

// newLoadBalancer starts a load balancer in front of backends (host:port);
// it is closed when t ends.
func newLoadBalancer(t testing.TB, backends ...string) *loadBalancer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lb := &loadBalancer{ln: ln, conns: map[net.Conn]struct{}{}}
	lb.SetBackends(backends...)
	lb.wg.Add(1)
	go lb.accept()
	t.Cleanup(lb.Close)
	return lb
}

// Addr is the host:port clients connect to.
func (lb *loadBalancer) Addr() string { return lb.ln.Addr().String() }

// URL is the base URL of the API behind the load balancer.
func (lb *loadBalancer) URL() string { return "http://" + lb.Addr() }

// SetBackends replaces the backends; connections already spliced stay.
func (lb *loadBalancer) SetBackends(addrs ...string) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	lb.backends = append([]string(nil), addrs...)
	lb.next = 0
}

// Close stops accepting, closes every connection and waits for the
// splicing goroutines. It may be called more than once.
func (lb *loadBalancer) Close() {
	lb.mu.Lock()
	if lb.closed {
		lb.mu.Unlock()
		return
	}
	lb.closed = true
	_ = lb.ln.Close()
	for c := range lb.conns {
		_ = c.Close()
	}
	lb.mu.Unlock()
	lb.wg.Wait()
}

func (lb *loadBalancer) accept() {
	defer lb.wg.Done()
	for {
		c, err := lb.ln.Accept()
		if err != nil {
			return // closed
		}
		if !lb.track(c) {
			_ = c.Close()
			return
		}
		lb.wg.Add(1)
		go lb.serve(c)
	}
}

// track registers c so that Close closes it; false once closed.
func (lb *loadBalancer) track(c net.Conn) bool {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.closed {
		return false
	}
	lb.conns[c] = struct{}{}
	return true
}

func (lb *loadBalancer) untrack(cs ...net.Conn) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	for _, c := range cs {
		delete(lb.conns, c)
		_ = c.Close()
	}
}

// pick returns the backends to try for the next connection: all of them,
// starting with the next in round-robin order.
func (lb *loadBalancer) pick() []string {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	n := len(lb.backends)
	order := make([]string, 0, n)
	for i := 0; i < n; i++ {
		order = append(order, lb.backends[(lb.next+i)%n])
	}
	if n > 0 {
		lb.next = (lb.next + 1) % n
	}
	return order
}

// serve connects the client c to the first backend that accepts the dial
// and splices until either side ends.
func (lb *loadBalancer) serve(c net.Conn) {
	defer lb.wg.Done()
	var b net.Conn
	for _, addr := range lb.pick() {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			b = conn
			break
		}
	}
	if b == nil || !lb.track(b) {
		if b != nil {
			_ = b.Close()
		}
		lb.untrack(c) // no backend: the client sees the connection close
		return
	}
	done := make(chan struct{}, 2)
	splice := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go splice(b, c)
	go splice(c, b)
	<-done
	lb.untrack(c, b) // either side ended: close both, which ends the other copy
	<-done
}

// TestLoadBalancer: round-robin over backends, refused backends skipped,
// bytes spliced both ways, a backend's close reaches the client, backends
// replaced at runtime, and Close ends every connection.
func TestLoadBalancer(t *testing.T) {
	backend := func(name string) (addr string, closeConns func()) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var conns []net.Conn
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
				go func() {
					defer c.Close()
					r := bufio.NewReader(c)
					for {
						line, err := r.ReadString('\n')
						if err != nil {
							return
						}
						if _, err := io.WriteString(c, name+":"+line); err != nil {
							return
						}
					}
				}()
			}
		}()
		return ln.Addr().String(), func() {
			mu.Lock()
			defer mu.Unlock()
			for _, c := range conns {
				c.Close()
			}
			conns = nil
		}
	}
	a, closeA := backend("a")
	b, _ := backend("b")
	refused := func() string { // a port nobody listens on
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		return addr
	}()

	lb := newLoadBalancer(t, a, refused, b)
	type conn struct {
		net.Conn
		r *bufio.Reader
	}
	dial := func() conn {
		c, err := net.Dial("tcp", lb.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return conn{c, bufio.NewReader(c)}
	}
	roundTrip := func(c conn, msg string) (string, error) {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, msg+"\n"); err != nil {
			return "", err
		}
		line, err := c.r.ReadString('\n')
		return strings.TrimSuffix(line, "\n"), err
	}
	served := func(c conn) string {
		t.Helper()
		got, err := roundTrip(c, "ping")
		if err != nil {
			t.Fatalf("round trip through the load balancer: %v", err)
		}
		name, rest, _ := strings.Cut(got, ":")
		if rest != "ping" {
			t.Fatalf("reply %q: want NAME:ping", got)
		}
		return name
	}

	// Backends in order a, refused, b: the refused one is skipped, so its
	// turn goes to b.
	var got []string
	var conns []conn
	for i := 0; i < 6; i++ {
		c := dial()
		conns = append(conns, c)
		got = append(got, served(c))
	}
	if want := "a b b a b b"; strings.Join(got, " ") != want {
		t.Fatalf("backends chosen: %v, want %s", got, want)
	}
	// A connection keeps its backend for every exchange.
	for i, c := range conns {
		if name := served(c); name != got[i] {
			t.Fatalf("connection %d moved from %s to %s", i, got[i], name)
		}
	}

	// The backend closing its side closes the client's.
	closeA()
	for i, c := range conns {
		if got[i] != "a" {
			continue
		}
		if _, err := roundTrip(c, "again"); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("connection %d to a closed backend: err = %v, want EOF", i, err)
		}
	}

	// New backends apply to new connections.
	lb.SetBackends(b)
	for i := 0; i < 3; i++ {
		if name := served(dial()); name != "b" {
			t.Fatalf("after SetBackends(b): served by %s", name)
		}
	}
	// No backend accepting: the client's connection is closed.
	lb.SetBackends(refused)
	if _, err := roundTrip(dial(), "x"); err == nil {
		t.Fatal("round trip with no live backend succeeded")
	}

	// Close ends the spliced connections and refuses new ones.
	lb.SetBackends(b)
	c := dial()
	served(c)
	lb.Close()
	if _, err := roundTrip(c, "after close"); err == nil {
		t.Fatal("round trip after Close succeeded")
	}
	if c, err := net.DialTimeout("tcp", lb.Addr(), time.Second); err == nil {
		c.Close()
		t.Fatal("dial after Close succeeded")
	}
}
