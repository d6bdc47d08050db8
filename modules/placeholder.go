package modules

import (
	"context"
	"fmt"
)

// Placeholder is a Module that is not built yet: it starts and stops without
// doing anything, and says so in a warning when it starts. The host still
// registers its health service, so deployments and readiness can be
// exercised before the module exists. Safe for use by one host.
type Placeholder struct {
	name  string
	issue int
}

// NewPlaceholder returns the placeholder for module name, to be replaced by
// the real module in the given issue.
func NewPlaceholder(name string, issue int) *Placeholder {
	return &Placeholder{name: name, issue: issue}
}

// Name implements Module.
func (p *Placeholder) Name() string { return p.name }

// Issue is the issue that replaces the placeholder with the real module.
func (p *Placeholder) Issue() int { return p.issue }

// Start implements Module: it logs that the module is a placeholder.
func (p *Placeholder) Start(ctx context.Context, host Host) error {
	log := host.Logger()
	log.Warn().Int("issue", p.issue).Msg(p.String())
	return nil
}

// Stop implements Module; there is nothing to stop.
func (p *Placeholder) Stop(ctx context.Context) error { return nil }

// String says what the placeholder is.
func (p *Placeholder) String() string {
	return fmt.Sprintf("%s is a placeholder until issue %d: it answers only its health check", p.name, p.issue)
}
