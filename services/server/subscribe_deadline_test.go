package server_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strom-io/strom/api/client"
	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/api/gen/strom/v1/stromv1connect"
)

// withTimeoutHeader sends every request with the protocol's timeout header
// set to value, as a client (or a proxy) that propagates a deadline does,
// while the caller's context has none: the server's deadline is then the
// one that ends the call.
type withTimeoutHeader struct {
	rt            http.RoundTripper
	header, value string
}

func (h withTimeoutHeader) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(h.header, h.value)
	return h.rt.RoundTrip(r)
}

// startSubscribeTable starts a server with table d.t holding two rows and
// returns its base URL.
func startSubscribeTable(t *testing.T) string {
	t.Helper()
	base := startServer(t, "-frontend.flush-interval", "5ms")
	ctx := context.Background()
	admin := stromv1connect.NewAdminServiceClient(http.DefaultClient, base)
	if _, err := admin.CreateDatabase(ctx, connect.NewRequest(&stromv1.CreateDatabaseRequest{Name: "d"})); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CreateTable(ctx, connect.NewRequest(&stromv1.CreateTableRequest{
		Database: "d", Name: "t", Schema: &stromv1.Schema{Columns: []*stromv1.Column{{Name: "id", Type: "BIGINT"}}},
	})); err != nil {
		t.Fatal(err)
	}
	var rows []*structpb.Struct
	for id := range 2 {
		st, _ := structpb.NewStruct(map[string]any{"id": id})
		rows = append(rows, st)
	}
	write := stromv1connect.NewWriteServiceClient(http.DefaultClient, base)
	if _, err := write.Append(ctx, connect.NewRequest(&stromv1.AppendRequest{Database: "d", Table: "t", Rows: rows})); err != nil {
		t.Fatal(err)
	}
	return base
}

// TestSubscribeEndsWithTheDeadline: a Subscribe stream cut off by its
// deadline ends with deadline_exceeded, and one the client cancels with
// canceled, over every protocol; never with a clean end, which reads as
// "the stream is over". The deadline that ends the stream may be the
// server's: the one the client sent in the timeout header (which the
// Connect protocol rounds down to whole milliseconds, so the server's
// often passes first). A transport that sends the header while the
// client's context has no deadline makes the server's end the stream
// every time.
func TestSubscribeEndsWithTheDeadline(t *testing.T) {
	base := startSubscribeTable(t)
	protocols := []struct {
		name          string
		opt           connect.ClientOption
		header, value string
	}{
		{"connect", connect.WithProtoJSON(), "Connect-Timeout-Ms", "300"},
		{"grpc", connect.WithGRPC(), "Grpc-Timeout", "300m"},
		{"grpc-web", connect.WithGRPCWeb(), "Grpc-Timeout", "300m"},
	}
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			cases := []struct {
				name   string
				client *http.Client
				ctx    func() (context.Context, context.CancelFunc)
				cancel bool // after the first message
				want   connect.Code
			}{
				{"server deadline", &http.Client{Transport: withTimeoutHeader{h2cClient().Transport, p.header, p.value}},
					func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) },
					false, connect.CodeDeadlineExceeded},
				{"client deadline", h2cClient(),
					func() (context.Context, context.CancelFunc) {
						return context.WithTimeout(context.Background(), 300*time.Millisecond)
					},
					false, connect.CodeDeadlineExceeded},
				{"cancel", h2cClient(),
					func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) },
					true, connect.CodeCanceled},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					read := stromv1connect.NewReadServiceClient(tc.client, base, p.opt)
					ctx, cancel := tc.ctx()
					defer cancel()
					stream, err := read.Subscribe(ctx, connect.NewRequest(&stromv1.SubscribeRequest{Fetch: &stromv1.FetchRequest{Database: "d", Table: "t"}}))
					if err != nil {
						t.Fatal(err)
					}
					defer stream.Close()
					if !stream.Receive() {
						t.Fatalf("no first message: %v", stream.Err())
					}
					if n := len(stream.Msg().GetRecords().GetRows()); n != 2 {
						t.Fatalf("first message: %d rows, want 2", n)
					}
					if tc.cancel {
						cancel()
					}
					// No more rows come: the stream waits until its
					// deadline or cancellation ends it.
					for stream.Receive() {
						if n := len(stream.Msg().GetRecords().GetRows()); n != 0 {
							t.Fatalf("%d more rows", n)
						}
					}
					if err := stream.Err(); connect.CodeOf(err) != tc.want {
						t.Fatalf("stream ended with %v (code %v), want code %v", err, connect.CodeOf(err), tc.want)
					}
				})
			}
		})
	}
}

// TestClientRowsEndWithTheDeadline: the Go client's Subscription.Rows,
// against a real server, ends by yielding an error with code
// deadline_exceeded when its context's deadline passes (canceled when the
// context is cancelled), which errors.Is also matches with the context's
// error.
func TestClientRowsEndWithTheDeadline(t *testing.T) {
	base := startSubscribeTable(t)
	for _, tc := range []struct {
		name  string
		ctx   func() (context.Context, context.CancelFunc)
		want  connect.Code
		cause error
	}{
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 300*time.Millisecond)
		}, connect.CodeDeadlineExceeded, context.DeadlineExceeded},
		{"cancel", func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) },
			connect.CodeCanceled, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := client.New(base)
			sub, err := c.Subscribe(context.Background(), "d", "t")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := tc.ctx()
			defer cancel()
			var rows int
			var last error
			for _, err := range sub.Rows(ctx) {
				if err != nil {
					last = err
					break
				}
				if rows++; rows == 2 && tc.cause == context.Canceled {
					cancel()
				}
			}
			if rows != 2 {
				t.Fatalf("%d rows, want 2", rows)
			}
			if last == nil {
				t.Fatal("Rows ended without an error")
			}
			if connect.CodeOf(last) != tc.want || !errors.Is(last, tc.cause) {
				t.Fatalf("Rows ended with %v (code %v), want code %v wrapping %v", last, connect.CodeOf(last), tc.want, tc.cause)
			}
		})
	}
}
