// Package pathglob matches slash-separated workspace paths against the
// globs of pipeline files (when.changed, inputs, cache key checksums) and
// parses cache key templates. The scheduler and the runners share it, so
// both read a pattern the same way.
package pathglob

import (
	"path"
	"strings"
)

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
