package objstore

import (
	"context"
	"flag"
	"fmt"
)

// Backends for [Config.Backend].
const (
	BackendFilesystem = "filesystem"
	BackendS3         = "s3"
)

// Config selects and configures the object store of a Strom process.
type Config struct {
	// Backend is BackendFilesystem (the default, for a single process) or
	// BackendS3.
	Backend string `yaml:"backend"`
	// S3 configures the S3 backend.
	S3 S3Config `yaml:"s3"`
	// Filesystem configures the filesystem backend.
	Filesystem FSConfig `yaml:"filesystem"`
}

// RegisterFlags registers the flags of Config and of both backends, each
// name prefixed with prefix (e.g. "objstore." gives -objstore.backend,
// -objstore.s3.bucket, -objstore.filesystem.dir).
func (c *Config) RegisterFlags(prefix string, f *flag.FlagSet) {
	f.StringVar(&c.Backend, prefix+"backend", BackendFilesystem, "Object store backend: filesystem (a local directory, for one process) or s3.")
	c.S3.RegisterFlags(prefix+"s3.", f)
	c.Filesystem.RegisterFlags(prefix+"filesystem.", f)
}

// Validate reports the first invalid field, checking only the selected
// backend.
func (c *Config) Validate() error {
	switch c.Backend {
	case BackendFilesystem:
		return c.Filesystem.Validate()
	case BackendS3:
		return c.S3.Validate()
	default:
		return fmt.Errorf("objstore: backend: %q is not %q or %q", c.Backend, BackendFilesystem, BackendS3)
	}
}

// New returns the Bucket that cfg selects.
func New(ctx context.Context, cfg Config) (Bucket, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch cfg.Backend {
	case BackendS3:
		return NewS3(ctx, cfg.S3)
	default:
		return NewFS(cfg.Filesystem)
	}
}
