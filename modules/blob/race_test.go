//go:build race

package blob_test

// raceEnabled: the race detector slows JSON coding about twentyfold.
const raceEnabled = true
