package rpcerr_test

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"syscall"
	"testing"

	"connectrpc.com/connect"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/services/rpcerr"
	"github.com/strom-io/strom/services/wal"
	"github.com/strom-io/strom/services/writer"
)

func TestCode(t *testing.T) {
	nearlyFull := &wal.SpaceError{Dir: "/data/wal", Free: 40 << 20, Min: 512 << 20, Flag: "-wal.min-free-bytes"}
	full := &wal.SpaceError{Dir: "/data/wal", Err: &os.PathError{Op: "write", Path: "/data/wal/1.wal", Err: syscall.ENOSPC}}
	for _, tc := range []struct {
		err  error
		want connect.Code
	}{
		{nearlyFull, connect.CodeResourceExhausted},
		{fmt.Errorf("%w: %w", writer.ErrWAL, full), connect.CodeResourceExhausted},
		{fmt.Errorf("%w: %w", writer.ErrWAL, wal.ErrFailed), connect.CodeUnavailable},
		{writer.ErrBackpressure, connect.CodeResourceExhausted},
		{errors.New("boom"), connect.CodeInternal},
	} {
		if got := rpcerr.Code(tc.err); got != tc.want {
			t.Errorf("Code(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestStaleSequenceReason: a writer.ErrSequence carries the ErrorInfo
// reason STALE_SEQUENCE, which clients find also through wrapping; other
// failed_precondition errors do not.
func TestStaleSequenceReason(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	err := rpcerr.Connect(t.Context(), logger, "append", fmt.Errorf("%w: writer \"w\" sent sequence 1 after 2", writer.ErrSequence))
	if connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("code %v, want failed_precondition", connect.CodeOf(err))
	}
	if !rpcerr.HasReason(err, rpcerr.ReasonStaleSequence) || !rpcerr.HasReason(fmt.Errorf("lines 1 to 2: %w", err), rpcerr.ReasonStaleSequence) {
		t.Errorf("%v: no %s reason", err, rpcerr.ReasonStaleSequence)
	}
	for _, other := range []error{
		rpcerr.Connect(t.Context(), logger, "drop database", catalog.ErrNotEmpty),
		writer.ErrSequence, // not a Connect error: a client never sees it
		nil,
	} {
		if rpcerr.HasReason(other, rpcerr.ReasonStaleSequence) {
			t.Errorf("%v has the reason %s", other, rpcerr.ReasonStaleSequence)
		}
	}
}

func TestRequired(t *testing.T) {
	if err := rpcerr.Required("database", "db"); err != nil {
		t.Fatalf("a value: %v", err)
	}
	err := cmp.Or(rpcerr.Required("database", "db"), rpcerr.Required("table", ""), rpcerr.Required("name", ""))
	if connect.CodeOf(err) != connect.CodeInvalidArgument || err.Error() != "invalid_argument: table: required" {
		t.Fatalf("first empty field: %v", err)
	}
}
