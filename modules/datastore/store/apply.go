package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/zeroci/zeroci/contracts"
)

// micros is how times are stored: microseconds since the Unix epoch, UTC.
func micros(t time.Time) int64 { return t.UTC().Truncate(time.Microsecond).UnixMicro() }

// fromMicros is the inverse of micros; NULL is the zero time.
func fromMicros(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMicro(v.Int64).UTC()
}

// finalJobStatuses is the SQL list of the final job statuses
// (JobStatus.Terminal).
const finalJobStatuses = "('success', 'failure', 'canceled', 'skipped', 'error')"

// clampFinish is the SQL for a finished_at of ?, never before started_at
// (events come from several processes' clocks); its two parameters are
// both the finish time.
const clampFinish = "CASE WHEN started_at IS NOT NULL AND started_at > ? THEN started_at ELSE ? END"

// Apply projects events in one transaction, each exactly once, and
// returns how many it applied. Events with Seq <= LastApplied are skipped
// (applied already); an event whose Seq is not the next one is a
// *GapError, and then nothing of the call is applied. The new last
// applied Seq is stored in the same transaction.
//
// The log is fact, so an event that does not fit the projection (an
// unknown repo, build or job, a transition the current status does not
// allow, an unknown type, an invalid payload) is not an error: it changes
// nothing, still counts as applied, and is reported to Options.OnSkip.
// Errors are the database's (and ctx's); then nothing was applied.
func (s *Store) Apply(ctx context.Context, events []contracts.Event) (int, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	if len(events) == 0 {
		return 0, nil
	}
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("store: apply: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	last, err := s.lockMeta(ctx, tx)
	if err != nil {
		return 0, fmt.Errorf("store: apply: %w", err)
	}
	// Find a gap before writing anything.
	next := last + 1
	for _, ev := range events {
		switch {
		case ev.Seq < next:
		case ev.Seq == next:
			next++
		default:
			return 0, &GapError{Last: last, Want: next, Got: ev.Seq}
		}
	}
	if next == last+1 {
		return 0, nil
	}
	type skip struct {
		ev     contracts.Event
		reason string
	}
	var skips []skip
	p := projector{ctx: ctx, tx: tx, q: s.q}
	if next-last > 1 {
		p.stmts = make(map[string]*sqlx.Stmt)
	}
	defer p.close()
	applied := 0
	for _, ev := range events {
		if ev.Seq <= last {
			continue
		}
		reason, err := p.apply(ev)
		if err != nil {
			return 0, fmt.Errorf("store: apply seq %d (%s): %w", ev.Seq, ev.Type, err)
		}
		if reason != "" {
			skips = append(skips, skip{ev, reason})
		}
		last = ev.Seq
		applied++
	}
	if _, err := tx.ExecContext(ctx, s.q("UPDATE meta SET last_applied = ? WHERE id = 1"), last); err != nil {
		return 0, fmt.Errorf("store: apply: last applied: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("store: apply: commit: %w", err)
	}
	if s.onSkip != nil {
		for _, sk := range skips {
			s.onSkip(sk.ev, sk.reason)
		}
	}
	return applied, nil
}

// lockMeta returns last_applied and holds the write lock until tx ends:
// SQLite's immediate transactions hold it from BEGIN; PostgreSQL needs the
// row lock, which serialises Apply and Reset across processes too.
func (s *Store) lockMeta(ctx context.Context, tx *sqlx.Tx) (int64, error) {
	query := "SELECT last_applied FROM meta WHERE id = 1"
	if s.driver == DriverPostgres {
		query += " FOR UPDATE"
	}
	var last int64
	if err := tx.GetContext(ctx, &last, query); err != nil {
		return 0, fmt.Errorf("last applied: %w", err)
	}
	return last, nil
}

// projector applies events inside one transaction.
type projector struct {
	ctx context.Context
	tx  *sqlx.Tx
	q   func(string) string
	// stmts caches the statements prepared in tx, by query, when a batch
	// has several events: a prepared statement saves PostgreSQL a round
	// trip and SQLite the parsing on every later use. nil: no caching (a
	// statement used once costs more prepared).
	stmts map[string]*sqlx.Stmt
}

// close closes the prepared statements.
func (p *projector) close() {
	for _, st := range p.stmts {
		st.Close()
	}
}

// stmt returns query prepared, or nil if statements are not cached.
func (p *projector) stmt(query string) (*sqlx.Stmt, error) {
	if p.stmts == nil {
		return nil, nil
	}
	if st, ok := p.stmts[query]; ok {
		return st, nil
	}
	st, err := p.tx.PreparexContext(p.ctx, p.q(query))
	if err != nil {
		return nil, err
	}
	p.stmts[query] = st
	return st, nil
}

// exec runs a statement and returns how many rows it changed.
func (p *projector) exec(query string, args ...any) (int64, error) {
	st, err := p.stmt(query)
	if err != nil {
		return 0, err
	}
	var res sql.Result
	if st != nil {
		res, err = st.ExecContext(p.ctx, args...)
	} else {
		res, err = p.tx.ExecContext(p.ctx, p.q(query), args...)
	}
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// get reads one row into dest; found is false if there is none.
func (p *projector) get(dest any, query string, args ...any) (found bool, err error) {
	st, err := p.stmt(query)
	if err != nil {
		return false, err
	}
	if st != nil {
		err = st.GetContext(p.ctx, dest, args...)
	} else {
		err = p.tx.GetContext(p.ctx, dest, p.q(query), args...)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// apply applies one event. It returns why the event was skipped, or ""
// if it was applied (or needed no change), and an error only from the
// database.
func (p *projector) apply(ev contracts.Event) (skipped string, err error) {
	if err := ev.Validate(); err != nil {
		return "invalid event: " + err.Error(), nil
	}
	msg, err := ev.DecodePayload()
	if err != nil { // Validate decoded it already
		return "invalid event: " + err.Error(), nil
	}
	now := micros(ev.Time)
	switch m := msg.(type) {
	case contracts.RepoCreated:
		return p.repoCreated(ev, m, now)
	case contracts.RepoDeleted:
		n, err := p.exec("DELETE FROM repos WHERE name = ?", ev.Repo)
		return ifNone(n, "no such repo"), err
	case contracts.BuildTriggered:
		return p.buildTriggered(ev, m, now)
	case contracts.BuildQueued, contracts.LogClosed:
		return "", nil
	case contracts.BuildStarted:
		return p.buildStarted(ev, m, now)
	case contracts.BuildCanceled:
		return p.buildCanceled(ev, m, now)
	case contracts.BuildFinished:
		return p.buildFinished(ev, m, now)
	case contracts.JobPending, contracts.JobQueued, contracts.JobBlocked, contracts.JobApproved,
		contracts.JobStarted, contracts.JobFinished, contracts.JobSkipped:
		return p.job(ev, msg, now)
	case contracts.SecretSet:
		return p.secretSet(ev, m, now)
	case contracts.TokenCreated:
		n, err := p.exec(`INSERT INTO tokens (name, scope, hash, created_at) VALUES (?, ?, ?, ?)
			ON CONFLICT DO NOTHING`, m.Name, string(m.Scope), m.Hash, now)
		return ifNone(n, "a token with this name or hash exists"), err
	}
	return fmt.Sprintf("event type %s has no projection", ev.Type), nil
}

// ifNone returns reason if n rows changed is 0, else "".
func ifNone(n int64, reason string) string {
	if n == 0 {
		return reason
	}
	return ""
}

func nullString(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

// nullJSON returns v's JSON, or NULL if v is empty.
func nullJSON[T any](v T, empty bool) (sql.NullString, error) {
	if empty {
		return sql.NullString{}, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return sql.NullString{}, err
	}
	return sql.NullString{String: string(b), Valid: true}, nil
}

func (p *projector) repoCreated(ev contracts.Event, m contracts.RepoCreated, now int64) (string, error) {
	_, err := p.exec(`INSERT INTO repos (name, url, default_branch, poll_seconds, webhook_secret, created_at, last_build)
		VALUES (?, ?, ?, ?, ?, ?, 0)
		ON CONFLICT (name) DO UPDATE SET url = excluded.url, default_branch = excluded.default_branch,
			poll_seconds = excluded.poll_seconds, webhook_secret = excluded.webhook_secret`,
		ev.Repo, m.URL, m.DefaultBranch, m.PollSeconds, nullString(string(m.WebhookSecret)), now)
	return "", err
}

func (p *projector) buildTriggered(ev contracts.Event, m contracts.BuildTriggered, now int64) (string, error) {
	// Raising last_build first also tells whether the repo exists. If the
	// build exists, last_build is at least its number already.
	n, err := p.exec("UPDATE repos SET last_build = CASE WHEN last_build < ? THEN ? ELSE last_build END WHERE name = ?",
		ev.Build, ev.Build, ev.Repo)
	if err != nil || n == 0 {
		return "no such repo", err
	}
	params, err := nullJSON(m.Params, len(m.Params) == 0)
	if err != nil {
		return "", err
	}
	retryOf := m.RetryOf
	if retryOf >= ev.Build { // not an earlier build: the link is dropped, the build kept
		retryOf = 0
	}
	n, err = p.exec(`INSERT INTO builds (repo, number, status, ref, commit_id, params, event, user_name, retry_of,
			error, created_at, started_at, finished_at, cancel_requested)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '', ?, NULL, NULL, ?)
		ON CONFLICT (repo, number) DO NOTHING`,
		ev.Repo, ev.Build, string(contracts.BuildStatusQueued), m.Ref, m.Commit, params, string(m.Event), m.User,
		retryOf, now, false)
	if err != nil || n == 0 {
		return fmt.Sprintf("build %d exists", ev.Build), err
	}
	if m.DedupKey != "" {
		if _, err := p.exec(`INSERT INTO build_dedup (repo, key, number) VALUES (?, ?, ?) ON CONFLICT (repo, key) DO NOTHING`,
			ev.Repo, m.DedupKey, ev.Build); err != nil {
			return "", err
		}
	}
	return "", nil
}

// buildState is what the build rules read of a build.
type buildState struct {
	Status contracts.BuildStatus `db:"status"`
}

// build reads the build of ev; found is false if there is none.
func (p *projector) build(ev contracts.Event) (b buildState, found bool, err error) {
	found, err = p.get(&b, "SELECT status FROM builds WHERE repo = ? AND number = ?", ev.Repo, ev.Build)
	return b, found, err
}

func (p *projector) buildStarted(ev contracts.Event, m contracts.BuildStarted, now int64) (string, error) {
	b, found, err := p.build(ev)
	switch {
	case !found:
		return "no such build", err
	case b.Status != contracts.BuildStatusQueued:
		return fmt.Sprintf("build is %s, not queued", b.Status), nil
	}
	if _, err := p.exec(`UPDATE builds SET commit_id = ?, status = ?, started_at = ? WHERE repo = ? AND number = ?`,
		m.Commit, string(contracts.BuildStatusRunning), now, ev.Repo, ev.Build); err != nil {
		return "", err
	}
	for i, j := range m.Jobs {
		status, reason := contracts.JobStatusPending, ""
		if len(j.DependsOn) > 0 {
			reason = "waiting for " + strings.Join(j.DependsOn, ", ")
		}
		if j.Manual {
			status, reason = contracts.JobStatusBlocked, "waiting for approval"
		}
		deps, err := nullJSON(j.DependsOn, len(j.DependsOn) == 0)
		if err != nil {
			return "", err
		}
		if _, err := p.exec(`INSERT INTO jobs (repo, build, id, position, status, depends_on, manual, attempt,
				runner_id, lease_id, started_at, finished_at, exit_code, reason)
			VALUES (?, ?, ?, ?, ?, ?, ?, 0, '', '', NULL, NULL, NULL, ?)`,
			ev.Repo, ev.Build, j.ID, i, string(status), deps, j.Manual, reason); err != nil {
			return "", err
		}
	}
	return "", nil
}

func (p *projector) buildCanceled(ev contracts.Event, m contracts.BuildCanceled, now int64) (string, error) {
	b, found, err := p.build(ev)
	switch {
	case !found:
		return "no such build", err
	case b.Status.Terminal():
		return fmt.Sprintf("build is %s already", b.Status), nil
	}
	if _, err := p.exec("UPDATE builds SET cancel_requested = ? WHERE repo = ? AND number = ?",
		true, ev.Repo, ev.Build); err != nil {
		return "", err
	}
	reason := "canceled"
	if m.User != "" {
		reason = "canceled by " + m.User
	}
	_, err = p.exec(`UPDATE jobs SET status = ?, finished_at = `+clampFinish+`, reason = ?, lease_id = ''
		WHERE repo = ? AND build = ? AND status IN ('pending', 'blocked', 'queued')`,
		string(contracts.JobStatusCanceled), now, now, reason, ev.Repo, ev.Build)
	return "", err
}

func (p *projector) buildFinished(ev contracts.Event, m contracts.BuildFinished, now int64) (string, error) {
	b, found, err := p.build(ev)
	switch {
	case !found:
		return "no such build", err
	case b.Status.Terminal():
		return fmt.Sprintf("build is %s already", b.Status), nil
	}
	if _, err := p.exec(`UPDATE builds SET status = ?, error = ?, finished_at = `+clampFinish+`
		WHERE repo = ? AND number = ?`,
		string(m.Status), m.Error, now, now, ev.Repo, ev.Build); err != nil {
		return "", err
	}
	_, err = p.exec(`UPDATE jobs SET status = ?, finished_at = `+clampFinish+`, reason = 'build finished', lease_id = ''
		WHERE repo = ? AND build = ? AND status NOT IN `+finalJobStatuses,
		string(contracts.JobStatusCanceled), now, now, ev.Repo, ev.Build)
	return "", err
}

// jobState is what the job rules read of a job.
type jobState struct {
	Status  contracts.JobStatus `db:"status"`
	Attempt int                 `db:"attempt"`
}

// job applies the job.* events.
func (p *projector) job(ev contracts.Event, msg contracts.Message, now int64) (string, error) {
	var j jobState
	found, err := p.get(&j, "SELECT status, attempt FROM jobs WHERE repo = ? AND build = ? AND id = ?",
		ev.Repo, ev.Build, ev.Job)
	if !found {
		return "no such job", err
	}
	if j.Status.Terminal() {
		return fmt.Sprintf("job is %s already", j.Status), nil
	}
	const where = " WHERE repo = ? AND build = ? AND id = ?"
	key := []any{ev.Repo, ev.Build, ev.Job}
	run := func(set string, args ...any) (string, error) {
		_, err := p.exec("UPDATE jobs SET "+set+where, append(args, key...)...)
		return "", err
	}
	switch m := msg.(type) {
	case contracts.JobPending:
		if j.Status != contracts.JobStatusPending && j.Status != contracts.JobStatusQueued {
			return fmt.Sprintf("job is %s, not pending or queued", j.Status), nil
		}
		return run("reason = ?", m.Reason)
	case contracts.JobQueued:
		return run("status = ?, attempt = ?, runner_id = '', lease_id = '', started_at = NULL, reason = ''",
			string(contracts.JobStatusQueued), m.Attempt)
	case contracts.JobBlocked:
		return run("status = ?, reason = ?", string(contracts.JobStatusBlocked), m.Reason)
	case contracts.JobApproved:
		if j.Status != contracts.JobStatusBlocked {
			return fmt.Sprintf("job is %s, not blocked", j.Status), nil
		}
		reason := "approved"
		if m.User != "" {
			reason = "approved by " + m.User
		}
		return run("status = ?, reason = ?", string(contracts.JobStatusPending), reason)
	case contracts.JobStarted:
		if m.Attempt < j.Attempt {
			return fmt.Sprintf("attempt %d started after attempt %d", m.Attempt, j.Attempt), nil
		}
		lease := ""
		if !m.LeaseID.IsZero() {
			lease = m.LeaseID.String()
		}
		return run("status = ?, attempt = ?, runner_id = ?, lease_id = ?, started_at = ?, reason = ''",
			string(contracts.JobStatusRunning), m.Attempt, m.RunnerID, lease, now)
	case contracts.JobFinished:
		if m.Attempt != 0 && m.Attempt < j.Attempt {
			return fmt.Sprintf("late result of attempt %d: the job is at attempt %d", m.Attempt, j.Attempt), nil
		}
		var exit sql.NullInt64
		if m.ExitCode != nil {
			exit = sql.NullInt64{Int64: int64(*m.ExitCode), Valid: true}
		}
		return run("status = ?, exit_code = ?, reason = ?, finished_at = "+clampFinish+
			", lease_id = '', attempt = CASE WHEN attempt < ? THEN ? ELSE attempt END",
			string(m.Status), exit, m.Reason, now, now, m.Attempt, m.Attempt)
	case contracts.JobSkipped:
		return run("status = ?, reason = ?, finished_at = "+clampFinish+", lease_id = ''",
			string(contracts.JobStatusSkipped), m.Reason, now, now)
	}
	return fmt.Sprintf("event type %s has no projection", ev.Type), nil
}

func (p *projector) secretSet(ev contracts.Event, m contracts.SecretSet, now int64) (string, error) {
	var one int
	if found, err := p.get(&one, "SELECT 1 FROM repos WHERE name = ?", ev.Repo); !found {
		return "no such repo", err
	}
	_, err := p.exec(`INSERT INTO secrets (repo, name, value, updated_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (repo, name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
		ev.Repo, m.Name, string(m.Value), now)
	return "", err
}
