package pipeline

import (
	"testing"

	"github.com/zeroci/zeroci/contracts"
)

func TestMatchGlob(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"main", "main", true},
		{"main", "main2", false},
		{"release/*", "release/1.0", true},
		{"release/*", "release/1.0/hotfix", false},
		{"release/**", "release/1.0/hotfix", true},
		{"release/**", "release", true},
		{"**", "a/b/c", true},
		{"**", "", true},
		{"**/*.go", "main.go", true},
		{"**/*.go", "cmd/zeroci/main.go", true},
		{"**/*.go", "cmd/zeroci/main.go.txt", false},
		{"cmd/**/*.go", "cmd/main.go", true},
		{"cmd/**/*.go", "cmd/a/b/main.go", true},
		{"cmd/**/*.go", "internal/a.go", false},
		{"a/**/**/b", "a/b", true},
		{"a/**/b/**/c", "a/x/b/y/z/c", true},
		{"a/**/b/**/c", "a/x/y/z/c", false},
		{"*.go", "dir/main.go", false},
		{"v*.*.*", "v1.2.3", true},
		{"v*.*.*", "v1.2", false},
		{"v[0-9]*", "v1", true},
		{"v[0-9]*", "vx", false},
		{"?", "a", true},
		{"?", "ab", false},
		{"bin/", "bin/app", true},
		{"bin/", "bin/x/y", true},
		{"bin/", "binary", false},
		{"[", "[", false}, // malformed: matches nothing
		{"go.sum", "go.sum", true},
		{"go.sum", "sub/go.sum", false},
	}
	for _, tt := range tests {
		if got := Match(tt.pattern, tt.name); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.pattern, tt.name, got, tt.want)
		}
	}
}

func TestWhenMatch(t *testing.T) {
	branchMain := MatchContext{Branch: "main", Event: contracts.TriggerPush, Changed: []string{"cmd/main.go"}, ChangesKnown: true}
	tests := []struct {
		name string
		when *When
		ctx  MatchContext
		want bool
	}{
		{"nil always", nil, MatchContext{}, true},
		{"empty always", &When{}, branchMain, true},
		{"branch", &When{Branch: []string{"main", "release/*"}}, branchMain, true},
		{"branch glob", &When{Branch: []string{"main", "release/*"}}, MatchContext{Branch: "release/2"}, true},
		{"other branch", &When{Branch: []string{"main", "release/*"}}, MatchContext{Branch: "dev"}, false},
		{"tag build, branch condition", &When{Branch: []string{"**"}}, MatchContext{Tag: "v1"}, false},
		{"tag", &When{Tag: []string{"v*"}}, MatchContext{Tag: "v1.0"}, true},
		{"branch build, tag condition", &When{Tag: []string{"v*"}}, branchMain, false},
		{"branch or tag: branch", &When{Branch: []string{"main"}, Tag: []string{"v*"}}, branchMain, true},
		{"branch or tag: tag", &When{Branch: []string{"main"}, Tag: []string{"v*"}}, MatchContext{Tag: "v2"}, true},
		{"branch or tag: neither", &When{Branch: []string{"main"}, Tag: []string{"v*"}}, MatchContext{Tag: "nightly"}, false},
		{"event", &When{Event: []contracts.TriggerKind{contracts.TriggerPush}}, branchMain, true},
		{"other event", &When{Event: []contracts.TriggerKind{contracts.TriggerManual, contracts.TriggerWebhook}}, branchMain, false},
		{"no event", &When{Event: []contracts.TriggerKind{contracts.TriggerPush}}, MatchContext{}, false},
		{"changed", &When{Changed: []string{"**/*.go"}}, branchMain, true},
		{"changed other files", &When{Changed: []string{"docs/**"}}, branchMain, false},
		{"nothing changed", &When{Changed: []string{"**"}}, MatchContext{ChangesKnown: true}, false},
		{"changes unknown", &When{Changed: []string{"docs/**"}}, MatchContext{Branch: "main"}, true},
		{"all conditions hold", &When{Branch: []string{"main"}, Event: []contracts.TriggerKind{contracts.TriggerPush}, Changed: []string{"cmd/**"}}, branchMain, true},
		{"one condition fails", &When{Branch: []string{"main"}, Event: []contracts.TriggerKind{contracts.TriggerPush}, Changed: []string{"web/**"}}, branchMain, false},
	}
	for _, tt := range tests {
		if got := tt.when.Match(tt.ctx); got != tt.want {
			t.Errorf("%s: Match = %v, want %v", tt.name, got, tt.want)
		}
	}
}
