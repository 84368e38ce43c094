package cache

// Waiting is how many blocks GetRange calls wait for from another call's
// fetch now.
func (c *Cache) Waiting() int64 { return c.waiting.Load() }
