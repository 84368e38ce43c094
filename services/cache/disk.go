package cache

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Block file trailer: crc32c(data) and trailerMagic, little-endian.
const (
	trailerLen   = 8
	trailerMagic = 0x43_4d_52_53 // "SRMC"
	tmpPrefix    = ".tmp-"
	genPrefix    = "blocks-"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func (c *Cache) dir(id blockID) string {
	return filepath.Join(c.root, hex.EncodeToString(id.obj[:1]))
}

func (c *Cache) path(id blockID) string {
	return filepath.Join(c.dir(id), hex.EncodeToString(id.obj[:])+"-"+strconv.FormatInt(id.idx, 10))
}

// parseName parses a block file name made by path, checking that it sits
// in the right fan-out directory.
func parseName(dir, name string) (blockID, bool) {
	h, idx, ok := strings.Cut(name, "-")
	var id blockID
	if !ok || len(h) != 2*len(id.obj) || !strings.HasPrefix(h, dir) {
		return id, false
	}
	if _, err := hex.Decode(id.obj[:], []byte(h)); err != nil || hex.EncodeToString(id.obj[:]) != h {
		return id, false
	}
	i, err := strconv.ParseInt(idx, 10, 64)
	if err != nil || i < 0 || strconv.FormatInt(i, 10) != idx {
		return id, false
	}
	id.idx = i
	return id, true
}

// writeTemp writes data and its trailer to a new temporary file in dir,
// creating dir if needed, and returns its name.
func writeTemp(dir string, data []byte) (string, error) {
	f, err := os.CreateTemp(dir, tmpPrefix+"*")
	if errors.Is(err, os.ErrNotExist) {
		if err = os.MkdirAll(dir, 0o755); err == nil {
			f, err = os.CreateTemp(dir, tmpPrefix+"*")
		}
	}
	if err != nil {
		return "", err
	}
	var tr [trailerLen]byte
	binary.LittleEndian.PutUint32(tr[:4], crc32.Checksum(data, castagnoli))
	binary.LittleEndian.PutUint32(tr[4:], trailerMagic)
	_, err = f.Write(data)
	if err == nil {
		_, err = f.Write(tr[:])
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// verifyBlock checks a whole block file: data followed by its trailer.
func verifyBlock(b []byte) error {
	if len(b) <= trailerLen {
		return fmt.Errorf("%d bytes, too short for a block", len(b))
	}
	data, tr := b[:len(b)-trailerLen], b[len(b)-trailerLen:]
	if m := binary.LittleEndian.Uint32(tr[4:]); m != trailerMagic {
		return fmt.Errorf("bad magic %08x", m)
	}
	if got, want := crc32.Checksum(data, castagnoli), binary.LittleEndian.Uint32(tr[:4]); got != want {
		return fmt.Errorf("crc32c %08x, trailer says %08x", got, want)
	}
	return nil
}

// load prepares the directory and indexes the block files found in it.
func (c *Cache) load() error {
	if err := os.MkdirAll(c.cfg.Dir, 0o755); err != nil {
		return fmt.Errorf("cache: create dir: %w", err)
	}
	gen := genPrefix + strconv.FormatInt(c.bs, 10)
	c.root = filepath.Join(c.cfg.Dir, gen)
	des, err := os.ReadDir(c.cfg.Dir)
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	for _, de := range des {
		name := de.Name()
		if n, ok := strings.CutPrefix(name, genPrefix); ok && name != gen && de.IsDir() {
			if _, err := strconv.ParseInt(n, 10, 64); err == nil {
				c.log.Info("cache: removing blocks cached with another block size", "dir", filepath.Join(c.cfg.Dir, name))
				if err := os.RemoveAll(filepath.Join(c.cfg.Dir, name)); err != nil {
					c.log.Warn("cache: cannot remove old cache blocks", "err", err)
				}
			}
		}
	}

	type found struct {
		id    blockID
		n     int64
		mtime time.Time
	}
	var blocks []found
	if err := os.MkdirAll(c.root, 0o755); err != nil {
		return fmt.Errorf("cache: create dir: %w", err)
	}
	subs, err := os.ReadDir(c.root)
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	for _, sd := range subs {
		sub := sd.Name()
		if !sd.IsDir() || len(sub) != 2 {
			continue // not ours
		}
		dir := filepath.Join(c.root, sub)
		des, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("cache: %w", err)
		}
		for _, de := range des {
			name := de.Name()
			path := filepath.Join(dir, name)
			if strings.HasPrefix(name, tmpPrefix) {
				os.Remove(path)
				continue
			}
			id, ok := parseName(sub, name)
			if !ok || !de.Type().IsRegular() {
				continue // not ours
			}
			fi, err := de.Info()
			if errors.Is(err, os.ErrNotExist) {
				continue
			} else if err != nil {
				return fmt.Errorf("cache: %w", err)
			}
			if n := fi.Size() - trailerLen; n < 1 || n > c.bs {
				c.log.Warn("cache: removing block file of a bad size", "file", path, "size", fi.Size())
				os.Remove(path)
				c.dropped.Add(1)
				continue
			}
			blocks = append(blocks, found{id, fi.Size() - trailerLen, fi.ModTime()})
		}
	}
	slices.SortFunc(blocks, func(a, b found) int { return a.mtime.Compare(b.mtime) })
	for _, b := range blocks {
		c.insertLocked(b.id, b.n, false, b.mtime) // newest ends up in front
	}
	c.evictLocked(nil)
	return nil
}
