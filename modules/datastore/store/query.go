package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jmoiron/sqlx"

	"github.com/zeroci/zeroci/contracts"
)

// RepoRecord is a repository with what only the data store sees.
type RepoRecord struct {
	contracts.Repo
	// WebhookSecret is the sealed webhook secret; empty when there is none.
	WebhookSecret contracts.Sealed
	// LastBuild is the highest build number triggered; 0 before the first.
	LastBuild int64
}

// JobRecord is a job with its build's state and what only the data store
// sees.
type JobRecord struct {
	contracts.Job
	LeaseID         contracts.ID // the lease of the running attempt; zero when not running
	Repo            string
	Build           int64
	BuildStatus     contracts.BuildStatus
	CancelRequested bool // the build was asked to cancel
}

// readTx begins a read-only transaction that sees one snapshot: on
// PostgreSQL repeatable read; on SQLite a deferred transaction (read-only
// ones do not take the write lock at BEGIN), which in WAL mode reads one
// snapshot.
func (s *Store) readTx(ctx context.Context) (*sqlx.Tx, error) {
	opts := &sql.TxOptions{ReadOnly: true}
	if s.driver == DriverPostgres {
		opts.Isolation = sql.LevelRepeatableRead
	}
	return s.db.BeginTxx(ctx, opts)
}

// LastApplied returns the Seq of the last event applied (0: none).
func (s *Store) LastApplied(ctx context.Context) (int64, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	var last int64
	if err := s.get(ctx, &last, s.q("SELECT last_applied FROM meta WHERE id = 1")); err != nil {
		return 0, fmt.Errorf("store: last applied: %w", err)
	}
	return last, nil
}

type repoRow struct {
	Name          string         `db:"name"`
	URL           string         `db:"url"`
	DefaultBranch string         `db:"default_branch"`
	PollSeconds   int64          `db:"poll_seconds"`
	WebhookSecret sql.NullString `db:"webhook_secret"`
	CreatedAt     int64          `db:"created_at"`
	LastBuild     int64          `db:"last_build"`
}

const repoCols = "name, url, default_branch, poll_seconds, webhook_secret, created_at, last_build"

func (r repoRow) record() RepoRecord {
	return RepoRecord{
		Repo: contracts.Repo{
			Name: r.Name, URL: r.URL, DefaultBranch: r.DefaultBranch, PollSeconds: r.PollSeconds,
			HasWebhookSecret: r.WebhookSecret.Valid,
			CreatedAt:        fromMicros(sql.NullInt64{Int64: r.CreatedAt, Valid: true}),
		},
		WebhookSecret: contracts.Sealed(r.WebhookSecret.String),
		LastBuild:     r.LastBuild,
	}
}

// notFound wraps sql.ErrNoRows as ErrNotFound with what was looked for.
func notFound(err error, what string, args ...any) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("store: %s: %w", fmt.Sprintf(what, args...), ErrNotFound)
	}
	return fmt.Errorf("store: %s: %w", fmt.Sprintf(what, args...), err)
}

// GetRepo reads a repository; ErrNotFound if there is none.
func (s *Store) GetRepo(ctx context.Context, name string) (RepoRecord, error) {
	if err := s.check(); err != nil {
		return RepoRecord{}, err
	}
	var r repoRow
	if err := s.get(ctx, &r, s.q("SELECT "+repoCols+" FROM repos WHERE name = ?"), name); err != nil {
		return RepoRecord{}, notFound(err, "repo %q", name)
	}
	return r.record(), nil
}

// listLimit checks a list's limit: 0 means contracts.DefaultListLimit.
func listLimit(limit int) (int, error) {
	switch {
	case limit == 0:
		return contracts.DefaultListLimit, nil
	case limit < 0 || limit > contracts.MaxListLimit:
		return 0, fmt.Errorf("limit %d out of range 0..%d", limit, contracts.MaxListLimit)
	}
	return limit, nil
}

// ListRepos returns up to limit repositories (0: contracts.DefaultListLimit)
// named after after, in ascending byte order, and next: the after of the
// next page, or "" on the last page.
func (s *Store) ListRepos(ctx context.Context, after string, limit int) ([]contracts.Repo, string, error) {
	if err := s.check(); err != nil {
		return nil, "", err
	}
	limit, err := listLimit(limit)
	if err != nil {
		return nil, "", fmt.Errorf("store: list repos: %w", err)
	}
	var rows []repoRow
	if err := s.sel(ctx, &rows, s.q("SELECT "+repoCols+" FROM repos WHERE name > ? ORDER BY name LIMIT ?"),
		after, limit+1); err != nil {
		return nil, "", fmt.Errorf("store: list repos: %w", err)
	}
	next := ""
	if len(rows) > limit {
		rows = rows[:limit]
		next = rows[limit-1].Name
	}
	repos := make([]contracts.Repo, len(rows))
	for i, r := range rows {
		repos[i] = r.record().Repo
	}
	return repos, next, nil
}

type buildRow struct {
	Repo            string         `db:"repo"`
	Number          int64          `db:"number"`
	Status          string         `db:"status"`
	Ref             string         `db:"ref"`
	Commit          string         `db:"commit_id"`
	Params          sql.NullString `db:"params"`
	Event           string         `db:"event"`
	User            string         `db:"user_name"`
	RetryOf         int64          `db:"retry_of"`
	Error           string         `db:"error"`
	CreatedAt       int64          `db:"created_at"`
	StartedAt       sql.NullInt64  `db:"started_at"`
	FinishedAt      sql.NullInt64  `db:"finished_at"`
	CancelRequested bool           `db:"cancel_requested"`
}

const buildCols = "repo, number, status, ref, commit_id, params, event, user_name, retry_of, error, " +
	"created_at, started_at, finished_at, cancel_requested"

func (r buildRow) build() (contracts.Build, error) {
	b := contracts.Build{
		Repo: r.Repo, Number: r.Number, Status: contracts.BuildStatus(r.Status), Ref: r.Ref, Commit: r.Commit,
		Event: contracts.TriggerKind(r.Event), User: r.User, RetryOf: r.RetryOf, Error: r.Error,
		CreatedAt:  fromMicros(sql.NullInt64{Int64: r.CreatedAt, Valid: true}),
		StartedAt:  fromMicros(r.StartedAt),
		FinishedAt: fromMicros(r.FinishedAt),
	}
	if r.Params.Valid {
		if err := json.Unmarshal([]byte(r.Params.String), &b.Params); err != nil {
			return b, fmt.Errorf("build %s#%d: params: %w", r.Repo, r.Number, err)
		}
	}
	return b, nil
}

type jobRow struct {
	Repo       string         `db:"repo"`
	Build      int64          `db:"build"`
	ID         string         `db:"id"`
	Status     string         `db:"status"`
	DependsOn  sql.NullString `db:"depends_on"`
	Manual     bool           `db:"manual"`
	Attempt    int            `db:"attempt"`
	RunnerID   string         `db:"runner_id"`
	LeaseID    string         `db:"lease_id"`
	StartedAt  sql.NullInt64  `db:"started_at"`
	FinishedAt sql.NullInt64  `db:"finished_at"`
	ExitCode   sql.NullInt64  `db:"exit_code"`
	Reason     string         `db:"reason"`
	// GetJob's join only.
	BuildStatus     string `db:"build_status"`
	CancelRequested bool   `db:"cancel_requested"`
}

const jobCols = "j.repo, j.build, j.id, j.status, j.depends_on, j.manual, j.attempt, j.runner_id, j.lease_id, " +
	"j.started_at, j.finished_at, j.exit_code, j.reason"

func (r jobRow) job() (contracts.Job, error) {
	j := contracts.Job{
		ID: r.ID, Status: contracts.JobStatus(r.Status), Manual: r.Manual, Attempt: r.Attempt,
		RunnerID: r.RunnerID, StartedAt: fromMicros(r.StartedAt), FinishedAt: fromMicros(r.FinishedAt),
		Reason: r.Reason,
	}
	if r.DependsOn.Valid {
		if err := json.Unmarshal([]byte(r.DependsOn.String), &j.DependsOn); err != nil {
			return j, fmt.Errorf("job %s#%d/%s: depends_on: %w", r.Repo, r.Build, r.ID, err)
		}
	}
	if r.ExitCode.Valid {
		code := int(r.ExitCode.Int64)
		j.ExitCode = &code
	}
	return j, nil
}

// GetBuild reads a build with its jobs in pipeline order; ErrNotFound if
// there is none.
func (s *Store) GetBuild(ctx context.Context, repo string, number int64) (contracts.Build, error) {
	if err := s.check(); err != nil {
		return contracts.Build{}, err
	}
	// One snapshot, so the jobs belong to the build as read.
	tx, err := s.readTx(ctx)
	if err != nil {
		return contracts.Build{}, fmt.Errorf("store: build %s#%d: %w", repo, number, err)
	}
	defer tx.Rollback() //nolint:errcheck // read only
	var r buildRow
	if err := s.txGet(ctx, tx, &r, s.q("SELECT "+buildCols+" FROM builds WHERE repo = ? AND number = ?"),
		repo, number); err != nil {
		return contracts.Build{}, notFound(err, "build %s#%d", repo, number)
	}
	b, err := r.build()
	if err != nil {
		return b, fmt.Errorf("store: %w", err)
	}
	var rows []jobRow
	if err := s.txSel(ctx, tx, &rows, s.q("SELECT "+jobCols+" FROM jobs j WHERE j.repo = ? AND j.build = ? ORDER BY j.position"),
		repo, number); err != nil {
		return contracts.Build{}, fmt.Errorf("store: jobs of build %s#%d: %w", repo, number, err)
	}
	for _, jr := range rows {
		j, err := jr.job()
		if err != nil {
			return contracts.Build{}, fmt.Errorf("store: %w", err)
		}
		b.Jobs = append(b.Jobs, j)
	}
	return b, nil
}

// ListBuilds returns up to limit builds of repo (0: contracts.DefaultListLimit),
// newest first, without jobs: only those in status if it is not "", and
// only those numbered below before if it is not 0. ErrNotFound if the
// repo does not exist.
func (s *Store) ListBuilds(ctx context.Context, repo string, status contracts.BuildStatus, before int64, limit int) ([]contracts.Build, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	limit, err := listLimit(limit)
	switch {
	case err != nil:
	case status != "" && !status.Valid():
		err = fmt.Errorf("unknown status %q", status)
	case before < 0:
		err = fmt.Errorf("before %d is negative", before)
	}
	if err != nil {
		return nil, fmt.Errorf("store: list builds of %s: %w", repo, err)
	}
	query, args := "SELECT "+buildCols+" FROM builds WHERE repo = ?", []any{repo}
	if status != "" {
		query, args = query+" AND status = ?", append(args, string(status))
	}
	if before != 0 {
		query, args = query+" AND number < ?", append(args, before)
	}
	query, args = query+" ORDER BY number DESC LIMIT ?", append(args, limit)
	var rows []buildRow
	if err := s.sel(ctx, &rows, s.q(query), args...); err != nil {
		return nil, fmt.Errorf("store: list builds of %s: %w", repo, err)
	}
	if len(rows) == 0 {
		if err := s.repoExists(ctx, repo); err != nil {
			return nil, err
		}
	}
	builds := make([]contracts.Build, len(rows))
	for i, r := range rows {
		if builds[i], err = r.build(); err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
	}
	return builds, nil
}

// repoExists returns ErrNotFound unless repo exists.
func (s *Store) repoExists(ctx context.Context, repo string) error {
	var one int
	if err := s.get(ctx, &one, s.q("SELECT 1 FROM repos WHERE name = ?"), repo); err != nil {
		return notFound(err, "repo %q", repo)
	}
	return nil
}

// GetJob reads one job with its build's status; ErrNotFound if there is
// no such job.
func (s *Store) GetJob(ctx context.Context, repo string, number int64, job string) (JobRecord, error) {
	if err := s.check(); err != nil {
		return JobRecord{}, err
	}
	var r jobRow
	if err := s.get(ctx, &r, s.q("SELECT "+jobCols+`, b.status AS build_status, b.cancel_requested
		FROM jobs j JOIN builds b ON b.repo = j.repo AND b.number = j.build
		WHERE j.repo = ? AND j.build = ? AND j.id = ?`), repo, number, job); err != nil {
		return JobRecord{}, notFound(err, "job %s", contracts.JobRef{Repo: repo, Build: number, Job: job})
	}
	j, err := r.job()
	if err != nil {
		return JobRecord{}, fmt.Errorf("store: %w", err)
	}
	rec := JobRecord{
		Job: j, Repo: r.Repo, Build: r.Build,
		BuildStatus: contracts.BuildStatus(r.BuildStatus), CancelRequested: r.CancelRequested,
	}
	if r.LeaseID != "" {
		if rec.LeaseID, err = contracts.ParseID(r.LeaseID); err != nil {
			return JobRecord{}, fmt.Errorf("store: job %s: lease: %w", contracts.JobRef{Repo: repo, Build: number, Job: job}, err)
		}
	}
	return rec, nil
}

// SecretNames returns the names of repo's secrets in ascending byte
// order; ErrNotFound if the repo does not exist.
func (s *Store) SecretNames(ctx context.Context, repo string) ([]string, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	names := []string{}
	if err := s.sel(ctx, &names, s.q("SELECT name FROM secrets WHERE repo = ? ORDER BY name"), repo); err != nil {
		return nil, fmt.Errorf("store: secrets of %s: %w", repo, err)
	}
	if len(names) == 0 {
		if err := s.repoExists(ctx, repo); err != nil {
			return nil, err
		}
	}
	return names, nil
}

// Secrets returns the sealed values of repo's secrets among names, by
// name; names without a secret (or an unknown repo) are absent.
func (s *Store) Secrets(ctx context.Context, repo string, names []string) (map[string]contracts.Sealed, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	values := make(map[string]contracts.Sealed, len(names))
	if len(names) == 0 {
		return values, nil
	}
	query, args, err := sqlx.In("SELECT name, value FROM secrets WHERE repo = ? AND name IN (?)", repo, names)
	if err != nil {
		return nil, fmt.Errorf("store: secrets of %s: %w", repo, err)
	}
	var rows []struct {
		Name  string `db:"name"`
		Value string `db:"value"`
	}
	if err := s.sel(ctx, &rows, s.q(query), args...); err != nil {
		return nil, fmt.Errorf("store: secrets of %s: %w", repo, err)
	}
	for _, r := range rows {
		values[r.Name] = contracts.Sealed(r.Value)
	}
	return values, nil
}

// TokenByHash returns the token stored under hash (contracts.TokenHash);
// ErrNotFound if there is none.
func (s *Store) TokenByHash(ctx context.Context, hash string) (contracts.Token, error) {
	if err := s.check(); err != nil {
		return contracts.Token{}, err
	}
	var r struct {
		Name      string `db:"name"`
		Scope     string `db:"scope"`
		CreatedAt int64  `db:"created_at"`
	}
	if err := s.get(ctx, &r, s.q("SELECT name, scope, created_at FROM tokens WHERE hash = ?"), hash); err != nil {
		return contracts.Token{}, notFound(err, "token")
	}
	return contracts.Token{
		Name: r.Name, Scope: contracts.TokenScope(r.Scope),
		CreatedAt: fromMicros(sql.NullInt64{Int64: r.CreatedAt, Valid: true}),
	}, nil
}

// TokenExists reports whether a token is named name.
func (s *Store) TokenExists(ctx context.Context, name string) (bool, error) {
	if err := s.check(); err != nil {
		return false, err
	}
	var n int
	if err := s.get(ctx, &n, s.q("SELECT COUNT(*) FROM tokens WHERE name = ?"), name); err != nil {
		return false, fmt.Errorf("store: token %q: %w", name, err)
	}
	return n > 0, nil
}

// ActiveBuilds returns up to limit queued or running builds ordered by
// repository and number, starting after (afterRepo, afterNumber), each with
// its jobs, whether cancel was requested and the leases of its running
// jobs. One snapshot covers the page.
func (s *Store) ActiveBuilds(ctx context.Context, afterRepo string, afterNumber int64, limit int) ([]contracts.ActiveBuild, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	limit, err := listLimit(limit)
	if err != nil {
		return nil, fmt.Errorf("store: active builds: %w", err)
	}
	tx, err := s.readTx(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: active builds: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // read only
	var rows []buildRow
	if err := s.txSel(ctx, tx, &rows, s.q("SELECT "+buildCols+` FROM builds
		WHERE status IN ('queued', 'running') AND (repo > ? OR (repo = ? AND number > ?))
		ORDER BY repo, number LIMIT ?`), afterRepo, afterRepo, afterNumber, limit); err != nil {
		return nil, fmt.Errorf("store: active builds: %w", err)
	}
	out := make([]contracts.ActiveBuild, 0, len(rows))
	for _, r := range rows {
		b, err := r.build()
		if err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
		ab := contracts.ActiveBuild{CancelRequested: r.CancelRequested}
		var jobs []jobRow
		if err := s.txSel(ctx, tx, &jobs, s.q("SELECT "+jobCols+" FROM jobs j WHERE j.repo = ? AND j.build = ? ORDER BY j.position"),
			r.Repo, r.Number); err != nil {
			return nil, fmt.Errorf("store: jobs of build %s#%d: %w", r.Repo, r.Number, err)
		}
		for _, jr := range jobs {
			j, err := jr.job()
			if err != nil {
				return nil, fmt.Errorf("store: %w", err)
			}
			b.Jobs = append(b.Jobs, j)
			if jr.LeaseID == "" {
				continue
			}
			id, err := contracts.ParseID(jr.LeaseID)
			if err != nil {
				return nil, fmt.Errorf("store: job %s#%d/%s: lease: %w", r.Repo, r.Number, jr.ID, err)
			}
			if ab.Leases == nil {
				ab.Leases = map[string]contracts.ID{}
			}
			ab.Leases[jr.ID] = id
		}
		ab.Build = b
		out = append(out, ab)
	}
	return out, nil
}

// BuildByDedupKey returns the number of the build that repo's trigger with
// key made, and false if none did.
func (s *Store) BuildByDedupKey(ctx context.Context, repo, key string) (int64, bool, error) {
	if err := s.check(); err != nil {
		return 0, false, err
	}
	var n int64
	err := s.get(ctx, &n, s.q("SELECT number FROM build_dedup WHERE repo = ? AND key = ?"), repo, key)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return 0, false, nil
	case err != nil:
		return 0, false, fmt.Errorf("store: dedup key of %s: %w", repo, err)
	}
	return n, true, nil
}
