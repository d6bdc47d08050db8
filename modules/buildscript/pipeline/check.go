package pipeline

// Limits mirrored from the dispatch contract (contracts/dispatch.go), so
// that a valid pipeline's jobs are valid JobSpecs.
const (
	maxLabels    = 64
	maxNamesList = 256  // caches, artifacts, restore_artifacts, paths, globs
	maxScript    = 1000 // script entries
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
