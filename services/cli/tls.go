package cli

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"strings"

	"connectrpc.com/connect"
)

// baseURL is --addr with a scheme: https:// when none is given and
// --tls-ca-file is, else http://.
func (g *globals) baseURL() string {
	addr := g.addr
	if !strings.Contains(addr, "://") {
		scheme := "http://"
		if g.tlsCAFile != "" {
			scheme = "https://"
		}
		addr = scheme + addr
	}
	return strings.TrimRight(addr, "/")
}

// httpClient is the HTTP client of every client command: the default one,
// or with --tls-ca-file one that trusts the CA certificates in that file
// (instead of the system's). If the file does not load, every request fails
// with the reason.
func (g *globals) httpClient() connect.HTTPClient {
	if g.tlsCAFile == "" {
		return http.DefaultClient
	}
	pool, err := loadCAFile(g.tlsCAFile)
	if err != nil {
		return failingClient{err}
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: t}
}

// loadCAFile reads PEM CA certificates.
func loadCAFile(name string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("--tls-ca-file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--tls-ca-file %s: no PEM certificate in it", name)
	}
	return pool, nil
}

// failingClient fails every request with err.
type failingClient struct{ err error }

func (c failingClient) Do(*http.Request) (*http.Response, error) { return nil, c.err }
