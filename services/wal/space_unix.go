//go:build linux || darwin

package wal

import (
	"errors"
	"syscall"
)

// diskSpace is statfs(2): the bytes available to unprivileged users and
// the size of the filesystem holding dir.
func diskSpace(dir string) (free, total int64, err error) {
	var st syscall.Statfs_t
	for {
		err = syscall.Statfs(dir, &st)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		return 0, 0, err
	}
	bs := uint64(st.Bsize)
	return int64(uint64(st.Bavail) * bs), int64(uint64(st.Blocks) * bs), nil
}

func isQuota(err error) bool { return errors.Is(err, syscall.EDQUOT) }
