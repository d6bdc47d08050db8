package pathglob

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// maxCacheKey is the dispatch contract's limit on a cache key template.
const maxCacheKey = 256

// KeyPart is one part of a cache key template: a literal, or the checksum
// of the workspace files a pattern matches ({{ checksum "go.sum" }}).
type KeyPart struct {
	Literal  string `json:"literal,omitempty"`
	Checksum string `json:"checksum,omitempty"` // a glob, see Match
}

// ParseCacheKey parses a cache key template: literal text of
// [A-Za-z0-9._-] and actions {{ checksum "PATTERN" }}, PATTERN a Go
// quoted string holding a workspace glob. The runner renders the parts;
// the result must not be empty.
func ParseCacheKey(s string) ([]KeyPart, error) {
	if s == "" {
		return nil, errors.New("empty key")
	}
	if len(s) > maxCacheKey {
		return nil, fmt.Errorf("%d bytes, max %d", len(s), maxCacheKey)
	}
	var parts []KeyPart
	for rest := s; rest != ""; {
		open := strings.Index(rest, "{{")
		lit := rest
		if open >= 0 {
			lit = rest[:open]
		}
		if lit != "" {
			if strings.Contains(lit, "}}") {
				return nil, fmt.Errorf(`%q: "}}" without "{{"`, s)
			}
			for i := 0; i < len(lit); i++ {
				if c := lit[i]; !isAlnum(c) && c != '.' && c != '_' && c != '-' {
					return nil, fmt.Errorf("%q: %q is not allowed outside {{ }}: use letters, digits, '.', '_' and '-'", s, c)
				}
			}
			parts = append(parts, KeyPart{Literal: lit})
		}
		if open < 0 {
			break
		}
		end := strings.Index(rest[open:], "}}")
		if end < 0 {
			return nil, fmt.Errorf(`%q: "{{" without "}}"`, s)
		}
		action := strings.TrimSpace(rest[open+2 : open+end])
		pat, err := parseChecksum(action)
		if err != nil {
			return nil, fmt.Errorf("%q: {{ %s }}: %w", s, action, err)
		}
		parts = append(parts, KeyPart{Checksum: pat})
		rest = rest[open+end+2:]
	}
	return parts, nil
}

// parseChecksum parses `checksum "pattern"`.
func parseChecksum(action string) (string, error) {
	fn, arg, _ := strings.Cut(action, " ")
	if fn != "checksum" {
		return "", fmt.Errorf(`unknown function %q: the only one is checksum "PATH"`, fn)
	}
	arg = strings.TrimSpace(arg)
	pat, err := strconv.Unquote(arg)
	if err != nil || arg == "" || arg[0] == '\'' {
		return "", errors.New(`want checksum "PATH" with PATH in double quotes`)
	}
	if err := CheckGlob(pat, true); err != nil {
		return "", err
	}
	return pat, nil
}
