// Package api is the HTTP API module. Until issue 6 builds it, New
// returns a placeholder that serves only its health check.
package api

import "github.com/zeroci/zeroci/modules"

// Summary says in one line what the module does, for --help.
const Summary = "HTTP API, webhooks and web UI"

// issue is the issue that builds the module; until then it is a placeholder.
const issue = 6

// New returns the module, constructed without side effects.
func New() modules.Module { return modules.NewPlaceholder(modules.API, issue) }
