//go:build !linux && !darwin

package wal

import "errors"

// diskSpace is not implemented on this platform: the free-space watermark
// is not applied (a WARN says so once).
func diskSpace(string) (free, total int64, err error) {
	return 0, 0, errors.New("free disk space is not measured on this platform")
}

func isQuota(error) bool { return false }
