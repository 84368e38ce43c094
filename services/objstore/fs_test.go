package objstore_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/strom-io/strom/services/objstore"
	"github.com/strom-io/strom/services/objstore/objstoretest"
)

func newFS(t testing.TB) *objstore.FS {
	t.Helper()
	b, err := objstore.NewFS(objstore.FSConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("NewFS: %v", err)
	}
	return b
}

func TestFS(t *testing.T) {
	objstoretest.Run(t, func(t *testing.T) objstore.Bucket { return newFS(t) })
}

// TestFSLeavesNoTemporaryFiles checks that Put cleans up after failures and
// that Delete removes the directories it empties.
func TestFSLeavesNoTemporaryFiles(t *testing.T) {
	b := newFS(t)
	ctx := t.Context()
	if err := b.Put(ctx, "a/b/c", strings.NewReader("abc"), 3); err != nil {
		t.Fatal(err)
	}
	if err := b.Put(ctx, "a/b/d", strings.NewReader("ab"), 3); err == nil {
		t.Fatal("Put with a short reader succeeded")
	}
	if got := files(t, b.Dir()); !slices.Equal(got, []string{"a", "a/b", "a/b/c"}) {
		t.Fatalf("files after a failed Put = %q, want only a/b/c and its directories", got)
	}
	if err := b.Delete(ctx, "a/b/c"); err != nil {
		t.Fatal(err)
	}
	if got := files(t, b.Dir()); len(got) != 0 {
		t.Fatalf("files after deleting the only object = %q, want none", got)
	}
}

// TestFSListIgnoresForeignDotFiles checks that files no key can name (temporary
// files of a crashed Put) stay out of List.
func TestFSListIgnoresForeignDotFiles(t *testing.T) {
	b := newFS(t)
	ctx := t.Context()
	if err := b.Put(ctx, "x/y", strings.NewReader("y"), 1); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b.Dir(), "x", ".tmp-123"), []byte("torn"), 0o644); err != nil {
		t.Fatal(err)
	}
	var keys []string
	if err := b.List(ctx, "", func(k string, _ int64) error { keys = append(keys, k); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(keys, []string{"x/y"}) {
		t.Fatalf("List = %q, want [x/y]", keys)
	}
}

func files(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, _ os.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out = append(out, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
