package contracts

import (
	"errors"
	"strings"
	"testing"
)

// TestMessageRules covers rules beyond the registry examples: each case is
// a message and the field it must fail at ("" when it is valid).
func TestMessageRules(t *testing.T) {
	spec := func(change func(*JobSpec)) Work {
		s := validSpec()
		change(&s)
		return Work{Assignments: []Assignment{{LeaseID: testID(1), Deadline: t1, Attempt: 1, MaxAttempts: 1, Job: s}}}
	}
	build := func(change func(*Build)) Build {
		b := validBuild()
		change(&b)
		return b
	}
	chunk := func(offset, size int64, d []byte, eof bool) BlobChunk {
		return BlobChunk{Key: "k", Offset: offset, Data: d, SHA256: BlobSHA256(d), Size: size, BlobSHA256: dataSum, EOF: eof}
	}
	tests := []struct {
		name  string
		msg   Message
		field string
	}{
		// Logging.
		{"append without lines", AppendLog{Job: ref(), Attempt: 1, Seq: 1}, "lines"},
		{"append seq 0", AppendLog{Job: ref(), Attempt: 1, Seq: 0, Lines: validLines(1, 1)}, "seq"},
		{"line with newline", AppendLog{Job: ref(), Attempt: 1, Seq: 1, Lines: []LogLine{{N: 1, Time: t0, Stream: StreamStderr, Text: "a\nb"}}}, "lines[0].text"},
		{"line with invalid UTF-8", AppendLog{Job: ref(), Attempt: 1, Seq: 1, Lines: []LogLine{{N: 1, Time: t0, Stream: StreamStderr, Text: "\xff"}}}, "lines[0].text"},
		{"line too long", AppendLog{Job: ref(), Attempt: 1, Seq: 1, Lines: []LogLine{{N: 1, Time: t0, Stream: StreamStdout, Text: strings.Repeat("x", MaxLogLineLen+1)}}}, "lines[0].text"},
		{"line stream", AppendLog{Job: ref(), Attempt: 1, Seq: 1, Lines: []LogLine{{N: 1, Time: t0, Stream: "stdin"}}}, "lines[0].stream"},
		{"too many lines", AppendLog{Job: ref(), Attempt: 1, Seq: 1, Lines: validLines(1, MaxLogChunkLines+1)}, "lines"},
		{"empty read at the end", LogLines{Job: ref(), Next: 42, Closed: true}, ""},
		{"read with wait over max", ReadLog{Job: ref(), From: 1, WaitMs: MaxWaitMs + 1}, "wait_ms"},

		// Blob.
		{"chunk at offset 0 empty blob", chunk(0, 0, nil, true), ""},
		{"chunk past the end", chunk(100, 12, nil, true), ""},
		{"chunk middle", chunk(0, 100, data, false), ""},
		{"chunk eof wrong", chunk(0, 100, data, true), "eof"},
		{"chunk beyond size", chunk(95, 100, data, true), "eof"},
		{"put empty chunk", PutChunk{UploadID: testID(1), SHA256: BlobSHA256(nil)}, "data"},
		{"put negative offset", PutChunk{UploadID: testID(1), Offset: -1, Data: data, SHA256: dataSum}, "offset"},
		{"list limit", ListBlobs{Limit: -1}, "limit"},

		// Dispatch.
		{"spec ok", spec(func(*JobSpec) {}), ""},
		{"secret env overlaps env", spec(func(s *JobSpec) { s.SecretEnv = map[string]string{"GOFLAGS": "x"} }), "assignments[0].job.secret_env"},
		{"secret env bad secret name", spec(func(s *JobSpec) { s.SecretEnv = map[string]string{"TOKEN": "a-b"} }), `assignments[0].job.secret_env["TOKEN"]`},
		{"no script", spec(func(s *JobSpec) { s.Script = nil }), "assignments[0].job.script"},
		{"empty script line", spec(func(s *JobSpec) { s.Script = []string{"ok", ""} }), "assignments[0].job.script[1]"},
		{"short commit", spec(func(s *JobSpec) { s.Commit = "abc1234" }), "assignments[0].job.commit"},
		{"no timeout", spec(func(s *JobSpec) { s.TimeoutMs = 0 }), "assignments[0].job.timeout_ms"},
		{"duplicate cache", spec(func(s *JobSpec) { s.Caches = append(s.Caches, s.Caches[0]) }), "assignments[0].job.caches[1].id"},
		{"artifact without paths", spec(func(s *JobSpec) { s.Artifacts = []ArtifactSpec{{ID: "bin"}} }), "assignments[0].job.artifacts[0].paths"},
		{"env value with NUL", spec(func(s *JobSpec) { s.Env = map[string]string{"A": "\x00"} }), `assignments[0].job.env["A"]`},
		{"duplicate lease", Work{Assignments: append(spec(func(*JobSpec) {}).Assignments, spec(func(*JobSpec) {}).Assignments...)}, "assignments[1].lease_id"},
		{"no work", Work{}, ""},
		{"attempt past max", Work{Assignments: []Assignment{{LeaseID: testID(1), Deadline: t1, Attempt: 2, MaxAttempts: 1, Job: validSpec()}}}, "assignments[0].max_attempts"},
		{"success with exit code 1", JobResult{RunnerID: "r", LeaseID: testID(1), Job: ref(), Attempt: 1, Status: JobStatusSuccess, ExitCode: intp(1), StartedAt: t0, FinishedAt: t1}, "exit_code"},
		{"result skipped", JobResult{RunnerID: "r", LeaseID: testID(1), Job: ref(), Attempt: 1, Status: JobStatusSkipped, StartedAt: t0, FinishedAt: t1}, "status"},
		{"requeue with failure", JobResult{RunnerID: "r", LeaseID: testID(1), Job: ref(), Attempt: 1, Status: JobStatusFailure, StartedAt: t0, FinishedAt: t1, Requeue: true}, "requeue"},
		{"exit code 256", JobResult{RunnerID: "r", LeaseID: testID(1), Job: ref(), Attempt: 1, Status: JobStatusFailure, ExitCode: intp(256), StartedAt: t0, FinishedAt: t1}, "exit_code"},
		{"label value", RunnerHello{RunnerID: "r", Capacity: 1, Executor: ExecutorShell, Labels: map[string]string{"env": "pr od"}}, `labels["env"]`},
		{"capacity", RunnerHello{RunnerID: "r", Capacity: 0, Executor: ExecutorShell}, "capacity"},

		// Data store.
		{"retry_of not earlier", build(func(b *Build) { b.RetryOf = 7 }), "retry_of"},
		{"finished before started", build(func(b *Build) { b.FinishedAt = t0; b.StartedAt = t1 }), "finished_at"},
		{"job unknown dependency", build(func(b *Build) { b.Jobs[1].DependsOn = []string{"lint"} }), "jobs[1].depends_on[0]"},
		{"job status", build(func(b *Build) { b.Jobs[2].Status = "waiting" }), "jobs[2].status"},
		{"list without jobs", build(func(b *Build) { b.Jobs = nil }), ""},
		{"plan without jobs", PlanBuild{Repo: "web", Number: 1, Commit: commit40}, "jobs"},
		{"pending job without attempt", UpdateJob{Job: ref(), Status: JobStatusPending, Reason: "waiting for build", Time: t0}, ""},
		{"skipped job without attempt", UpdateJob{Job: ref(), Status: JobStatusSkipped, Reason: "dependency failed", Time: t0}, ""},
		{"pending job canceled without attempt", UpdateJob{Job: ref(), Status: JobStatusCanceled, Time: t0}, ""},
		{"queued job without attempt", UpdateJob{Job: ref(), Status: JobStatusQueued, Time: t0}, "attempt"},
		{"finished job without attempt", UpdateJob{Job: ref(), Status: JobStatusFailure, Time: t0}, "attempt"},
		{"canceled job with bad attempt", UpdateJob{Job: ref(), Status: JobStatusCanceled, Attempt: -1, Time: t0}, "attempt"},
		{"poll too often", CreateRepo{Name: "web", URL: "u", PollSeconds: 5}, "poll_seconds"},
		{"webhook secret too long", CreateRepo{Name: "web", URL: "u", WebhookSecret: Secret(strings.Repeat("s", 257))}, "webhook_secret"},
		{"webhook secret reply too long", WebhookSecret{Repo: "web", Secret: Secret(strings.Repeat("s", 257))}, "secret"},
		{"no webhook secret", WebhookSecret{Repo: "web"}, ""},
		{"poll by default", CreateRepo{Name: "web", URL: "u", PollSeconds: DefaultPollSeconds}, ""},
		{"too many params", TriggerBuild{Repo: "web", Event: TriggerPush, Params: manyParams(MaxParams + 1)}, "params"},
		{"secret too large", SetSecret{Repo: "web", Name: "A", Value: Secret(strings.Repeat("s", MaxSecretLen+1))}, "value"},
		{"builds of two repos", BuildList{Builds: []Build{build(func(b *Build) { b.Number = 9 }), build(func(b *Build) { b.Repo = "api" })}}, "builds[1].repo"},

		// Events and hub.
		{"read negative since", ReadEvents{Since: -1}, "since"},
		{"read bad repo", ReadEvents{Repo: "A"}, "repo"},
		{"finished canceled", BuildFinished{Status: BuildStatusCanceled}, ""},
		{"job finished negative duration", JobFinished{Status: JobStatusSuccess, Attempt: 1, DurationMs: -1}, "duration_ms"},
		{"triggered retry_of negative", BuildTriggered{Ref: "main", Event: TriggerManual, RetryOf: -2}, "retry_of"},
		{"error message required", Error{Code: CodeInternal}, "message"},
		{"error message too long", Error{Code: CodeInternal, Message: strings.Repeat("m", MaxErrorMessageLen+1)}, "message"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.msg.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Field != tc.field || ve.Type != tc.msg.MessageType() {
				t.Fatalf("Validate = %v, want a failure at %q", err, tc.field)
			}
		})
	}
}

func manyParams(n int) map[string]string {
	m := make(map[string]string, n)
	for i := range n {
		m["P"+strings.Repeat("X", i)] = "v"
	}
	return m
}

func TestRepoPolled(t *testing.T) {
	for _, tc := range []struct {
		seconds int64
		want    bool
	}{{0, false}, {DefaultPollSeconds, true}, {MaxPollSeconds, true}} {
		if got := (Repo{PollSeconds: tc.seconds}).Polled(); got != tc.want {
			t.Errorf("Repo{PollSeconds: %d}.Polled() = %v, want %v", tc.seconds, got, tc.want)
		}
	}
}
