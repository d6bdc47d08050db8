package pipeline

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"unicode/utf8"
)

// Limits mirrored from the dispatch contract (contracts/dispatch.go), so
// that a valid pipeline's jobs are valid JobSpecs.
const (
	maxLabels    = 64
	maxNamesList = 256  // caches, artifacts, restore_artifacts, paths, globs
	maxScript    = 1000 // script entries
	maxPathLen   = 1024
)

// Label patterns of contracts.RunnerHello.Labels, which has no exported
// check; a job's labels are matched against a runner's.
const (
	labelKeyPattern   = "[A-Za-z0-9][A-Za-z0-9._/-]{0,62}"
	labelValuePattern = "[A-Za-z0-9._/-]{0,63}"
)

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}
func isLabelRest(c byte) bool { return isAlnum(c) || c == '_' || c == '.' || c == '-' || c == '/' }

// matchName reports whether s is first·rest{0,max-1}.
func matchName(s string, max int, first, rest func(byte) bool) bool {
	if s == "" || len(s) > max || !first(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !rest(s[i]) {
			return false
		}
	}
	return true
}

// checkPath checks a workspace path: relative, slash-separated, no empty,
// "." or ".." segment (a trailing "/" is allowed: "bin/"), no backslash
// or control character. These are the dispatch contract's rules.
func checkPath(s string) error {
	if err := checkPathText(s); err != nil {
		return err
	}
	for seg := range strings.SplitSeq(strings.TrimSuffix(s, "/"), "/") {
		switch seg {
		case "":
			return fmt.Errorf("%q has an empty segment", s)
		case ".", "..":
			return fmt.Errorf("%q has a %q segment: paths are relative to the workspace and stay inside it", s, seg)
		}
	}
	return nil
}

func checkPathText(s string) error {
	if s == "" {
		return errors.New("empty path")
	}
	if len(s) > maxPathLen {
		return fmt.Errorf("%d bytes, max %d", len(s), maxPathLen)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%q is not valid UTF-8", s)
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c == 0x7f:
			return fmt.Errorf("%q has a control character", s)
		case c == '\\':
			return fmt.Errorf("%q has a backslash: use /", s)
		}
	}
	if s[0] == '/' {
		return fmt.Errorf("%q is absolute: paths are relative to the workspace", s)
	}
	return nil
}

// checkGlob checks a pattern for Match. Patterns of paths (inputs,
// changed) follow checkPath's rules; branch and tag patterns only need to
// be well formed.
func checkGlob(s string, isPath bool) error {
	if isPath {
		if err := checkPath(s); err != nil {
			return err
		}
	} else if s == "" {
		return errors.New("empty pattern")
	}
	for seg := range strings.SplitSeq(s, "/") {
		if _, err := path.Match(seg, ""); err != nil {
			return fmt.Errorf("%q is not a valid pattern: %v", s, err)
		}
	}
	return nil
}
