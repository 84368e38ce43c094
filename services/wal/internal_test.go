package wal

import (
	"bytes"
	"context"
	"errors"
	"os"
	"syscall"
	"testing"
)

// TestSyncFailureFailsWAL injects an fsync error: the Append that hit it and
// every later one fail with ErrFailed, and nothing is retried.
func TestSyncFailureFailsWAL(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Append(context.Background(), []byte("ok")); err != nil {
		t.Fatal(err)
	}
	calls := 0
	fsync = func(*os.File) error { calls++; return syscall.EIO }
	defer func() { fsync = syncData }()

	_, err = w.Append(context.Background(), []byte("lost"))
	if !errors.Is(err, ErrFailed) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("Append with failing fsync: %v, want ErrFailed wrapping EIO", err)
	}
	for range 3 {
		if _, err := w.Append(context.Background(), []byte("later")); !errors.Is(err, ErrFailed) {
			t.Fatalf("Append after failure: %v, want ErrFailed", err)
		}
	}
	if calls != 1 {
		t.Fatalf("fsync retried: %d calls", calls)
	}
	if m := w.Metrics(); !m.Failed || m.Appends != 1 || w.LastLSN() != 1 {
		t.Fatalf("metrics %+v LastLSN %d", m, w.LastLSN())
	}
	if err := w.Close(); !errors.Is(err, ErrFailed) {
		t.Fatalf("Close: %v, want ErrFailed", err)
	}
	fsync = syncData
	// The unsynced record may or may not have reached the disk; reopening
	// re-reads what is there and appends after it.
	w, err = Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if last := w.LastLSN(); last != 1 && last != 2 {
		t.Fatalf("LastLSN after reopen %d", last)
	}
	if _, err := w.Append(context.Background(), []byte("again")); err != nil {
		t.Fatal(err)
	}
}

func TestFileName(t *testing.T) {
	if got := fileName(42); got != "00000000000000000042.wal" {
		t.Fatalf("fileName(42) = %q", got)
	}
	for _, tc := range []struct {
		name string
		lsn  uint64
		ok   bool
	}{
		{"00000000000000000042.wal", 42, true},
		{"18446744073709551615.wal", 1<<64 - 1, true},
		{"99999999999999999999.wal", 0, false}, // overflows uint64
		{"00000000000000000000.wal", 0, false}, // LSNs start at 1
		{"0000000000000000042.wal", 0, false},
		{"0000000000000000004x.wal", 0, false},
		{"00000000000000000042.wal.tmp", 0, false},
		{"LOCK", 0, false},
	} {
		lsn, ok := parseFileName(tc.name)
		if lsn != tc.lsn || ok != tc.ok {
			t.Errorf("parseFileName(%q) = %d, %v; want %d, %v", tc.name, lsn, ok, tc.lsn, tc.ok)
		}
	}
}

// FuzzDecodeRecord: decodeRecord never panics, never returns a record whose
// CRC does not match, and round-trips what appendRecord encodes.
func FuzzDecodeRecord(f *testing.F) {
	valid := appendRecord(nil, 7, 5, []byte("payload"))
	f.Add([]byte{})
	f.Add(valid[:10])
	f.Add(valid[:recHeaderSize])
	f.Add(valid[:len(valid)-1])
	f.Add(valid)
	corrupt := bytes.Clone(valid)
	corrupt[recHeaderSize+2] ^= 1
	f.Add(corrupt)
	f.Add(make([]byte, 64))
	f.Add(appendRecord(nil, 1, 1, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, n, err := decodeRecord(b)
		if err != nil {
			var de *decodeError
			if !errors.As(err, &de) || n != 0 || r.payload != nil {
				t.Fatalf("error %v with n %d", err, n)
			}
			return
		}
		if n < recHeaderSize || n > len(b) || n != recHeaderSize+len(r.payload) {
			t.Fatalf("size %d for %d input bytes, payload %d", n, len(b), len(r.payload))
		}
		if !bytes.Equal(appendRecord(nil, r.lsn, r.batch, r.payload), b[:n]) {
			t.Fatal("decoded record does not re-encode to its input (CRC not checked?)")
		}
	})
}
