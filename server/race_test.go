//go:build race

package server

// raceEnabled reports a build with the race detector, which runs the
// simulation fewer times by default.
const raceEnabled = true
