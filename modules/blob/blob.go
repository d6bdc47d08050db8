// Package blob is the blob storage module. Until issue 4 builds it, New
// returns a placeholder that serves only its health check.
package blob

import "github.com/zeroci/zeroci/modules"

// Summary says in one line what the module does, for --help.
const Summary = "artifacts and caches on the local filesystem or OCI Object Storage"

// issue is the issue that builds the module; until then it is a placeholder.
const issue = 4

// New returns the module, constructed without side effects.
func New() modules.Module { return modules.NewPlaceholder(modules.Blob, issue) }
