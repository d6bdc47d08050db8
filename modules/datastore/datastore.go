// Package datastore is the data store module. Until issue 3 builds it, New
// returns a placeholder that serves only its health check.
package datastore

import "github.com/zeroci/zeroci/modules"

// Summary says in one line what the module does, for --help.
const Summary = "repos, builds, jobs, secrets and tokens, projected from the event log"

// issue is the issue that builds the module; until then it is a placeholder.
const issue = 3

// New returns the module, constructed without side effects.
func New() modules.Module { return modules.NewPlaceholder(modules.Datastore, issue) }
