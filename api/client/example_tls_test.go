package client_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log"
	"net/http"
	"os"

	"connectrpc.com/connect"

	"github.com/strom-io/strom/api/client"
	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
)

// Example_tls talks to a server started with -server.tls-cert-file and
// -server.tls-key-file whose certificate a private CA (ca.pem) signed: any
// http.Client with that CA in its RootCAs will do. ProtocolGRPC negotiates
// HTTP/2 by ALPN over the same client. It needs a running server, so it has
// no checked output.
func Example_tls() {
	pem, err := os.ReadFile("ca.pem")
	if err != nil {
		log.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		log.Fatal("ca.pem holds no certificate")
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	c := client.New("https://strom.example:9123", client.WithHTTPClient(&http.Client{Transport: t}))
	resp, err := c.Admin().ListDatabases(context.Background(), connect.NewRequest(&stromv1.ListDatabasesRequest{}))
	if err != nil {
		log.Fatal(err)
	}
	log.Println(len(resp.Msg.GetDatabases()), "databases")
}
