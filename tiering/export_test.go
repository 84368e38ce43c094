package tiering

import "time"

// SetClock makes t read the time from now instead of time.Now. Call it
// before t runs.
func SetClock(t *Tierer, now func() time.Time) { t.now = now }
