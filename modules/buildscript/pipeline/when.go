package pipeline

import (
	"slices"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/internal/pathglob"
)

// When says which builds run a job. Each condition that is set must hold;
// a condition holds when any of its patterns matches. Branch and Tag
// together form one condition on the ref: a branch build must match
// Branch, a tag build Tag.
type When struct {
	Branch  []string                `json:"branch,omitempty"`  // globs of branch names ("main", "release/*")
	Tag     []string                `json:"tag,omitempty"`     // globs of tag names ("v*")
	Event   []contracts.TriggerKind `json:"event,omitempty"`   // push, manual, webhook
	Changed []string                `json:"changed,omitempty"` // globs of workspace paths ("**/*.go")
}

// MatchContext is what a build offers When.Match.
type MatchContext struct {
	Branch string // the branch built, without refs/heads/; "" for a tag build
	Tag    string // the tag built, without refs/tags/; "" for a branch build
	Event  contracts.TriggerKind
	// Changed are the files changed since the build's parent commit or the
	// last successful build, as slash-separated workspace paths.
	Changed []string
	// ChangesKnown is false when there is nothing to compare with (a first
	// build): a Changed condition then holds.
	ChangesKnown bool
}

// Match reports whether a build in ctx runs the job. A nil When always
// matches.
func (w *When) Match(ctx MatchContext) bool {
	if w == nil {
		return true
	}
	if len(w.Branch) > 0 || len(w.Tag) > 0 {
		branch := ctx.Branch != "" && matchAny(w.Branch, ctx.Branch)
		tag := ctx.Tag != "" && matchAny(w.Tag, ctx.Tag)
		if !branch && !tag {
			return false
		}
	}
	if len(w.Event) > 0 && !slices.Contains(w.Event, ctx.Event) {
		return false
	}
	if len(w.Changed) > 0 && ctx.ChangesKnown {
		if !slices.ContainsFunc(ctx.Changed, func(f string) bool { return matchAny(w.Changed, f) }) {
			return false
		}
	}
	return true
}

func matchAny(patterns []string, name string) bool {
	return slices.ContainsFunc(patterns, func(p string) bool { return Match(p, name) })
}

// Match reports whether name matches the workspace glob pattern (see
// pathglob.Match): "**" spans directories, "dir/" matches the files under it.
func Match(pattern, name string) bool { return pathglob.Match(pattern, name) }
