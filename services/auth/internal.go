package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"connectrpc.com/connect"
)

// minSecretLength is the shortest internal secret accepted, in bytes.
const minSecretLength = 16

// InternalSecret is the shared secret of the internal port between
// frontends: every frontend sends it as a bearer token with the calls it
// forwards, and accepts only calls that carry it. Every frontend of a
// deployment must read the same secret.
type InternalSecret struct {
	token string
	hash  [sha256.Size]byte
}

// LoadInternalSecret reads the secret from path; surrounding white space
// (a trailing newline) is dropped. A missing, empty or short secret is an
// error that never holds the secret.
func LoadInternalSecret(path string) (*InternalSecret, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("server.internal_token_file: %w", err)
	}
	token := strings.TrimSpace(string(b))
	switch {
	case token == "":
		return nil, fmt.Errorf("server.internal_token_file %s: the file is empty", path)
	case len(token) < minSecretLength:
		return nil, fmt.Errorf("server.internal_token_file %s: the secret is %d bytes long; use at least %d (strom token generate)", path, len(token), minSecretLength)
	case strings.ContainsAny(token, " \t\r\n"):
		return nil, fmt.Errorf("server.internal_token_file %s: the secret holds white space; use one line without it (strom token generate)", path)
	}
	return &InternalSecret{token: token, hash: sha256.Sum256([]byte(token))}, nil
}

// Token is the secret, to send as a bearer token.
func (s *InternalSecret) Token() string { return s.token }

// Valid reports whether an Authorization header value carries the secret,
// comparing in constant time.
func (s *InternalSecret) Valid(header string) bool {
	token, err := bearerToken(header)
	if err != nil {
		return false
	}
	sum := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(sum[:], s.hash[:]) == 1
}

// Handler wraps the internal API: a request without the secret is refused
// with unauthenticated, in the format of its RPC protocol, before its body
// is read.
func (s *InternalSecret) Handler(next http.Handler, logger *slog.Logger) http.Handler {
	ew := connect.NewErrorWriter()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.Valid(r.Header.Get("Authorization")) {
			next.ServeHTTP(w, r)
			return
		}
		logger.Warn("internal call without the shared secret refused: every frontend needs the same -server.internal-token-file",
			slog.String("path", r.URL.Path), slog.String("peer", r.RemoteAddr))
		err := connect.NewError(connect.CodeUnauthenticated,
			errors.New("the internal API needs the frontends' shared secret as bearer token (-server.internal-token-file)"))
		_ = ew.Write(w, r, err)
	})
}
