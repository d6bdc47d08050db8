package contracts

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestNameChecks(t *testing.T) {
	tests := []struct {
		check func(string) error
		name  string
		good  []string
		bad   []string
	}{
		{CheckRepoName, "repo name",
			[]string{"a", "0", "web", "my-app.v2_x", "a-", strings.Repeat("a", 63)},
			[]string{"", "Web", "wEb", "-web", ".web", "_web", "we b", "web/", "wéb", strings.Repeat("a", 64), "a\x00"}},
		{CheckTokenName, "token name",
			[]string{"ci-bot"},
			[]string{"CI"}},
		{CheckJobName, "job name",
			[]string{"build", "Build_2", "_setup", "test.unit", "lint-go", strings.Repeat("j", 64)},
			[]string{"", "-x", ".x", "a b", "a/b", "a:b", strings.Repeat("j", 65)}},
		{CheckSecretName, "secret name",
			[]string{"deploy_token", "A", "_x", "GITHUB_TOKEN2"},
			[]string{"", "2X", "deploy-token", "a.b", "a b", strings.Repeat("s", 65)}},
		{CheckRef, "ref",
			[]string{"main", "release/1.x", "refs/heads/main", "refs/tags/v1.2.0", "feature/ünïcode", "a@b"},
			[]string{"", "-main", "/main", "main/", "a//b", "a..b", "a.lock", "main.", ".hidden", "a/.b", "a b", "a~1", "a^", "a:b", "a?", "a*", "a[", `a\b`, "@", "a@{1}", "a\x7f", "\xff", strings.Repeat("r", 256)}},
		{CheckBlobKey, "blob key",
			[]string{"a", "logs/web/7/test.log", "caches/web/go-abc123", "a b/ü.tar.gz", "a..b/c"},
			[]string{"", "/abs", "a/", "a//b", "./a", "a/./b", "../a", "a/..", "a/../b", `a\b`, "a\x00b", "a\nb", "\xff", strings.Repeat("k", MaxBlobKeyLen+1)}},
	}
	for _, tc := range tests {
		for _, s := range tc.good {
			if err := tc.check(s); err != nil {
				t.Errorf("%s %q: %v", tc.name, s, err)
			}
		}
		for _, s := range tc.bad {
			err := tc.check(s)
			var ve *ValidationError
			if !errors.As(err, &ve) || !errors.Is(err, ErrInvalid) {
				t.Errorf("%s %q: accepted (%v)", tc.name, s, err)
				continue
			}
			if !strings.HasPrefix(err.Error(), "contracts: invalid "+tc.name+": ") {
				t.Errorf("%s %q: message %q", tc.name, s, err)
			}
		}
	}
}

func TestValueChecks(t *testing.T) {
	tests := []struct {
		name  string
		check func(string) error
		good  []string
		bad   []string
	}{
		{"commit", checkCommit,
			[]string{strings.Repeat("0", 40), strings.Repeat("f", 64)},
			[]string{"", "abc1234", strings.Repeat("A", 40), strings.Repeat("0", 41), strings.Repeat("g", 40)}},
		{"commitish", checkCommitish,
			[]string{"abcd", commit40},
			[]string{"", "abc", "ABCD", "main", strings.Repeat("a", 65)}},
		{"sha256", checkSHA256,
			[]string{dataSum},
			[]string{"", dataSum[1:], strings.ToUpper(dataSum)}},
		{"url", checkURL,
			[]string{"https://github.com/acme/web.git", "git@github.com:acme/web.git", "/srv/git/web", "file:///tmp/x"},
			[]string{"", "-upload-pack=x", "https://a b", "https://a\tb", "\xff", strings.Repeat("u", maxURLLen+1)}},
		{"blob prefix", checkBlobPrefix,
			[]string{"", "logs/", "logs/we", "logs/web/7/"},
			[]string{"/logs", "logs//", "../", "a/../"}},
		{"workspace path", checkWorkspacePath,
			[]string{"bin/", "bin/app", ".gomodcache", "dist/*.tar.gz"},
			[]string{"", "/etc", "../x", "a/../../x", "a//b", "."}},
		{"image", checkImage,
			[]string{"golang:1.26", "ghcr.io/acme/tool@sha256:" + dataSum, "alpine"},
			[]string{"", "-x", "a b", "a;b"}},
		{"text", func(s string) error { return checkText(s, 10, false) },
			[]string{"", "tab\there", "ünï"},
			[]string{"a\nb", "a\rb", "a\x00", "a\x7f", "\xff", "12345678901"}},
		{"multiline text", func(s string) error { return checkText(s, 10, true) },
			[]string{"a\nb\r\n"},
			[]string{"a\x00", "a\x1b"}},
	}
	for _, tc := range tests {
		for _, s := range tc.good {
			if err := tc.check(s); err != nil {
				t.Errorf("%s %q: %v", tc.name, s, err)
			}
		}
		for _, s := range tc.bad {
			if err := tc.check(s); !errors.Is(err, ErrInvalid) {
				t.Errorf("%s %q: accepted (%v)", tc.name, s, err)
			}
		}
	}
}

func TestJobGraph(t *testing.T) {
	tests := []struct {
		name  string
		ids   []string
		deps  [][]string
		field string
		text  string
	}{
		{"ok", []string{"a", "b", "c"}, [][]string{nil, {"a"}, {"a", "b"}}, "", ""},
		{"empty", nil, nil, "", ""},
		{"bad id", []string{"a", "b c"}, [][]string{nil, nil}, "[1].id", "does not match"},
		{"duplicate id", []string{"a", "a"}, [][]string{nil, nil}, "[1].id", "duplicate"},
		{"unknown", []string{"a"}, [][]string{{"x"}}, "[0].depends_on[0]", "unknown job"},
		{"self", []string{"a"}, [][]string{{"a"}}, "[0].depends_on[0]", "itself"},
		{"repeat", []string{"a", "b"}, [][]string{nil, {"a", "a"}}, "[1].depends_on[1]", "duplicate"},
		{"cycle", []string{"a", "b", "c", "d"}, [][]string{{"d"}, {"a"}, {"b"}, {"c"}}, "", "dependency cycle a -> d -> c -> b -> a"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := checkJobGraph(tc.ids, tc.deps)
			if tc.text == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Field != tc.field || !strings.Contains(ve.Problem, tc.text) {
				t.Fatalf("err = %#v, want field %q with %q", err, tc.field, tc.text)
			}
		})
	}
	// A long chain does not trip anything.
	n := MaxJobs
	ids := make([]string, n)
	deps := make([][]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("j%d", i)
		if i > 0 {
			deps[i] = []string{ids[i-1]}
		}
	}
	if err := checkJobGraph(ids, deps); err != nil {
		t.Fatal(err)
	}
	deps[0] = []string{ids[n-1]}
	if err := checkJobGraph(ids, deps); err == nil {
		t.Fatal("1000-job cycle accepted")
	}
}

func TestValidationErrorText(t *testing.T) {
	err := TriggerBuild{Repo: "web", Event: TriggerPush, Params: map[string]string{"A": "x", "B": "a\nb"}}.Validate()
	want := `contracts: invalid datastore.trigger_build: params["B"]: control character 0x0a at byte 1`
	if err == nil || err.Error() != want {
		t.Fatalf("got  %v\nwant %s", err, want)
	}
	// Nested messages report the outer type and the full path.
	ev := storedEvent(t, 0)
	ev.Payload = []byte(`{"status":"success","error":"\u0000"}`)
	err = PublishEvent{Event: ev}.Validate()
	want = `contracts: invalid eventhub.publish: event.payload.error: control character 0x00 at byte 0`
	if err == nil || err.Error() != want {
		t.Fatalf("got  %v\nwant %s", err, want)
	}
}

func TestSecretsDoNotPrint(t *testing.T) {
	const value = "hunter2"
	msgs := []any{
		SetSecret{Repo: "web", Name: "pw", Value: value},
		JobSecrets{Values: map[string]Secret{"pw": value}},
		OpenLog{Job: ref(), Attempt: 1, Masks: []Secret{value}},
		CreateRepo{Name: "web", URL: "u", WebhookSecret: value},
		Secret(value),
	}
	for _, m := range msgs {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
			if out := fmt.Sprintf(verb, m); strings.Contains(out, value) {
				t.Errorf("%s of %T shows the secret: %s", verb, m, out)
			}
		}
	}
	// A bad secret's error does not quote it.
	err := SetSecret{Repo: "web", Name: "pw", Value: value + "\x00"}.Validate()
	if err == nil || strings.Contains(err.Error(), value) {
		t.Fatalf("error %v", err)
	}
}

func TestEnumHelpers(t *testing.T) {
	for _, s := range []BuildStatus{BuildStatusQueued, BuildStatusRunning} {
		if !s.Valid() || s.Terminal() {
			t.Errorf("build %s", s)
		}
	}
	for _, s := range []BuildStatus{BuildStatusSuccess, BuildStatusFailure, BuildStatusCanceled, BuildStatusError} {
		if !s.Valid() || !s.Terminal() {
			t.Errorf("build %s", s)
		}
	}
	for _, s := range []JobStatus{JobStatusPending, JobStatusQueued, JobStatusRunning, JobStatusBlocked} {
		if !s.Valid() || s.Terminal() {
			t.Errorf("job %s", s)
		}
	}
	for _, s := range []JobStatus{JobStatusSuccess, JobStatusFailure, JobStatusCanceled, JobStatusSkipped, JobStatusError} {
		if !s.Valid() || !s.Terminal() {
			t.Errorf("job %s", s)
		}
	}
	if BuildStatus("pending").Valid() || JobStatus("done").Valid() || TriggerKind("cron").Valid() ||
		TokenScope("root").Valid() || Stream("stdin").Valid() || Executor("vm").Valid() {
		t.Error("an unknown enum value is valid")
	}
}
