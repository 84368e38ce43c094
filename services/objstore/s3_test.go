package objstore_test

import (
	"context"
	"errors"
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/strom-io/strom/services/objstore"
	"github.com/strom-io/strom/services/objstore/objstoretest"
	"github.com/strom-io/strom/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

func s3Config(ep testenv.S3Endpoint) objstore.S3Config {
	return objstore.S3Config{
		Endpoint:        ep.Endpoint,
		Region:          ep.Region,
		Bucket:          ep.Bucket,
		Prefix:          ep.Prefix,
		AccessKeyID:     ep.AccessKey,
		SecretAccessKey: ep.SecretKey,
	}
}

func newS3(t testing.TB, cfg objstore.S3Config) *objstore.S3 {
	t.Helper()
	b, err := objstore.NewS3(t.Context(), cfg)
	if err != nil {
		t.Fatalf("NewS3: %v", err)
	}
	return b
}

func TestS3(t *testing.T) {
	objstoretest.Run(t, func(t *testing.T) objstore.Bucket {
		return newS3(t, s3Config(testenv.S3(t)))
	})
}

// TestS3Prefix runs the suite inside a prefix and checks that keys land
// under it and that objects outside it stay invisible.
func TestS3Prefix(t *testing.T) {
	objstoretest.Run(t, func(t *testing.T) objstore.Bucket {
		ep := testenv.S3(t)
		cfg := s3Config(ep)
		cfg.Prefix = ep.Prefix + "tenant/strom/"
		// A neighbour whose keys share the prefix string but not the
		// directory must not show up.
		neighbour := s3Config(ep)
		neighbour.Prefix = ep.Prefix + "tenant/strom-other"
		n := newS3(t, neighbour)
		if err := n.Put(t.Context(), "seg/000/a", strings.NewReader("n"), 1); err != nil {
			t.Fatalf("Put in the neighbour prefix: %v", err)
		}
		return newS3(t, cfg)
	})

	ep := testenv.S3(t)
	cfg := s3Config(ep)
	cfg.Prefix = ep.Prefix + "p/q"
	b := newS3(t, cfg)
	if err := b.Put(t.Context(), "k/1", strings.NewReader("v"), 1); err != nil {
		t.Fatal(err)
	}
	// Check where the object is with the SDK directly.
	out, err := ep.Client(t).HeadObject(t.Context(), &s3.HeadObjectInput{
		Bucket: aws.String(ep.Bucket),
		Key:    aws.String(ep.Prefix + "p/q/k/1"),
	})
	if err != nil || aws.ToInt64(out.ContentLength) != 1 {
		t.Fatalf("HEAD %sp/q/k/1 = %v; want the object written through the prefixed Bucket", ep.Prefix, err)
	}
}

func TestS3MissingBucket(t *testing.T) {
	ep := testenv.S3(t)
	cfg := s3Config(ep)
	cfg.Bucket = ep.Bucket + "-missing"
	b := newS3(t, cfg)
	_, err := b.Get(t.Context(), "k")
	if err == nil || errors.Is(err, objstore.ErrNotExist) || !strings.Contains(err.Error(), "NoSuchBucket") {
		t.Fatalf("Get from a missing bucket = %v; want an error naming NoSuchBucket that is not ErrNotExist", err)
	}
}

func TestS3Unavailable(t *testing.T) {
	cfg := objstore.S3Config{
		Endpoint:        "http://127.0.0.1:1", // nothing listens on port 1
		Bucket:          "b",
		AccessKeyID:     "k",
		SecretAccessKey: "s",
		MaxAttempts:     2,
	}
	b := newS3(t, cfg)
	ctx := t.Context()
	_, err := b.Size(ctx, "k")
	if !errors.Is(err, objstore.ErrUnavailable) {
		t.Fatalf("Size against a closed port = %v, want ErrUnavailable", err)
	}
	if err := b.Put(ctx, "k", strings.NewReader("v"), 1); !errors.Is(err, objstore.ErrUnavailable) {
		t.Fatalf("Put against a closed port = %v, want ErrUnavailable", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := b.Size(ctx, "k"); errors.Is(err, objstore.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Size with a canceled context = %v, want context.Canceled and not ErrUnavailable", err)
	}
}

func TestS3ConfigValidate(t *testing.T) {
	valid := objstore.S3Config{Bucket: "b"}
	tests := []struct {
		name  string
		edit  func(c *objstore.S3Config)
		field string // "" means valid
	}{
		{"minimal", func(*objstore.S3Config) {}, ""},
		{"full", func(c *objstore.S3Config) {
			c.Endpoint, c.Region, c.Prefix = "https://minio.example.com:9000", "eu-west-1", "strom/prod/"
			c.AccessKeyID, c.SecretAccessKey = "k", "s"
		}, ""},
		{"no bucket", func(c *objstore.S3Config) { c.Bucket = "" }, "bucket"},
		{"bucket with path", func(c *objstore.S3Config) { c.Bucket = "b/p" }, "bucket"},
		{"endpoint without scheme", func(c *objstore.S3Config) { c.Endpoint = "minio:9000" }, "endpoint"},
		{"endpoint ftp", func(c *objstore.S3Config) { c.Endpoint = "ftp://x" }, "endpoint"},
		{"only access key", func(c *objstore.S3Config) { c.AccessKeyID = "k" }, "access_key_id"},
		{"only secret", func(c *objstore.S3Config) { c.SecretAccessKey = "s" }, "secret_access_key"},
		{"prefix leading slash", func(c *objstore.S3Config) { c.Prefix = "/strom" }, "prefix"},
		{"prefix dot-dot", func(c *objstore.S3Config) { c.Prefix = "a/../b" }, "prefix"},
		{"negative attempts", func(c *objstore.S3Config) { c.MaxAttempts = -1 }, "max_attempts"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := valid
			tc.edit(&c)
			err := c.Validate()
			switch {
			case tc.field == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tc.field != "" && (err == nil || !strings.Contains(err.Error(), tc.field)):
				t.Fatalf("Validate() = %v, want an error naming %q", err, tc.field)
			}
		})
	}
}

func TestConfigFlags(t *testing.T) {
	var c objstore.Config
	fs := flag.NewFlagSet("strom", flag.ContinueOnError)
	c.RegisterFlags("objstore.", fs)
	if c.Backend != objstore.BackendFilesystem || c.Filesystem.Dir != "" || c.S3.MaxAttempts != 3 || c.S3.ForcePathStyle != nil {
		t.Fatalf("defaults = %+v", c)
	}
	err := fs.Parse([]string{
		"-objstore.backend=s3",
		"-objstore.s3.bucket=data",
		"-objstore.s3.endpoint=http://127.0.0.1:9000",
		"-objstore.s3.force-path-style=false",
		"-objstore.s3.prefix=strom",
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Backend != "s3" || c.S3.Bucket != "data" || c.S3.Endpoint != "http://127.0.0.1:9000" ||
		c.S3.Prefix != "strom" || c.S3.ForcePathStyle == nil || *c.S3.ForcePathStyle {
		t.Fatalf("parsed = %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	c.Backend = "gcs"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "backend") {
		t.Fatalf("Validate(backend gcs) = %v, want an error naming backend", err)
	}
}
