// Package objstore is Strom's object storage: a small [Bucket] interface with
// an S3 implementation ([S3], for AWS S3, MinIO, versitygw and other
// S3-compatible servers) and a local-directory implementation ([FS], for the
// single-process `strom server` and for tests).
//
// Every durable byte of Strom (segments, KV snapshot SSTs) goes through a
// Bucket. The interface is deliberately as small as pebble's
// objstorage/remote.Storage: whole-object atomic writes, whole and ranged
// reads, size, listing by prefix and delete. Cross-cutting concerns (metrics,
// retries beyond the SDK's, fault injection) are decorators around a Bucket.
//
// Both implementations pass the acceptance suite in package objstoretest.
package objstore

import (
	"context"
	"errors"
	"io"
)

// Sentinel errors. Implementations wrap them with %w and add the operation
// and key; classify with [errors.Is], never by message.
var (
	// ErrNotExist reports that no object has the key. Get, GetRange and Size
	// return it; Delete never does.
	ErrNotExist = errors.New("objstore: object does not exist")

	// ErrInvalidKey reports a key (or a configured prefix) that breaks the
	// key rules of [ValidateKey]. Nothing was read or written.
	ErrInvalidKey = errors.New("objstore: invalid key")

	// ErrOutOfRange reports a GetRange whose range does not lie within the
	// object: off+length > size.
	ErrOutOfRange = errors.New("objstore: range out of bounds")

	// ErrSizeMismatch reports a Put whose reader did not yield exactly size
	// bytes. Nothing was written.
	ErrSizeMismatch = errors.New("objstore: reader length does not match size")

	// ErrUnavailable reports that the store could not be reached or kept
	// failing (network errors, 5xx responses, throttling) after the
	// implementation's own retries. The operation may be retried later. A Put
	// or Delete that failed this way may or may not have taken effect.
	ErrUnavailable = errors.New("objstore: store unavailable")
)

// IsNotExist reports whether err says that an object does not exist. It is
// errors.Is(err, ErrNotExist), for callers that take a function (as pebble's
// remote.Storage.IsNotExistError does).
func IsNotExist(err error) bool { return errors.Is(err, ErrNotExist) }

// BucketReader is the read side of a [Bucket], for components that only read
// (the read path, the janitor's listing).
//
// All methods are safe for concurrent use. Consistency is that of S3 since
// December 2020: strong read-after-write for Put and Delete, including List;
// an object written concurrently with a List may or may not be listed.
type BucketReader interface {
	// Get opens the whole object for reading. The caller must Close the
	// reader. The reader sees one version of the object even if it is
	// overwritten meanwhile (S3 returns the version current when the request
	// started; FS keeps the open file). Cancelling ctx may abort reads.
	//
	// Get returns an error wrapping ErrNotExist if no object has the key.
	Get(ctx context.Context, key string) (io.ReadCloser, error)

	// GetRange opens length bytes of the object starting at byte off. The
	// range must lie within the object (0 <= off, 0 <= length,
	// off+length <= size); otherwise GetRange returns an error wrapping
	// ErrOutOfRange. A zero length at any off <= size yields an empty reader.
	// The reader yields exactly length bytes, then io.EOF.
	//
	// GetRange returns an error wrapping ErrNotExist if no object has the key.
	GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error)

	// Size returns the object's length in bytes (an S3 HEAD). It returns an
	// error wrapping ErrNotExist if no object has the key.
	Size(ctx context.Context, key string) (int64, error)

	// List calls fn with the key and size of every object whose key starts
	// with prefix, in lexical (byte-wise) key order. The listing is recursive:
	// prefix is a plain string prefix, not a directory ("seg/00" lists
	// "seg/001" and "seg/00/x"). An empty prefix lists the whole bucket. A
	// prefix that no valid key can start with lists nothing.
	//
	// fn is called from the calling goroutine, one key at a time. If fn
	// returns an error, List stops and returns that error unwrapped, so a
	// caller can stop early with its own sentinel.
	List(ctx context.Context, prefix string, fn func(key string, size int64) error) error
}

// Bucket is a flat namespace of immutable-once-written byte objects, named
// by keys that obey [ValidateKey].
//
// Contract for every implementation:
//
//   - Put is atomic: readers see the whole new object or the previous state
//     (the old object, or none), never a prefix or a mix. A failed or
//     cancelled Put leaves the previous state.
//   - Put and Delete are idempotent: repeating one with the same arguments
//     has the same result, so a caller may retry after ErrUnavailable.
//   - Reads after a successful Put or Delete returns observe it, from any
//     goroutine or process using the same store (strong consistency).
//   - All methods are safe for concurrent use. Concurrent Puts of one key
//     leave one of the written objects, whole.
//   - Keys form a flat namespace, but one key must never be another key plus
//     "/..." ("a" and "a/b" must not both exist): the FS implementation and
//     S3 servers backed by a filesystem (versitygw, MinIO) store objects as
//     files, where "a" cannot be both a file and a directory. Put may fail
//     for such a key.
//   - Every method validates its key first and returns an error wrapping
//     ErrInvalidKey for a bad one.
//   - Errors wrap the sentinels of this package where one applies, and the
//     context's error when ctx ends.
type Bucket interface {
	BucketReader

	// Put stores the object key with exactly size bytes read from r,
	// replacing any object with that key. If r yields fewer or more than
	// size bytes, Put writes nothing and returns an error wrapping
	// ErrSizeMismatch.
	//
	// Put streams r when it can: a reader that is both an [io.ReaderAt] and
	// an [io.Seeker] (an *os.File, a *bytes.Reader) is sent as is from its
	// current position, because the S3 client must hash the body before
	// sending it and rewind it to retry; any other reader is first buffered
	// in memory by the S3 implementation. Put does not close r; r's position
	// afterwards is unspecified.
	// Objects are written in one request, so size is limited to
	// [MaxObjectSize].
	Put(ctx context.Context, key string, r io.Reader, size int64) error

	// Delete removes the object key. Deleting a key that does not exist is
	// not an error.
	Delete(ctx context.Context, key string) error

	// Close releases the Bucket's resources. The Bucket must not be used
	// after Close; readers returned earlier must be closed before it.
	Close() error
}

// MaxObjectSize is the largest object Put accepts: 5 GiB, the limit of a
// single S3 PutObject.
const MaxObjectSize int64 = 5 << 30
