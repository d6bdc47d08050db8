package pathglob

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"unicode/utf8"
)

// maxPathLen is the dispatch contract's limit on a workspace path.
const maxPathLen = 1024

// CheckPath checks a workspace path: relative, slash-separated, no empty,
// "." or ".." segment (a trailing "/" is allowed: "bin/"), no backslash
// or control character. These are the dispatch contract's rules.
func CheckPath(s string) error {
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

// CheckGlob checks a pattern for Match. Patterns of paths (inputs,
// changed) follow CheckPath's rules; branch and tag patterns only need to
// be well formed.
func CheckGlob(s string, isPath bool) error {
	if isPath {
		if err := CheckPath(s); err != nil {
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

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}
