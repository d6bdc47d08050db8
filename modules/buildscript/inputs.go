package buildscript

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/internal/gitrepo"
	"github.com/zeroci/zeroci/modules/blobclient"
	"github.com/zeroci/zeroci/modules/rpc"
)

// inputRecord is what the blob store keeps under contracts.InputRecordKey
// for a successful run of a job with inputs.
type inputRecord struct {
	Build     int64    `json:"build"`
	Artifacts []string `json:"artifacts,omitempty"`
}

// inputKey computes j's input key (gitrepo.InputKey): its definition,
// environment (params included, secrets by name), the files its inputs
// match and its dependencies' output keys. Runs on j's build goroutine.
func (s *Scheduler) inputKey(ctx context.Context, j *job) (string, error) {
	b := j.b
	if b.tree == nil {
		tree, err := b.repo.Tree(ctx, b.commit)
		if err != nil {
			return "", err
		}
		b.tree = tree
	}
	def := *j.def
	def.Line = 0 // moving a job in the file changes nothing it does
	defJSON, err := json.Marshal(def)
	if err != nil {
		return "", err
	}
	spec, _ := b.pipe.Spec(j.id)
	env := withParams(spec.Env, b.params, j.def.Env, spec.SecretEnv)
	all := make(map[string]string, len(env)+len(spec.SecretEnv))
	for k, v := range env {
		all[k] = v
	}
	for k, v := range spec.SecretEnv {
		all[k] = "secret:" + v
	}
	var deps []string
	for _, id := range j.def.DependsOn {
		k, err := s.outputKey(ctx, b.byID[id])
		if err != nil {
			return "", err
		}
		deps = append(deps, id+"="+k)
	}
	return gitrepo.InputKey(defJSON, all, b.tree, j.def.Inputs, deps), nil
}

// outputKey names what job d produced: its input key when it has inputs
// (equal inputs, equal outputs), otherwise something unique to this run, so
// its dependents never count as unchanged.
func (s *Scheduler) outputKey(ctx context.Context, d *job) (string, error) {
	if d == nil {
		return "none", nil
	}
	if len(d.def.Inputs) == 0 {
		s.mu.Lock()
		defer s.mu.Unlock()
		return "run:" + d.ref().String() + ":" + strconv.Itoa(d.attempt), nil
	}
	if d.inKey == "" {
		k, err := s.inputKey(ctx, d)
		if err != nil {
			return "", err
		}
		d.inKey = k
	}
	return d.inKey, nil
}

// inputSkip skips j when a successful run with the same input key exists,
// copying that run's artifacts into this build. Runs on j's build
// goroutine.
func (s *Scheduler) inputSkip(ctx context.Context, j *job) (bool, error) {
	key, err := s.inputKey(ctx, j)
	if err != nil {
		return false, err
	}
	j.inKey = key
	var buf bytes.Buffer
	if _, err := blobclient.Get(ctx, s.tr, contracts.InputRecordKey(j.b.key.repo, j.id, key), &buf); err != nil {
		if contracts.CodeOf(err) == contracts.CodeNotFound {
			return false, nil
		}
		return false, err
	}
	var rec inputRecord
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		return false, fmt.Errorf("input record: %w", err)
	}
	if rec.Build == j.b.key.number {
		return false, nil
	}
	for _, id := range rec.Artifacts {
		if err := s.copyBlob(ctx, contracts.ArtifactKey(j.b.key.repo, rec.Build, id), contracts.ArtifactKey(j.b.key.repo, j.b.key.number, id)); err != nil {
			return false, fmt.Errorf("reusing artifact %s of build %d: %w", id, rec.Build, err)
		}
	}
	s.skip(ctx, j, fmt.Sprintf("%s%d", unchangedPrefix, rec.Build), true)
	return true, nil
}

// copyBlob copies a blob through this process.
func (s *Scheduler) copyBlob(ctx context.Context, from, to string) error {
	pr, pw := io.Pipe()
	go func() {
		_, err := blobclient.Get(ctx, s.tr, from, pw)
		pw.CloseWithError(err)
	}()
	_, err := blobclient.Put(ctx, s.tr, to, "application/gzip", pr)
	pr.CloseWithError(err)
	return err
}

// jobEnded follows a job's result: a successful job with inputs is
// recorded for later builds to skip, and the graph moves on.
func (s *Scheduler) jobEnded(ctx context.Context, j *job) {
	s.mu.Lock()
	record := j.status == contracts.JobStatusSuccess && len(j.def.Inputs) > 0
	attempt := j.attempt
	s.mu.Unlock()
	s.closeLog(ctx, j.ref(), attempt)
	if record {
		if err := s.recordInputs(ctx, j); err != nil {
			s.log.Warn().Err(err).Stringer("job", j.ref()).Msg("recording the input key; later builds will run the job again")
		}
	}
	s.advance(ctx, j.b)
}

func (s *Scheduler) recordInputs(ctx context.Context, j *job) error {
	if j.inKey == "" {
		k, err := s.inputKey(ctx, j)
		if err != nil {
			return err
		}
		j.inKey = k
	}
	rec := inputRecord{Build: j.b.key.number}
	for _, a := range j.def.Artifacts {
		rec.Artifacts = append(rec.Artifacts, a.ID)
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	_, err = blobclient.Put(ctx, s.tr, contracts.InputRecordKey(j.b.key.repo, j.id, j.inKey), "application/json", bytes.NewReader(data))
	return err
}

// closeLog closes the log of a job whose runner reported its end, in case
// the runner dies before its own close (it finished the output before it
// reported). A log the runner closed already, or never opened, is fine.
func (s *Scheduler) closeLog(ctx context.Context, job contracts.JobRef, attempt int) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err := rpc.Call[contracts.LogSummary](cctx, s.tr, contracts.CloseLog{Job: job, Attempt: attempt, Stored: true})
	switch contracts.CodeOf(err) {
	case "", contracts.CodeNotFound, contracts.CodeConflict:
	default:
		if ctx.Err() == nil {
			s.log.Warn().Err(err).Stringer("job", job).Msg("closing the job's log")
		}
	}
}
