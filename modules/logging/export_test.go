package logging

import (
	"path/filepath"
	"time"

	"github.com/zeroci/zeroci/contracts"
)

// WithSyncHook returns o with f run before every fsync round, so that a
// test can slow the store down or stop it.
func WithSyncHook(o Options, f func()) Options {
	o.syncHook = f
	return o
}

// LineFrame encodes a line record, to forge a file's tail in tests.
func LineFrame(n int64, text string) []byte {
	return appendLine(nil, n, time.Now(), contracts.StreamStdout, text)
}

// JobPath is where the module keeps a job's file under the data directory.
func JobPath(dataDir string, ref contracts.JobRef) string {
	return jobPath(filepath.Join(dataDir, "logging"), ref)
}
