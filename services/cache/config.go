package cache

import (
	"errors"
	"flag"
	"fmt"
)

// Defaults and limits of [Config].
const (
	// DefaultMaxBytes is the default bound on the cache's bytes on disk.
	DefaultMaxBytes int64 = 1 << 30
	// DefaultBlockSize is the default size of a cached block.
	DefaultBlockSize int64 = 1 << 20
	// MaxBlockSize is the largest BlockSize Validate accepts: a block is
	// held in memory while it is fetched.
	MaxBlockSize int64 = 64 << 20
)

// Config configures a [Cache].
type Config struct {
	// Disabled turns the cache off: reads go to the object store.
	Disabled bool `yaml:"disabled"`
	// Dir is the cache directory. The cache owns the subdirectories named
	// "blocks-<block size>" in it and leaves everything else alone. Only one
	// Cache may use a Dir at a time.
	Dir string `yaml:"dir"`
	// MaxBytes bounds the bytes of the cached block files on disk (data plus
	// an 8-byte trailer per block). It must be at least twice BlockSize.
	MaxBytes int64 `yaml:"max_bytes"`
	// BlockSize is the unit of caching: objects are cached as aligned
	// blocks of this many bytes (the last block of an object may be
	// shorter). Changing it discards the blocks cached with the old size.
	BlockSize int64 `yaml:"block_size"`
}

// RegisterFlags registers the Config flags, each name prefixed with prefix
// (e.g. "cache." gives -cache.dir, -cache.max-bytes, -cache.block-size),
// with their defaults.
func (c *Config) RegisterFlags(prefix string, f *flag.FlagSet) {
	f.BoolVar(&c.Disabled, prefix+"disabled", false, "Read segment ranges from the object store without the local disk cache.")
	f.StringVar(&c.Dir, prefix+"dir", "", "Directory of the local disk cache of object byte ranges (default <data-dir>/cache).")
	f.Int64Var(&c.MaxBytes, prefix+"max-bytes", DefaultMaxBytes, "Upper bound on the bytes the read cache keeps on disk; least recently used blocks are evicted beyond it. At least twice the block size.")
	f.Int64Var(&c.BlockSize, prefix+"block-size", DefaultBlockSize, fmt.Sprintf("Size of the aligned blocks the read cache fetches and stores, in bytes (1 to %d). Changing it discards the cached blocks.", MaxBlockSize))
}

// setDefaults replaces zero sizes by their defaults.
func (c *Config) setDefaults() {
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.BlockSize == 0 {
		c.BlockSize = DefaultBlockSize
	}
}

// Validate reports the first invalid field, naming it and its limit.
func (c *Config) Validate() error {
	if c.Disabled {
		return nil
	}
	switch {
	case c.Dir == "":
		return errors.New("cache: dir: must not be empty")
	case c.BlockSize < 1 || c.BlockSize > MaxBlockSize:
		return fmt.Errorf("cache: block_size: %d is not between 1 and %d", c.BlockSize, MaxBlockSize)
	case c.MaxBytes < 2*c.BlockSize:
		return fmt.Errorf("cache: max_bytes: %d is less than twice block_size (%d)", c.MaxBytes, 2*c.BlockSize)
	}
	return nil
}
