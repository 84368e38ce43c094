package batch

import (
	"errors"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow/memory"
)

// BudgetAllocator is a memory.Allocator that decodes untrusted Arrow data
// on a budget. It forwards to mem while the bytes it has handed out and not
// got back stay within limit; beyond, it records the fact and panics, which
// the IPC reader (or DecodeIPC) recovers into an error. It bounds what
// hostile input (a forged uncompressed length, say) can make the reader
// allocate. It also tracks every live allocation, so that after a failed
// decode (where arrow-go may have panicked with buffers in flight) FreeAll
// returns everything to mem.
type BudgetAllocator struct {
	mem      memory.Allocator
	limit    int64
	exceeded atomic.Bool // the budget was hit

	mu   sync.Mutex
	used int64
	live map[*byte]int
}

// ErrBudget is the panic value of a BudgetAllocator whose budget is
// exhausted; callers decoding with it recover from it.
var ErrBudget = errors.New("batch: allocation budget exceeded")

// NewBudgetAllocator returns an allocator that hands out at most limit
// bytes at a time from mem.
func NewBudgetAllocator(mem memory.Allocator, limit int64) *BudgetAllocator {
	return &BudgetAllocator{mem: mem, limit: limit}
}

// Exceeded reports whether an allocation was refused.
func (a *BudgetAllocator) Exceeded() bool { return a.exceeded.Load() }

// Allocate implements memory.Allocator.
func (a *BudgetAllocator) Allocate(size int) []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.reserve(int64(size))
	b := a.mem.Allocate(size)
	a.track(b)
	return b
}

// reserve panics unless n more bytes fit the limit; a.mu is held.
func (a *BudgetAllocator) reserve(n int64) {
	if n < 0 || a.used+n > a.limit {
		a.exceeded.Store(true)
		panic(ErrBudget)
	}
	a.used += n
}

func (a *BudgetAllocator) track(b []byte) {
	if a.live == nil {
		a.live = make(map[*byte]int)
	}
	a.live[unsafe.SliceData(b[:cap(b)])] = len(b)
}

// Reallocate implements memory.Allocator.
func (a *BudgetAllocator) Reallocate(size int, b []byte) []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	key := unsafe.SliceData(b[:cap(b)])
	old, ok := a.live[key]
	if !ok {
		old = len(b)
	}
	a.reserve(max(int64(size)-int64(old), 0))
	if int64(size) < int64(old) {
		a.used -= int64(old - size)
	}
	delete(a.live, key)
	nb := a.mem.Reallocate(size, b)
	a.track(nb)
	return nb
}

// Free implements memory.Allocator.
func (a *BudgetAllocator) Free(b []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	key := unsafe.SliceData(b[:cap(b)])
	size, ok := a.live[key]
	if !ok {
		return // freed by FreeAll already
	}
	delete(a.live, key)
	a.used -= int64(size)
	a.mem.Free(b)
}

// FreeAll returns every allocation still live to mem. Only for when nothing
// references them any more.
func (a *BudgetAllocator) FreeAll() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for key, size := range a.live {
		a.mem.Free(unsafe.Slice(key, size))
	}
	a.live = nil
	a.used = 0
}
