package testenv_test

import (
	"context"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/strom-io/strom/testenv"
)

// TestMain is the one of the whole testenv test binary: other _test.go
// files of the package must not declare another.
func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// TestS3Isolated checks that every S3 call gets its own empty place that
// works for writes and reads.
func TestS3Isolated(t *testing.T) {
	a, b := testenv.S3(t), testenv.S3(t)
	if a.Bucket+"/"+a.Prefix == b.Bucket+"/"+b.Prefix {
		t.Fatalf("two calls share s3://%s/%s", a.Bucket, a.Prefix)
	}
	if a.Endpoint == "" || a.Region == "" {
		t.Fatalf("incomplete endpoint %+v", a)
	}
	ctx := t.Context()
	ca := a.Client(t)
	key := a.Prefix + "hello"
	if _, err := ca.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(a.Bucket), Key: aws.String(key), Body: strings.NewReader("world"),
	}); err != nil {
		t.Fatalf("PutObject: %v", err)
	}
	out, err := ca.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(a.Bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("GetObject: %v", err)
	}
	got, err := io.ReadAll(out.Body)
	out.Body.Close()
	if err != nil || string(got) != "world" {
		t.Fatalf("GetObject = %q, %v; want world", got, err)
	}
	list, err := b.Client(t).ListObjectsV2(ctx, &s3.ListObjectsV2Input{
		Bucket: aws.String(b.Bucket), Prefix: aws.String(b.Prefix),
	})
	if err != nil {
		t.Fatalf("ListObjectsV2: %v", err)
	}
	if len(list.Contents) != 0 {
		t.Fatalf("second place holds %d objects, want none", len(list.Contents))
	}
}

// TestS3ServerStopStart checks that a dedicated server refuses requests
// while stopped and keeps its objects across a restart on the same
// endpoint.
func TestS3ServerStopStart(t *testing.T) {
	srv := testenv.StartS3(t)
	ep := srv.Endpoint(t)
	if ep.Endpoint == "" || ep.Bucket == "" {
		t.Fatalf("incomplete endpoint %+v", ep)
	}
	if other := srv.Endpoint(t); other.Bucket == ep.Bucket || other.Endpoint != ep.Endpoint {
		t.Fatalf("second endpoint %+v, first %+v", other, ep)
	}
	c := ep.Client(t)
	key := ep.Prefix + "hello"
	get := func(ctx context.Context) (string, error) {
		out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(ep.Bucket), Key: aws.String(key)})
		if err != nil {
			return "", err
		}
		defer out.Body.Close()
		b, err := io.ReadAll(out.Body)
		return string(b), err
	}
	if _, err := c.PutObject(t.Context(), &s3.PutObjectInput{
		Bucket: aws.String(ep.Bucket), Key: aws.String(key), Body: strings.NewReader("world"),
	}); err != nil {
		t.Fatalf("PutObject: %v", err)
	}

	srv.Stop(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	_, err := get(ctx)
	cancel()
	if err == nil {
		t.Fatal("GetObject succeeded while the server was stopped")
	}
	if _, err := c.PutObject(t.Context(), &s3.PutObjectInput{
		Bucket: aws.String(ep.Bucket), Key: aws.String(key + "2"), Body: strings.NewReader("x"),
	}); err == nil {
		t.Fatal("PutObject succeeded while the server was stopped")
	}

	srv.Start(t)
	if got, err := get(t.Context()); err != nil || got != "world" {
		t.Fatalf("GetObject after restart = %q, %v; want world", got, err)
	}
	// Stop and Start again: the cycle repeats.
	srv.Stop(t)
	srv.Start(t)
	if got, err := get(t.Context()); err != nil || got != "world" {
		t.Fatalf("GetObject after second restart = %q, %v; want world", got, err)
	}
}
