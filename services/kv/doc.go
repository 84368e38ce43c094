// Package kv is the state of one primary-key bucket: a pebble DB holding the
// bucket's current rows, the merge engines that combine an upsert with the
// row its key already has, and the pre-write buffer of the write flow:
//
//  1. [Bucket.Prepare] reads each key's old row (pre-write buffer, then
//     pebble), merges, and returns [Changes]: the changelog rows (+I, -U, +U,
//     -D) as an Arrow record, with the new values held in the buffer;
//  2. the caller appends the changelog to the log (WAL) and waits for it to
//     commit;
//  3. [Bucket.Apply] writes the values, the exact row count and the log end
//     offset to pebble in one batch; or [Bucket.Discard] drops Changes whose
//     changelog will never commit, and every later one.
//
// Reads ([Bucket.Lookup], [Bucket.PrefixLookup], [Bucket.Scan],
// [Bucket.Count]) see pebble only, so never an uncommitted change. Recovery
// restores a pebble snapshot (package kvsnap) and replays the changelog after
// [Bucket.AppliedOffset] with [Bucket.ApplyChangelog].
//
// Keys use an order-preserving encoding ([EncodeKey]) with the bucket key
// columns first, so a lookup by bucket key is a pebble prefix scan. See
// docs/kv.md for the encodings, the changelog rules and the merge engines.
package kv
