//go:build race

package contracts

// raceEnabled: the race detector slows encoding/json on megabytes about
// twentyfold.
const raceEnabled = true
