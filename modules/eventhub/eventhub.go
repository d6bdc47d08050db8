// Package eventhub is the event hub module. Until issue 3 builds it, New
// returns a placeholder that serves only its health check.
package eventhub

import "github.com/zeroci/zeroci/modules"

// Summary says in one line what the module does, for --help.
const Summary = "durable, numbered event log and live event fan-out"

// issue is the issue that builds the module; until then it is a placeholder.
const issue = 3

// New returns the module, constructed without side effects.
func New() modules.Module { return modules.NewPlaceholder(modules.Eventhub, issue) }
