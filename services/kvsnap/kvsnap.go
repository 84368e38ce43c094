// Package kvsnap takes incremental snapshots of a pebble DB into the object
// store and restores them, for the KV state of primary-key buckets.
//
// A snapshot is a pebble checkpoint whose files are uploaded to a
// [objstore.Bucket]:
//
//   - Immutable data files (sstables "NNNNNN.sst" and blob files
//     "NNNNNN.blob") are uploaded once, under <prefix>/sst/<take>-<name>, and
//     shared by later snapshots: pebble never reuses a file number within a
//     DB, so a file with the same name and size as in the previous snapshot
//     is the same file and is not uploaded again.
//   - The small mutable files (MANIFEST-*, OPTIONS-*, marker.*, WAL *.log) are
//     uploaded fresh per snapshot, under <prefix>/snap-<take>/<name>.
//   - A JSON manifest, <prefix>/snap-<take>/kvsnap.json, names every file
//     with its object key, size and CRC-32C. It is written last: a snapshot
//     exists once its manifest does, and is live once the catalog records
//     it (catalog.KVSnapshot.Files = [Manifest.Files]).
//
// <take> is "<unix-millis>-<16 hex random>", unique per [Take], so two
// writers (a fenced old leader and its successor) never overwrite each
// other's objects, and a janitor can read the upload time with [ObjectTime].
//
// [Restore] downloads a snapshot into a directory that pebble.Open accepts,
// verifying every file's size and CRC-32C. [Unreferenced] computes the
// objects that only dropped snapshots name, for deletion. See
// docs/kvsnap.md for the layout and the crash-safety argument.
package kvsnap

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"golang.org/x/sync/errgroup"

	"github.com/strom-io/strom/services/objstore"
)

// Version is the manifest format version that this package writes and reads.
const Version = 1

// ManifestName is the last key segment of every manifest object.
const ManifestName = "kvsnap.json"

// parallelism bounds the concurrent uploads of Take and downloads of Restore.
const parallelism = 8

// maxManifestSize bounds the manifest objects Load reads (a manifest names a
// few thousand files at most; 16 MiB is far beyond any real one).
const maxManifestSize = 16 << 20

// ErrCorrupt reports a snapshot that cannot be restored as recorded: a
// manifest that does not decode or validate, or a downloaded file whose size
// or CRC-32C differs from the manifest's. Classify with errors.Is.
var ErrCorrupt = errors.New("kvsnap: corrupt snapshot")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// File is one file of a snapshot.
type File struct {
	// Name is the file's name in the pebble directory ("000012.sst",
	// "MANIFEST-000001", ...).
	Name string `json:"name"`
	// Key is the object holding the file's bytes.
	Key string `json:"key"`
	// Size is the file's length in bytes.
	Size int64 `json:"size"`
	// CRC32C is the CRC-32C (Castagnoli) of the file's bytes.
	CRC32C uint32 `json:"crc32c"`
}

// Manifest describes one snapshot: the files of a pebble checkpoint and the
// objects that hold them. It is stored as JSON at Key.
type Manifest struct {
	// Version is the format version, [Version].
	Version int `json:"version"`
	// Created is when Take started, in UTC.
	Created time.Time `json:"created"`
	// Entries lists the snapshot's files, sorted by Name.
	Entries []File `json:"files"`
	// Key is the manifest's own object key. It is not stored in the
	// manifest; Take and Load set it.
	Key string `json:"-"`
}

// Files returns every object key the snapshot references, the manifest's
// own key first, then the files' keys in Name order. It is what the catalog
// records in catalog.KVSnapshot.Files.
func (m *Manifest) Files() []string {
	keys := make([]string, 0, len(m.Entries)+1)
	keys = append(keys, m.Key)
	for _, f := range m.Entries {
		keys = append(keys, f.Key)
	}
	return keys
}

// Size returns the total size in bytes of the snapshot's files (without
// the manifest).
func (m *Manifest) Size() int64 {
	var n int64
	for _, f := range m.Entries {
		n += f.Size
	}
	return n
}

// ManifestKey returns the manifest key among keys (as recorded in
// catalog.KVSnapshot.Files): the one whose last segment is [ManifestName].
// It returns false if there is none.
func ManifestKey(keys []string) (string, bool) {
	for _, k := range keys {
		if k == ManifestName || strings.HasSuffix(k, "/"+ManifestName) {
			return k, true
		}
	}
	return "", false
}

// shared reports whether a checkpoint file is immutable and named by a
// DB-unique file number, so it is uploaded once and shared by snapshots.
func shared(name string) bool {
	return strings.HasSuffix(name, ".sst") || strings.HasSuffix(name, ".blob")
}

// Take snapshots db into objects under prefix ("" for the bucket root) and
// returns the snapshot's manifest, already stored at its Key.
//
// Take flushes the memtable (so the data is in sstables, which later
// snapshots share) and checkpoints db with the WAL flushed and synced into a
// fresh directory under scratchDir (which must exist on the same filesystem
// as db, so the sstables are hard links). The checkpoint's WAL files are
// uploaded too: any write that lands between the flush and the checkpoint
// is in them, so the snapshot holds at least every write that committed
// before Take was called, and possibly some later ones.
//
// prev is the newest snapshot of this DB's lineage (the snapshot it was
// restored from, or one Take returned for it since), or nil. Every
// sstable or blob file of prev with the same name and size is reused
// without uploading; the others are uploaded. prev from another DB's
// lineage would be wrong: file numbers are unique only within one lineage.
//
// Take uploads the files first and the manifest last. On error it returns
// no manifest; objects it uploaded stay behind, named by no manifest, for
// the janitor. The scratch directory is removed in every case.
func Take(ctx context.Context, db *pebble.DB, scratchDir string, objects objstore.Bucket, prefix string, prev *Manifest) (*Manifest, error) {
	now := time.Now().UTC()
	take, err := takeID(now)
	if err != nil {
		return nil, err
	}
	if prefix != "" {
		prefix += "/"
	}
	snapDir := prefix + "snap-" + take + "/"
	m := &Manifest{Version: Version, Created: now, Key: snapDir + ManifestName}
	if err := objstore.ValidateKey(m.Key); err != nil {
		return nil, fmt.Errorf("kvsnap: take: prefix %q: %w", prefix, err)
	}

	if err := db.Flush(); err != nil {
		return nil, fmt.Errorf("kvsnap: take: flush: %w", err)
	}
	tmp, err := os.MkdirTemp(scratchDir, "kvsnap-")
	if err != nil {
		return nil, fmt.Errorf("kvsnap: take: %w", err)
	}
	defer os.RemoveAll(tmp)
	ckpt := filepath.Join(tmp, "checkpoint")
	if err := db.Checkpoint(ckpt, pebble.WithFlushedWAL()); err != nil {
		return nil, fmt.Errorf("kvsnap: take: checkpoint: %w", err)
	}
	ents, err := os.ReadDir(ckpt)
	if err != nil {
		return nil, fmt.Errorf("kvsnap: take: %w", err)
	}

	reuse := make(map[string]File)
	if prev != nil {
		for _, f := range prev.Entries {
			if shared(f.Name) {
				reuse[f.Name] = f
			}
		}
	}
	// Decide every file's fate before uploading anything, so that an error
	// here leaves no upload running.
	type upload struct {
		i         int
		name, key string
		size      int64
	}
	var uploads []upload
	m.Entries = make([]File, len(ents))
	for i, e := range ents {
		name := e.Name()
		if !e.Type().IsRegular() {
			return nil, fmt.Errorf("kvsnap: take: checkpoint holds %q, which is not a regular file", name)
		}
		if err := validName(name); err != nil {
			return nil, fmt.Errorf("kvsnap: take: checkpoint file: %w", err)
		}
		info, err := e.Info()
		if err != nil {
			return nil, fmt.Errorf("kvsnap: take: %w", err)
		}
		size := info.Size()
		if p, ok := reuse[name]; ok && p.Size == size {
			m.Entries[i] = p
			continue
		}
		key := snapDir + name
		if shared(name) {
			key = prefix + "sst/" + take + "-" + name
		}
		uploads = append(uploads, upload{i: i, name: name, key: key, size: size})
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(parallelism)
	for _, u := range uploads {
		g.Go(func() error {
			sum, err := uploadFile(gctx, objects, filepath.Join(ckpt, u.name), u.key, u.size)
			if err != nil {
				return err
			}
			m.Entries[u.i] = File{Name: u.name, Key: u.key, Size: u.size, CRC32C: sum}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("kvsnap: take: %w", err)
	}
	slices.SortFunc(m.Entries, func(a, b File) int { return strings.Compare(a.Name, b.Name) })

	data, err := m.Encode()
	if err != nil {
		return nil, fmt.Errorf("kvsnap: take: %w", err)
	}
	if err := objects.Put(ctx, m.Key, bytes.NewReader(data), int64(len(data))); err != nil {
		return nil, fmt.Errorf("kvsnap: take: put manifest: %w", err)
	}
	return m, nil
}

// uploadFile computes the CRC-32C of the local file path, then stores it
// at key.
func uploadFile(ctx context.Context, objects objstore.Bucket, path, key string, size int64) (uint32, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	h := crc32.New(castagnoli)
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, err
	}
	if n != size {
		return 0, fmt.Errorf("%s: %d bytes, listed with %d", path, n, size)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	if err := objects.Put(ctx, key, f, size); err != nil {
		return 0, err
	}
	return h.Sum32(), nil
}

// takeID returns "<unix-millis>-<16 hex random>" for a Take started at now.
func takeID(now time.Time) (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("kvsnap: random: %w", err)
	}
	return fmt.Sprintf("%013d-%s", now.UnixMilli(), hex.EncodeToString(b[:])), nil
}

// ObjectTime returns when the object key was uploaded, read from the key, for
// a janitor's grace period: it parses the <take> of a key under
// "<prefix>/sst/<take>-<name>" or "<prefix>/snap-<take>/<name>". It returns
// false for a key that is not a kvsnap key.
func ObjectTime(key string) (time.Time, bool) {
	segs := strings.Split(key, "/")
	if len(segs) < 2 {
		return time.Time{}, false
	}
	var take string
	sst := false
	switch dir := segs[len(segs)-2]; {
	case dir == "sst":
		take, sst = segs[len(segs)-1], true
	case strings.HasPrefix(dir, "snap-"):
		take = dir[len("snap-"):]
	default:
		return time.Time{}, false
	}
	ms, rest, ok := strings.Cut(take, "-")
	if !ok || len(ms) != 13 || len(rest) < 16 {
		return time.Time{}, false
	}
	if sst && (len(rest) < 18 || rest[16] != '-') || !sst && len(rest) != 16 {
		return time.Time{}, false
	}
	if _, err := hex.DecodeString(rest[:16]); err != nil {
		return time.Time{}, false
	}
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, false
	}
	return time.UnixMilli(n).UTC(), true
}

// Encode returns the manifest as stored: indented JSON.
func (m *Manifest) Encode() ([]byte, error) {
	if err := m.validate(); err != nil {
		return nil, err
	}
	return json.MarshalIndent(m, "", "  ")
}

// Decode parses and validates a stored manifest. The result's Key is empty.
// Errors wrap [ErrCorrupt].
func Decode(data []byte) (*Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: manifest: %v", ErrCorrupt, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: manifest: data after the JSON object", ErrCorrupt)
	}
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return &m, nil
}

// validate checks the invariants that Restore relies on.
func (m *Manifest) validate() error {
	if m.Version != Version {
		return fmt.Errorf("manifest: version %d, want %d", m.Version, Version)
	}
	seen := make(map[string]bool, len(m.Entries))
	for i, f := range m.Entries {
		if err := validName(f.Name); err != nil {
			return fmt.Errorf("manifest: file %d: %w", i, err)
		}
		if i > 0 && m.Entries[i-1].Name >= f.Name {
			return fmt.Errorf("manifest: files not sorted by name or %q repeated", f.Name)
		}
		if err := objstore.ValidateKey(f.Key); err != nil {
			return fmt.Errorf("manifest: file %q: %w", f.Name, err)
		}
		if seen[f.Key] {
			return fmt.Errorf("manifest: key %q named twice", f.Key)
		}
		seen[f.Key] = true
		if f.Size < 0 || f.Size > objstore.MaxObjectSize {
			return fmt.Errorf("manifest: file %q: size %d out of range", f.Name, f.Size)
		}
	}
	return nil
}

// validName accepts a plain file name: no path separator, not "." or "..",
// no control characters, and not the lock file (which a checkpoint never
// holds and a restored directory must not).
func validName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("bad file name %q", name)
	case len(name) > objstore.MaxSegmentLen:
		return fmt.Errorf("file name %q too long", name)
	case strings.ContainsAny(name, `/\`):
		return fmt.Errorf("file name %q has a path separator", name)
	case name == "LOCK":
		return fmt.Errorf("file name %q is pebble's lock file", name)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("file name %q has a control character", name)
		}
	}
	return nil
}

// Load reads and decodes the manifest stored at key, and sets its Key.
func Load(ctx context.Context, objects objstore.BucketReader, key string) (*Manifest, error) {
	r, err := objects.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("kvsnap: load manifest: %w", err)
	}
	defer r.Close()
	data, err := io.ReadAll(io.LimitReader(r, maxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("kvsnap: load manifest %s: %w", key, err)
	}
	if len(data) > maxManifestSize {
		return nil, fmt.Errorf("%w: manifest %s larger than %d bytes", ErrCorrupt, key, maxManifestSize)
	}
	m, err := Decode(data)
	if err != nil {
		return nil, fmt.Errorf("kvsnap: load manifest %s: %w", key, err)
	}
	m.Key = key
	return m, nil
}

// Restore downloads the snapshot whose manifest is at manifestKey into dir,
// so that pebble.Open(dir, ...) opens the DB as of the snapshot. dir must not
// exist, or be empty (it is replaced).
//
// The files are downloaded into dir+".tmp" (removed first if a crashed
// Restore left it), each checked against the manifest's size and CRC-32C
// and synced; the directory is then renamed to dir. So dir either does not
// appear or holds the whole snapshot. A mismatch fails with an error
// wrapping [ErrCorrupt] that names the file and object.
func Restore(ctx context.Context, objects objstore.BucketReader, manifestKey string, dir string) error {
	m, err := Load(ctx, objects, manifestKey)
	if err != nil {
		return err // names the manifest
	}
	dir = filepath.Clean(dir)
	if ents, err := os.ReadDir(dir); err == nil {
		if len(ents) > 0 {
			return fmt.Errorf("kvsnap: restore: %s exists and is not empty", dir)
		}
		if err := os.Remove(dir); err != nil {
			return fmt.Errorf("kvsnap: restore: %w", err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("kvsnap: restore: %w", err)
	}
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("kvsnap: restore: %w", err)
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return fmt.Errorf("kvsnap: restore: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(tmp)
		}
	}()

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(parallelism)
	for _, f := range m.Entries {
		g.Go(func() error { return download(gctx, objects, f, filepath.Join(tmp, f.Name)) })
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("kvsnap: restore %s: %w", manifestKey, err)
	}
	if err := syncDir(tmp); err != nil {
		return fmt.Errorf("kvsnap: restore: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("kvsnap: restore: %w", err)
	}
	ok = true
	if err := syncDir(filepath.Dir(dir)); err != nil {
		return fmt.Errorf("kvsnap: restore: %w", err)
	}
	return nil
}

// download writes the object of f to path, checks its size and CRC-32C,
// and syncs it.
func download(ctx context.Context, objects objstore.BucketReader, f File, path string) (err error) {
	r, err := objects.Get(ctx, f.Key)
	if err != nil {
		return fmt.Errorf("file %s: %w", f.Name, err)
	}
	defer r.Close()
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	h := crc32.New(castagnoli)
	// Read at most one byte more than expected, to detect a longer object
	// without downloading all of it.
	n, err := io.Copy(io.MultiWriter(out, h), io.LimitReader(r, f.Size+1))
	if err != nil {
		return fmt.Errorf("file %s: object %s: %w", f.Name, f.Key, err)
	}
	if n != f.Size {
		return fmt.Errorf("%w: file %s: object %s has %s bytes, the manifest says %d", ErrCorrupt, f.Name, f.Key, sizeAtLeast(n, f.Size), f.Size)
	}
	if sum := h.Sum32(); sum != f.CRC32C {
		return fmt.Errorf("%w: file %s: object %s has CRC-32C %08x, the manifest says %08x", ErrCorrupt, f.Name, f.Key, sum, f.CRC32C)
	}
	return out.Sync()
}

// sizeAtLeast renders a size read through a limit of want+1 bytes.
func sizeAtLeast(n, want int64) string {
	if n > want {
		return fmt.Sprintf("more than %d", want)
	}
	return strconv.FormatInt(n, 10)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Unreferenced returns the object keys that some snapshot in drop references
// and no snapshot in keep does, sorted: after the catalog records of the
// dropped snapshots are deleted, these objects can be deleted.
//
// To keep the newest N snapshots of a bucket: list its snapshots (newest
// first), load the manifests, delete the catalog records of all but the
// first N, then delete Unreferenced(first N, rest). A crash in between
// leaves unreferenced objects, which the next run (or the janitor)
// deletes. keep must include every snapshot that remains recorded and any
// snapshot a Take in progress uses as prev.
func Unreferenced(keep, drop []*Manifest) []string {
	live := make(map[string]bool)
	for _, m := range keep {
		for _, k := range m.Files() {
			live[k] = true
		}
	}
	var out []string
	for _, m := range drop {
		for _, k := range m.Files() {
			if !live[k] {
				live[k] = true // report each key once
				out = append(out, k)
			}
		}
	}
	slices.Sort(out)
	return out
}
