// Package pipeline reads a repository's pipeline file (SPEC.md §4):
// .zeroci/pipeline.yaml, .yml or .json. Parse is strict: unknown keys,
// duplicate keys and jobs, unknown or self dependencies, cycles, bad
// durations, empty scripts, bad names, globs and paths are all reported,
// each with its file and line, in one Errors value.
//
// A parsed Pipeline is valid: its jobs form a DAG, every job converts to a
// contracts.JobSpec (Pipeline.Spec) that passes the dispatch contract's
// validation. Everything here is pure (no goroutines, no state) and safe for
// concurrent use on distinct values; a Pipeline is not modified after Parse.
package pipeline

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/zeroci/zeroci/contracts"
)

// Limits and defaults of a pipeline file.
const (
	MaxFileSize    = 1 << 20 // bytes of a pipeline file
	DefaultTimeout = 60 * time.Minute
	MaxTimeout     = 24 * time.Hour
	MaxRetries     = 10
)

// Dir and Names locate the pipeline file in a repository: Dir/Names[i],
// looked up in this order.
const Dir = ".zeroci"

// Names are the pipeline file's possible names inside Dir.
var Names = [...]string{"pipeline.yaml", "pipeline.yml", "pipeline.json"}

// ErrInvalid is matched (errors.Is) by every Errors value: the file is
// not a valid pipeline.
var ErrInvalid = errors.New("pipeline: invalid pipeline file")

// ErrNotFound is matched by Find's error when a directory has no pipeline
// file.
var ErrNotFound = errors.New("pipeline: no pipeline file")

// Pipeline is a parsed, valid pipeline file.
type Pipeline struct {
	File string              `json:"file"`          // the name given to Parse
	Env  map[string]EnvValue `json:"env,omitempty"` // pipeline-wide environment
	Jobs []Job               `json:"jobs"`          // in file order
}

// Job is one job of a pipeline. Durations and counts have their defaults
// filled in.
type Job struct {
	ID               string                   `json:"id"`
	Line             int                      `json:"line"` // of the job's key in the file
	Image            string                   `json:"image,omitempty"`
	Script           []string                 `json:"script"`
	Env              map[string]EnvValue      `json:"env,omitempty"` // the job's own; see Pipeline.Spec for the merge
	Timeout          time.Duration            `json:"timeout"`
	Retries          int                      `json:"retries,omitempty"`
	DependsOn        []string                 `json:"depends_on,omitempty"`
	Manual           bool                     `json:"manual,omitempty"`
	Labels           map[string]string        `json:"labels,omitempty"`
	When             *When                    `json:"when,omitempty"` // nil: always
	Caches           []contracts.CacheSpec    `json:"caches,omitempty"`
	Artifacts        []contracts.ArtifactSpec `json:"artifacts,omitempty"`
	RestoreArtifacts []string                 `json:"restore_artifacts,omitempty"` // artifact ids of (transitive) dependencies
	Inputs           []string                 `json:"inputs,omitempty"`            // globs; see Match

	keyLines map[string]int // line of each key of the job, for late errors
}

// EnvValue is an environment variable's value: a literal Value, or the
// name of a repository Secret whose value the runner injects (and masks).
// When Secret is set, Value is empty.
type EnvValue struct {
	Value  string `json:"value,omitempty"`
	Secret string `json:"secret,omitempty"`
}

// Error is one problem of a pipeline file, at a line (1-based).
type Error struct {
	File string
	Line int
	Msg  string
}

// Error returns "file:line: msg".
func (e Error) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// Errors are all the problems Parse found, sorted by line (problems on
// one line in the order found). errors.Is(errs, ErrInvalid) is true.
type Errors []Error

// Error returns one "file:line: msg" line per problem.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (es Errors) Unwrap() error { return ErrInvalid }

// Job returns the job with the given id.
func (p *Pipeline) Job(id string) (*Job, bool) {
	for i := range p.Jobs {
		if p.Jobs[i].ID == id {
			return &p.Jobs[i], true
		}
	}
	return nil, false
}

// ArtifactJob returns the id of the job that produces the artifact with
// the given id (artifact ids are unique in a pipeline).
func (p *Pipeline) ArtifactJob(artifactID string) (string, bool) {
	for _, j := range p.Jobs {
		for _, a := range j.Artifacts {
			if a.ID == artifactID {
				return j.ID, true
			}
		}
	}
	return "", false
}

// Spec returns what a runner needs of job id: script, image, timeout,
// caches, artifacts, and the pipeline's environment overlaid with the
// job's, literal values in Env and secrets in SecretEnv. The caller fills
// in Job, URL, Ref and Commit.
func (p *Pipeline) Spec(id string) (contracts.JobSpec, bool) {
	j, ok := p.Job(id)
	if !ok {
		return contracts.JobSpec{}, false
	}
	s := contracts.JobSpec{
		Script:           slices.Clone(j.Script),
		Image:            j.Image,
		TimeoutMs:        j.Timeout.Milliseconds(),
		Caches:           cloneSpecs(j.Caches, func(c contracts.CacheSpec) contracts.CacheSpec { c.Paths = slices.Clone(c.Paths); return c }),
		Artifacts:        cloneSpecs(j.Artifacts, func(a contracts.ArtifactSpec) contracts.ArtifactSpec { a.Paths = slices.Clone(a.Paths); return a }),
		RestoreArtifacts: slices.Clone(j.RestoreArtifacts),
	}
	for _, env := range []map[string]EnvValue{p.Env, j.Env} {
		for k, v := range env {
			if v.Secret != "" {
				delete(s.Env, k)
				if s.SecretEnv == nil {
					s.SecretEnv = map[string]string{}
				}
				s.SecretEnv[k] = v.Secret
				continue
			}
			delete(s.SecretEnv, k)
			if s.Env == nil {
				s.Env = map[string]string{}
			}
			s.Env[k] = v.Value
		}
	}
	return s, true
}

func cloneSpecs[T any](s []T, clone func(T) T) []T {
	if s == nil {
		return nil
	}
	out := make([]T, len(s))
	for i, v := range s {
		out[i] = clone(v)
	}
	return out
}

// Find returns the path of the pipeline file in repository directory dir:
// dir/.zeroci/pipeline.yaml, .yml or .json. It is an error (matching
// ErrNotFound) when there is none, and an error when there are several.
func Find(dir string) (string, error) {
	var found []string
	for _, name := range Names {
		p := filepath.Join(dir, Dir, name)
		info, err := os.Stat(p)
		switch {
		case err == nil && info.Mode().IsRegular():
			found = append(found, p)
		case err == nil:
			return "", fmt.Errorf("pipeline: %s is not a regular file", p)
		case !errors.Is(err, os.ErrNotExist):
			return "", fmt.Errorf("pipeline: %w", err)
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("%w in %s (want %s/%s, .yml or .json)", ErrNotFound, filepath.Join(dir, Dir), Dir, Names[0])
	case 1:
		return found[0], nil
	default:
		return "", fmt.Errorf("pipeline: several pipeline files, keep one: %s", strings.Join(found, ", "))
	}
}

// Load reads and parses the pipeline file at path (at most MaxFileSize
// bytes); errors in the file are Errors naming path.
func Load(path string) (*Pipeline, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("pipeline: read %s: %w", path, err)
	}
	return Parse(path, data)
}
