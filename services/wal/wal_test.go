package wal_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strom-io/strom/services/wal"
)

// logBuf collects log output for assertions.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func open(t testing.TB, opts wal.Options) *wal.WAL {
	t.Helper()
	w, err := wal.Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return w
}

func appendAll(t testing.TB, w *wal.WAL, payloads ...[]byte) {
	t.Helper()
	for _, p := range payloads {
		want := w.LastLSN() + 1
		lsn, err := w.Append(context.Background(), p)
		if err != nil {
			t.Fatalf("Append: %v", err)
		}
		if lsn != want {
			t.Fatalf("Append returned lsn %d, want %d", lsn, want)
		}
	}
}

type rec struct {
	lsn     uint64
	payload string
}

func replay(t testing.TB, w *wal.WAL, from uint64) []rec {
	t.Helper()
	var got []rec
	if err := w.Replay(from, func(lsn uint64, p []byte) error {
		got = append(got, rec{lsn, string(p)})
		return nil
	}); err != nil {
		t.Fatalf("Replay(%d): %v", from, err)
	}
	return got
}

func payload(i int) []byte { return fmt.Appendf(nil, "record-%04d", i) }

// recs returns the records first..last as written with payload(lsn).
func recs(first, last uint64) []rec {
	var out []rec
	for l := first; l <= last; l++ {
		out = append(out, rec{l, string(payload(int(l)))})
	}
	return out
}

func walFiles(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.wal"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(m)
	return m
}

func firstFile(dir string) string { return filepath.Join(dir, "00000000000000000001.wal") }

func TestAppendReplayReopen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "wal") // Open creates it
	w := open(t, wal.Options{Dir: dir})
	if w.FirstLSN() != 1 || w.LastLSN() != 0 {
		t.Fatalf("new WAL: FirstLSN %d LastLSN %d, want 1 0", w.FirstLSN(), w.LastLSN())
	}
	for i := 1; i <= 10; i++ {
		appendAll(t, w, payload(i))
	}
	if lsn, err := w.Append(context.Background(), nil); err != nil || lsn != 11 {
		t.Fatalf("empty payload: lsn %d err %v", lsn, err)
	}
	want := append(recs(1, 10), rec{11, ""})
	if got := replay(t, w, 0); !slices.Equal(got, want) {
		t.Fatalf("Replay(0) = %v, want %v", got, want)
	}
	if got := replay(t, w, 5); !slices.Equal(got, want[4:]) {
		t.Fatalf("Replay(5) = %v", got)
	}
	if got := replay(t, w, 12); len(got) != 0 {
		t.Fatalf("Replay(12) = %v, want nothing", got)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	w = open(t, wal.Options{Dir: dir})
	defer w.Close()
	if w.FirstLSN() != 1 || w.LastLSN() != 11 {
		t.Fatalf("reopened: FirstLSN %d LastLSN %d, want 1 11", w.FirstLSN(), w.LastLSN())
	}
	if got := replay(t, w, 1); !slices.Equal(got, want) {
		t.Fatalf("Replay after reopen = %v", got)
	}
	appendAll(t, w, payload(12))
	stop := errors.New("stop")
	n := 0
	if err := w.Replay(1, func(uint64, []byte) error { n++; return stop }); err != stop || n != 1 {
		t.Fatalf("Replay with failing fn: err %v after %d calls, want stop after 1", err, n)
	}
}

func TestGroupCommitBatches(t *testing.T) {
	const appenders, each = 32, 50
	var commits atomic.Int64
	w := open(t, wal.Options{Dir: t.TempDir(), OnCommit: func(wal.CommitInfo) { commits.Add(1) }})
	defer w.Close()
	var wg sync.WaitGroup
	lsns := make([][]uint64, appenders)
	for g := range appenders {
		wg.Go(func() {
			for i := range each {
				lsn, err := w.Append(context.Background(), fmt.Appendf(nil, "%d/%d", g, i))
				if err != nil {
					t.Error(err)
					return
				}
				lsns[g] = append(lsns[g], lsn)
			}
		})
	}
	wg.Wait()
	m := w.Metrics()
	t.Logf("metrics: %+v (%.2f records per fsync)", m, float64(m.Appends)/float64(m.Fsyncs))
	if m.Appends != appenders*each {
		t.Fatalf("Appends = %d, want %d", m.Appends, appenders*each)
	}
	if m.Fsyncs >= m.Appends {
		t.Fatalf("no group commit: %d fsyncs for %d appends", m.Fsyncs, m.Appends)
	}
	if m.Batches != m.Fsyncs || uint64(commits.Load()) != m.Batches {
		t.Fatalf("Batches %d, Fsyncs %d, OnCommit calls %d: want all equal", m.Batches, m.Fsyncs, commits.Load())
	}
	// Every LSN was returned once, each appender's in increasing order, and
	// each replays with its own payload.
	seen := map[uint64]string{}
	for g, ls := range lsns {
		if !slices.IsSorted(ls) {
			t.Fatalf("appender %d got LSNs out of order: %v", g, ls)
		}
		for i, l := range ls {
			if _, dup := seen[l]; dup {
				t.Fatalf("LSN %d returned twice", l)
			}
			seen[l] = fmt.Sprintf("%d/%d", g, i)
		}
	}
	got := replay(t, w, 1)
	if len(got) != appenders*each {
		t.Fatalf("replayed %d records, want %d", len(got), appenders*each)
	}
	for i, r := range got {
		if r.lsn != uint64(i+1) || seen[r.lsn] != r.payload {
			t.Fatalf("record %d: lsn %d payload %q, want lsn %d payload %q", i, r.lsn, r.payload, i+1, seen[r.lsn])
		}
	}
}

// TestTornTail truncates a log of three records to every length and checks
// that Open keeps exactly the complete records, logs the truncation and
// appends from the right LSN.
func TestTornTail(t *testing.T) {
	src := t.TempDir()
	w := open(t, wal.Options{Dir: src})
	appendAll(t, w, payload(1), payload(2), payload(3))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	full, err := os.ReadFile(firstFile(src))
	if err != nil {
		t.Fatal(err)
	}
	const fileHeader, recHeader = 24, 24
	ends := []int{fileHeader} // ends[i]: offset after record i
	for i := 1; i <= 3; i++ {
		ends = append(ends, ends[i-1]+recHeader+len(payload(i)))
	}
	if ends[3] != len(full) {
		t.Fatalf("file is %d bytes, format says %d", len(full), ends[3])
	}
	for cut := 0; cut < len(full); cut++ {
		dir := t.TempDir()
		if err := os.WriteFile(firstFile(dir), full[:cut], 0o644); err != nil {
			t.Fatal(err)
		}
		var logs logBuf
		w, err := wal.Open(wal.Options{Dir: dir, NoSync: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatalf("cut %d: Open: %v", cut, err)
		}
		complete := 0
		for complete < 3 && ends[complete+1] <= cut {
			complete++
		}
		if got := w.LastLSN(); got != uint64(complete) {
			t.Fatalf("cut %d: LastLSN %d, want %d", cut, got, complete)
		}
		if got := replay(t, w, 1); !slices.Equal(got, recs(1, uint64(complete))) {
			t.Fatalf("cut %d: replayed %v", cut, got)
		}
		out := logs.String()
		switch {
		case cut < fileHeader:
			if !strings.Contains(out, "torn file header") || !strings.Contains(out, "00000000000000000001.wal") {
				t.Fatalf("cut %d: log %q does not report the torn header", cut, out)
			}
		case cut == ends[complete]:
			if out != "" {
				t.Fatalf("cut %d at a record boundary: unexpected log %q", cut, out)
			}
		default:
			wantOff := fmt.Sprintf("offset=%d", ends[complete])
			if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "truncating torn tail") ||
				!strings.Contains(out, "00000000000000000001.wal") || !strings.Contains(out, wantOff) || !strings.Contains(out, "reason=") {
				t.Fatalf("cut %d: log %q lacks WARN truncation with file, %s and reason", cut, out, wantOff)
			}
		}
		appendAll(t, w, payload(complete+1))
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		w = open(t, wal.Options{Dir: dir, NoSync: true})
		if got := replay(t, w, 1); !slices.Equal(got, recs(1, uint64(complete+1))) {
			t.Fatalf("cut %d: after append and reopen replayed %v", cut, got)
		}
		w.Close()
	}
}

// writeLog writes payload(1..n), one Append (and so one batch) each, and
// returns the bytes of the single file and the offsets where records start.
func writeLog(t *testing.T, n int) ([]byte, []int) {
	t.Helper()
	dir := t.TempDir()
	w := open(t, wal.Options{Dir: dir, NoSync: true})
	starts := []int{24}
	for i := 1; i <= n; i++ {
		appendAll(t, w, payload(i))
		starts = append(starts, starts[i-1]+24+len(payload(i)))
	}
	w.Close()
	b, err := os.ReadFile(firstFile(dir))
	if err != nil {
		t.Fatal(err)
	}
	return b, starts
}

// openBytes opens a fresh log whose only file holds b.
func openBytes(t *testing.T, b []byte, logs *logBuf) (*wal.WAL, string, error) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(firstFile(dir), b, 0o644); err != nil {
		t.Fatal(err)
	}
	opts := wal.Options{Dir: dir, NoSync: true}
	if logs != nil {
		opts.Logger = slog.New(slog.NewTextHandler(logs, nil))
	}
	w, err := wal.Open(opts)
	return w, dir, err
}

func TestBitFlipLastRecordIsTruncated(t *testing.T) {
	full, starts := writeLog(t, 3)
	for off := starts[2]; off < len(full); off++ {
		for bit := range 8 {
			b := bytes.Clone(full)
			b[off] ^= 1 << bit
			var logs logBuf
			w, _, err := openBytes(t, b, &logs)
			if err != nil {
				t.Fatalf("flip byte %d bit %d: Open: %v", off, bit, err)
			}
			if w.LastLSN() != 2 || !strings.Contains(logs.String(), fmt.Sprintf("offset=%d", starts[2])) {
				t.Fatalf("flip byte %d bit %d: LastLSN %d, log %q; want 2 and a truncation at %d", off, bit, w.LastLSN(), logs.String(), starts[2])
			}
			appendAll(t, w, payload(3))
			w.Close()
		}
	}
}

func TestBitFlipMiddleRecordIsCorrupt(t *testing.T) {
	full, starts := writeLog(t, 3)
	for off := starts[1]; off < starts[2]; off++ {
		for bit := range 8 {
			b := bytes.Clone(full)
			b[off] ^= 1 << bit
			w, dir, err := openBytes(t, b, nil)
			if !errors.Is(err, wal.ErrCorrupt) {
				if w != nil {
					w.Close()
				}
				t.Fatalf("flip byte %d bit %d: Open error %v, want ErrCorrupt", off, bit, err)
			}
			if after, _ := os.ReadFile(firstFile(dir)); !bytes.Equal(after, b) {
				t.Fatalf("flip byte %d bit %d: a failed Open changed the file", off, bit)
			}
		}
	}
	// The file header is never a tail.
	b := bytes.Clone(full)
	b[3] ^= 1
	if _, _, err := openBytes(t, b, nil); !errors.Is(err, wal.ErrCorrupt) {
		t.Fatalf("bad magic: Open error %v, want ErrCorrupt", err)
	}
}

// TestTornBatch: after a crash the kernel may have persisted the later
// records of the last write but not an earlier one. Those records were never
// acknowledged, so the damage is a torn tail, not corruption.
func TestTornBatch(t *testing.T) {
	dir := t.TempDir()
	w := open(t, wal.Options{Dir: dir, NoSync: true})
	appendAll(t, w, payload(1)) // batch {1}
	w.Close()
	batches := 0
	w = open(t, wal.Options{Dir: dir, NoSync: true, MaxBatchDelay: 5 * time.Second,
		MaxBatchBytes: 3 * len(payload(2)), OnCommit: func(wal.CommitInfo) { batches++ }})
	var wg sync.WaitGroup
	for i := 2; i <= 4; i++ { // batch {2,3,4}: full at MaxBatchBytes, no wait
		wg.Add(1)
		w.AppendAsync(payload(i), func(lsn uint64, err error) {
			if err != nil || lsn != uint64(i) {
				t.Errorf("AppendAsync %d: lsn %d err %v", i, lsn, err)
			}
			wg.Done()
		})
	}
	wg.Wait()
	w.Close()
	if batches != 1 {
		t.Fatalf("%d batches, want 1", batches)
	}
	full, err := os.ReadFile(firstFile(dir))
	if err != nil {
		t.Fatal(err)
	}
	rec2 := 24 + 24 + len(payload(1))

	b := bytes.Clone(full)
	b[rec2+30] ^= 0xff // payload of record 2; records 3 and 4 of its batch stay valid
	w, _, err = openBytes(t, b, nil)
	if err != nil {
		t.Fatalf("damaged first record of the last batch: %v", err)
	}
	if got := replay(t, w, 1); !slices.Equal(got, recs(1, 1)) {
		t.Fatalf("replayed %v, want record 1 only", got)
	}
	w.Close()

	b = bytes.Clone(full)
	b[24+30] ^= 0xff // record 1, followed by the later batch {2,3,4}
	if _, _, err := openBytes(t, b, nil); !errors.Is(err, wal.ErrCorrupt) {
		t.Fatalf("damaged record before a later batch: %v, want ErrCorrupt", err)
	}
}

func TestRolloverAndTruncateBefore(t *testing.T) {
	dir := t.TempDir()
	// 24-byte header + 2 records of 24+11 bytes = 94 >= 80: two records per file.
	opts := wal.Options{Dir: dir, SegmentSize: 80}
	w := open(t, opts)
	for i := 1; i <= 20; i++ {
		appendAll(t, w, payload(i))
	}
	files := walFiles(t, dir)
	if len(files) != 10 || w.Metrics().Files != 10 || filepath.Base(files[9]) != "00000000000000000019.wal" {
		t.Fatalf("files %v, Metrics.Files %d; want 10 files, the last starting at 19", files, w.Metrics().Files)
	}
	if got := replay(t, w, 1); !slices.Equal(got, recs(1, 20)) {
		t.Fatalf("replay across files: %v", got)
	}
	if err := w.TruncateBefore(8); err != nil {
		t.Fatal(err)
	}
	// Files [1,2] [3,4] [5,6] are entirely below 8; [7,8] is not.
	if got := w.FirstLSN(); got != 7 {
		t.Fatalf("FirstLSN after TruncateBefore(8) = %d, want 7", got)
	}
	if files := walFiles(t, dir); len(files) != 7 || w.Metrics().FilesDeleted != 3 {
		t.Fatalf("after TruncateBefore(8): files %v, FilesDeleted %d", files, w.Metrics().FilesDeleted)
	}
	if got := replay(t, w, 0); !slices.Equal(got, recs(7, 20)) {
		t.Fatalf("Replay(0) after truncation: %v", got)
	}
	if err := w.TruncateBefore(8); err != nil { // idempotent
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	w = open(t, opts)
	if w.FirstLSN() != 7 || w.LastLSN() != 20 {
		t.Fatalf("reopened: FirstLSN %d LastLSN %d, want 7 20", w.FirstLSN(), w.LastLSN())
	}
	if got := replay(t, w, 10); !slices.Equal(got, recs(10, 20)) {
		t.Fatalf("Replay(10) after reopen: %v", got)
	}
	// Everything released: only the active file stays.
	if err := w.TruncateBefore(1 << 60); err != nil {
		t.Fatal(err)
	}
	if files := walFiles(t, dir); len(files) != 1 || w.FirstLSN() != 19 {
		t.Fatalf("after TruncateBefore(max): files %v FirstLSN %d", files, w.FirstLSN())
	}
	appendAll(t, w, payload(21))
	if got := replay(t, w, 0); !slices.Equal(got, recs(19, 21)) {
		t.Fatalf("replay after full truncation: %v", got)
	}
	w.Close()
}

func TestCorruptEarlierFile(t *testing.T) {
	mk := func(t *testing.T) (string, []string) {
		dir := t.TempDir()
		w := open(t, wal.Options{Dir: dir, SegmentSize: 80, NoSync: true})
		for i := 1; i <= 6; i++ {
			appendAll(t, w, payload(i))
		}
		w.Close()
		return dir, walFiles(t, dir)
	}
	t.Run("torn end of non-last file", func(t *testing.T) {
		dir, files := mk(t)
		b, _ := os.ReadFile(files[0])
		os.WriteFile(files[0], b[:len(b)-1], 0o644)
		if _, err := wal.Open(wal.Options{Dir: dir}); !errors.Is(err, wal.ErrCorrupt) {
			t.Fatalf("Open: %v, want ErrCorrupt", err)
		}
	})
	t.Run("bit flip in last record of non-last file", func(t *testing.T) {
		dir, files := mk(t)
		b, _ := os.ReadFile(files[1])
		b[len(b)-1] ^= 1
		os.WriteFile(files[1], b, 0o644)
		if _, err := wal.Open(wal.Options{Dir: dir}); !errors.Is(err, wal.ErrCorrupt) {
			t.Fatalf("Open: %v, want ErrCorrupt", err)
		}
	})
	t.Run("missing middle file", func(t *testing.T) {
		dir, files := mk(t)
		os.Remove(files[1])
		if _, err := wal.Open(wal.Options{Dir: dir}); !errors.Is(err, wal.ErrCorrupt) {
			t.Fatalf("Open: %v, want ErrCorrupt", err)
		}
	})
	t.Run("empty last file is a crash during rollover", func(t *testing.T) {
		dir, files := mk(t)
		last := files[len(files)-1]
		os.WriteFile(last, nil, 0o644)
		var logs logBuf
		w, err := wal.Open(wal.Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		if w.LastLSN() != 4 || !strings.Contains(logs.String(), filepath.Base(last)) {
			t.Fatalf("LastLSN %d, log %q", w.LastLSN(), logs.String())
		}
		appendAll(t, w, payload(5))
	})
}

func TestErrors(t *testing.T) {
	dir := t.TempDir()
	w := open(t, wal.Options{Dir: dir, NoSync: true})
	if _, err := w.Append(context.Background(), make([]byte, wal.MaxPayloadSize+1)); !errors.Is(err, wal.ErrTooLarge) {
		t.Fatalf("oversized Append: %v, want ErrTooLarge", err)
	}
	var asyncErr error
	w.AppendAsync(make([]byte, wal.MaxPayloadSize+1), func(_ uint64, err error) { asyncErr = err })
	if !errors.Is(asyncErr, wal.ErrTooLarge) {
		t.Fatalf("oversized AppendAsync: %v, want ErrTooLarge", asyncErr)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := w.Append(ctx, []byte("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with cancelled ctx: %v", err)
	}
	if w.LastLSN() != 0 {
		t.Fatalf("rejected appends were written: LastLSN %d", w.LastLSN())
	}
	if _, err := wal.Open(wal.Options{Dir: dir}); !errors.Is(err, wal.ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if _, err := wal.Open(wal.Options{}); err == nil {
		t.Fatal("Open without Dir succeeded")
	}
	// Appends handed over before Close are committed by it.
	var wg sync.WaitGroup
	var committed atomic.Int64
	for range 100 {
		wg.Add(1)
		w.AppendAsync([]byte("x"), func(_ uint64, err error) {
			if err == nil {
				committed.Add(1)
			}
			wg.Done()
		})
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if committed.Load() != 100 {
		t.Fatalf("%d of 100 async appends committed before Close returned", committed.Load())
	}
	if _, err := w.Append(context.Background(), []byte("x")); !errors.Is(err, wal.ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	if err := w.Replay(0, func(uint64, []byte) error { return nil }); !errors.Is(err, wal.ErrClosed) {
		t.Fatalf("Replay after Close: %v", err)
	}
	if err := w.TruncateBefore(1); !errors.Is(err, wal.ErrClosed) {
		t.Fatalf("TruncateBefore after Close: %v", err)
	}
	if err := w.Close(); !errors.Is(err, wal.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	w = open(t, wal.Options{Dir: dir}) // the lock was released
	if w.LastLSN() != 100 {
		t.Fatalf("LastLSN after reopen %d, want 100", w.LastLSN())
	}
	w.Close()
}

// TestConcurrentAppendTruncateReplay runs appenders, a truncater and
// replayers together (meant for -race) and checks that replays always see a
// dense run of records.
func TestConcurrentAppendTruncateReplay(t *testing.T) {
	dir := t.TempDir()
	w := open(t, wal.Options{Dir: dir, SegmentSize: 4 << 10, NoSync: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var appended atomic.Int64
	for g := range 8 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil && i < 2000; i++ {
				if _, err := w.Append(context.Background(), fmt.Appendf(nil, "%d-%d", g, i)); err != nil {
					t.Error(err)
					return
				}
				appended.Add(1)
			}
		})
	}
	done := make(chan struct{})
	var aux sync.WaitGroup
	aux.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			if last := w.LastLSN(); last > 100 {
				if err := w.TruncateBefore(last - 100); err != nil {
					t.Error(err)
					return
				}
			}
			time.Sleep(time.Millisecond)
		}
	})
	for range 2 {
		aux.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				var prev uint64
				if err := w.Replay(w.FirstLSN(), func(lsn uint64, _ []byte) error {
					if prev != 0 && lsn != prev+1 {
						return fmt.Errorf("replay jumped from %d to %d", prev, lsn)
					}
					prev = lsn
					return nil
				}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(done)
	aux.Wait()
	if got := w.LastLSN(); got != uint64(appended.Load()) {
		t.Fatalf("LastLSN %d, appended %d", got, appended.Load())
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w = open(t, wal.Options{Dir: dir, NoSync: true})
	defer w.Close()
	if got := replay(t, w, 0); len(got) == 0 || got[len(got)-1].lsn != uint64(appended.Load()) || got[0].lsn != w.FirstLSN() {
		t.Fatalf("after reopen: %d records, FirstLSN %d", len(got), w.FirstLSN())
	}
}

// encodeRecord encodes a record as docs/wal.md describes it.
func encodeRecord(lsn, batch uint64, payload []byte) []byte {
	b := make([]byte, 24, 24+len(payload))
	binary.LittleEndian.PutUint32(b[0:4], uint32(len(payload)))
	binary.LittleEndian.PutUint64(b[8:16], lsn)
	binary.LittleEndian.PutUint64(b[16:24], batch)
	b = append(b, payload...)
	tab := crc32.MakeTable(crc32.Castagnoli)
	c := crc32.Update(0, tab, b[0:4])
	c = crc32.Update(c, tab, b[8:])
	binary.LittleEndian.PutUint32(b[4:8], c)
	return b
}

// FuzzOpen opens a log whose only file holds arbitrary bytes. Open must not
// panic; when it succeeds, every replayed record must be exactly the
// documented encoding, with a matching CRC, at its place in the input.
func FuzzOpen(f *testing.F) {
	var valid []byte
	{
		dir := f.TempDir()
		w := open(f, wal.Options{Dir: dir, NoSync: true})
		appendAll(f, w, []byte("a"), []byte("bb"), nil, bytes.Repeat([]byte("c"), 100))
		w.Close()
		valid, _ = os.ReadFile(firstFile(dir))
	}
	f.Add([]byte{})
	f.Add(valid[:24])
	f.Add(valid)
	f.Add(valid[:len(valid)-1])
	f.Add(valid[:40])
	corrupt := bytes.Clone(valid)
	corrupt[60] ^= 0x10
	f.Add(corrupt)
	f.Add(append(bytes.Clone(valid), make([]byte, 64)...))
	f.Add(append(bytes.Clone(valid[:24]), encodeRecord(1, 1, []byte("x"))...))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(firstFile(dir), data, 0o644); err != nil {
			t.Fatal(err)
		}
		w, err := wal.Open(wal.Options{Dir: dir, NoSync: true})
		if err != nil {
			if !errors.Is(err, wal.ErrCorrupt) {
				t.Fatalf("Open failed with %v, want ErrCorrupt or success", err)
			}
			return
		}
		defer w.Close()
		off := 24
		err = w.Replay(0, func(lsn uint64, p []byte) error {
			if off+24 > len(data) {
				return fmt.Errorf("record %d at offset %d is past the input", lsn, off)
			}
			want := encodeRecord(lsn, binary.LittleEndian.Uint64(data[off+16:]), p)
			if off+len(want) > len(data) || !bytes.Equal(data[off:off+len(want)], want) {
				return fmt.Errorf("record %d at offset %d is not in the input", lsn, off)
			}
			off += len(want)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if lsn, err := w.Append(context.Background(), []byte("after")); err != nil || lsn != w.LastLSN() {
			t.Fatalf("Append after Open of fuzzed file: lsn %d err %v", lsn, err)
		}
	})
}

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  wal.Options
		field string // "" if valid
	}{
		{"defaults", wal.Options{Dir: "x"}, ""},
		{"no dir", wal.Options{}, "Dir"},
		{"negative segment size", wal.Options{Dir: "x", SegmentSize: -1}, "SegmentSize"},
		{"huge segment size", wal.Options{Dir: "x", SegmentSize: wal.MaxSegmentSize + 1}, "SegmentSize"},
		{"negative delay", wal.Options{Dir: "x", MaxBatchDelay: -time.Millisecond}, "MaxBatchDelay"},
		{"negative batch bytes", wal.Options{Dir: "x", MaxBatchBytes: -1}, "MaxBatchBytes"},
	} {
		err := tc.opts.Validate()
		if (err == nil) != (tc.field == "") || (err != nil && !strings.Contains(err.Error(), tc.field)) {
			t.Errorf("%s: Validate() = %v, want an error naming %q", tc.name, err, tc.field)
		}
	}
	var o wal.Options
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	o.RegisterFlags("wal.", fs)
	if err := fs.Parse([]string{"-wal.dir=/d", "-wal.max-batch-delay=2ms"}); err != nil {
		t.Fatal(err)
	}
	if o.Dir != "/d" || o.SegmentSize != wal.DefaultSegmentSize || o.MaxBatchDelay != 2*time.Millisecond || o.MaxBatchBytes != wal.DefaultMaxBatchBytes {
		t.Fatalf("flags gave %+v", o)
	}
}
