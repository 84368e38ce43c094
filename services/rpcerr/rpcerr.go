// Package rpcerr maps the errors of Strom's packages to Connect codes, once,
// at the handler edge. Errors users caused keep their message (it names the
// column, row or field to fix); internal errors are logged and reported
// without detail.
package rpcerr

import (
	"context"
	"errors"
	"log/slog"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/services/batch"
	"github.com/strom-io/strom/services/cluster"
	"github.com/strom-io/strom/services/kv"
	"github.com/strom-io/strom/services/objstore"
	"github.com/strom-io/strom/services/reader"
	"github.com/strom-io/strom/services/wal"
	"github.com/strom-io/strom/services/writer"
)

// codes lists, in order of precedence, which sentinel maps to which code.
var codes = []struct {
	err  error
	code connect.Code
}{
	{context.Canceled, connect.CodeCanceled},
	{context.DeadlineExceeded, connect.CodeDeadlineExceeded},
	{catalog.ErrInvalid, connect.CodeInvalidArgument},
	{catalog.ErrNotFound, connect.CodeNotFound},
	{catalog.ErrAlreadyExists, connect.CodeAlreadyExists},
	{catalog.ErrNotEmpty, connect.CodeFailedPrecondition},
	{catalog.ErrUnavailable, connect.CodeUnavailable},
	{catalog.ErrLeaseHeld, connect.CodeUnavailable},
	{catalog.ErrFenced, connect.CodeUnavailable},
	{batch.ErrMalformed, connect.CodeInvalidArgument},
	{batch.ErrTooLarge, connect.CodeResourceExhausted},
	{writer.ErrNotLeader, connect.CodeUnavailable},
	{cluster.ErrNoLeader, connect.CodeUnavailable},
	{writer.ErrBackpressure, connect.CodeResourceExhausted},
	{writer.ErrSequence, connect.CodeFailedPrecondition},
	{writer.ErrCommitTimeout, connect.CodeUnavailable},
	{wal.ErrDiskFull, connect.CodeResourceExhausted}, // before ErrWAL, which wraps it
	{writer.ErrWAL, connect.CodeUnavailable},
	{writer.ErrClosed, connect.CodeUnavailable},
	{reader.ErrOffsetOutOfRange, connect.CodeOutOfRange},
	{reader.ErrUnknownColumn, connect.CodeInvalidArgument},
	{reader.ErrInvalidColumns, connect.CodeInvalidArgument},
	{reader.ErrUnknownBucket, connect.CodeInvalidArgument},
	{objstore.ErrUnavailable, connect.CodeUnavailable},
	{kv.ErrInvalidOp, connect.CodeInvalidArgument},
	{kv.ErrMergeEngine, connect.CodeFailedPrecondition},
	{kv.ErrBufferFull, connect.CodeResourceExhausted},
	{kv.ErrClosed, connect.CodeUnavailable},
	{kv.ErrDiscarded, connect.CodeUnavailable},
}

// Code classifies err.
func Code(err error) connect.Code {
	var rowErr *batch.RowError
	var schemaErr *batch.SchemaError
	var ce *connect.Error
	switch {
	case errors.As(err, &ce):
		return ce.Code()
	case errors.As(err, &rowErr), errors.As(err, &schemaErr):
		return connect.CodeInvalidArgument
	}
	for _, c := range codes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return connect.CodeInternal
}

// Connect converts err for the client. op names the operation in logs and
// in the message of internal errors.
func Connect(ctx context.Context, logger *slog.Logger, op string, err error) error {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce
	}
	code := Code(err)
	if code == connect.CodeCanceled && ctx.Err() == nil {
		// Not the client's cancellation: the server's own (a shutdown, a
		// leadership that ended). The client may retry elsewhere.
		code = connect.CodeUnavailable
	}
	switch code {
	case connect.CodeInternal:
		logger.ErrorContext(ctx, "request failed", slog.String("op", op), slog.Any("err", err))
		return connect.NewError(code, errors.New(op+": internal error"))
	case connect.CodeUnavailable:
		logger.WarnContext(ctx, "request failed: unavailable", slog.String("op", op), slog.Any("err", err))
	}
	ce = connect.NewError(code, err)
	if errors.Is(err, writer.ErrSequence) {
		addReason(ce, ReasonStaleSequence)
	}
	return ce
}

// Domain is the google.rpc.ErrorInfo domain of Strom's error reasons.
const Domain = "strom.io"

// ReasonStaleSequence is the google.rpc.ErrorInfo reason of a write refused
// with failed_precondition because its sequence is lower than the writer's
// latest in a bucket it writes (writer.ErrSequence): that writer has
// already written a later request there, so nothing was written now.
const ReasonStaleSequence = "STALE_SEQUENCE"

func addReason(ce *connect.Error, reason string) {
	if d, err := connect.NewErrorDetail(&errdetails.ErrorInfo{Reason: reason, Domain: Domain}); err == nil {
		ce.AddDetail(d)
	}
}

// HasReason reports whether err is a Connect error (from a server, or
// wrapped) carrying a google.rpc.ErrorInfo detail with Strom's domain and
// reason: the way clients classify errors without matching messages.
func HasReason(err error, reason string) bool {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return false
	}
	for _, d := range ce.Details() {
		v, derr := d.Value()
		if info, ok := v.(*errdetails.ErrorInfo); derr == nil && ok && info.GetDomain() == Domain && info.GetReason() == reason {
			return true
		}
	}
	return false
}

// Invalid is an invalid_argument error with msg.
func Invalid(msg string) error {
	return connect.NewError(connect.CodeInvalidArgument, errors.New(msg))
}

// Required is an invalid_argument error "field: required" when value is
// empty, and nil otherwise. cmp.Or picks the first of several.
func Required(field, value string) error {
	if value != "" {
		return nil
	}
	return connect.NewError(connect.CodeInvalidArgument, errors.New(field+": required"))
}
