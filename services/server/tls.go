package server

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"
)

// certCheckInterval is how often, at most, the certificate files are
// checked for changes: on a TLS handshake, when this long has passed since
// the last check.
const certCheckInterval = 2 * time.Second

// registerTLSFlags registers the API listener's TLS settings under prefix.
func (c *HTTPConfig) registerTLSFlags(prefix string, f *flag.FlagSet) {
	f.StringVar(&c.TLSCertFile, prefix+"tls-cert-file", "", "PEM certificate (chain) of the API listener; with -server.tls-key-file it serves HTTPS (HTTP/1.1 and HTTP/2, gRPC by ALPN h2) instead of h2c. Both files are re-read when they change, without a restart. The internal listener stays plain h2c: keep it on a private network.")
	f.StringVar(&c.TLSKeyFile, prefix+"tls-key-file", "", "PEM private key of -server.tls-cert-file.")
}

// validateTLS checks that the TLS files come as a pair and load.
func (c *HTTPConfig) validateTLS() error {
	switch {
	case c.TLSCertFile == "" && c.TLSKeyFile == "":
		return nil
	case c.TLSCertFile == "":
		return errors.New("server.tls_cert_file: required with server.tls_key_file")
	case c.TLSKeyFile == "":
		return errors.New("server.tls_key_file: required with server.tls_cert_file")
	}
	return nil
}

// tlsEnabled reports whether the API listener serves TLS.
func (c *HTTPConfig) tlsEnabled() bool { return c.TLSCertFile != "" }

// configureTLS turns the API server into an HTTPS server (HTTP/1.1 and
// HTTP/2 by ALPN) when TLS is configured. It loads the certificate once so
// that a bad pair fails the start.
func (s *Server) configureTLS() error {
	if !s.cfg.Server.tlsEnabled() {
		return nil
	}
	r, err := newCertReloader(s.cfg.Server.TLSCertFile, s.cfg.Server.TLSKeyFile, s.logger.With(slog.String("component", "tls")))
	if err != nil {
		return err
	}
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	s.http.Protocols = protocols
	s.http.TLSConfig = &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: r.GetCertificate,
	}
	return nil
}

// serveAPI serves the API on its listener, over TLS when configured.
func (s *Server) serveAPI() error {
	if s.http.TLSConfig != nil {
		// The certificate comes from TLSConfig.GetCertificate.
		return s.http.ServeTLS(s.listener, "", "")
	}
	return s.http.Serve(s.listener)
}

// Scheme is the API's URL scheme: https with TLS, http (h2c) without.
func (s *Server) Scheme() string {
	if s.cfg.Server.tlsEnabled() {
		return "https"
	}
	return "http"
}

// URL is the base URL of the API after Listen.
func (s *Server) URL() string { return s.Scheme() + "://" + s.listener.Addr().String() }

// certReloader serves a certificate pair from two PEM files and reloads it
// when either file's modification time or size changes, checking at most
// every interval. A pair that fails to load keeps the previous one in
// service and logs an error once per change of the files. It is safe for
// concurrent use.
type certReloader struct {
	certFile, keyFile string
	interval          time.Duration
	logger            *slog.Logger
	now               func() time.Time

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   [2]fileStamp // of the files at the last load attempt
	checked time.Time
}

// fileStamp is what a change of a file is detected by.
type fileStamp struct {
	modTime time.Time
	size    int64
}

// newCertReloader loads the pair once; an error names the files.
func newCertReloader(certFile, keyFile string, logger *slog.Logger) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, interval: certCheckInterval, logger: logger, now: time.Now}
	stamp, err := r.stamps()
	if err != nil {
		return nil, err
	}
	cert, err := r.load()
	if err != nil {
		return nil, err
	}
	r.cert, r.stamp, r.checked = cert, stamp, r.now()
	return r, nil
}

// GetCertificate is a tls.Config.GetCertificate that serves the current
// pair, reloading it first when the files changed.
func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if now.Sub(r.checked) < r.interval {
		return r.cert, nil
	}
	r.checked = now
	stamp, err := r.stamps()
	if err != nil {
		if stamp != r.stamp {
			r.logger.Error("TLS certificate files unreadable; serving the previous certificate", slog.Any("err", err))
			r.stamp = stamp
		}
		return r.cert, nil
	}
	if stamp == r.stamp {
		return r.cert, nil
	}
	r.stamp = stamp
	cert, err := r.load()
	if err != nil {
		r.logger.Error("TLS certificate changed but does not load; serving the previous certificate", slog.Any("err", err))
		return r.cert, nil
	}
	r.cert = cert
	r.logger.Info("TLS certificate reloaded", slog.String("cert_file", r.certFile),
		slog.String("subject", cert.Leaf.Subject.String()), slog.String("serial", cert.Leaf.SerialNumber.String()),
		slog.Time("not_after", cert.Leaf.NotAfter))
	return r.cert, nil
}

// stamps stats both files. On error the stamps of the files that could be
// read are still returned, so that the error is logged once per change.
func (r *certReloader) stamps() ([2]fileStamp, error) {
	var out [2]fileStamp
	var errs []error
	for i, name := range []string{r.certFile, r.keyFile} {
		fi, err := os.Stat(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out[i] = fileStamp{modTime: fi.ModTime(), size: fi.Size()}
	}
	if err := errors.Join(errs...); err != nil {
		return out, fmt.Errorf("server.tls_cert_file/tls_key_file: %w", err)
	}
	return out, nil
}

// load reads and parses the pair.
func (r *certReloader) load() (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return nil, fmt.Errorf("server.tls_cert_file %s, server.tls_key_file %s: %w", r.certFile, r.keyFile, err)
	}
	return &cert, nil
}
