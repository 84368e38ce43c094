package wal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// faultFS injects write, truncate and statfs faults through the package's
// seams (write, truncate, statfs) for one test.
type faultFS struct {
	mu sync.Mutex
	// budget, when >= 0, is how many more bytes writes may put on disk;
	// the write that exceeds it writes what fits and fails with errno.
	budget int64
	errno  syscall.Errno
	// headerOnly makes only file-header writes (file creation) fail.
	headerOnly bool
	// failTruncate makes the rollback's truncate fail.
	failTruncate bool
	writes       int // failed writes

	free, total atomic.Int64 // statfs answers
}

func newFaultFS(t *testing.T) *faultFS {
	fs := &faultFS{budget: -1}
	fs.free.Store(100 << 30)
	fs.total.Store(200 << 30)
	write = fs.write
	truncate = fs.truncate
	statfs = func(string) (int64, int64, error) { return fs.free.Load(), fs.total.Load(), nil }
	t.Cleanup(func() {
		write = func(f *os.File, b []byte) (int, error) { return f.Write(b) }
		truncate = func(f *os.File, size int64) error { return f.Truncate(size) }
		statfs = diskSpace
	})
	return fs
}

// fail makes the next write fail with errno after budget bytes.
func (fs *faultFS) fail(budget int64, errno syscall.Errno) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.budget, fs.errno = budget, errno
}

func (fs *faultFS) heal() { fs.fail(-1, 0) }

func (fs *faultFS) write(f *os.File, b []byte) (int, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	isHeader := len(b) == fileHeaderSize && bytes.HasPrefix(b, []byte(fileMagic))
	if fs.budget < 0 || fs.headerOnly && !isHeader || int64(len(b)) <= fs.budget {
		if fs.budget >= 0 && !fs.headerOnly {
			fs.budget -= int64(len(b))
		}
		return f.Write(b)
	}
	fs.writes++
	n, err := f.Write(b[:fs.budget])
	fs.budget = 0
	if err != nil {
		return n, err
	}
	return n, &os.PathError{Op: "write", Path: f.Name(), Err: fs.errno}
}

func (fs *faultFS) truncate(f *os.File, size int64) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.failTruncate {
		return &os.PathError{Op: "truncate", Path: f.Name(), Err: syscall.EIO}
	}
	return f.Truncate(size)
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

func testPayload(i int) []byte { return bytes.Repeat([]byte{byte('a' + i%26)}, 100+i) }

// appendN appends payloads concurrently (so that they may share a group
// commit) and returns the error of each.
func appendN(w *WAL, first, n int) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	wg.Add(n)
	for i := range n {
		w.AppendAsync(testPayload(first+i), func(_ uint64, err error) {
			errs[i] = err
			wg.Done()
		})
	}
	wg.Wait()
	return errs
}

// replayAll reopens dir and returns its payloads by LSN; it fails the test
// if Open had to truncate a torn tail and logs is not nil.
func reopen(t *testing.T, dir string, noSync bool) (payloads [][]byte, logs string) {
	t.Helper()
	var buf bytes.Buffer
	w, err := Open(Options{Dir: dir, NoSync: noSync, Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer w.Close()
	next := w.FirstLSN()
	if err := w.Replay(0, func(lsn uint64, p []byte) error {
		if lsn != next {
			t.Fatalf("replay: lsn %d, want %d", lsn, next)
		}
		next++
		payloads = append(payloads, bytes.Clone(p))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return payloads, buf.String()
}

// TestWriteFailureRollsBack fills the disk at every byte offset of a group
// commit of three records (header, payload, between records), with ENOSPC,
// EDQUOT and EIO: the records of that batch fail (ErrDiskFull for a full
// disk), nothing of them stays in the file, the WAL goes on, and a reopen
// finds exactly the acknowledged records, with no torn tail to repair.
func TestWriteFailureRollbackEveryOffset(t *testing.T) {
	fs := newFaultFS(t)
	batchLen := 0
	for i := 1; i <= 3; i++ {
		batchLen += recHeaderSize + len(testPayload(i))
	}
	for _, errno := range []syscall.Errno{syscall.ENOSPC, syscall.EDQUOT, syscall.EIO} {
		for cut := 0; cut < batchLen; cut += 1 + cut/16 {
			t.Run(fmt.Sprintf("%s/cut-%d", errno, cut), func(t *testing.T) {
				dir := t.TempDir()
				noSync := cut%2 == 1 // both rollback paths; fsync is slow
				var logs bytes.Buffer
				w, err := Open(Options{Dir: dir, NoSync: noSync, MaxBatchDelay: 5 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := w.Append(context.Background(), testPayload(0)); err != nil {
					t.Fatal(err)
				}
				before := fileSize(t, filepath.Join(dir, fileName(1)))
				fs.fail(int64(cut), errno)
				errs := appendN(w, 1, 3)
				fs.heal()
				var acked [][]byte
				acked = append(acked, testPayload(0))
				failed := 0
				for i, err := range errs {
					if err == nil {
						acked = append(acked, testPayload(1+i))
						continue
					}
					failed++
					if got := errors.Is(err, ErrDiskFull); got != (errno != syscall.EIO) {
						t.Errorf("append %d: %v: errors.Is(ErrDiskFull) = %v", i, err, got)
					}
					if !errors.Is(err, errno) || errors.Is(err, ErrFailed) {
						t.Errorf("append %d: %v, want %v and not ErrFailed", i, err, errno)
					}
					if !strings.Contains(err.Error(), "rolled back") {
						t.Errorf("append %d: message %q does not say the write was rolled back", i, err)
					}
				}
				if failed == 0 {
					t.Fatal("no append failed")
				}
				if failed == len(errs) {
					if got := fileSize(t, filepath.Join(dir, fileName(1))); got != before {
						t.Errorf("file size %d after the rollback, want %d", got, before)
					}
				}
				// The WAL goes on: the next append gets the next LSN.
				last := w.LastLSN()
				lsn, err := w.Append(context.Background(), testPayload(9))
				if err != nil || lsn != last+1 {
					t.Fatalf("append after the rollback: lsn %d (want %d), %v", lsn, last+1, err)
				}
				acked = append(acked, testPayload(9))
				if m := w.Metrics(); m.Failed || m.WriteErrors != 1 {
					t.Errorf("metrics: Failed %v WriteErrors %d", m.Failed, m.WriteErrors)
				}
				if !strings.Contains(logs.String(), "write failed and was rolled back") {
					t.Errorf("no WARN about the rollback: %s", logs.String())
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				got, reopenLogs := reopen(t, dir, noSync)
				if !slicesEqual(got, acked) {
					t.Fatalf("after reopen: %d records, want the %d acknowledged ones", len(got), len(acked))
				}
				if strings.Contains(reopenLogs, "torn") {
					t.Errorf("reopen repaired a torn tail after a successful rollback: %s", reopenLogs)
				}
			})
		}
	}
}

func slicesEqual(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// TestWriteFailureRollbackFails: a full disk cuts a batch and the rollback
// (truncate) fails too, as if the process died right there. The WAL fails
// (ErrFailed), and Open truncates the partial batch as a torn tail: every
// acknowledged record is there and the log accepts appends again.
func TestWriteFailureRollbackFails(t *testing.T) {
	fs := newFaultFS(t)
	dir := t.TempDir()
	w, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Append(context.Background(), []byte("ok")); err != nil {
		t.Fatal(err)
	}
	fs.fail(60, syscall.ENOSPC)
	fs.failTruncate = true
	if _, err := w.Append(context.Background(), bytes.Repeat([]byte("x"), 100)); !errors.Is(err, ErrFailed) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Append with a failed rollback: %v, want ErrFailed wrapping ENOSPC", err)
	}
	if _, err := w.Append(context.Background(), []byte("later")); !errors.Is(err, ErrFailed) {
		t.Fatalf("Append after failure: %v", err)
	}
	_ = w.Close()
	fs.heal()
	fs.failTruncate = false

	got, logs := reopen(t, dir, false)
	if len(got) != 1 || string(got[0]) != "ok" || !strings.Contains(logs, "truncating torn tail") {
		t.Fatalf("reopen: %q, log %q", got, logs)
	}
	w, err = Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if lsn, err := w.Append(context.Background(), []byte("again")); err != nil || lsn != 2 {
		t.Fatalf("Append after reopen: lsn %d err %v", lsn, err)
	}
}

// TestRollFailureRetried: the disk is full when the log rolls to a new
// file (its header cannot be written). The batch fails with ErrDiskFull,
// the half-created file is removed, and the next batch rolls.
func TestRollFailureRetried(t *testing.T) {
	fs := newFaultFS(t)
	dir := t.TempDir()
	w, err := Open(Options{Dir: dir, SegmentSize: 1}) // roll before every batch
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Append(context.Background(), []byte("one")); err != nil {
		t.Fatal(err)
	}
	fs.headerOnly = true
	fs.fail(10, syscall.ENOSPC)
	_, err = w.Append(context.Background(), []byte("two"))
	if !errors.Is(err, ErrDiskFull) || errors.Is(err, ErrFailed) {
		t.Fatalf("Append while rolling on a full disk: %v, want ErrDiskFull", err)
	}
	if _, err := os.Stat(filepath.Join(dir, fileName(2))); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("half-created file left behind: %v", err)
	}
	fs.heal()
	if lsn, err := w.Append(context.Background(), []byte("three")); err != nil || lsn != 2 {
		t.Fatalf("Append after space returned: lsn %d, %v", lsn, err)
	}
	if m := w.Metrics(); m.Files != 2 || m.WriteErrors != 1 || m.Failed {
		t.Fatalf("metrics %+v", m)
	}
	w.Close()
	got, _ := reopen(t, dir, false)
	if len(got) != 2 || string(got[0]) != "one" || string(got[1]) != "three" {
		t.Fatalf("reopen: %q", got)
	}
}

// TestSpaceWatermark: CheckSpace refuses below MinFreeBytes with a message
// naming the directory, the free bytes and the watermark; it reuses a
// measurement for up to 100 ms (on a fake clock) but measures again after
// a truncation; the change is logged once each way and counted.
func TestSpaceWatermark(t *testing.T) {
	fs := newFaultFS(t)
	dir := t.TempDir()
	var logs bytes.Buffer
	var logMu sync.Mutex
	clock := &fakeClock{now: time.Now()}
	opts := Options{Dir: dir, NoSync: true, SegmentSize: 1, Logger: slog.New(slog.NewTextHandler(lockedWriter{&logs, &logMu}, nil)), now: clock.Now}
	opts.MinFreeBytes = 512 << 20
	opts.minFreeFlag = "-wal.min-free-bytes"
	w, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.CheckSpace(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Append(context.Background(), []byte("a")); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Append(context.Background(), []byte("b")); err != nil { // rolls
		t.Fatal(err)
	}

	fs.free.Store(40 << 20)
	w.space.refresh()
	err = w.CheckSpace()
	want := "WAL disk nearly full: 40 MiB free in " + dir + ", below -wal.min-free-bytes 512 MiB; writes resume when space is freed (segments flushed to the object store free it)"
	if !errors.Is(err, ErrDiskFull) || err.Error() != want {
		t.Fatalf("CheckSpace: %v\nwant %s", err, want)
	}
	var se *SpaceError
	if !errors.As(err, &se) || se.Free != 40<<20 || se.Min != 512<<20 || se.Err != nil {
		t.Fatalf("SpaceError %+v", se)
	}
	// Space returns: within 100 ms the cached reading still refuses...
	fs.free.Store(1 << 30)
	clock.advance(spaceRefresh - time.Nanosecond)
	if err := w.CheckSpace(); err == nil {
		t.Fatal("CheckSpace measured again within 100 ms")
	}
	// ...but a truncation that deletes a file measures at once.
	if err := w.TruncateBefore(w.LastLSN() + 1); err != nil {
		t.Fatal(err)
	}
	if err := w.CheckSpace(); err != nil {
		t.Fatalf("CheckSpace after a truncation freed space: %v", err)
	}
	// And without any event, after 100 ms.
	fs.free.Store(1 << 20)
	clock.advance(spaceRefresh)
	if err := w.CheckSpace(); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("CheckSpace 100 ms after the disk filled: %v", err)
	}
	m := w.Metrics()
	if m.SpaceRejections != 3 || m.FreeBytes != 1<<20 {
		t.Fatalf("metrics: SpaceRejections %d FreeBytes %d", m.SpaceRejections, m.FreeBytes)
	}
	logMu.Lock()
	out := logs.String()
	logMu.Unlock()
	if n := strings.Count(out, "disk nearly full"); n != 2 {
		t.Errorf("%d WARN lines about a full disk, want 2 (one per crossing):\n%s", n, out)
	}
	if n := strings.Count(out, "disk space available again"); n != 1 {
		t.Errorf("%d INFO lines about space returning, want 1:\n%s", n, out)
	}
}

// fakeClock stands still until advanced.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type lockedWriter struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// TestWatermarkDisabledAndTooLarge: 0 disables the check; a watermark not
// below the filesystem's size is refused by Open, naming the flag.
func TestWatermarkDisabledAndTooLarge(t *testing.T) {
	fs := newFaultFS(t)
	fs.free.Store(0)
	fs.total.Store(64 << 20)
	w, err := Open(Options{Dir: t.TempDir(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.CheckSpace(); err != nil {
		t.Fatalf("CheckSpace with the watermark disabled: %v", err)
	}
	w.Close()

	opts := Options{Dir: t.TempDir(), NoSync: true, MinFreeBytes: 64 << 20, minFreeFlag: "-wal.min-free-bytes"}
	_, err = Open(opts)
	if err == nil || !strings.Contains(err.Error(), "-wal.min-free-bytes 64 MiB is not below the size of the filesystem") {
		t.Fatalf("Open with a watermark as large as the disk: %v", err)
	}
	// The lock was released: a valid Open of the same directory works.
	opts.MinFreeBytes = 1 << 20
	w, err = Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
}

// TestTruncateRollsActiveFileWhenLow: below the watermark, releasing every
// record deletes the active file too (the committer rolls first), so that
// space returns without a write, which the watermark would refuse.
func TestTruncateRollsActiveFileWhenLow(t *testing.T) {
	fs := newFaultFS(t)
	dir := t.TempDir()
	w, err := Open(Options{Dir: dir, NoSync: true, MinFreeBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := range 5 {
		if _, err := w.Append(context.Background(), testPayload(i)); err != nil {
			t.Fatal(err)
		}
	}
	// With space, releasing everything keeps the active file.
	if err := w.TruncateBefore(6); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if _, err := os.Stat(filepath.Join(dir, fileName(1))); err != nil {
		t.Fatalf("active file deleted with space left: %v", err)
	}
	fs.free.Store(1 << 10)
	w.space.refresh()
	if err := w.TruncateBefore(6); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := os.Stat(filepath.Join(dir, fileName(1)))
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the released active file was not deleted")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if w.FirstLSN() != 6 || w.LastLSN() != 5 {
		t.Fatalf("FirstLSN %d LastLSN %d, want 6 5", w.FirstLSN(), w.LastLSN())
	}
	fs.free.Store(1 << 30)
	w.space.refresh()
	if lsn, err := w.Append(context.Background(), []byte("next")); err != nil || lsn != 6 {
		t.Fatalf("Append: lsn %d, %v", lsn, err)
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{
		0: "0 B", 17: "17 B", 1023: "1023 B", 1024: "1 KiB", 1536: "1.5 KiB",
		40 << 20: "40 MiB", 512 << 20: "512 MiB", 3 << 29: "1.5 GiB", -1: "-1 B",
	} {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
