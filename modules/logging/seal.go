package logging

// The job files keep what they must of secrets (the values to mask, and
// the unmasked context of a secret that may continue) sealed with the
// module's seal.Box (AES-256-GCM), bound to the job and use by the
// additional data (job.sealAD), so the files never hold a readable secret.
