//go:build !unix

package filelog

import (
	"fmt"
	"os"
	"runtime"
)

// lockDir: without flock the log cannot keep a second process out, so it
// does not open at all.
func lockDir(*os.File) error {
	return fmt.Errorf("directory locking is not supported on %s", runtime.GOOS)
}
