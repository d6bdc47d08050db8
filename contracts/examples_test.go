package contracts

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

// Fixtures shared by the tests.
var (
	t0       = time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.UTC)
	t1       = t0.Add(90 * time.Second)
	commit40 = strings.Repeat("ab", 20)
	data     = []byte("hello, blob\n")
	dataSum  = BlobSHA256(data)
)

// testID returns a fixed ID, stamped with t0, ending in n.
func testID(n byte) ID {
	id := NewID(t0)
	copy(id[6:], "zeroci-id")
	id[idLen-1] = n
	return id
}

func intp(n int) *int { return &n }

func ref() JobRef { return JobRef{Repo: "web", Build: 7, Job: "test"} }

// example is one registered type's test case: a valid value and either an
// invalid value (failing at field) or a payload that must not decode.
type example struct {
	valid       Message
	invalid     Message
	field       string // the *ValidationError.Field invalid must fail with
	invalidJSON string // a payload that must not decode, for types with no invalid value
}

// storedEvent returns a valid stored event of type build.finished.
func storedEvent(tb testing.TB, seq int64) Event {
	tb.Helper()
	payload, err := encodeJSON(BuildFinished{Status: BuildStatusSuccess})
	if err != nil {
		tb.Fatal(err)
	}
	return Event{Seq: seq, ID: testID(byte(seq)), Type: TypeBuildFinished, Version: 1, Time: t0,
		Repo: "web", Build: 7, Payload: payload}
}

func validSpec() JobSpec {
	return JobSpec{
		Job: ref(), URL: "https://git.example.com/web.git", Ref: "main", Commit: commit40,
		Script:           []string{"go build ./...", "go test ./... && echo ok"},
		Env:              map[string]string{"GOFLAGS": "-mod=readonly", "CGO_ENABLED": "0"},
		SecretEnv:        map[string]string{"TOKEN": "deploy_token"},
		Image:            "golang:1.26",
		TimeoutMs:        600_000,
		Caches:           []CacheSpec{{ID: "gomod", Key: `go-{{ checksum "go.sum" }}`, Paths: []string{".gomodcache/"}}},
		Artifacts:        []ArtifactSpec{{ID: "bin", Paths: []string{"bin/"}}},
		RestoreArtifacts: []string{"build"},
	}
}

func validBuild() Build {
	return Build{
		Repo: "web", Number: 7, Status: BuildStatusRunning, Ref: "main", Commit: commit40,
		Params: map[string]string{"TARGET": "linux"}, Event: TriggerManual, User: "admin",
		RetryOf: 5, CreatedAt: t0, StartedAt: t1,
		Jobs: []Job{
			{ID: "build", Status: JobStatusSuccess, Attempt: 1, RunnerID: "r1", StartedAt: t0, FinishedAt: t1, ExitCode: intp(0)},
			{ID: "test", Status: JobStatusRunning, DependsOn: []string{"build"}, Attempt: 1, RunnerID: "r1", StartedAt: t1},
			{ID: "deploy", Status: JobStatusPending, DependsOn: []string{"test"}, Manual: true, Reason: "waiting for test"},
		},
	}
}

func validLines(from int64, n int) []LogLine {
	lines := make([]LogLine, n)
	for i := range lines {
		lines[i] = LogLine{N: from + int64(i), Time: t0, Stream: StreamStdout, Text: "\x1b[32mok\x1b[0m\tline\r"}
	}
	return lines
}

// examples returns one example per registered type.
func examples(tb testing.TB) map[string]example {
	spec := validSpec()
	badSpec := validSpec()
	badSpec.Caches = []CacheSpec{{ID: "gomod", Key: "k", Paths: []string{"../outside"}}}
	cycle := validBuild()
	cycle.Jobs[0].DependsOn = []string{"deploy"}
	badEvent := storedEvent(tb, 3)
	badEvent.Payload = []byte(`{"status":"running"}`)
	unstored := storedEvent(tb, 0)

	sealed := Sealed(base64.StdEncoding.EncodeToString(make([]byte, 12+16+5)))
	return map[string]example{
		TypeError: {valid: Error{Code: CodeNotFound, Message: `repo "web" not found`},
			invalid: Error{Code: "nope", Message: "x"}, field: "code"},
		TypeOK: {valid: OK{}, invalidJSON: `{"unexpected":true}`},

		TypeRepoCreated: {valid: RepoCreated{URL: "git@github.com:acme/web.git", DefaultBranch: "main", PollSeconds: 60, WebhookSecret: sealed},
			invalid: RepoCreated{URL: "-oProxyCommand=x", DefaultBranch: "main"}, field: "url"},
		TypeRepoDeleted: {valid: RepoDeleted{}, invalidJSON: `{"name":"web"}`},
		TypeBuildTriggered: {valid: BuildTriggered{Ref: "refs/tags/v1.2.0", Commit: "abc1234", Params: map[string]string{"A": "1"}, Event: TriggerWebhook, User: "octocat"},
			invalid: BuildTriggered{Ref: "main", Event: "cron"}, field: "event"},
		TypeBuildQueued: {valid: BuildQueued{}, invalidJSON: `[]`},
		TypeBuildStarted: {valid: BuildStarted{Commit: commit40, Jobs: []PlannedJob{{ID: "build"}, {ID: "test", DependsOn: []string{"build"}, Manual: true}}},
			invalid: BuildStarted{Commit: commit40, Jobs: []PlannedJob{{ID: "build"}, {ID: "build"}}}, field: "jobs[1].id"},
		TypeBuildCanceled: {valid: BuildCanceled{User: "admin"},
			invalid: BuildCanceled{User: "a\x00b"}, field: "user"},
		TypeBuildFinished: {valid: BuildFinished{Status: BuildStatusError, Error: "pipeline.yaml:3: unknown key \"scirpt\"\n"},
			invalid: BuildFinished{Status: BuildStatusRunning}, field: "status"},
		TypeJobPending: {valid: JobPending{Reason: "waiting for dependency build"},
			invalid: JobPending{}, field: "reason"},
		TypeJobQueued: {valid: JobQueued{Attempt: 2},
			invalid: JobQueued{}, field: "attempt"},
		TypeJobBlocked: {valid: JobBlocked{Reason: "manual: waiting for approval"},
			invalid: JobBlocked{}, field: "reason"},
		TypeJobApproved: {valid: JobApproved{User: "admin"},
			invalid: JobApproved{User: strings.Repeat("u", 200)}, field: "user"},
		TypeJobStarted: {valid: JobStarted{RunnerID: "runner-1.eu", Attempt: 1, LeaseID: NewID(time.Now())},
			invalid: JobStarted{RunnerID: "-r", Attempt: 1}, field: "runner_id"},
		TypeJobFinished: {valid: JobFinished{Status: JobStatusFailure, ExitCode: intp(2), Reason: "exit status 2", Attempt: 1, DurationMs: 1500},
			invalid: JobFinished{Status: JobStatusSkipped, Attempt: 1}, field: "status"},
		TypeJobSkipped: {valid: JobSkipped{Reason: "dependency build failed"},
			invalid: JobSkipped{Reason: "two\nlines"}, field: "reason"},
		TypeLogClosed: {valid: LogClosed{Lines: 120, Bytes: 4096, BlobKey: "logs/web/7/test.log", Truncated: true},
			invalid: LogClosed{Lines: 1, Bytes: 1, BlobKey: "logs/../etc/passwd"}, field: "blob_key"},
		TypeSecretSet: {valid: SecretSet{Name: "deploy_token", Value: sealed},
			invalid: SecretSet{Name: "deploy_token", Value: "c2hvcnQ="}, field: "value"},
		TypeTokenCreated: {valid: TokenCreated{Name: "ci-bot", Scope: ScopeWrite, Hash: TokenHash("t")},
			invalid: TokenCreated{Name: "ci-bot", Scope: "root"}, field: "scope"},

		TypePublishEvent: {valid: PublishEvent{Event: unstored},
			invalid: PublishEvent{Event: storedEvent(tb, 4)}, field: "event.seq"},
		TypePublished: {valid: Published{Seq: 42, Duplicate: true},
			invalid: Published{}, field: "seq"},
		TypeReadEvents: {valid: ReadEvents{Since: 10, Limit: 50, Repo: "web", Types: []string{TypeBuildFinished, TypeJobFinished}},
			invalid: ReadEvents{Types: []string{TypeGetRepo}}, field: "types[0]"},
		TypeEventBatch: {valid: EventBatch{Events: []Event{storedEvent(tb, 11), storedEvent(tb, 12)}, Next: 12, Head: 20},
			invalid: EventBatch{Events: []Event{storedEvent(tb, 12), storedEvent(tb, 11)}, Next: 12, Head: 20}, field: "events[1].seq"},
		TypeEvent: {valid: storedEvent(tb, 3),
			invalid: badEvent, field: "payload.status"},

		TypeCreateRepo: {valid: CreateRepo{Name: "web", URL: "https://git.example.com/web.git", DefaultBranch: "develop", WebhookSecret: "s3cret", PollSeconds: 300},
			invalid: CreateRepo{Name: "Web", URL: "https://x"}, field: "name"},
		TypeGetRepo: {valid: GetRepo{Name: "web"},
			invalid: GetRepo{Name: ".web"}, field: "name"},
		TypeListRepos: {valid: ListRepos{Limit: 10, After: "api"},
			invalid: ListRepos{Limit: MaxListLimit + 1}, field: "limit"},
		TypeDeleteRepo: {valid: DeleteRepo{Name: "web"},
			invalid: DeleteRepo{}, field: "name"},
		TypeGetWebhookSecret: {valid: GetWebhookSecret{Repo: "web"},
			invalid: GetWebhookSecret{Repo: strings.Repeat("a", 64)}, field: "repo"},
		TypeRepo: {valid: Repo{Name: "web", URL: "/srv/git/web.git", DefaultBranch: "main", HasWebhookSecret: true, CreatedAt: t0},
			invalid: Repo{Name: "web", URL: "/srv/git/web.git", DefaultBranch: "main"}, field: "created_at"},
		TypeRepoList: {valid: RepoList{Repos: []Repo{{Name: "api", URL: "u", DefaultBranch: "main", CreatedAt: t0}, {Name: "web", URL: "u", DefaultBranch: "main", CreatedAt: t0}}, Next: "web"},
			invalid: RepoList{Repos: []Repo{{Name: "web", URL: "u", DefaultBranch: "main", CreatedAt: t0}, {Name: "api", URL: "u", DefaultBranch: "main", CreatedAt: t0}}}, field: "repos[1].name"},
		TypeWebhookSecret: {valid: WebhookSecret{Repo: "web", Secret: "s3cret"},
			invalid: WebhookSecret{Repo: "web", Secret: "a\x00"}, field: "secret"},
		TypeTriggerBuild: {valid: TriggerBuild{Repo: "web", Ref: "main", Commit: commit40, Params: map[string]string{"DEPLOY": "yes"}, Event: TriggerManual, User: "admin"},
			invalid: TriggerBuild{Repo: "web", Event: TriggerPush, Params: map[string]string{"1BAD": "x"}}, field: `params["1BAD"]`},
		TypeListActive: {valid: ListActive{AfterRepo: "web", AfterNumber: 7, Limit: 50},
			invalid: ListActive{AfterRepo: "Web"}, field: "after_repo"},
		TypeActiveBuilds: {valid: ActiveBuilds{Builds: []ActiveBuild{{Build: Build{Repo: "web", Number: 7, Status: BuildStatusRunning, Ref: "main", Event: TriggerPush, CreatedAt: t0,
			Jobs: []Job{{ID: "build", Status: JobStatusRunning, Attempt: 1, RunnerID: "r1"}}}, Leases: map[string]ID{"build": testID(3)}}}},
			invalid: ActiveBuilds{Builds: []ActiveBuild{{Build: Build{Repo: "web", Number: 7, Status: BuildStatusRunning, Ref: "main", Event: TriggerPush, CreatedAt: t0}, Leases: map[string]ID{"Bad Name": testID(3)}}}},
			field:   `builds[0].leases["Bad Name"]`},
		TypeSync:   {valid: Sync{Seq: 42}, invalid: Sync{Seq: -1}, field: "seq"},
		TypeSynced: {valid: Synced{Applied: 42}, invalid: Synced{Applied: -3}, field: "applied"},
		TypeGetBuild: {valid: GetBuild{Repo: "web", Number: 7},
			invalid: GetBuild{Repo: "web"}, field: "number"},
		TypeListBuilds: {valid: ListBuilds{Repo: "web", Status: BuildStatusFailure, Limit: 20, Before: 100},
			invalid: ListBuilds{Repo: "web", Status: "done"}, field: "status"},
		TypeCancelBuild: {valid: CancelBuild{Repo: "web", Number: 7, User: "admin"},
			invalid: CancelBuild{Repo: "web", Number: -1}, field: "number"},
		TypeRetryBuild: {valid: RetryBuild{Repo: "web", Number: 7},
			invalid: RetryBuild{Number: 7}, field: "repo"},
		TypeApproveJob: {valid: ApproveJob{Repo: "web", Number: 7, Job: "deploy", User: "admin"},
			invalid: ApproveJob{Repo: "web", Number: 7, Job: "de ploy"}, field: "job"},
		TypePlanBuild: {valid: PlanBuild{Repo: "web", Number: 7, Commit: commit40, Jobs: []PlannedJob{{ID: "build"}, {ID: "test", DependsOn: []string{"build"}}, {ID: "deploy", DependsOn: []string{"test"}, Manual: true}}},
			invalid: PlanBuild{Repo: "web", Number: 7, Commit: commit40, Jobs: []PlannedJob{{ID: "build", DependsOn: []string{"lint"}}}}, field: "jobs[0].depends_on[0]"},
		TypeUpdateBuild: {valid: UpdateBuild{Repo: "web", Number: 7, Status: BuildStatusError, Error: "pipeline.yaml:1: bad YAML"},
			invalid: UpdateBuild{Repo: "web", Number: 7, Status: "broken"}, field: "status"},
		TypeUpdateJob: {valid: UpdateJob{Job: ref(), Status: JobStatusRunning, Attempt: 1, RunnerID: "r1", Time: t0},
			invalid: UpdateJob{Job: ref(), Status: JobStatusRunning, Time: t0}, field: "attempt"},
		TypeBuild: {valid: validBuild(),
			invalid: cycle, field: "jobs"},
		TypeBuildList: {valid: BuildList{Builds: []Build{{Repo: "web", Number: 9, Status: BuildStatusQueued, Ref: "main", Event: TriggerPush, CreatedAt: t1}, {Repo: "web", Number: 8, Status: BuildStatusSuccess, Ref: "main", Event: TriggerPush, CreatedAt: t0}}},
			invalid: BuildList{Builds: []Build{{Repo: "web", Number: 8, Status: BuildStatusQueued, Ref: "main", Event: TriggerPush, CreatedAt: t0}, {Repo: "web", Number: 9, Status: BuildStatusQueued, Ref: "main", Event: TriggerPush, CreatedAt: t0}}}, field: "builds[1].number"},
		TypeSetSecret: {valid: SetSecret{Repo: "web", Name: "deploy_token", Value: "line1\nline2"},
			invalid: SetSecret{Repo: "web", Name: "deploy_token"}, field: "value"},
		TypeListSecrets: {valid: ListSecrets{Repo: "web"},
			invalid: ListSecrets{Repo: "web/"}, field: "repo"},
		TypeSecretNames: {valid: SecretNames{Repo: "web", Names: []string{"A", "B_2", "deploy_token"}},
			invalid: SecretNames{Repo: "web", Names: []string{"b", "a"}}, field: "names[1]"},
		TypeGetJobSecrets: {valid: GetJobSecrets{Job: ref(), LeaseID: testID(9), Names: []string{"deploy_token"}},
			invalid: GetJobSecrets{Job: ref(), Names: []string{"deploy_token"}}, field: "lease_id"},
		TypeJobSecrets: {valid: JobSecrets{Values: map[string]Secret{"deploy_token": "v", "other": "w"}},
			invalid: JobSecrets{Values: map[string]Secret{"deploy_token": ""}}, field: `values["deploy_token"]`},
		TypeCreateToken: {valid: CreateToken{Name: "ci-bot", Scope: ScopeAdmin, Hash: TokenHash("zci_abc")},
			invalid: CreateToken{Name: "ci-bot", Scope: ScopeAdmin, Hash: strings.ToUpper(TokenHash("zci_abc"))}, field: "hash"},
		TypeCheckToken: {valid: CheckToken{Hash: TokenHash("zci_abc")},
			invalid: CheckToken{Hash: "zci_abc"}, field: "hash"},
		TypeToken: {valid: Token{Name: "ci-bot", Scope: ScopeRead, CreatedAt: t0},
			invalid: Token{Name: "ci-bot", Scope: ScopeRead}, field: "created_at"},

		TypePutBegin: {valid: PutBegin{Key: "artifacts/web/7/bin.tar.gz", ContentType: "application/gzip"},
			invalid: PutBegin{Key: "/abs/key"}, field: "key"},
		TypePutChunk: {valid: PutChunk{UploadID: testID(1), Offset: 4096, Data: data, SHA256: dataSum},
			invalid: PutChunk{UploadID: testID(1), Data: data, SHA256: BlobSHA256([]byte("other"))}, field: "sha256"},
		TypePutCommit: {valid: PutCommit{UploadID: testID(1), Size: 12, SHA256: dataSum},
			invalid: PutCommit{UploadID: testID(1), Size: -1, SHA256: dataSum}, field: "size"},
		TypePutAbort: {valid: PutAbort{UploadID: testID(1)},
			invalid: PutAbort{}, field: "upload_id"},
		TypeGetBlob: {valid: GetBlob{Key: "logs/web/7/test.log", Offset: 10, Length: 100},
			invalid: GetBlob{Key: "logs/web/7/test.log", Length: MaxBlobChunk + 1}, field: "length"},
		TypeStatBlob: {valid: StatBlob{Key: "a"},
			invalid: StatBlob{Key: "a\x00b"}, field: "key"},
		TypeListBlobs: {valid: ListBlobs{Prefix: "logs/web/", PageToken: "logs/web/7", Limit: 10},
			invalid: ListBlobs{Prefix: "logs//"}, field: "prefix"},
		TypeDeleteBlob: {valid: DeleteBlob{Key: "caches/web/gomod"},
			invalid: DeleteBlob{Key: "caches\\web"}, field: "key"},
		TypeUpload: {valid: Upload{UploadID: testID(1), ChunkSize: 1 << 20},
			invalid: Upload{UploadID: testID(1)}, field: "chunk_size"},
		TypeReceived: {valid: Received{UploadID: testID(1), Size: 8192},
			invalid: Received{Size: 1}, field: "upload_id"},
		TypeBlobChunk: {valid: BlobChunk{Key: "k", Offset: 0, Data: data, SHA256: dataSum, Size: int64(len(data)), BlobSHA256: dataSum, EOF: true},
			invalid: BlobChunk{Key: "k", Offset: 0, Data: data, SHA256: dataSum, Size: 100, BlobSHA256: dataSum, EOF: true}, field: "eof"},
		TypeBlobInfo: {valid: BlobInfo{Key: "k/v", Size: 12, SHA256: dataSum, ContentType: "text/plain", ModTime: t0},
			invalid: BlobInfo{Key: "k/./v", Size: 12, SHA256: dataSum, ModTime: t0}, field: "key"},
		TypeBlobListing: {valid: BlobListing{Blobs: []BlobInfo{{Key: "a", Size: 1, SHA256: dataSum, ModTime: t0}, {Key: "b", Size: 1, SHA256: dataSum, ModTime: t0}}, NextPageToken: "b"},
			invalid: BlobListing{Blobs: []BlobInfo{{Key: "a", Size: 1, SHA256: dataSum, ModTime: t0}, {Key: "a", Size: 1, SHA256: dataSum, ModTime: t0}}}, field: "blobs[1].key"},

		TypeOpenLog: {valid: OpenLog{Job: ref(), Attempt: 1, Masks: []Secret{"hunter2"}},
			invalid: OpenLog{Job: ref(), Attempt: 1, Masks: []Secret{""}}, field: "masks[0]"},
		TypeAppendLog: {valid: AppendLog{Job: ref(), Attempt: 1, Seq: 3, Lines: validLines(201, 3)},
			invalid: AppendLog{Job: ref(), Attempt: 1, Seq: 3, Lines: append(validLines(1, 2), validLines(4, 1)...)}, field: "lines[2].n"},
		TypeReadLog: {valid: ReadLog{Job: ref(), From: 1, Limit: 500, WaitMs: 30_000},
			invalid: ReadLog{Job: ref(), From: 0}, field: "from"},
		TypeCloseLog: {valid: CloseLog{Job: ref(), Attempt: 2, Seq: 17},
			invalid: CloseLog{Job: JobRef{Repo: "web", Build: 7}, Attempt: 2}, field: "job.job"},
		TypeCredit: {valid: Credit{Seq: 3, NextLine: 204, Window: 8},
			invalid: Credit{Seq: 3, NextLine: 0, Window: 8}, field: "next_line"},
		TypeLogLines: {valid: LogLines{Job: ref(), Lines: validLines(5, 2), Next: 7, Closed: true},
			invalid: LogLines{Job: ref(), Lines: validLines(5, 2), Next: 9}, field: "next"},
		TypeLogSummary: {valid: LogSummary{Lines: 10, Bytes: 100, BlobKey: "logs/web/7/test.log"},
			invalid: LogSummary{Lines: -1, BlobKey: "k"}, field: "lines"},

		TypeRunnerHello: {valid: RunnerHello{RunnerID: "r1", Capacity: 4, Labels: map[string]string{"arch": "amd64", "zone": ""}, Executor: ExecutorContainer, Version: "0.1.0"},
			invalid: RunnerHello{RunnerID: "r1", Capacity: 4, Executor: "vm"}, field: "executor"},
		TypeRequestWork: {valid: RequestWork{RunnerID: "r1", Free: 2, WaitMs: 20_000, Held: []ID{testID(5)}},
			invalid: RequestWork{RunnerID: "r1", Free: 1, Held: []ID{testID(5), testID(5)}}, field: "held[1]"},
		TypeRenewLease: {valid: RenewLease{RunnerID: "r1", LeaseID: testID(5)},
			invalid: RenewLease{LeaseID: testID(5)}, field: "runner_id"},
		TypeGetStats: {valid: GetStats{}},
		TypeStats:    {valid: Stats{Queued: 3, Running: 2, Runners: 4, Builds: 2}, invalid: Stats{Queued: -1}, field: "queued"},
		TypeJobResult: {valid: JobResult{RunnerID: "r1", LeaseID: testID(5), Job: ref(), Attempt: 1, Status: JobStatusSuccess, ExitCode: intp(0), StartedAt: t0, FinishedAt: t1},
			invalid: JobResult{RunnerID: "r1", LeaseID: testID(5), Job: ref(), Attempt: 1, Status: JobStatusSuccess, StartedAt: t1, FinishedAt: t0}, field: "finished_at"},
		TypeCancelJob: {valid: CancelJob{RunnerID: "r1", LeaseID: testID(5), Job: ref(), Reason: "canceled by admin"},
			invalid: CancelJob{RunnerID: "r1", Job: ref()}, field: "lease_id"},
		TypeWelcome: {valid: Welcome{LeaseMs: 30_000, HeartbeatMs: 10_000},
			invalid: Welcome{LeaseMs: 30_000, HeartbeatMs: 30_000}, field: "heartbeat_ms"},
		TypeWork: {valid: Work{Assignments: []Assignment{{LeaseID: testID(5), Deadline: t1, Attempt: 1, MaxAttempts: 2, Job: spec}}},
			invalid: Work{Assignments: []Assignment{{LeaseID: testID(5), Deadline: t1, Attempt: 1, MaxAttempts: 1, Job: badSpec}}}, field: "assignments[0].job.caches[0].paths[0]"},
		TypeLease: {valid: Lease{LeaseID: testID(5), Deadline: t1, Cancel: true, Reason: "build canceled"},
			invalid: Lease{LeaseID: testID(5), Deadline: t1, Reason: "why"}, field: "reason"},
	}
}
