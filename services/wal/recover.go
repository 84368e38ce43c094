package wal

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
)

// segment is one file of the log.
type segment struct {
	first uint64 // LSN of its first record (also in its name and header)
}

// recovered is the state of the log directory after Open's scan.
type recovered struct {
	segs      []segment
	last      uint64 // LSN of the last valid record, first-1 when empty
	activeEnd int64  // size of the last file after truncation of a torn tail
}

// recoverDir scans, validates and repairs the log in dir (see Open). It
// fsyncs every file it keeps, so that records written but not yet synced by
// a previous process are durable before they are replayed and acknowledged.
func recoverDir(dir string, noSync bool, log *slog.Logger) (recovered, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return recovered{}, fmt.Errorf("wal: read dir: %w", err)
	}
	var segs []segment
	for _, e := range entries {
		if first, ok := parseFileName(e.Name()); ok && e.Type().IsRegular() {
			segs = append(segs, segment{first: first})
		}
	}
	slices.SortFunc(segs, func(a, b segment) int { return cmp.Compare(a.first, b.first) })
	if len(segs) == 0 {
		if err := createFile(dir, 1, noSync, false); err != nil {
			return recovered{}, err
		}
		return recovered{segs: []segment{{first: 1}}, last: 0, activeEnd: fileHeaderSize}, nil
	}

	var rec recovered
	next := segs[0].first
	for i, s := range segs {
		last := i == len(segs)-1
		path := filepath.Join(dir, fileName(s.first))
		if s.first != next {
			return recovered{}, fmt.Errorf("%w: %s: first LSN %d, want %d (a file is missing)", ErrCorrupt, path, s.first, next)
		}
		end, n, err := scanFile(path, s.first, last, noSync, log)
		if err != nil {
			if errors.Is(err, errRewriteHeader) {
				if err := createFile(dir, s.first, noSync, true); err != nil {
					return recovered{}, err
				}
				end, n = fileHeaderSize, 0
			} else {
				return recovered{}, err
			}
		}
		next = s.first + n
		rec.activeEnd = end
	}
	rec.segs = segs
	rec.last = next - 1
	return rec, nil
}

// errRewriteHeader reports a last file too short to hold its header: it was
// being created when the previous process stopped.
var errRewriteHeader = errors.New("wal: rewrite header")

// scanFile validates the file at path and returns the offset after its last
// valid record and the number of valid records. In the last file a torn or
// corrupt tail is truncated (logged at WARN); anything else invalid is
// ErrCorrupt.
func scanFile(path string, first uint64, last, noSync bool, log *slog.Logger) (end int64, n uint64, err error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, 0, fmt.Errorf("wal: open %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, 0, fmt.Errorf("wal: stat %s: %w", path, err)
	}
	data := make([]byte, st.Size())
	if _, err := f.ReadAt(data, 0); err != nil {
		return 0, 0, fmt.Errorf("wal: read %s: %w", path, err)
	}

	hdrFirst, err := decodeFileHeader(data)
	if err == nil && hdrFirst != first {
		err = fmt.Errorf("header first LSN %d does not match the file name", hdrFirst)
	}
	if err != nil {
		if last && len(data) <= fileHeaderSize {
			log.Warn("wal: rewriting torn file header", "file", path, "offset", 0, "reason", err.Error())
			return 0, 0, errRewriteHeader
		}
		return 0, 0, fmt.Errorf("%w: %s at offset 0: %v", ErrCorrupt, path, err)
	}

	off := fileHeaderSize
	want := first
	for off < len(data) {
		r, size, err := decodeRecord(data[off:])
		if err == nil && r.lsn != want {
			err = &decodeError{reason: fmt.Sprintf("record lsn %d, want %d", r.lsn, want)}
		}
		if err != nil {
			if !last {
				return 0, 0, fmt.Errorf("%w: %s at offset %d (lsn %d): %v (not the last file)", ErrCorrupt, path, off, want, err)
			}
			if at, later, ok := acknowledgedAfter(data, off, want); ok {
				return 0, 0, fmt.Errorf("%w: %s at offset %d (lsn %d): %v, followed by valid record lsn %d at offset %d written after it was synced",
					ErrCorrupt, path, off, want, err, later.lsn, at)
			}
			log.Warn("wal: truncating torn tail", "file", path, "offset", off,
				"reason", err.Error(), "dropped_bytes", len(data)-off, "last_lsn", want-1)
			if err := f.Truncate(int64(off)); err != nil {
				return 0, 0, fmt.Errorf("wal: truncate %s: %w", path, err)
			}
			break
		}
		off += size
		want++
	}
	if !noSync {
		if err := fsync(f); err != nil {
			return 0, 0, fmt.Errorf("wal: sync %s: %w", path, err)
		}
	}
	return int64(off), want - first, nil
}

// acknowledgedAfter reports whether data holds, after the invalid record at
// off (which should have had LSN want), a valid record from a LATER write
// batch. Every batch is written and fsynced before the next one is written,
// so such a record proves that the invalid one had been synced and
// acknowledged: the damage is corruption, not a torn write. Valid records of
// the SAME batch after a damaged one are expected after a crash (the kernel
// may persist the pages of one write in any order) and are dropped with it.
func acknowledgedAfter(data []byte, off int, want uint64) (at int, r record, ok bool) {
	maxLSN := want + uint64((len(data)-off)/recHeaderSize)
	for y := off + 1; y+recHeaderSize <= len(data); y++ {
		lsn := binary.LittleEndian.Uint64(data[y+8 : y+16])
		if lsn <= want || lsn > maxLSN {
			continue
		}
		r, _, err := decodeRecord(data[y:])
		if err == nil && r.batch > want {
			return y, r, true
		}
	}
	return 0, record{}, false
}

// createFile creates (truncating when replace) the file whose first LSN is
// first, writes its header and makes both durable.
func createFile(dir string, first uint64, noSync, replace bool) error {
	path := filepath.Join(dir, fileName(first))
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if replace {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0o644)
	if err != nil {
		return fmt.Errorf("wal: create %s: %w", path, err)
	}
	_, err = write(f, appendFileHeader(nil, first))
	if err == nil && !noSync {
		err = fsync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && !noSync {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("wal: create %s: %w", path, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
