package contracts

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits checked by Validate. Sizes are in bytes.
const (
	MaxListLimit     = 1000 // largest Limit of a list or read request
	DefaultListLimit = 100  // what a Limit of 0 means
	MaxWaitMs        = 60_000
	MaxJobs          = 1000 // jobs in one build
	MaxParams        = 64   // build parameters
	MaxEnv           = 256  // environment variables of one job
	MaxSecretLen     = 64 << 10
	MaxBuildError    = 64 << 10 // Build.Error, BuildFinished.Error
	maxRefLen        = 255
	maxURLLen        = 2048
	maxReasonLen     = 1024
	maxUserLen       = 128
	maxParamLen      = 1024
	maxEnvValueLen   = 64 << 10
	maxLabels        = 64
	maxNamesList     = 256 // secret names, mask values, restore_artifacts...
	maxPathLen       = 1024
	maxPaths         = 100
	maxAttempts      = 100
)

// Name patterns, as regular expressions for documentation; the checks are
// hand-written.
const (
	RepoNamePattern   = "[a-z0-9][a-z0-9._-]{0,62}" // SPEC.md §5; also token names
	JobNamePattern    = "[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}"
	SecretNamePattern = "[A-Za-z_][A-Za-z0-9_]{0,63}" // also environment and parameter names
	RunnerIDPattern   = "[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
	labelKeyPattern   = "[A-Za-z0-9][A-Za-z0-9._/-]{0,62}"
	labelValuePattern = "[A-Za-z0-9._/-]{0,63}"
	imagePattern      = "[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}"
)

// CheckRepoName checks a repository name against RepoNamePattern (SPEC.md §5).
func CheckRepoName(s string) error { return field("repo name", checkRepoName(s)) }

// CheckTokenName checks an API token's name (RepoNamePattern).
func CheckTokenName(s string) error { return field("token name", checkRepoName(s)) }

// CheckJobName checks a pipeline job's name against JobNamePattern.
func CheckJobName(s string) error { return field("job name", checkJobName(s)) }

// CheckSecretName checks a secret's name against SecretNamePattern.
func CheckSecretName(s string) error { return field("secret name", checkEnvName(s)) }

// CheckRef checks a git ref ("main", "refs/tags/v1.2") roughly as
// git check-ref-format does.
func CheckRef(s string) error { return field("ref", checkRef(s)) }

// CheckBlobKey checks a blob key: relative slash-separated segments, no
// empty, "." or ".." segment, no control characters or backslashes, valid
// UTF-8, at most MaxBlobKeyLen bytes.
func CheckBlobKey(s string) error { return field("blob key", checkBlobKey(s)) }

// validate returns the first non-nil error of errs, labelled with the
// message type typ.
func validate(typ string, errs ...error) error {
	err := all(errs...)
	if err == nil {
		return nil
	}
	ve := asValidation(err)
	ve.Type = typ
	return ve
}

// all returns the first non-nil error.
func all(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// field prefixes the path of err (if any) with name.
func field(name string, err error) error {
	if err == nil {
		return nil
	}
	ve := asValidation(err)
	switch {
	case ve.Field == "":
		ve.Field = name
	case ve.Field[0] == '[':
		ve.Field = name + ve.Field
	default:
		ve.Field = name + "." + ve.Field
	}
	return ve
}

// index prefixes the path of err (if any) with [i].
func index(i int, err error) error {
	if err == nil {
		return nil
	}
	return field("["+strconv.Itoa(i)+"]", err)
}

// asValidation returns a copy of err's *ValidationError, or wraps err in one.
func asValidation(err error) *ValidationError {
	var ve *ValidationError
	if errors.As(err, &ve) {
		c := *ve
		return &c
	}
	return &ValidationError{Problem: err.Error()}
}

func problem(format string, args ...any) error {
	return &ValidationError{Problem: fmt.Sprintf(format, args...)}
}

// each checks every element of s with f.
func each[T any](s []T, max int, f func(T) error) error {
	if len(s) > max {
		return problem("%d entries, max %d", len(s), max)
	}
	for i, v := range s {
		if err := f(v); err != nil {
			return index(i, err)
		}
	}
	return nil
}

// eachEntry checks every entry of m with f, in key order so the error is
// the same every time.
func eachEntry[V any](m map[string]V, max int, f func(k string, v V) error) error {
	if len(m) > max {
		return problem("%d entries, max %d", len(m), max)
	}
	if len(m) == 0 {
		return nil
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if err := f(k, m[k]); err != nil {
			return field("["+quote(k)+"]", err)
		}
	}
	return nil
}

// unique checks s's elements with f and refuses duplicates.
func unique(s []string, max int, f func(string) error) error {
	if len(s) > max {
		return problem("%d entries, max %d", len(s), max)
	}
	seen := make(map[string]struct{}, len(s))
	for i, v := range s {
		if err := f(v); err != nil {
			return index(i, err)
		}
		if _, dup := seen[v]; dup {
			return index(i, problem("duplicate %s", quote(v)))
		}
		seen[v] = struct{}{}
	}
	return nil
}

// opt runs f on s unless s is empty.
func opt(s string, f func(string) error) error {
	if s == "" {
		return nil
	}
	return f(s)
}

func nonEmpty(s string) error {
	if s == "" {
		return problem("required")
	}
	return nil
}

// checkText checks that s is valid UTF-8 of at most max bytes, with no
// control characters but tab (and newline and carriage return when
// multiline). Empty is allowed.
func checkText(s string, max int, multiline bool) error {
	if len(s) > max {
		return problem("%d bytes, max %d", len(s), max)
	}
	if !utf8.ValidString(s) {
		return problem("not valid UTF-8")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 && c != '\t' && (!multiline || c != '\n' && c != '\r') || c == 0x7f {
			return problem("control character %#02x at byte %d", c, i)
		}
	}
	return nil
}

func checkEnum(valid bool, s, allowed string) error {
	if s == "" {
		return problem("required, one of %s", allowed)
	}
	if !valid {
		return problem("%s is not one of %s", quote(s), allowed)
	}
	return nil
}

func between[N int | int64](n, lo, hi N) error {
	if n < lo || n > hi {
		return problem("%d is out of range %d..%d", n, lo, hi)
	}
	return nil
}

func nonNegative[N int | int64](n N) error {
	if n < 0 {
		return problem("%d is negative", n)
	}
	return nil
}

func checkBuildNumber(n int64) error {
	if n < 1 {
		return problem("%d, want a build number >= 1", n)
	}
	return nil
}

func checkAttempt(n int) error { return between(n, 1, maxAttempts) }

func checkLimit(n int) error { return between(n, 0, MaxListLimit) }

func checkWait(ms int64) error { return between(ms, 0, MaxWaitMs) }

func checkID(id ID) error {
	if id.IsZero() {
		return problem("required")
	}
	return nil
}

// checkTime requires t to be set and representable in an envelope.
func checkTime(t time.Time) error {
	if t.IsZero() {
		return problem("required")
	}
	if _, ok := unixNano(t); !ok {
		return problem("%s is out of range (after 1970, before 2262)", t.Format(time.RFC3339Nano))
	}
	return nil
}

func optTime(t time.Time) error {
	if t.IsZero() {
		return nil
	}
	return checkTime(t)
}

// checkOrder requires end not to be before start when both are set.
func checkOrder(start, end time.Time) error {
	if !start.IsZero() && !end.IsZero() && end.Before(start) {
		return problem("before the start time")
	}
	return nil
}

func checkExitCode(c *int) error {
	if c != nil && (*c < 0 || *c > 255) {
		return problem("%d is out of range 0..255", *c)
	}
	return nil
}

// checkName checks s against first·rest{0,max-1}.
func checkName(s string, max int, first, rest func(byte) bool, pattern string) error {
	if s == "" {
		return problem("required")
	}
	ok := len(s) <= max && first(s[0])
	for i := 1; ok && i < len(s); i++ {
		ok = rest(s[i])
	}
	if !ok {
		return problem("%s does not match %s", quote(s), pattern)
	}
	return nil
}

func isLowerAlnum(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }
func isAlnum(c byte) bool      { return isLowerAlnum(c) || 'A' <= c && c <= 'Z' }
func isWord(c byte) bool       { return isAlnum(c) || c == '_' }
func isWordStart(c byte) bool  { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' }
func isRepoRest(c byte) bool   { return isLowerAlnum(c) || c == '.' || c == '_' || c == '-' }
func isJobRest(c byte) bool    { return isWord(c) || c == '.' || c == '-' }
func isRunnerRest(c byte) bool { return isJobRest(c) }
func isLabelRest(c byte) bool  { return isJobRest(c) || c == '/' }
func isImageRest(c byte) bool  { return isLabelRest(c) || c == ':' || c == '@' }

func checkRepoName(s string) error {
	return checkName(s, 63, isLowerAlnum, isRepoRest, RepoNamePattern)
}
func checkJobName(s string) error  { return checkName(s, 64, isWord, isJobRest, JobNamePattern) }
func checkEnvName(s string) error  { return checkName(s, 64, isWordStart, isWord, SecretNamePattern) }
func checkRunnerID(s string) error { return checkName(s, 64, isAlnum, isRunnerRest, RunnerIDPattern) }
func checkImage(s string) error    { return checkName(s, 255, isAlnum, isImageRest, imagePattern) }

func checkLabels(m map[string]string) error {
	return eachEntry(m, maxLabels, func(k, v string) error {
		if err := checkName(k, 63, isAlnum, isLabelRest, labelKeyPattern); err != nil {
			return err
		}
		if v == "" {
			return nil
		}
		return checkName(v, 63, isLabelRest, isLabelRest, labelValuePattern)
	})
}

func checkParams(m map[string]string) error {
	return eachEntry(m, MaxParams, func(k, v string) error {
		return all(checkEnvName(k), checkText(v, maxParamLen, false))
	})
}

func checkEnv(m map[string]string) error {
	return eachEntry(m, MaxEnv, func(k, v string) error {
		return all(checkEnvName(k), checkText(v, maxEnvValueLen, true))
	})
}

// checkUser checks who caused something: a user or token name, or a
// webhook sender's login.
func checkUser(s string) error { return checkText(s, maxUserLen, false) }

// checkReason checks a short explanation for people.
func checkReason(s string) error { return checkText(s, maxReasonLen, false) }

// checkRef checks a git ref roughly as git check-ref-format does; it also
// refuses a leading "-", which a command line could take for an option.
func checkRef(s string) error {
	if s == "" {
		return problem("required")
	}
	if len(s) > maxRefLen {
		return problem("%d bytes, max %d", len(s), maxRefLen)
	}
	if !utf8.ValidString(s) {
		return problem("not valid UTF-8")
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f || strings.IndexByte("~^:?*[\\", c) >= 0 {
			return problem("%s: %q is not allowed in a git ref", quote(s), c)
		}
	}
	if s[0] == '-' || s[0] == '/' || s[0] == '.' || s[len(s)-1] == '/' || s[len(s)-1] == '.' || s == "@" ||
		strings.HasSuffix(s, ".lock") || strings.Contains(s, "..") || strings.Contains(s, "//") ||
		strings.Contains(s, "/.") || strings.Contains(s, "@{") {
		return problem("%s is not a valid git ref", quote(s))
	}
	return nil
}

// checkCommit checks a full commit id: 40 (SHA-1) or 64 (SHA-256)
// lowercase hex digits.
func checkCommit(s string) error {
	if s == "" {
		return problem("required")
	}
	if (len(s) != 40 && len(s) != 64) || !allLowerHex(s) {
		return problem("%s is not 40 or 64 lowercase hex digits", quote(s))
	}
	return nil
}

// checkCommitish checks a commit id a user typed: 4 to 64 lowercase hex
// digits (an abbreviation is resolved by the scheduler).
func checkCommitish(s string) error {
	if s == "" {
		return problem("required")
	}
	if len(s) < 4 || len(s) > 64 || !allLowerHex(s) {
		return problem("%s is not 4 to 64 lowercase hex digits", quote(s))
	}
	return nil
}

// checkSHA256 checks a SHA-256 digest in hex.
func checkSHA256(s string) error {
	if s == "" {
		return problem("required")
	}
	if len(s) != 64 || !allLowerHex(s) {
		return problem("%s is not 64 lowercase hex digits", quote(s))
	}
	return nil
}

func allLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isLowerHex(s[i]) {
			return false
		}
	}
	return true
}

// checkURL checks a repository's clone URL (https://, ssh://, scp-like
// git@host:path, or a local path): printable, no spaces, not starting
// with "-".
func checkURL(s string) error {
	if s == "" {
		return problem("required")
	}
	if len(s) > maxURLLen {
		return problem("%d bytes, max %d", len(s), maxURLLen)
	}
	if !utf8.ValidString(s) {
		return problem("not valid UTF-8")
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return problem("%s: %q is not allowed in a URL", quote(s), c)
		}
	}
	if s[0] == '-' {
		return problem("%s starts with \"-\"", quote(s))
	}
	return nil
}

// checkPath checks a relative slash-separated path: no leading "/", no
// empty, "." or ".." segment (a trailing "/" only when trailingSlash), no
// control characters or backslashes, valid UTF-8, at most max bytes.
func checkPath(s string, max int, trailingSlash bool) error {
	if s == "" {
		return problem("required")
	}
	if len(s) > max {
		return problem("%d bytes, max %d", len(s), max)
	}
	if !utf8.ValidString(s) {
		return problem("not valid UTF-8")
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c == 0x7f:
			return problem("control character %#02x at byte %d", c, i)
		case c == '\\':
			return problem("%s: backslash at byte %d", quote(s), i)
		}
	}
	if s[0] == '/' {
		return problem("%s is absolute", quote(s))
	}
	if trailingSlash {
		s = strings.TrimSuffix(s, "/")
	}
	for seg := range strings.SplitSeq(s, "/") {
		switch seg {
		case "":
			return problem("%s has an empty segment", quote(s))
		case ".", "..":
			return problem("%s has a %q segment", quote(s), seg)
		}
	}
	return nil
}

func checkBlobKey(s string) error { return checkPath(s, MaxBlobKeyLen, false) }

// checkBlobPrefix checks a listing prefix: empty, or a key's beginning
// (which may end with "/").
func checkBlobPrefix(s string) error {
	return opt(s, func(s string) error { return checkPath(s, MaxBlobKeyLen, true) })
}

func checkWorkspacePath(s string) error { return checkPath(s, maxPathLen, true) }

// checkJobGraph checks the ids and depends_on lists of a build's jobs:
// valid unique ids, dependencies on known other jobs without repeats, no
// cycle. Paths are relative to the job list ("[2].depends_on[0]").
func checkJobGraph(ids []string, deps [][]string) error {
	if len(ids) > MaxJobs {
		return problem("%d jobs, max %d", len(ids), MaxJobs)
	}
	pos := make(map[string]int, len(ids))
	for i, id := range ids {
		if err := checkJobName(id); err != nil {
			return index(i, field("id", err))
		}
		if _, dup := pos[id]; dup {
			return index(i, field("id", problem("duplicate job %s", quote(id))))
		}
		pos[id] = i
	}
	for i, ds := range deps {
		err := unique(ds, MaxJobs, func(d string) error {
			if err := checkJobName(d); err != nil {
				return err
			}
			if d == ids[i] {
				return problem("%s depends on itself", quote(d))
			}
			if _, ok := pos[d]; !ok {
				return problem("unknown job %s", quote(d))
			}
			return nil
		})
		if err != nil {
			return index(i, field("depends_on", err))
		}
	}
	// Depth-first search; a job met again while on the stack closes a cycle.
	state := make([]uint8, len(ids)) // 0 unvisited, 1 on the stack, 2 done
	var stack []int
	var visit func(i int) error
	visit = func(i int) error {
		state[i] = 1
		stack = append(stack, i)
		for _, d := range deps[i] {
			j := pos[d]
			switch state[j] {
			case 1:
				var names []string
				for _, k := range stack[slices.Index(stack, j):] {
					names = append(names, ids[k])
				}
				return problem("dependency cycle %s", strings.Join(append(names, ids[j]), " -> "))
			case 0:
				if err := visit(j); err != nil {
					return err
				}
			}
		}
		stack = stack[:len(stack)-1]
		state[i] = 2
		return nil
	}
	for i := range ids {
		if state[i] == 0 {
			if err := visit(i); err != nil {
				return err
			}
		}
	}
	return nil
}

// quote quotes s for an error message, cut to 64 bytes.
func quote(s string) string {
	const max = 64
	if len(s) <= max {
		return strconv.Quote(s)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "..."
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
