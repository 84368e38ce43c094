package rest_test

import (
	"flag"
	"strings"
	"testing"

	"github.com/strom-io/strom/tiering/rest"
)

func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  rest.Config
		err  string // substring; empty for valid
	}{
		{name: "zero", cfg: rest.Config{}},
		{name: "full", cfg: rest.Config{Warehouse: "s3://b/lake", Prefix: "strom-lake_1.0", S3Endpoint: "https://s3.example.com:9000", S3Region: "eu-west-1", S3PathStyle: true}},
		{name: "vending", cfg: rest.Config{VendCredentials: true, S3AccessKeyID: "k", S3SecretAccessKey: "s"}},
		{name: "keys without vending", cfg: rest.Config{S3AccessKeyID: "k", S3SecretAccessKey: "s"}},
		{name: "prefix with slash", cfg: rest.Config{Prefix: "a/b"}, err: "prefix"},
		{name: "prefix dots", cfg: rest.Config{Prefix: ".."}, err: "prefix"},
		{name: "prefix route word", cfg: rest.Config{Prefix: "namespaces"}, err: "route name"},
		{name: "prefix config", cfg: rest.Config{Prefix: "config"}, err: "route name"},
		{name: "endpoint without scheme", cfg: rest.Config{S3Endpoint: "minio:9000"}, err: "s3_endpoint"},
		{name: "endpoint ftp", cfg: rest.Config{S3Endpoint: "ftp://minio"}, err: "s3_endpoint"},
		{name: "vending without keys", cfg: rest.Config{VendCredentials: true, S3AccessKeyID: "k"}, err: "vend_credentials"},
	} {
		err := c.cfg.Validate()
		if (err == nil) != (c.err == "") || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%s: Validate() = %v, want error with %q", c.name, err, c.err)
		}
	}
}

func TestConfigFlags(t *testing.T) {
	var cfg rest.Config
	fs := flag.NewFlagSet("strom", flag.ContinueOnError)
	cfg.RegisterFlags("iceberg-rest.", fs)
	if cfg.S3Region != "us-east-1" || !cfg.S3PathStyle || cfg.VendCredentials {
		t.Errorf("defaults = %+v, want region us-east-1, path style on, vending off", cfg)
	}
	if err := fs.Parse([]string{"-iceberg-rest.prefix=strom", "-iceberg-rest.vend-credentials", "-iceberg-rest.s3-access-key-id=k", "-iceberg-rest.s3-secret-access-key=s"}); err != nil {
		t.Fatal(err)
	}
	if cfg.Prefix != "strom" || !cfg.VendCredentials || cfg.S3AccessKeyID != "k" || cfg.S3SecretAccessKey != "s" {
		t.Errorf("parsed = %+v", cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Error(err)
	}
}
