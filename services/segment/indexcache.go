package segment

import (
	"container/list"
	"slices"
	"sync"
)

// IndexCache keeps decoded section indexes in memory, least recently used
// out first, bounded by an estimate of their size. Segment objects never
// change once written, so an entry stays true for as long as its object
// exists; a reader with an index in the cache skips the GET of the
// section's tail and fetches only the chunks it reads. It is safe for
// concurrent use; a nil *IndexCache caches nothing.
type IndexCache struct {
	mu       sync.Mutex
	maxBytes int64
	bytes    int64
	ll       *list.List // of *indexEntry, most recent first
	byKey    map[indexKey]*list.Element
	hits     int64
	misses   int64
}

type indexKey struct {
	object         string
	offset, length int64
}

type indexEntry struct {
	key  indexKey
	idx  *SectionIndex
	size int64
}

// NewIndexCache returns a cache of at most maxBytes (estimated) of
// indexes; maxBytes <= 0 caches nothing.
func NewIndexCache(maxBytes int64) *IndexCache {
	return &IndexCache{maxBytes: maxBytes, ll: list.New(), byKey: map[indexKey]*list.Element{}}
}

// IndexCacheStats are an IndexCache's counters.
type IndexCacheStats struct {
	Hits, Misses    int64
	Entries         int
	Bytes, MaxBytes int64
}

// Stats returns the cache's counters.
func (c *IndexCache) Stats() IndexCacheStats {
	if c == nil {
		return IndexCacheStats{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return IndexCacheStats{Hits: c.hits, Misses: c.misses, Entries: c.ll.Len(), Bytes: c.bytes, MaxBytes: c.maxBytes}
}

func (c *IndexCache) get(k indexKey) (*SectionIndex, bool) {
	if c == nil {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byKey[k]
	if !ok {
		c.misses++
		return nil, false
	}
	c.hits++
	c.ll.MoveToFront(e)
	return e.Value.(*indexEntry).idx, true
}

func (c *IndexCache) add(k indexKey, idx *SectionIndex) {
	if c == nil || c.maxBytes <= 0 {
		return
	}
	size := indexSize(idx)
	if size > c.maxBytes {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.byKey[k]; ok {
		return
	}
	c.byKey[k] = c.ll.PushFront(&indexEntry{key: k, idx: idx, size: size})
	c.bytes += size
	for c.bytes > c.maxBytes {
		last := c.ll.Back()
		e := last.Value.(*indexEntry)
		c.ll.Remove(last)
		delete(c.byKey, e.key)
		c.bytes -= e.size
	}
}

// indexSize estimates the memory of a decoded index.
func indexSize(idx *SectionIndex) int64 {
	n := int64(256 + len(idx.Partition))
	for i := range idx.Batches {
		n += 96
		for _, c := range idx.Batches[i].Columns {
			n += 112 + int64(len(c.Name)+len(c.Min)+len(c.Max))
		}
	}
	return n
}

// ProjectedBytes returns the bytes of the chunks of columns (nil: every
// column) stored for the batches of the section that end after from, when
// the section's index is cached: what a read of that projection fetches and
// counts against ReadOptions.MaxBytes.
func (c *IndexCache) ProjectedBytes(key string, off, length int64, columns []string, from int64) (int64, bool) {
	if c == nil {
		return 0, false
	}
	c.mu.Lock()
	e, ok := c.byKey[indexKey{object: key, offset: off, length: length}]
	c.mu.Unlock()
	if !ok {
		return 0, false
	}
	idx := e.Value.(*indexEntry).idx
	var n int64
	for i := range idx.Batches {
		b := &idx.Batches[i]
		if b.BaseOffset+b.RowCount <= from {
			continue
		}
		for _, col := range b.Columns {
			if columns == nil || slices.Contains(columns, col.Name) {
				n += col.Length
			}
		}
	}
	return n, true
}
