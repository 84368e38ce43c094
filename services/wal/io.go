package wal

import (
	"bufio"
	"encoding/binary"
	"io"
	"os"
)

// fsync makes the data of f durable. It is a variable so that tests can
// inject failures.
var fsync = syncData

// write writes b to f. It is a variable so that tests can inject failures
// and short writes.
var write = func(f *os.File, b []byte) (int, error) { return f.Write(b) }

// truncate truncates f to size. It is a variable so that tests can inject
// failures.
var truncate = func(f *os.File, size int64) error { return f.Truncate(size) }

func newReader(r io.Reader) *bufio.Reader { return bufio.NewReaderSize(r, 256<<10) }

// grow returns b with length n, reallocating if needed.
func grow(b []byte, n int) []byte {
	if cap(b) < n {
		nb := make([]byte, n, max(n, 2*cap(b)))
		copy(nb, b)
		return nb
	}
	return b[:n]
}

func uint32le(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }
