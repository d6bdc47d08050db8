package pipeline

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/internal/pathglob"
)

// Keys of the file, in the order the messages list them. Top-level keys
// starting with "." are ignored: they hold anchors for the jobs to merge.
var (
	topKeys   = []string{"env", "jobs"}
	jobKeys   = []string{"image", "script", "env", "timeout", "retries", "depends_on", "manual", "labels", "when", "caches", "artifacts", "restore_artifacts", "inputs"}
	whenKeys  = []string{"branch", "tag", "event", "changed"}
	cacheKeys = []string{"id", "key", "paths"}
	artKeys   = []string{"id", "paths"}
)

// Parse parses and validates a pipeline file. name is used in messages
// ("name:LINE: msg") and its extension picks the syntax: ".json" is JSON
// (with JSON's syntax errors), anything else YAML. Anchors, aliases and
// merge keys ("<<") are allowed; duplicate keys are not. The error is
// Errors when the file is invalid.
func Parse(name string, data []byte) (*Pipeline, error) {
	p := &parser{file: name}
	pl := p.parse(data)
	if len(p.errs) > 0 {
		// A mistake in an anchor merged into several jobs is one mistake.
		seen := map[Error]bool{}
		errs := slices.DeleteFunc(p.errs, func(e Error) bool {
			dup := seen[e]
			seen[e] = true
			return dup
		})
		slices.SortStableFunc(errs, func(a, b Error) int { return cmp.Compare(a.Line, b.Line) })
		if p.count > maxErrors {
			last := errs[len(errs)-1]
			errs = append(errs, Error{File: p.file, Line: last.Line, Msg: fmt.Sprintf("too many problems: %d more not shown", p.count-maxErrors)})
		}
		return nil, errs
	}
	return pl, nil
}

type parser struct {
	file  string
	errs  Errors
	count int // problems found, reported or not
}

// maxErrors bounds the problems reported for one file; the rest are
// summed up in one last line.
const maxErrors = 100

func (p *parser) errorf(line int, format string, args ...any) {
	p.count++
	if p.count > maxErrors {
		return
	}
	p.errs = append(p.errs, Error{File: p.file, Line: max(line, 1), Msg: fmt.Sprintf(format, args...)})
}

// root returns the file's top node, or nil after reporting why there is
// none.
func (p *parser) root(data []byte) *yaml.Node {
	if len(data) > MaxFileSize {
		p.errorf(1, "the file has %d bytes, max %d", len(data), MaxFileSize)
		return nil
	}
	if len(bytes.TrimSpace(data)) == 0 {
		p.errorf(1, `empty pipeline file: want a mapping with "jobs"`)
		return nil
	}
	if strings.EqualFold(path.Ext(strings.ReplaceAll(p.file, `\`, "/")), ".json") {
		n, err := parseJSON(data)
		if err != nil {
			var je *jsonError
			if errors.As(err, &je) {
				p.errorf(je.line, "invalid JSON: %s", je.msg)
			} else {
				p.errorf(1, "invalid JSON: %v", err)
			}
			return nil
		}
		return n
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
		p.errorf(1, `empty pipeline file: want a mapping with "jobs"`)
		return nil
	} else if err != nil {
		line, msg := splitYAMLError(err.Error())
		p.errorf(line, "invalid YAML: %s", msg)
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		line := extra.Line
		if err != nil {
			line, _ = splitYAMLError(err.Error())
		}
		p.errorf(line, "invalid YAML: more than one document")
		return nil
	}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		return doc.Content[0]
	}
	return &doc
}

// splitYAMLError turns "yaml: line 3: found ..." into (3, "found ...").
// yaml.v3 gives a parser error ("did not find expected ',' or ']'") the
// 0-based line of the construct it was parsing (the "[" that is not
// closed), and a scanner error a 1-based line: the former is shifted.
func splitYAMLError(s string) (int, string) {
	s = strings.TrimPrefix(s, "yaml: ")
	if rest, ok := strings.CutPrefix(s, "line "); ok {
		if n, msg, ok := strings.Cut(rest, ": "); ok {
			if line, err := strconv.Atoi(n); err == nil {
				if strings.HasPrefix(msg, "did not find expected") {
					line++
				}
				return line, msg
			}
		}
	}
	return 1, s
}

func (p *parser) parse(data []byte) *Pipeline {
	root := p.root(data)
	if root == nil {
		return nil
	}
	root = resolve(root)
	if isNull(root) {
		p.errorf(root.Line, `empty pipeline file: want a mapping with "jobs"`)
		return nil
	}
	if root.Kind != yaml.MappingNode {
		p.errorf(root.Line, `the pipeline must be a mapping with "jobs" (and optionally "env"), not %s`, kindOf(root))
		return nil
	}
	pl := &Pipeline{File: p.file}
	var jobsNode *yaml.Node
	envBad := false
	for _, kv := range p.pairs(root, "", nil) {
		switch k := kv.key.Value; {
		case k == "env":
			n := p.count
			pl.Env = p.env(kv.val, "")
			envBad = p.count > n
		case k == "jobs":
			jobsNode = kv.val
		case strings.HasPrefix(k, "."):
			// Hidden: a place for anchors (".defaults: &defaults").
		default:
			p.unknown(kv.key, "", topKeys)
		}
	}
	if jobsNode == nil {
		p.errorf(root.Line, `missing key "jobs": a pipeline needs at least one job`)
		return nil
	}
	jobsNode = resolve(jobsNode)
	if jobsNode.Kind != yaml.MappingNode {
		p.errorf(jobsNode.Line, "jobs: want a mapping of job ids to jobs, not %s", kindOf(jobsNode))
		return nil
	}
	jobs := p.pairsOf(jobsNode, "", nil, "job")
	if len(jobs) == 0 {
		p.errorf(jobsNode.Line, "jobs: no jobs; a pipeline needs at least one")
		return nil
	}
	if len(jobs) > contracts.MaxJobs {
		p.errorf(jobsNode.Line, "jobs: %d jobs, max %d", len(jobs), contracts.MaxJobs)
		return nil
	}
	ids := make(map[string]bool, len(jobs))
	for _, kv := range jobs {
		ids[kv.key.Value] = true
	}
	bad := map[string]bool{} // jobs with errors
	for _, kv := range jobs {
		n := p.count
		pl.Jobs = append(pl.Jobs, p.job(kv.key, kv.val, ids))
		bad[kv.key.Value] = p.count > n
	}
	if !p.graph(pl) {
		return nil
	}
	p.artifacts(pl)
	if !envBad {
		p.specs(pl, bad)
	}
	if len(p.errs) > 0 {
		return nil
	}
	return pl
}

// job parses one job; ids are all the pipeline's job ids.
func (p *parser) job(key, n *yaml.Node, ids map[string]bool) Job {
	j := Job{ID: key.Value, Line: key.Line, Timeout: DefaultTimeout, keyLines: map[string]int{}}
	if err := contracts.CheckJobName(j.ID); err != nil {
		p.errorf(key.Line, "invalid job id: %s", problemOf(err))
	}
	in := fmt.Sprintf("job %q: ", j.ID)
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		p.errorf(n.Line, "%swant a mapping with at least \"script\", not %s", in, kindOf(n))
		return j
	}
	hasScript := false
	for _, kv := range p.pairs(n, in, jobKeys) {
		k, v := kv.key.Value, kv.val
		j.keyLines[k] = kv.key.Line
		at := in + k + ": "
		switch k {
		case "image":
			j.Image, _ = p.str(v, at)
		case "script":
			hasScript = true
			j.Script = p.script(v, at)
		case "env":
			j.Env = p.env(v, in)
		case "timeout":
			j.Timeout = p.timeout(v, at)
		case "retries":
			j.Retries = p.retries(v, at)
		case "depends_on":
			j.DependsOn = p.dependsOn(v, at, j.ID, ids)
		case "manual":
			j.Manual = p.boolean(v, at)
		case "labels":
			j.Labels = p.labels(v, at)
		case "when":
			j.When = p.when(v, at)
		case "caches":
			j.Caches = p.caches(v, at)
		case "artifacts":
			j.Artifacts = p.artifactList(v, at)
		case "restore_artifacts":
			j.RestoreArtifacts = p.names(v, at, "artifact id", contracts.CheckJobName)
		case "inputs":
			j.Inputs = p.globs(v, at, true)
		}
	}
	if !hasScript {
		p.errorf(key.Line, "%smissing key \"script\": a job needs at least one command", in)
	}
	return j
}

func (p *parser) script(n *yaml.Node, at string) []string {
	lines := p.strList(n, at)
	if lines == nil {
		return nil
	}
	if len(lines) == 0 {
		p.errorf(n.Line, "%sempty script: a job needs at least one command", at)
	}
	for i, l := range lines {
		if strings.TrimSpace(l.s) == "" {
			p.errorf(l.line, "%sentry %d is empty", at, i+1)
		}
	}
	return values(lines)
}

func (p *parser) timeout(n *yaml.Node, at string) time.Duration {
	s, ok := p.scalar(n, at, "a duration like 10m or 1h30m")
	if !ok {
		return DefaultTimeout
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil && n.Tag == "!!int":
		p.errorf(n.Line, "%s%s has no unit: write e.g. %sm or %ss", at, s, s, s)
	case err != nil:
		p.errorf(n.Line, "%s%q is not a duration: write e.g. 10m, 1h30m or 90s", at, s)
	case d <= 0:
		p.errorf(n.Line, "%s%s: must be more than 0", at, s)
	case d > MaxTimeout:
		p.errorf(n.Line, "%s%s is more than the maximum %s", at, s, "24h")
	case d%time.Millisecond != 0:
		p.errorf(n.Line, "%s%s: the smallest unit is 1ms", at, s)
	default:
		return d
	}
	return DefaultTimeout
}

func (p *parser) retries(n *yaml.Node, at string) int {
	s, ok := p.scalar(n, at, fmt.Sprintf("a number 0..%d", MaxRetries))
	if !ok {
		return 0
	}
	r, err := strconv.Atoi(s)
	if err != nil || n.Tag != "!!int" || r < 0 || r > MaxRetries {
		p.errorf(n.Line, "%s%s: want a number 0..%d", at, s, MaxRetries)
		return 0
	}
	return r
}

func (p *parser) boolean(n *yaml.Node, at string) bool {
	s, ok := p.scalar(n, at, "true or false")
	if !ok {
		return false
	}
	if n.Tag == "!!str" && (s == "true" || s == "false") {
		p.errorf(n.Line, "%s%q is a string: write %s without quotes", at, s, s)
		return false
	}
	if n.Tag != "!!bool" || (s != "true" && s != "false") {
		p.errorf(n.Line, "%s%s: want true or false", at, s)
		return false
	}
	return s == "true"
}

func (p *parser) dependsOn(n *yaml.Node, at, self string, ids map[string]bool) []string {
	deps := p.strList(n, at)
	seen := map[string]bool{}
	for _, d := range deps {
		switch {
		case d.s == self:
			p.errorf(d.line, "%sjob %q depends on itself", at, self)
		case !ids[d.s]:
			hint := ""
			if p.count < maxErrors {
				hint = suggest(d.s, keysOf(ids))
			}
			p.errorf(d.line, "%sunknown job %q%s", at, d.s, hint)
		case seen[d.s]:
			p.errorf(d.line, "%s%q is listed twice", at, d.s)
		}
		seen[d.s] = true
	}
	return values(deps)
}

// env parses an environment mapping: NAME: value or NAME: {secret: name}.
func (p *parser) env(n *yaml.Node, in string) map[string]EnvValue {
	at := in + "env: "
	n = resolve(n)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		p.errorf(n.Line, "%swant a mapping of variable names to values, not %s", at, kindOf(n))
		return nil
	}
	pairs := p.pairsOf(n, at, nil, "variable")
	if len(pairs) > contracts.MaxEnv {
		p.errorf(n.Line, "%s%d variables, max %d", at, len(pairs), contracts.MaxEnv)
	}
	env := make(map[string]EnvValue, len(pairs))
	for _, kv := range pairs {
		name := kv.key.Value
		if err := contracts.CheckSecretName(name); err != nil {
			p.errorf(kv.key.Line, "%sinvalid variable name: %s", at, problemOf(err))
		} else if strings.HasPrefix(name, "ZEROCI_") {
			p.errorf(kv.key.Line, "%s%s: names starting with ZEROCI_ are reserved for the runner", at, name)
		}
		v := resolve(kv.val)
		if v.Kind == yaml.MappingNode {
			var secret string
			found := false
			for _, skv := range p.pairs(v, at+name+": ", []string{"secret"}) {
				secret, found = p.str(skv.val, at+name+": secret: ")
				if found {
					if err := contracts.CheckSecretName(secret); err != nil {
						p.errorf(skv.val.Line, "%s%s: invalid secret name: %s", at, name, problemOf(err))
					}
				}
			}
			if !found && len(v.Content) == 0 {
				p.errorf(v.Line, "%s%s: want a value or {secret: name}", at, name)
			}
			env[name] = EnvValue{Secret: secret}
			continue
		}
		s, ok := p.scalar(v, at+name+": ", `a value or {secret: name} (write "" for an empty value)`)
		if ok {
			if i := strings.IndexFunc(s, func(r rune) bool { return r < 0x20 && r != '\t' && r != '\n' && r != '\r' || r == 0x7f }); i >= 0 {
				p.errorf(v.Line, "%s%s: control character %#02x at byte %d", at, name, s[i], i)
			}
		}
		env[name] = EnvValue{Value: s}
	}
	return env
}

func (p *parser) labels(n *yaml.Node, at string) map[string]string {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		p.errorf(n.Line, "%swant a mapping of label names to values, not %s", at, kindOf(n))
		return nil
	}
	pairs := p.pairsOf(n, at, nil, "label")
	if len(pairs) > maxLabels {
		p.errorf(n.Line, "%s%d labels, max %d", at, len(pairs), maxLabels)
	}
	labels := make(map[string]string, len(pairs))
	for _, kv := range pairs {
		k := kv.key.Value
		if !matchName(k, 63, isAlnum, isLabelRest) {
			p.errorf(kv.key.Line, "%s%q does not match %s", at, k, labelKeyPattern)
		}
		v, ok := p.scalar(kv.val, at+k+": ", "a string")
		if ok && v != "" && !matchName(v, 63, isLabelRest, isLabelRest) {
			p.errorf(kv.val.Line, "%s%s: %q does not match %s", at, k, v, labelValuePattern)
		}
		labels[k] = v
	}
	return labels
}

func (p *parser) when(n *yaml.Node, at string) *When {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		p.errorf(n.Line, "%swant a mapping with branch, tag, event or changed, not %s", at, kindOf(n))
		return nil
	}
	w := &When{}
	pairs := p.pairs(n, at, whenKeys)
	if len(n.Content) == 0 {
		p.errorf(n.Line, "%sempty: remove it, or give branch, tag, event or changed", at)
	}
	for _, kv := range pairs {
		k := kv.key.Value
		kat := at + k + ": "
		switch k {
		case "branch":
			w.Branch = p.globs(kv.val, kat, false)
		case "tag":
			w.Tag = p.globs(kv.val, kat, false)
		case "changed":
			w.Changed = p.globs(kv.val, kat, true)
		case "event":
			for _, e := range p.strList(kv.val, kat) {
				k := contracts.TriggerKind(e.s)
				if !k.Valid() {
					p.errorf(e.line, "%s%q is not one of push, manual, webhook", kat, e.s)
				}
				w.Event = append(w.Event, k)
			}
		}
	}
	return w
}

// globs parses a list of glob patterns (see Match); paths are workspace
// paths, which must be relative and stay inside.
func (p *parser) globs(n *yaml.Node, at string, paths bool) []string {
	list := p.strList(n, at)
	if list != nil && len(list) == 0 {
		p.errorf(n.Line, "%sempty list: remove the key, or list at least one pattern", at)
	}
	for _, g := range list {
		if err := pathglob.CheckGlob(g.s, paths); err != nil {
			p.errorf(g.line, "%s%v", at, err)
		}
	}
	return values(list)
}

// names parses a list of distinct names checked by check.
func (p *parser) names(n *yaml.Node, at, what string, check func(string) error) []string {
	list := p.strList(n, at)
	seen := map[string]bool{}
	for _, s := range list {
		if err := check(s.s); err != nil {
			p.errorf(s.line, "%sinvalid %s: %s", at, what, problemOf(err))
		} else if seen[s.s] {
			p.errorf(s.line, "%s%q is listed twice", at, s.s)
		}
		seen[s.s] = true
	}
	return values(list)
}

// paths parses a non-empty list of distinct workspace paths.
func (p *parser) paths(n *yaml.Node, at string) []string {
	list := p.strList(n, at)
	if list != nil && len(list) == 0 {
		p.errorf(n.Line, "%sempty list: give at least one path", at)
	}
	seen := map[string]bool{}
	for _, s := range list {
		if err := pathglob.CheckPath(s.s); err != nil {
			p.errorf(s.line, "%s%v", at, err)
		} else if seen[s.s] {
			p.errorf(s.line, "%s%q is listed twice", at, s.s)
		}
		seen[s.s] = true
	}
	return values(list)
}

func (p *parser) caches(n *yaml.Node, at string) []contracts.CacheSpec {
	var out []contracts.CacheSpec
	seen := map[string]int{}
	p.each(n, at, func(i int, item *yaml.Node) {
		iat := fmt.Sprintf("%s[%d]: ", strings.TrimSuffix(at, ": "), i)
		var c contracts.CacheSpec
		got := map[string]bool{}
		for _, kv := range p.pairs(item, iat, cacheKeys) {
			got[kv.key.Value] = true
			switch kv.key.Value {
			case "id":
				c.ID = p.id(kv.val, iat+"id: ", "cache", seen)
			case "key":
				c.Key, _ = p.str(kv.val, iat+"key: ")
				if _, err := pathglob.ParseCacheKey(c.Key); err != nil {
					p.errorf(kv.val.Line, "%skey: %v", iat, err)
				}
			case "paths":
				c.Paths = p.paths(kv.val, iat+"paths: ")
			}
		}
		p.required(item, iat, got, cacheKeys)
		out = append(out, c)
	})
	return out
}

func (p *parser) artifactList(n *yaml.Node, at string) []contracts.ArtifactSpec {
	var out []contracts.ArtifactSpec
	seen := map[string]int{}
	p.each(n, at, func(i int, item *yaml.Node) {
		iat := fmt.Sprintf("%s[%d]: ", strings.TrimSuffix(at, ": "), i)
		var a contracts.ArtifactSpec
		got := map[string]bool{}
		for _, kv := range p.pairs(item, iat, artKeys) {
			got[kv.key.Value] = true
			switch kv.key.Value {
			case "id":
				a.ID = p.id(kv.val, iat+"id: ", "artifact", seen)
			case "paths":
				a.Paths = p.paths(kv.val, iat+"paths: ")
			}
		}
		p.required(item, iat, got, artKeys)
		out = append(out, a)
	})
	return out
}

// id parses the id of a cache or artifact, unique among seen.
func (p *parser) id(n *yaml.Node, at, what string, seen map[string]int) string {
	s, ok := p.str(n, at)
	if !ok {
		return ""
	}
	if err := contracts.CheckJobName(s); err != nil {
		p.errorf(n.Line, "%sinvalid %s id: %s", at, what, problemOf(err))
	} else if line, dup := seen[s]; dup {
		p.errorf(n.Line, "%sduplicate %s id %q (first at line %d)", at, what, s, line)
	} else {
		seen[s] = n.Line
	}
	return s
}

// required reports the keys of want missing from got, for a mapping item.
func (p *parser) required(item *yaml.Node, at string, got map[string]bool, want []string) {
	if resolve(item).Kind != yaml.MappingNode {
		return // reported by pairs
	}
	for _, k := range want {
		if !got[k] {
			p.errorf(item.Line, "%smissing key %q", at, k)
		}
	}
}

// each calls f on each item of sequence n.
func (p *parser) each(n *yaml.Node, at string, f func(i int, item *yaml.Node)) {
	n = resolve(n)
	if n.Kind != yaml.SequenceNode {
		p.errorf(n.Line, "%swant a list, not %s", at, kindOf(n))
		return
	}
	if len(n.Content) > maxNamesList {
		p.errorf(n.Line, "%s%d entries, max %d", at, len(n.Content), maxNamesList)
		return
	}
	for i, item := range n.Content {
		f(i, resolve(item))
	}
}

// located is a string and the line it came from.
type located struct {
	s    string
	line int
}

func values(l []located) []string {
	if l == nil {
		return nil
	}
	out := make([]string, len(l))
	for i, v := range l {
		out[i] = v.s
	}
	return out
}

// strList parses a list of strings; a single string is a list of one. It
// returns nil after an error (reported), and an empty non-nil slice for
// [].
func (p *parser) strList(n *yaml.Node, at string) []located {
	n = resolve(n)
	if n.Kind == yaml.ScalarNode && !isNull(n) {
		return []located{{n.Value, n.Line}}
	}
	if n.Kind != yaml.SequenceNode {
		p.errorf(n.Line, "%swant a list of strings, not %s", at, kindOf(n))
		return nil
	}
	if len(n.Content) > maxScript {
		p.errorf(n.Line, "%s%d entries, max %d", at, len(n.Content), maxScript)
		return nil
	}
	out := make([]located, 0, len(n.Content))
	bad := false
	for i, item := range n.Content {
		s, ok := p.scalar(item, fmt.Sprintf("%s[%d]: ", strings.TrimSuffix(at, ": "), i), "a string")
		bad = bad || !ok
		out = append(out, located{s, resolve(item).Line})
	}
	if bad {
		return nil
	}
	return out
}

// str parses a string (any non-null scalar: 0, 1.10 and true keep their
// text).
func (p *parser) str(n *yaml.Node, at string) (string, bool) { return p.scalar(n, at, "a string") }

func (p *parser) scalar(n *yaml.Node, at, want string) (string, bool) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode || isNull(n) {
		p.errorf(n.Line, "%swant %s, not %s", at, want, kindOf(n))
		return "", false
	}
	return n.Value, true
}

// pair is a key of a mapping and its value.
type pair struct{ key, val *yaml.Node }

// pairs returns the entries of mapping n in file order, with merge keys
// ("<<: *anchor") expanded: explicit keys win over merged ones, earlier
// merged mappings over later ones. Duplicate keys, non-string keys and,
// when known is not nil, keys not in known are reported.
func (p *parser) pairs(n *yaml.Node, at string, known []string) []pair {
	return p.pairsOf(n, at, known, "key")
}

// pairsOf is pairs, calling the mapping's keys what in messages.
func (p *parser) pairsOf(n *yaml.Node, at string, known []string, what string) []pair {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		p.errorf(n.Line, "%swant a mapping, not %s", at, kindOf(n))
		return nil
	}
	var out []pair
	first := map[string]int{}
	var merged []pair
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			merged = append(merged, p.merge(v, at, known)...)
			continue
		}
		r := resolve(k)
		if r.Kind != yaml.ScalarNode || isNull(r) {
			p.errorf(k.Line, "%skeys must be strings, not %s", at, kindOf(r))
			continue
		}
		k = r
		if line, dup := first[k.Value]; dup {
			p.errorf(k.Line, "%sduplicate %s %q (first at line %d)", at, what, k.Value, line)
			continue
		}
		first[k.Value] = k.Line
		if known != nil && !slices.Contains(known, k.Value) {
			p.unknown(k, at, known)
			continue
		}
		out = append(out, pair{k, v})
	}
	for _, kv := range merged {
		if _, ok := first[kv.key.Value]; !ok {
			first[kv.key.Value] = kv.key.Line
			out = append(out, kv)
		}
	}
	return out
}

func (p *parser) unknown(k *yaml.Node, at string, known []string) {
	if s := suggest(k.Value, known); s != "" {
		p.errorf(k.Line, "%sunknown key %q%s", at, k.Value, s)
		return
	}
	p.errorf(k.Line, "%sunknown key %q (known: %s)", at, k.Value, strings.Join(known, ", "))
}

// merge returns the pairs a merge key's value brings: a mapping or a list
// of mappings.
func (p *parser) merge(v *yaml.Node, at string, known []string) []pair {
	v = resolve(v)
	switch v.Kind {
	case yaml.MappingNode:
		return p.pairs(v, at, known)
	case yaml.SequenceNode:
		var out []pair
		seen := map[string]bool{}
		for _, m := range v.Content {
			if resolve(m).Kind != yaml.MappingNode {
				p.errorf(m.Line, "%s<<: want a mapping or a list of mappings, not %s", at, kindOf(m))
				continue
			}
			for _, kv := range p.pairs(m, at, known) {
				if !seen[kv.key.Value] {
					seen[kv.key.Value] = true
					out = append(out, kv)
				}
			}
		}
		return out
	}
	p.errorf(v.Line, "%s<<: want a mapping or a list of mappings, not %s", at, kindOf(v))
	return nil
}

// resolve follows aliases.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		return resolve(n.Content[0])
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

// kindOf names n's kind for messages.
func kindOf(n *yaml.Node) string {
	n = resolve(n)
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return "nothing (null)"
		case "!!bool":
			return "a boolean " + n.Value
		case "!!int", "!!float":
			return "a number " + n.Value
		}
		return fmt.Sprintf("a string %q", n.Value)
	}
	return "an unsupported node"
}

// problemOf returns what a contracts check says is wrong, without its
// field path.
func problemOf(err error) string {
	var ve *contracts.ValidationError
	if errors.As(err, &ve) {
		return ve.Problem
	}
	return err.Error()
}

// suggest returns ` (did you mean "x"?)` for the known word closest to s,
// when one is close enough.
func suggest(s string, known []string) string {
	if len(known) > 1000 {
		return "" // not cheap
	}
	best, bestD := "", len(s)/2+1
	for _, k := range known {
		if d := editDistance(s, k); d < bestD || d == bestD && best != "" && k < best {
			best, bestD = k, d
		}
	}
	if best == "" || bestD > 2 {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance of a and b (bytes), counting a
// swap of neighbours as one edit.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return max(len(a), len(b))
	}
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

func keysOf(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
