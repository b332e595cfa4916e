package certs

import "time"

// SetCheckInterval sets how often MaybeReload looks at the files, so tests
// can rotate certificates without waiting.
func SetCheckInterval(r *Reloader, d time.Duration) { r.checkEvery = d }
