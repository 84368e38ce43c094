package client_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"connectrpc.com/connect"

	"github.com/strom-io/strom/api/client"
	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/api/gen/strom/v1/stromv1connect"
)

type cancelingAdmin struct {
	stromv1connect.UnimplementedAdminServiceHandler
}

func (cancelingAdmin) ListDatabases(context.Context, *connect.Request[stromv1.ListDatabasesRequest]) (*connect.Response[stromv1.ListDatabasesResponse], error) {
	return nil, connect.NewError(connect.CodeCanceled, errors.New("the server says canceled"))
}

func TestIsRetryable(t *testing.T) {
	// A server's canceled answer is not retried.
	_, h := stromv1connect.NewAdminServiceHandler(cancelingAdmin{})
	srv := httptest.NewServer(h)
	defer srv.Close()
	_, err := client.New(srv.URL).Admin().ListDatabases(t.Context(), connect.NewRequest(&stromv1.ListDatabasesRequest{}))
	if connect.CodeOf(err) != connect.CodeCanceled || client.IsRetryable(err) {
		t.Fatalf("a server's canceled answer: %v, retryable %v", err, client.IsRetryable(err))
	}
	// A connection cut before the answer (the frontend died) is.
	cut := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		c, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			_ = c.Close()
		}
	}))
	defer cut.Close()
	_, err = client.New(cut.URL).Admin().ListDatabases(t.Context(), connect.NewRequest(&stromv1.ListDatabasesRequest{}))
	if err == nil || !client.IsRetryable(err) {
		t.Fatalf("a cut connection: %v (code %s), want retryable", err, connect.CodeOf(err))
	}
	// The caller's own cancellation never is.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = client.New(srv.URL).Admin().ListDatabases(ctx, connect.NewRequest(&stromv1.ListDatabasesRequest{}))
	if client.IsRetryable(err) {
		t.Fatalf("caller's cancellation %v is retryable", err)
	}
	for _, code := range []connect.Code{connect.CodeUnavailable, connect.CodeResourceExhausted, connect.CodeAborted, connect.CodeDeadlineExceeded} {
		if !client.IsRetryable(connect.NewError(code, errors.New("x"))) {
			t.Errorf("%s not retryable", code)
		}
	}
	if client.IsRetryable(connect.NewError(connect.CodeInvalidArgument, errors.New("x"))) {
		t.Error("invalid_argument retryable")
	}
}
