package rpcerr_test

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"

	"connectrpc.com/connect"

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
