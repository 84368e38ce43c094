package server

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strom-io/strom/testenv"
)

// logBuffer collects log output safely across goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestCertReloader replaces the certificate files under a fake clock: a
// change is served after the check interval, not before; a broken pair
// keeps the previous certificate and logs one error; a later good pair
// is picked up.
func TestCertReloader(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	ca := testenv.NewCA(t)
	serial1 := ca.WriteServerCert(t, certFile, keyFile)

	var logs logBuffer
	r, err := newCertReloader(certFile, keyFile, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	r.now = func() time.Time { return now }
	serial := func() string {
		t.Helper()
		c, err := r.GetCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		return c.Leaf.SerialNumber.String()
	}
	if got := serial(); got != serial1.String() {
		t.Fatalf("serving serial %s, want %s", got, serial1)
	}

	serial2 := ca.WriteServerCert(t, certFile, keyFile)
	if got := serial(); got != serial1.String() {
		t.Fatalf("within the check interval: serving %s, want the old %s", got, serial1)
	}
	now = now.Add(certCheckInterval)
	if got := serial(); got != serial2.String() {
		t.Fatalf("after the check interval: serving %s, want the new %s", got, serial2)
	}
	if !strings.Contains(logs.String(), "TLS certificate reloaded") {
		t.Errorf("no reload logged:\n%s", logs.String())
	}

	// A certificate whose key does not match: the old pair stays.
	otherKey := filepath.Join(dir, "other.key")
	ca.WriteServerCert(t, filepath.Join(dir, "other.crt"), otherKey)
	key, err := os.ReadFile(otherKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		now = now.Add(certCheckInterval)
		if got := serial(); got != serial2.String() {
			t.Fatalf("after a bad key: serving %s, want the previous %s", got, serial2)
		}
	}
	if n := strings.Count(logs.String(), "does not load"); n != 1 {
		t.Errorf("the bad pair was logged %d times, want once:\n%s", n, logs.String())
	}

	// Garbage, then a missing file: still the previous pair.
	if err := os.WriteFile(certFile, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	now = now.Add(certCheckInterval)
	if got := serial(); got != serial2.String() {
		t.Fatalf("after a garbage certificate: serving %s, want %s", got, serial2)
	}
	if err := os.Remove(certFile); err != nil {
		t.Fatal(err)
	}
	now = now.Add(certCheckInterval)
	if got := serial(); got != serial2.String() {
		t.Fatalf("after removing the certificate: serving %s, want %s", got, serial2)
	}
	if !strings.Contains(logs.String(), "unreadable") {
		t.Errorf("the missing file was not logged:\n%s", logs.String())
	}

	serial3 := ca.WriteServerCert(t, certFile, keyFile)
	now = now.Add(certCheckInterval)
	if got := serial(); got != serial3.String() {
		t.Fatalf("after a good pair again: serving %s, want %s", got, serial3)
	}
}

func TestCertReloaderStartErrors(t *testing.T) {
	dir := t.TempDir()
	logger := slog.New(slog.DiscardHandler)
	if _, err := newCertReloader(filepath.Join(dir, "missing.crt"), filepath.Join(dir, "missing.key"), logger); err == nil || !strings.Contains(err.Error(), "server.tls_cert_file") {
		t.Errorf("missing files: %v, want an error naming server.tls_cert_file", err)
	}
	bad := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(bad, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := newCertReloader(bad, bad, logger); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("bad PEM: %v, want an error naming the file", err)
	}
}

func TestValidateTLSPair(t *testing.T) {
	for _, c := range []struct {
		cert, key, want string
	}{
		{"", "", ""},
		{"a.crt", "a.key", ""},
		{"a.crt", "", "server.tls_key_file"},
		{"", "a.key", "server.tls_cert_file"},
	} {
		err := (&HTTPConfig{TLSCertFile: c.cert, TLSKeyFile: c.key}).validateTLS()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("cert %q key %q: %v", c.cert, c.key, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("cert %q key %q: %v, want an error naming %s", c.cert, c.key, err, c.want)
		}
	}
}
