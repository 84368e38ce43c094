package kv

import "errors"

// Sentinel errors. Errors returned by this package wrap one of them with a
// message that names the cause (the column, the row, the limit); classify
// them with errors.Is.
var (
	// ErrInvalidOp: an operation cannot be applied as given (a missing or
	// null primary-key column, a value of the wrong type, a partial update
	// that omits the key or names an unknown column). Maps to
	// invalid_argument. Nothing of the Prepare call is staged.
	ErrInvalidOp = errors.New("kv: invalid operation")
	// ErrMergeEngine: the table's merge engine cannot apply (aggregation sum
	// on a STRING, versioned without a version column, a partial update
	// under first_row). Maps to failed_precondition.
	ErrMergeEngine = errors.New("kv: merge engine")
	// ErrBufferFull: the pre-write buffer holds Options.MaxPendingBytes of
	// prepared but unapplied changes. Retryable once pending changes are
	// applied (or discarded); maps to resource_exhausted.
	ErrBufferFull = errors.New("kv: pre-write buffer full")
	// ErrDiscarded: the Changes were dropped by Discard (of themselves or of
	// an earlier Changes they may have read); prepare the operations again.
	ErrDiscarded = errors.New("kv: changes discarded; prepare them again")
	// ErrOutOfOrder: Apply was called for Changes that are not the oldest
	// pending ones, or ApplyChangelog while changes are pending.
	ErrOutOfOrder = errors.New("kv: changes applied out of order")
	// ErrCorrupt: stored bytes (a key, a row value, bucket metadata) do not
	// decode.
	ErrCorrupt = errors.New("kv: corrupt data")
	// ErrClosed: the Bucket is closed.
	ErrClosed = errors.New("kv: bucket closed")
)

// ErrNoPrimaryKey: Open was given a table without a primary key (a log
// table); upserts into it are invalid_argument.
var ErrNoPrimaryKey = errors.New("kv: table has no primary key")
