// Package jobs is the job runner module. Until issue 5 builds it, New
// returns a placeholder that serves only its health check.
package jobs

import "github.com/zeroci/zeroci/modules"

// Summary says in one line what the module does, for --help.
const Summary = "runners: take queued jobs and run them with the shell or container executor"

// issue is the issue that builds the module; until then it is a placeholder.
const issue = 5

// New returns the module, constructed without side effects.
func New() modules.Module { return modules.NewPlaceholder(modules.Jobs, issue) }
