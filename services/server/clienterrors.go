package server

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"

	"connectrpc.com/connect"
)

// clientErrors turns the malformed requests that connect-go answers with
// unknown (HTTP 500) into invalid_argument: a request body that breaks off
// or is not valid HTTP chunking, and a GET whose base64 message is not
// base64. TestMalformedRequests in e2e sends them.
func clientErrors(next http.Handler) http.Handler {
	errw := connect.NewErrorWriter()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && errw.IsSupported(r) {
			q := r.URL.Query()
			if q.Get("base64") == "1" {
				if err := checkBase64URL(q.Get("message")); err != nil {
					_ = errw.Write(w, r, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("query parameter message: %w", err)))
					return
				}
			}
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = bodyErrors{r.Body}
		}
		next.ServeHTTP(w, r)
	})
}

// checkBase64URL checks data as Connect reads a GET message: URL-safe
// base64, padded or not.
func checkBase64URL(data string) error {
	enc := base64.URLEncoding
	if len(data)%4 != 0 {
		enc = base64.RawURLEncoding
	}
	if _, err := enc.DecodeString(data); err != nil {
		return fmt.Errorf("not URL-safe base64: %w", err)
	}
	return nil
}

// bodyErrors reports a request body that cannot be read as
// invalid_argument, except for the errors Connect classifies itself: the
// body size limit and a cancelled request.
type bodyErrors struct{ io.ReadCloser }

func (b bodyErrors) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == nil || err == io.EOF {
		return n, err
	}
	var maxBytes *http.MaxBytesError
	if errors.As(err, &maxBytes) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return n, err
	}
	return n, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("reading the request body: %w", err))
}
