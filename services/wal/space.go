package wal

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// DefaultMinFreeBytes is the default of the min-free-bytes flag: 512 MiB.
// Below the watermark new writes are refused, but writes already admitted
// still reach the log: up to the writer's max pending bytes (256 MiB by
// default) plus a file roll. 512 MiB covers that with room for the KV
// state and the read cache on the same disk, and is noise on any disk a
// frontend should run on. Smaller disks lower it (Open refuses a watermark
// not below the filesystem's size).
const DefaultMinFreeBytes = 512 << 20

// spaceRefresh is how long a free-space reading is reused.
const spaceRefresh = 100 * time.Millisecond

// ErrDiskFull means the WAL's filesystem is (nearly) full: an append was
// refused because free space is below Options.MinFreeBytes (CheckSpace), or
// a write failed with ENOSPC (or EDQUOT) and was rolled back. Neither fails
// the WAL: writes succeed again once space is freed. The error is a
// *SpaceError.
var ErrDiskFull = errors.New("wal: disk full")

// SpaceError reports that the WAL's filesystem is (nearly) full. It
// matches ErrDiskFull with errors.Is.
type SpaceError struct {
	// Dir is the WAL directory.
	Dir string
	// Free is the space available to the process in Dir's filesystem when
	// it was last measured, -1 if unknown.
	Free int64
	// Min is the watermark (Options.MinFreeBytes), 0 when disabled.
	Min int64
	// Flag names the watermark setting, e.g. "-wal.min-free-bytes".
	Flag string
	// Err is the failed write when the disk really filled up; nil when the
	// watermark refused the append before anything was written.
	Err error
}

func (e *SpaceError) Error() string {
	const resume = "writes resume when space is freed (segments flushed to the object store free it)"
	if e.Err == nil {
		return fmt.Sprintf("WAL disk nearly full: %s free in %s, below %s %s; %s",
			FormatBytes(e.Free), e.Dir, e.Flag, FormatBytes(e.Min), resume)
	}
	free := "unknown space"
	if e.Free >= 0 {
		free = FormatBytes(e.Free)
	}
	watermark := ""
	if e.Min > 0 {
		watermark = fmt.Sprintf(", %s %s", e.Flag, FormatBytes(e.Min))
	}
	return fmt.Sprintf("WAL disk full: %v (%s free in %s%s); the write was rolled back and nothing of it was acknowledged; %s",
		e.Err, free, e.Dir, watermark, resume)
}

// Is reports whether target is ErrDiskFull.
func (e *SpaceError) Is(target error) bool { return target == ErrDiskFull }

// Unwrap returns the write error, if any.
func (e *SpaceError) Unwrap() error { return e.Err }

// FormatBytes formats n with binary units: "17 B", "40 MiB", "1.5 GiB".
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit && n > -unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	v, i := float64(n), -1
	for (v >= unit || v <= -unit) && i < 5 {
		v /= unit
		i++
	}
	s := strconv.FormatFloat(v, 'f', 1, 64)
	if len(s) > 2 && s[len(s)-2:] == ".0" {
		s = s[:len(s)-2]
	}
	return s + " " + string("KMGTPE"[i]) + "iB"
}

// statfs returns the bytes available to unprivileged users and the size of
// the filesystem holding dir. It is a variable so that tests can fake a
// full disk.
var statfs = diskSpace

// space measures the free space of the WAL's filesystem, at most every
// spaceRefresh (and when told: after a roll, a truncation, a failed write),
// and applies the watermark.
type space struct {
	dir  string
	min  int64
	flag string
	log  *slog.Logger
	now  func() time.Time
	base time.Time // monotonic origin of at

	mu       sync.Mutex   // serializes measurements
	at       atomic.Int64 // nanoseconds after base of the last measurement, -1 never
	free     atomic.Int64 // bytes available at the last measurement, -1 unknown
	total    atomic.Int64 // size of the filesystem, -1 unknown
	low      atomic.Bool  // free < min at the last measurement
	statErr  bool         // the last measurement failed (guarded by mu)
	rejected atomic.Uint64
}

func newSpace(dir string, min int64, flag string, log *slog.Logger, now func() time.Time) *space {
	if flag == "" {
		flag = "Options.MinFreeBytes"
	}
	if now == nil {
		now = time.Now
	}
	s := &space{dir: dir, min: min, flag: flag, log: log, now: now, base: now()}
	s.at.Store(-1)
	s.free.Store(-1)
	s.total.Store(-1)
	return s
}

// refresh measures now.
func (s *space) refresh() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.measure()
}

// maybeRefresh measures if the last measurement is older than
// spaceRefresh and no other goroutine is measuring.
func (s *space) maybeRefresh() {
	at := s.at.Load()
	if at >= 0 && s.now().Sub(s.base)-time.Duration(at) < spaceRefresh {
		return
	}
	if s.mu.TryLock() {
		s.measure()
		s.mu.Unlock()
	}
}

// measure runs statfs; s.mu is held.
func (s *space) measure() {
	free, total, err := statfs(s.dir)
	s.at.Store(int64(s.now().Sub(s.base)))
	if err != nil {
		if !s.statErr {
			s.log.Warn("wal: cannot measure free disk space; the free-space watermark is not applied", "dir", s.dir, "err", err)
		}
		s.statErr = true
		s.free.Store(-1)
		s.low.Store(false)
		return
	}
	s.statErr = false
	s.free.Store(free)
	s.total.Store(total)
	low := s.min > 0 && free < s.min
	if low != s.low.Swap(low) {
		if low {
			s.log.Warn("wal: disk nearly full; refusing new writes until space is freed",
				"dir", s.dir, "free", FormatBytes(free), "min_free", FormatBytes(s.min), "flag", s.flag)
		} else {
			s.log.Info("wal: disk space available again; accepting writes",
				"dir", s.dir, "free", FormatBytes(free), "min_free", FormatBytes(s.min))
		}
	}
}

// check returns a *SpaceError if free space is below the watermark.
func (s *space) check() error {
	if s.min <= 0 {
		return nil
	}
	s.maybeRefresh()
	if !s.low.Load() {
		return nil
	}
	s.rejected.Add(1)
	return &SpaceError{Dir: s.dir, Free: s.free.Load(), Min: s.min, Flag: s.flag}
}

// writeError classifies the error of a write (or file creation) that was
// rolled back: a full disk becomes a *SpaceError.
func (s *space) writeError(op string, err error) error {
	if errors.Is(err, syscall.ENOSPC) || isQuota(err) {
		s.refresh()
		if op != "" {
			err = fmt.Errorf("%s: %w", op, err)
		}
		return &SpaceError{Dir: s.dir, Free: s.free.Load(), Min: s.min, Flag: s.flag, Err: err}
	}
	if op != "" {
		err = fmt.Errorf("wal: %s: %w", op, err)
	}
	return fmt.Errorf("%w; the write was rolled back and nothing of it was acknowledged", err)
}

// CheckSpace returns an error matching ErrDiskFull (a *SpaceError naming
// the directory, the free bytes and the watermark) when the free space of
// the WAL's filesystem is below Options.MinFreeBytes, else nil. It is cheap
// enough to call before every append: the free space is measured (statfs)
// at most every 100 ms, and after every file roll, truncation and failed
// write. It writes nothing; callers call it before they accept a write.
func (w *WAL) CheckSpace() error { return w.space.check() }
