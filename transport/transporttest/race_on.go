//go:build race

package transporttest

// raceEnabled: the race detector slows everything ~10×; tests that push many
// messages use fewer.
const raceEnabled = true
