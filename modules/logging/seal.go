package logging

import "os"

// The job files keep what they must of secrets (the values to mask, and
// the unmasked context of a secret that may continue) sealed with the
// module's seal.Box (AES-256-GCM), bound to the job and use by the
// additional data (job.sealAD), so the files never hold a readable secret.

// syncDir fsyncs a directory, so that entries created in it are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
