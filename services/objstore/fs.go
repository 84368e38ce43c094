package objstore

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// FSConfig configures the filesystem [Bucket].
type FSConfig struct {
	// Dir is the root directory; object "a/b" is the file Dir/a/b.
	Dir string `yaml:"dir"`
}

// RegisterFlags registers the FSConfig flags, each name prefixed with prefix
// (e.g. "objstore.filesystem."), with their defaults.
func (c *FSConfig) RegisterFlags(prefix string, f *flag.FlagSet) {
	f.StringVar(&c.Dir, prefix+"dir", "", "Directory that holds the objects of the filesystem object store (default <data-dir>/objects); object a/b is the file <dir>/a/b.")
}

// Validate reports the first invalid field.
func (c *FSConfig) Validate() error {
	if c.Dir == "" {
		return errors.New("objstore: filesystem: dir: must not be empty")
	}
	return nil
}

// FS is a [Bucket] over a local directory: every object is a file, key
// segments are directories. Put writes a temporary file beside the target
// (named ".tmp-*", which no key can be, see [ValidateKey]), fsyncs it,
// renames it into place and fsyncs the directory, so objects are atomic and
// durable once Put returns. Delete removes directories left empty.
//
// FS suits one process (the single-binary server, tests). Several processes
// may share the directory on one machine; network filesystems are not
// supported.
type FS struct {
	root string
}

var _ Bucket = (*FS)(nil)

// NewFS returns an FS rooted at cfg.Dir, creating the directory if needed.
func NewFS(cfg FSConfig) (*FS, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	root, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("objstore: filesystem: %w", err)
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("objstore: filesystem: create root: %w", err)
	}
	return &FS{root: root}, nil
}

// Dir returns the absolute root directory.
func (s *FS) Dir() string { return s.root }

func (s *FS) path(key string) string {
	return filepath.Join(s.root, filepath.FromSlash(key))
}

// Put implements [Bucket].
func (s *FS) Put(ctx context.Context, key string, r io.Reader, size int64) (err error) {
	if err := ValidateKey(key); err != nil {
		return fmt.Errorf("objstore: put: %w", err)
	}
	if size < 0 || size > MaxObjectSize {
		return fmt.Errorf("objstore: put %q: size %d not within [0, %d]", key, size, MaxObjectSize)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("objstore: put %q: %w", key, err)
	}
	path := s.path(key)
	dir := filepath.Dir(path)
	_, statErr := os.Stat(dir)
	created := statErr != nil

	// A concurrent Delete may remove dir between MkdirAll and CreateTemp
	// (it removes empty directories); try again then.
	var f *os.File
	for attempt := 0; ; attempt++ {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("objstore: put %q: %w", key, err)
		}
		f, err = os.CreateTemp(dir, ".tmp-*")
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) || attempt == 10 {
			return fmt.Errorf("objstore: put %q: %w", key, err)
		}
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()

	if err := copyExact(f, &ctxReader{ctx: ctx, r: r}, size); err != nil {
		return fmt.Errorf("objstore: put %q: %w", key, err)
	}
	if err := f.Chmod(0o644); err != nil {
		return fmt.Errorf("objstore: put %q: %w", key, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("objstore: put %q: %w", key, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("objstore: put %q: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("objstore: put %q: %w", key, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("objstore: put %q: %w", key, err)
	}
	// Make the rename durable, and the new directories if Put made any.
	for d := dir; ; d = filepath.Dir(d) {
		if err := syncDir(d); err != nil {
			return fmt.Errorf("objstore: put %q: %w", key, err)
		}
		if !created || d == s.root || len(d) <= len(s.root) {
			break
		}
	}
	return nil
}

// copyExact copies exactly size bytes from r to w, or fails with
// ErrSizeMismatch if r holds fewer or more.
func copyExact(w io.Writer, r io.Reader, size int64) error {
	n, err := io.Copy(w, io.LimitReader(r, size))
	if err != nil {
		return err
	}
	if n < size {
		return fmt.Errorf("%w: got %d bytes, want %d", ErrSizeMismatch, n, size)
	}
	var b [1]byte
	switch _, err := io.ReadFull(r, b[:]); {
	case err == nil:
		return fmt.Errorf("%w: more than %d bytes", ErrSizeMismatch, size)
	case err != io.EOF:
		return err
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

// ctxReader fails reads once ctx is done, so a long copy stops on cancel.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// open opens the object file, mapping a missing file or a directory (a key
// that is only a prefix of others) to ErrNotExist.
func (s *FS) open(ctx context.Context, op, key string) (*os.File, int64, error) {
	if err := ValidateKey(key); err != nil {
		return nil, 0, fmt.Errorf("objstore: %s: %w", op, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, fmt.Errorf("objstore: %s %q: %w", op, key, err)
	}
	f, err := os.Open(s.path(key))
	if err != nil {
		if isNotExist(err) {
			return nil, 0, fmt.Errorf("objstore: %s %q: %w", op, key, ErrNotExist)
		}
		return nil, 0, fmt.Errorf("objstore: %s %q: %w", op, key, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("objstore: %s %q: %w", op, key, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, 0, fmt.Errorf("objstore: %s %q: %w", op, key, ErrNotExist)
	}
	return f, fi.Size(), nil
}

func isNotExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// Get implements [Bucket].
func (s *FS) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	f, _, err := s.open(ctx, "get", key)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// GetRange implements [Bucket].
func (s *FS) GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	if off < 0 || length < 0 {
		return nil, fmt.Errorf("objstore: get %q range [%d, +%d): %w", key, off, length, ErrOutOfRange)
	}
	f, size, err := s.open(ctx, "get", key)
	if err != nil {
		return nil, err
	}
	if off > size || length > size-off {
		f.Close()
		return nil, fmt.Errorf("objstore: get %q range [%d, +%d) of a %d-byte object: %w", key, off, length, size, ErrOutOfRange)
	}
	return &sectionReadCloser{SectionReader: io.NewSectionReader(f, off, length), f: f}, nil
}

type sectionReadCloser struct {
	*io.SectionReader
	f *os.File
}

func (r *sectionReadCloser) Close() error { return r.f.Close() }

// Size implements [Bucket].
func (s *FS) Size(ctx context.Context, key string) (int64, error) {
	if err := ValidateKey(key); err != nil {
		return 0, fmt.Errorf("objstore: size: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("objstore: size %q: %w", key, err)
	}
	fi, err := os.Stat(s.path(key))
	if err != nil {
		if isNotExist(err) {
			return 0, fmt.Errorf("objstore: size %q: %w", key, ErrNotExist)
		}
		return 0, fmt.Errorf("objstore: size %q: %w", key, err)
	}
	if !fi.Mode().IsRegular() {
		return 0, fmt.Errorf("objstore: size %q: %w", key, ErrNotExist)
	}
	return fi.Size(), nil
}

// List implements [Bucket]. It walks only the directories that can hold
// matching keys, and orders each directory's entries as their keys sort
// (a directory "d" sorts as "d/"), so keys come out in byte-wise order
// without collecting them first.
func (s *FS) List(ctx context.Context, prefix string, fn func(key string, size int64) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("objstore: list %q: %w", prefix, err)
	}
	if !prefixMatchesSome(prefix) {
		return nil
	}
	start := prefix[:strings.LastIndex(prefix, "/")+1] // "" or "a/b/"
	return s.walk(ctx, start, prefix, fn)
}

// walk lists the directory holding keys that start with rel ("" or ending
// in '/').
func (s *FS) walk(ctx context.Context, rel, prefix string, fn func(string, int64) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("objstore: list %q: %w", prefix, err)
	}
	entries, err := os.ReadDir(filepath.Join(s.root, filepath.FromSlash(rel)))
	if err != nil {
		if isNotExist(err) { // absent, or removed by a concurrent Delete
			return nil
		}
		return fmt.Errorf("objstore: list %q: %w", prefix, err)
	}
	type entry struct {
		key string // directories end in '/'
		e   fs.DirEntry
	}
	list := make([]entry, 0, len(entries))
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") { // temporary files; never keys
			continue
		}
		k := rel + name
		if e.IsDir() {
			k += "/"
			if !strings.HasPrefix(k, prefix) && !strings.HasPrefix(prefix, k) {
				continue
			}
		} else if !e.Type().IsRegular() || !strings.HasPrefix(k, prefix) {
			continue
		}
		list = append(list, entry{k, e})
	}
	slices.SortFunc(list, func(a, b entry) int { return cmp.Compare(a.key, b.key) })
	for _, it := range list {
		if it.e.IsDir() {
			if err := s.walk(ctx, it.key, prefix, fn); err != nil {
				return err
			}
			continue
		}
		fi, err := it.e.Info()
		if err != nil {
			if isNotExist(err) { // deleted meanwhile
				continue
			}
			return fmt.Errorf("objstore: list %q: %w", prefix, err)
		}
		if err := fn(it.key, fi.Size()); err != nil {
			return err
		}
	}
	return nil
}

// Delete implements [Bucket]. It also removes the directories the deletion
// leaves empty, up to the root.
func (s *FS) Delete(ctx context.Context, key string) error {
	if err := ValidateKey(key); err != nil {
		return fmt.Errorf("objstore: delete: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("objstore: delete %q: %w", key, err)
	}
	path := s.path(key)
	fi, err := os.Lstat(path)
	if err != nil {
		if isNotExist(err) {
			return nil
		}
		return fmt.Errorf("objstore: delete %q: %w", key, err)
	}
	if fi.IsDir() { // a prefix of other keys, not an object
		return nil
	}
	if err := os.Remove(path); err != nil && !isNotExist(err) {
		return fmt.Errorf("objstore: delete %q: %w", key, err)
	}
	// Best effort: a directory that is not empty (or was refilled) stays.
	for d := filepath.Dir(path); len(d) > len(s.root); d = filepath.Dir(d) {
		if syscall.Rmdir(d) != nil {
			break
		}
	}
	return nil
}

// Close implements [Bucket]; FS holds no resources.
func (s *FS) Close() error { return nil }
