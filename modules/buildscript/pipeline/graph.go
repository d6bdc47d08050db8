package pipeline

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/zeroci/zeroci/contracts"
)

// graph reports dependency cycles, each once, as "a -> b -> a" starting
// at (and reported on the line of) the cycle's job that comes first in
// the file. It reports whether there are none.
func (p *parser) graph(pl *Pipeline) bool {
	pos := index(pl)
	state := make([]uint8, len(pl.Jobs)) // 0 unvisited, 1 on the stack, 2 done
	var stack []int
	seen := map[string]bool{}
	ok := true
	var visit func(i int)
	visit = func(i int) {
		state[i] = 1
		stack = append(stack, i)
		for _, d := range pl.Jobs[i].DependsOn {
			j, known := pos[d]
			if !known || j == i {
				continue // reported by the job's parse
			}
			switch state[j] {
			case 1:
				cycle := slices.Clone(stack[slices.Index(stack, j):])
				first := slices.Index(cycle, slices.Min(cycle))
				cycle = append(cycle[first:], cycle[:first]...)
				names := make([]string, 0, len(cycle)+1)
				for _, k := range cycle {
					names = append(names, pl.Jobs[k].ID)
				}
				names = append(names, names[0])
				msg := "dependency cycle: " + strings.Join(names, " -> ")
				if !seen[msg] {
					seen[msg] = true
					p.errorf(pl.Jobs[cycle[0]].Line, "%s", msg)
				}
				ok = false
			case 0:
				visit(j)
			}
		}
		stack = stack[:len(stack)-1]
		state[i] = 2
	}
	for i := range pl.Jobs {
		if state[i] == 0 {
			visit(i)
		}
	}
	return ok
}

// artifacts checks that artifact ids are unique in the pipeline and that
// each job restores only artifacts of its (transitive) dependencies.
func (p *parser) artifacts(pl *Pipeline) {
	producer := map[string]*Job{}
	for i := range pl.Jobs {
		j := &pl.Jobs[i]
		for _, a := range j.Artifacts {
			if other, dup := producer[a.ID]; dup {
				p.errorf(j.keyLines["artifacts"], "job %q: artifacts: id %q is also an artifact of job %q (line %d); artifact ids are unique in a pipeline", j.ID, a.ID, other.ID, other.Line)
				continue
			}
			producer[a.ID] = j
		}
	}
	for i := range pl.Jobs {
		j := &pl.Jobs[i]
		if len(j.RestoreArtifacts) == 0 {
			continue
		}
		deps, _ := pl.Dependencies(j.ID)
		for _, a := range j.RestoreArtifacts {
			src, ok := producer[a]
			switch {
			case !ok:
				p.errorf(j.keyLines["restore_artifacts"], "job %q: restore_artifacts: no job produces artifact %q", j.ID, a)
			case src == j:
				p.errorf(j.keyLines["restore_artifacts"], "job %q: restore_artifacts: %q is the job's own artifact", j.ID, a)
			case !slices.Contains(deps, src.ID):
				p.errorf(j.keyLines["restore_artifacts"], "job %q: restore_artifacts: artifact %q comes from job %q, which is not among its dependencies (add it to depends_on)", j.ID, a, src.ID)
			}
		}
	}
}

// specs checks each job without errors so far against the dispatch contract, as a runner will
// get it; the checks above catch what a user writes, this catches the
// rest (image names, control characters in values...).
func (p *parser) specs(pl *Pipeline, bad map[string]bool) {
	for _, j := range pl.Jobs {
		if bad[j.ID] {
			continue
		}
		spec, _ := pl.Spec(j.ID)
		spec.Job = contracts.JobRef{Repo: "r", Build: 1, Job: j.ID}
		spec.URL = "https://example.invalid/r.git"
		spec.Ref = "main"
		spec.Commit = strings.Repeat("0", 40)
		w := contracts.Work{Assignments: []contracts.Assignment{{
			LeaseID: contracts.NewID(time.Unix(1, 0)), Deadline: time.Unix(1, 0), Attempt: 1, MaxAttempts: 1 + j.Retries, Job: spec,
		}}}
		err := w.Validate()
		var ve *contracts.ValidationError
		if err == nil || !errors.As(err, &ve) {
			if err != nil {
				p.errorf(j.Line, "job %q: %v", j.ID, err)
			}
			continue
		}
		field := strings.TrimPrefix(ve.Field, "assignments[0].job.")
		key := field
		if i := strings.IndexAny(key, ".["); i >= 0 {
			key = key[:i]
		}
		line, ok := j.keyLines[key]
		if !ok {
			line = j.Line
		}
		if key == "secret_env" {
			line, field = j.Line, "env"
		}
		p.errorf(line, "job %q: %s: %s", j.ID, field, ve.Problem)
	}
}

func index(pl *Pipeline) map[string]int {
	pos := make(map[string]int, len(pl.Jobs))
	for i, j := range pl.Jobs {
		pos[j.ID] = i
	}
	return pos
}

// Order returns the job ids in a topological order: every job after its
// dependencies, and otherwise in file order.
func (p *Pipeline) Order() []string {
	pos := index(p)
	waiting := make([]int, len(p.Jobs)) // dependencies not yet ordered
	dependents := make([][]int, len(p.Jobs))
	for i, j := range p.Jobs {
		waiting[i] = len(j.DependsOn)
		for _, d := range j.DependsOn {
			dependents[pos[d]] = append(dependents[pos[d]], i)
		}
		// Parse never returns unknown dependencies, so pos[d] is d's.
	}
	done := make([]bool, len(p.Jobs))
	order := make([]string, 0, len(p.Jobs))
	// Quadratic at worst, fine for contracts.MaxJobs jobs; the first ready
	// job in file order goes next.
	for len(order) < len(p.Jobs) {
		next := -1
		for i := range p.Jobs {
			if !done[i] && waiting[i] == 0 {
				next = i
				break
			}
		}
		if next < 0 {
			break // a cycle: Parse never returns one
		}
		done[next] = true
		order = append(order, p.Jobs[next].ID)
		for _, d := range dependents[next] {
			waiting[d]--
		}
	}
	return order
}

// Dependencies returns the given jobs and everything they depend on,
// directly or not, in file order: what `zeroci run --job` runs. An unknown
// id is an error.
func (p *Pipeline) Dependencies(ids ...string) ([]string, error) {
	pos := index(p)
	in := make([]bool, len(p.Jobs))
	var add func(i int)
	add = func(i int) {
		if in[i] {
			return
		}
		in[i] = true
		for _, d := range p.Jobs[i].DependsOn {
			if j, ok := pos[d]; ok {
				add(j)
			}
		}
	}
	for _, id := range ids {
		i, ok := pos[id]
		if !ok {
			known := make([]string, len(p.Jobs))
			for i, j := range p.Jobs {
				known[i] = j.ID
			}
			return nil, fmt.Errorf("pipeline: unknown job %q%s", id, suggest(id, known))
		}
		add(i)
	}
	var out []string
	for i, j := range p.Jobs {
		if in[i] {
			out = append(out, j.ID)
		}
	}
	return out, nil
}
