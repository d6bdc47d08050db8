// Package fsutil holds the file system helpers the storage packages share.
package fsutil

import (
	"fmt"
	"os"
)

// SyncDir fsyncs a directory, so that the entries created, renamed or
// removed in it are durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}
