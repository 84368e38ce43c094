// Package client is the Go client library for Strom: a Client that connects
// to a server over Connect RPC, a Producer that appends rows in batches with
// idempotent retries, and a Subscription that streams rows from every bucket
// of a table and resumes after failures without duplicates or gaps.
//
// A Client is cheap to create and safe for concurrent use. Admin, Write and
// Read expose the generated Connect clients for every RPC the typed helpers
// do not cover.
package client

import (
	"context"
	"net/http"
	"strings"

	"connectrpc.com/connect"

	"github.com/strom-io/strom/api/gen/strom/v1/stromv1connect"
)

// Protocol is the RPC protocol a Client speaks.
type Protocol int

const (
	// ProtocolConnect is the Connect protocol with binary protobuf over
	// HTTP/1.1 or HTTP/2: the default, and the one proxies pass unchanged.
	ProtocolConnect Protocol = iota
	// ProtocolGRPC is gRPC. It needs HTTP/2: over http:// the Client's
	// default HTTP client speaks HTTP/2 without TLS (h2c).
	ProtocolGRPC
)

// Client talks to one Strom server (or a load balancer in front of several
// frontends; any frontend serves any request). It is safe for concurrent use
// and holds no resources that need closing beyond its HTTP client's idle
// connections.
type Client struct {
	admin stromv1connect.AdminServiceClient
	write stromv1connect.WriteServiceClient
	read  stromv1connect.ReadServiceClient
}

// Option configures a Client.
type Option func(*options)

type options struct {
	httpClient connect.HTTPClient
	protocol   Protocol
	header     http.Header
	connect    []connect.ClientOption
}

// WithHTTPClient sets the HTTP client. The default is a client with no
// overall timeout (calls are bounded by their contexts) that speaks h2c when
// ProtocolGRPC is chosen.
func WithHTTPClient(c connect.HTTPClient) Option { return func(o *options) { o.httpClient = c } }

// WithProtocol chooses the RPC protocol; the default is ProtocolConnect.
func WithProtocol(p Protocol) Option { return func(o *options) { o.protocol = p } }

// WithHeader adds a header to every request, e.g. for a proxy or tenant.
func WithHeader(key, value string) Option {
	return func(o *options) { o.header.Add(key, value) }
}

// WithBearerToken sends "Authorization: Bearer TOKEN" with every request.
func WithBearerToken(token string) Option {
	return func(o *options) { o.header.Set("Authorization", "Bearer "+token) }
}

// BearerHTTPClient returns an HTTP client that sends "Authorization:
// Bearer TOKEN" with every request through next, for generated Connect
// clients used without a Client.
func BearerHTTPClient(next connect.HTTPClient, token string) connect.HTTPClient {
	return bearerClient{next: next, authorization: "Bearer " + token}
}

type bearerClient struct {
	next          connect.HTTPClient
	authorization string
}

func (c bearerClient) Do(req *http.Request) (*http.Response, error) {
	req.Header.Set("Authorization", c.authorization)
	return c.next.Do(req)
}

// WithConnectOptions passes extra options (interceptors, compression, read
// limits) to the generated Connect clients.
func WithConnectOptions(opts ...connect.ClientOption) Option {
	return func(o *options) { o.connect = append(o.connect, opts...) }
}

// New returns a Client for the server at baseURL, e.g.
// "http://localhost:9123"; a baseURL without a scheme gets "http://".
// New does not connect: the first call does.
func New(baseURL string, opts ...Option) *Client {
	o := &options{header: http.Header{}}
	for _, opt := range opts {
		opt(o)
	}
	if !strings.Contains(baseURL, "://") {
		baseURL = "http://" + baseURL
	}
	baseURL = strings.TrimRight(baseURL, "/")
	if o.httpClient == nil {
		o.httpClient = defaultHTTPClient(o.protocol)
	}
	var copts []connect.ClientOption
	if o.protocol == ProtocolGRPC {
		copts = append(copts, connect.WithGRPC())
	}
	if len(o.header) > 0 {
		copts = append(copts, connect.WithInterceptors(headerInterceptor(o.header)))
	}
	copts = append(copts, o.connect...)
	return &Client{
		admin: stromv1connect.NewAdminServiceClient(o.httpClient, baseURL, copts...),
		write: stromv1connect.NewWriteServiceClient(o.httpClient, baseURL, copts...),
		read:  stromv1connect.NewReadServiceClient(o.httpClient, baseURL, copts...),
	}
}

// Admin returns the AdminService client: databases and tables.
func (c *Client) Admin() stromv1connect.AdminServiceClient { return c.admin }

// Write returns the raw WriteService client. Prefer a Producer for appends:
// it batches, and its retries are idempotent.
func (c *Client) Write() stromv1connect.WriteServiceClient { return c.write }

// Read returns the raw ReadService client. Prefer a Subscription for
// streaming reads: it covers every bucket and resumes after failures.
func (c *Client) Read() stromv1connect.ReadServiceClient { return c.read }

func defaultHTTPClient(p Protocol) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if p == ProtocolGRPC {
		// gRPC needs HTTP/2: TLS negotiates it by ALPN, plain http:// uses
		// h2c (prior knowledge) because HTTP/1 is left out.
		var protocols http.Protocols
		protocols.SetHTTP2(true)
		protocols.SetUnencryptedHTTP2(true)
		t.Protocols = &protocols
	}
	return &http.Client{Transport: t}
}

// headerInterceptor adds fixed headers to unary and streaming calls.
type headerInterceptor http.Header

func (h headerInterceptor) set(dst http.Header) {
	for k, vs := range h {
		dst[k] = append([]string(nil), vs...)
	}
}

func (h headerInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			h.set(req.Header())
		}
		return next(ctx, req)
	}
}

func (h headerInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		h.set(conn.RequestHeader())
		return conn
	}
}

func (h headerInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}
