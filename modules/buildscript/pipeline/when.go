package pipeline

import (
	"path"
	"slices"
	"strings"

	"github.com/zeroci/zeroci/contracts"
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

// Match reports whether name matches pattern; both are slash-separated.
// Each segment matches as with path.Match ("*" and "?" do not cross "/"),
// and a segment "**" matches any number of segments, none included:
// "**/*.go" matches "main.go" and "cmd/x/main.go". A trailing "/" on the
// pattern is ignored, and a pattern naming a directory ("bin/") also
// matches the files under it. A malformed pattern matches nothing.
func Match(pattern, name string) bool {
	dir := strings.HasSuffix(pattern, "/") && pattern != "/"
	pattern = strings.TrimSuffix(pattern, "/")
	if dir {
		pattern += "/**"
	}
	return matchSegs(strings.Split(pattern, "/"), strings.Split(name, "/"))
}

func matchSegs(pat, name []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			// Collapse runs of "**"; then try every split.
			for len(pat) > 1 && pat[1] == "**" {
				pat = pat[1:]
			}
			for i := 0; i <= len(name); i++ {
				if matchSegs(pat[1:], name[i:]) {
					return true
				}
			}
			return false
		}
		if len(name) == 0 {
			return false
		}
		if ok, err := path.Match(pat[0], name[0]); err != nil || !ok {
			return false
		}
		pat, name = pat[1:], name[1:]
	}
	return len(name) == 0
}
