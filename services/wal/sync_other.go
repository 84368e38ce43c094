//go:build !linux

package wal

import "os"

// syncData is fsync(2) where fdatasync is not available.
func syncData(f *os.File) error { return f.Sync() }
