package lease

import "time"

// SetClock makes k read the time from now instead of time.Now. Call it
// before k acquires a lease.
func (k *Keeper) SetClock(now func() time.Time) {
	k.now = now
	k.epoch = now()
}
