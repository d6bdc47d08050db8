package api

import (
	"net/http"
	"time"

	"github.com/zeroci/zeroci/contracts"
)

// buildJSON is a build as the API shows it (SPEC §5): every field is
// present, null (or empty) when unset, so a client never has to tell an
// absent key from an empty value. Jobs are shown by a build's own route
// and the routes that change it, not in lists.
type buildJSON struct {
	Repo       string                `json:"repo"`
	Number     int64                 `json:"number"`
	Status     contracts.BuildStatus `json:"status"`
	Ref        string                `json:"ref"`
	Commit     string                `json:"commit"`
	Params     map[string]string     `json:"params"`
	Event      contracts.TriggerKind `json:"event"`
	User       string                `json:"user"`
	RetryOf    *int64                `json:"retry_of"`
	Error      string                `json:"error"`
	CreatedAt  time.Time             `json:"created_at"`
	StartedAt  *time.Time            `json:"started_at"`
	FinishedAt *time.Time            `json:"finished_at"`
	Jobs       *[]jobJSON            `json:"jobs,omitempty"`
}

// jobJSON is a job of a build as the API shows it.
type jobJSON struct {
	ID         string              `json:"id"`
	Status     contracts.JobStatus `json:"status"`
	DependsOn  []string            `json:"depends_on"`
	Manual     bool                `json:"manual"`
	Attempt    int                 `json:"attempt"`
	RunnerID   string              `json:"runner_id"`
	StartedAt  *time.Time          `json:"started_at"`
	FinishedAt *time.Time          `json:"finished_at"`
	ExitCode   *int                `json:"exit_code"`
	Reason     string              `json:"reason"`
}

// viewBuild shows b, with its jobs when withJobs.
func viewBuild(b contracts.Build, withJobs bool) buildJSON {
	v := buildJSON{Repo: b.Repo, Number: b.Number, Status: b.Status, Ref: b.Ref, Commit: b.Commit,
		Params: b.Params, Event: b.Event, User: b.User, Error: b.Error, CreatedAt: b.CreatedAt,
		StartedAt: optTime(b.StartedAt), FinishedAt: optTime(b.FinishedAt)}
	if v.Params == nil {
		v.Params = map[string]string{}
	}
	if b.RetryOf != 0 {
		v.RetryOf = &b.RetryOf
	}
	if withJobs {
		jobs := make([]jobJSON, len(b.Jobs))
		for i, j := range b.Jobs {
			jobs[i] = jobJSON{ID: j.ID, Status: j.Status, DependsOn: j.DependsOn, Manual: j.Manual, Attempt: j.Attempt,
				RunnerID: j.RunnerID, StartedAt: optTime(j.StartedAt), FinishedAt: optTime(j.FinishedAt),
				ExitCode: j.ExitCode, Reason: j.Reason}
			if jobs[i].DependsOn == nil {
				jobs[i].DependsOn = []string{}
			}
		}
		v.Jobs = &jobs
	}
	return v
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// forwardBuild sends req (its reply is a build) to the data store and
// answers with the build and its jobs, or with the data store's error.
func forwardBuild(w http.ResponseWriter, r *http.Request, a *API, status int, req contracts.Message) {
	b, err := call[contracts.Build](r.Context(), a, req)
	if err != nil {
		writeModuleError(w, a, err)
		return
	}
	writeJSON(w, status, viewBuild(b, true))
}
