package api

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/modules/blobclient"
)

// resourceRoutes registers the JSON routes of SPEC.md §5: repositories,
// builds, jobs, artifacts, secrets, tokens and the OpenAPI document.
// Every handler checks its path parameters, query and body before it asks
// another module, so bad input is a 4xx and nothing is written.
func (a *API) resourceRoutes() {
	const (
		repos  = "/api/v1/repos"
		repo   = repos + "/{repo}"
		builds = repo + "/builds"
		build  = builds + "/{number}"
	)
	a.handlePublic("GET /api/v1/openapi.json", a.serveOpenAPI)

	a.handle("POST "+repos, contracts.ScopeWrite, a.createRepo)
	a.handle("GET "+repos, contracts.ScopeRead, a.listRepos)
	a.handle("GET "+repo, contracts.ScopeRead, a.getRepo)
	a.handle("DELETE "+repo, contracts.ScopeWrite, a.deleteRepo)

	a.handle("POST "+builds, contracts.ScopeWrite, a.triggerBuild)
	a.handle("GET "+builds, contracts.ScopeRead, a.listBuilds)
	a.handle("GET "+build, contracts.ScopeRead, a.getBuild)
	a.handle("POST "+build+"/cancel", contracts.ScopeWrite, a.cancelBuild)
	a.handle("POST "+build+"/retry", contracts.ScopeWrite, a.retryBuild)
	a.handle("POST "+build+"/jobs/{job}/approve", contracts.ScopeWrite, a.approveJob)
	a.handle("GET "+build+"/artifacts/{id}", contracts.ScopeRead, a.getArtifact)

	a.handle("PUT "+repo+"/secrets/{name}", contracts.ScopeWrite, a.setSecret)
	a.handle("GET "+repo+"/secrets", contracts.ScopeRead, a.listSecrets)

	a.handle("POST /api/v1/tokens", contracts.ScopeAdmin, a.createToken)
}

// repoJSON is a repository as the HTTP API shows it: the data store's
// record plus "poll", the boolean POST /api/v1/repos takes.
type repoJSON struct {
	contracts.Repo
	Poll bool `json:"poll"`
}

func toRepoJSON(r contracts.Repo) repoJSON { return repoJSON{Repo: r, Poll: r.Polled()} }

// createRepoBody is the body of POST /api/v1/repos. It differs from
// contracts.CreateRepo in "poll" (a boolean here, poll_seconds there).
type createRepoBody struct {
	Name          string           `json:"name"`
	URL           string           `json:"url"`
	DefaultBranch string           `json:"default_branch"`
	WebhookSecret contracts.Secret `json:"webhook_secret"`
	Poll          bool             `json:"poll"`
}

func (a *API) createRepo(w http.ResponseWriter, r *http.Request, _ contracts.Token) {
	var body createRepoBody
	if !decodeBody(w, r, &body) {
		return
	}
	req := contracts.CreateRepo{Name: body.Name, URL: body.URL, DefaultBranch: body.DefaultBranch, WebhookSecret: body.WebhookSecret}
	if body.Poll {
		req.PollSeconds = contracts.DefaultPollSeconds
	}
	if !validRequest(w, req) {
		return
	}
	repo, err := call[contracts.Repo](r.Context(), a, req)
	if err != nil {
		writeModuleError(w, a, err)
		return
	}
	w.Header().Set("Location", "/api/v1/repos/"+repo.Name)
	writeJSON(w, http.StatusCreated, toRepoJSON(repo))
}

func (a *API) listRepos(w http.ResponseWriter, r *http.Request, _ contracts.Token) {
	q, ok := query(w, r, "limit", "after")
	if !ok {
		return
	}
	limit, ok := limitParam(w, q)
	if !ok {
		return
	}
	after := q.Get("after")
	if after != "" && !validParam(w, "after", contracts.CheckRepoName(after)) {
		return
	}
	list, err := call[contracts.RepoList](r.Context(), a, contracts.ListRepos{Limit: limit, After: after})
	if err != nil {
		writeModuleError(w, a, err)
		return
	}
	out := make([]repoJSON, 0, len(list.Repos))
	for _, repo := range list.Repos {
		out = append(out, toRepoJSON(repo))
	}
	if list.Next != "" {
		setNextLink(w, r, "after", list.Next)
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) getRepo(w http.ResponseWriter, r *http.Request, _ contracts.Token) {
	name, ok := repoParam(w, r)
	if !ok {
		return
	}
	repo, err := call[contracts.Repo](r.Context(), a, contracts.GetRepo{Name: name})
	if err != nil {
		writeModuleError(w, a, err)
		return
	}
	writeJSON(w, http.StatusOK, toRepoJSON(repo))
}

func (a *API) deleteRepo(w http.ResponseWriter, r *http.Request, _ contracts.Token) {
	name, ok := repoParam(w, r)
	if !ok {
		return
	}
	if _, err := call[contracts.OK](r.Context(), a, contracts.DeleteRepo{Name: name}); err != nil {
		writeModuleError(w, a, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// triggerBody is the body of POST /api/v1/repos/{repo}/builds.
type triggerBody struct {
	Ref    string            `json:"ref"`
	Commit string            `json:"commit"`
	Params map[string]string `json:"params"`
}

func (a *API) triggerBuild(w http.ResponseWriter, r *http.Request, tok contracts.Token) {
	name, ok := repoParam(w, r)
	if !ok {
		return
	}
	var body triggerBody
	if !optionalBody(w, r, &body) {
		return
	}
	req := contracts.TriggerBuild{Repo: name, Ref: body.Ref, Commit: body.Commit, Params: body.Params,
		Event: contracts.TriggerManual, User: tok.Name}
	if !validRequest(w, req) {
		return
	}
	forwardBuild(w, r, a, http.StatusCreated, req)
}

func (a *API) listBuilds(w http.ResponseWriter, r *http.Request, _ contracts.Token) {
	name, ok := repoParam(w, r)
	if !ok {
		return
	}
	q, ok := query(w, r, "status", "limit", "before")
	if !ok {
		return
	}
	req := contracts.ListBuilds{Repo: name, Status: contracts.BuildStatus(q.Get("status"))}
	if req.Status != "" && !req.Status.Valid() {
		writeError(w, http.StatusBadRequest, string(contracts.CodeInvalidArgument),
			fmt.Sprintf("query status=%q: want one of queued, running, success, failure, canceled, error", q.Get("status")))
		return
	}
	if req.Limit, ok = limitParam(w, q); !ok {
		return
	}
	if s := q.Get("before"); s != "" {
		if req.Before, ok = positive(w, "query before", s); !ok {
			return
		}
	}
	list, err := call[contracts.BuildList](r.Context(), a, req)
	if err != nil {
		writeModuleError(w, a, err)
		return
	}
	views := make([]buildJSON, len(list.Builds))
	for i, b := range list.Builds {
		views[i] = viewBuild(b, false)
	}
	limit := req.Limit
	if limit == 0 {
		limit = contracts.DefaultListLimit
	}
	if n := len(list.Builds); n == limit && list.Builds[n-1].Number > 1 {
		setNextLink(w, r, "before", strconv.FormatInt(list.Builds[n-1].Number, 10))
	}
	writeJSON(w, http.StatusOK, views)
}

func (a *API) getBuild(w http.ResponseWriter, r *http.Request, _ contracts.Token) {
	name, number, ok := buildParams(w, r)
	if !ok {
		return
	}
	forwardBuild(w, r, a, http.StatusOK, contracts.GetBuild{Repo: name, Number: number})
}

func (a *API) cancelBuild(w http.ResponseWriter, r *http.Request, tok contracts.Token) {
	name, number, ok := buildParams(w, r)
	if !ok || !emptyBody(w, r) {
		return
	}
	forwardBuild(w, r, a, http.StatusOK, contracts.CancelBuild{Repo: name, Number: number, User: tok.Name})
}

func (a *API) retryBuild(w http.ResponseWriter, r *http.Request, tok contracts.Token) {
	name, number, ok := buildParams(w, r)
	if !ok || !emptyBody(w, r) {
		return
	}
	forwardBuild(w, r, a, http.StatusCreated, contracts.RetryBuild{Repo: name, Number: number, User: tok.Name})
}

func (a *API) approveJob(w http.ResponseWriter, r *http.Request, tok contracts.Token) {
	name, number, ok := buildParams(w, r)
	if !ok {
		return
	}
	job := r.PathValue("job")
	if !validParam(w, "path", contracts.CheckJobName(job)) || !emptyBody(w, r) {
		return
	}
	forwardBuild(w, r, a, http.StatusOK, contracts.ApproveJob{Repo: name, Number: number, Job: job, User: tok.Name})
}

// getArtifact streams a job's artifact (a gzip-compressed tar) from the
// blob store. The build is read first so an unknown repository or build
// is told apart from a missing artifact.
func (a *API) getArtifact(w http.ResponseWriter, r *http.Request, _ contracts.Token) {
	name, number, ok := buildParams(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	if !validParam(w, "path", field("artifact id", contracts.CheckJobName(id))) {
		return
	}
	if _, err := call[contracts.Build](r.Context(), a, contracts.GetBuild{Repo: name, Number: number}); err != nil {
		writeModuleError(w, a, err)
		return
	}
	key := contracts.ArtifactKey(name, number, id)
	info, err := call[contracts.BlobInfo](r.Context(), a, contracts.StatBlob{Key: key})
	if contracts.CodeOf(err) == contracts.CodeNotFound {
		writeError(w, http.StatusNotFound, string(contracts.CodeNotFound),
			fmt.Sprintf("build %s#%d has no artifact %q", name, number, id))
		return
	}
	if err != nil {
		writeModuleError(w, a, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/gzip")
	h.Set("Content-Length", strconv.FormatInt(info.Size, 10))
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s-%d-%s.tar.gz"`, name, number, id))
	h.Set("Cache-Control", "no-store")
	cw := &countingWriter{w: w}
	// The whole transfer may take longer than one request's deadline; it
	// lasts as long as the client reads, or the module lives.
	if _, err := blobclient.Get(r.Context(), a.tr, key, cw); err != nil {
		if cw.n == 0 && r.Context().Err() == nil {
			h.Del("Content-Length")
			h.Del("Content-Disposition")
			writeModuleError(w, a, err)
			return
		}
		// Headers are sent: a short body (under Content-Length) tells
		// the client the download failed.
		a.log.Warn().Err(err).Str("repo", name).Int64("build", number).Str("artifact", id).Msg("artifact download cut short")
	}
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// secretBody is the body of PUT /api/v1/repos/{repo}/secrets/{name}.
type secretBody struct {
	Value contracts.Secret `json:"value"`
}

func (a *API) setSecret(w http.ResponseWriter, r *http.Request, _ contracts.Token) {
	name, ok := repoParam(w, r)
	if !ok {
		return
	}
	secret := r.PathValue("name")
	if !validParam(w, "path", contracts.CheckSecretName(secret)) {
		return
	}
	var body secretBody
	if !decodeBody(w, r, &body) {
		return
	}
	req := contracts.SetSecret{Repo: name, Name: secret, Value: body.Value}
	if !validRequest(w, req) {
		return
	}
	if _, err := call[contracts.OK](r.Context(), a, req); err != nil {
		writeModuleError(w, a, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) listSecrets(w http.ResponseWriter, r *http.Request, _ contracts.Token) {
	name, ok := repoParam(w, r)
	if !ok {
		return
	}
	names, err := call[contracts.SecretNames](r.Context(), a, contracts.ListSecrets{Repo: name})
	if err != nil {
		writeModuleError(w, a, err)
		return
	}
	if names.Names == nil {
		names.Names = []string{}
	}
	writeJSON(w, http.StatusOK, names.Names)
}

// tokenBody is the body of POST /api/v1/tokens; scope defaults to read.
type tokenBody struct {
	Name  string               `json:"name"`
	Scope contracts.TokenScope `json:"scope"`
}

// tokenJSON answers POST /api/v1/tokens: the only time the token is shown.
type tokenJSON struct {
	Name      string               `json:"name"`
	Scope     contracts.TokenScope `json:"scope"`
	Token     string               `json:"token"`
	CreatedAt time.Time            `json:"created_at"`
}

func (a *API) createToken(w http.ResponseWriter, r *http.Request, _ contracts.Token) {
	var body tokenBody
	if !decodeBody(w, r, &body) {
		return
	}
	if body.Scope == "" {
		body.Scope = contracts.ScopeRead
	}
	secret, err := NewToken()
	if err != nil {
		writeModuleError(w, a, err)
		return
	}
	req := contracts.CreateToken{Name: body.Name, Scope: body.Scope, Hash: contracts.TokenHash(secret)}
	if !validRequest(w, req) {
		return
	}
	tok, err := call[contracts.Token](r.Context(), a, req)
	if err != nil {
		writeModuleError(w, a, err)
		return
	}
	writeJSON(w, http.StatusCreated, tokenJSON{Name: tok.Name, Scope: tok.Scope, Token: secret, CreatedAt: tok.CreatedAt})
}

// validRequest validates a request for another module before it is sent,
// answering 400 with the field and problem when it is invalid.
func validRequest(w http.ResponseWriter, m contracts.Message) bool {
	err := m.Validate()
	if err == nil {
		return true
	}
	writeError(w, http.StatusBadRequest, string(contracts.CodeInvalidArgument), problemText(err))
	return false
}

// problemText is a validation error in the HTTP API's terms: "field:
// problem", without the internal message type.
func problemText(err error) string {
	var ve *contracts.ValidationError
	if !errors.As(err, &ve) {
		return err.Error()
	}
	name := ve.Field
	if name == "poll_seconds" {
		name = "poll"
	}
	if name == "" {
		return ve.Problem
	}
	return name + ": " + ve.Problem
}

// field labels a lone value's validation error with name.
func field(name string, err error) error {
	var ve *contracts.ValidationError
	if err == nil || !errors.As(err, &ve) {
		return err
	}
	return &contracts.ValidationError{Field: name, Problem: ve.Problem}
}

// validParam answers 400 for a bad path or query parameter (where says
// which) and reports whether err was nil.
func validParam(w http.ResponseWriter, where string, err error) bool {
	if err == nil {
		return true
	}
	writeError(w, http.StatusBadRequest, string(contracts.CodeInvalidArgument), where+" "+problemText(err))
	return false
}

// repoParam returns the {repo} path parameter, or answers 400.
func repoParam(w http.ResponseWriter, r *http.Request) (string, bool) {
	name := r.PathValue("repo")
	return name, validParam(w, "path", contracts.CheckRepoName(name))
}

// buildParams returns the {repo} and {number} path parameters, or
// answers 400.
func buildParams(w http.ResponseWriter, r *http.Request) (string, int64, bool) {
	name, ok := repoParam(w, r)
	if !ok {
		return "", 0, false
	}
	n, ok := positive(w, "path build number", r.PathValue("number"))
	return name, n, ok
}

// positive parses a positive int64 written in plain decimal digits (no
// sign, no leading zero), or answers 400 naming what.
func positive(w http.ResponseWriter, what, s string) (int64, bool) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 1 || s[0] < '1' || s[0] > '9' {
		writeError(w, http.StatusBadRequest, string(contracts.CodeInvalidArgument),
			fmt.Sprintf("%s %q: want a positive integer", what, s))
		return 0, false
	}
	return n, true
}

// query parses the query string, answering 400 if it is malformed or a
// parameter is given twice. Unknown parameters are ignored, as HTTP
// clients and proxies may add their own.
func query(w http.ResponseWriter, r *http.Request, names ...string) (url.Values, bool) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		writeError(w, http.StatusBadRequest, string(contracts.CodeInvalidArgument), "malformed query string: "+err.Error())
		return nil, false
	}
	for _, n := range names {
		if len(q[n]) > 1 {
			writeError(w, http.StatusBadRequest, string(contracts.CodeInvalidArgument), fmt.Sprintf("query %s given %d times", n, len(q[n])))
			return nil, false
		}
	}
	return q, true
}

// limitParam returns ?limit= (0 when absent), or answers 400 unless it is
// in 1..MaxListLimit.
func limitParam(w http.ResponseWriter, q url.Values) (int, bool) {
	s := q.Get("limit")
	if s == "" {
		return 0, true
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > contracts.MaxListLimit {
		writeError(w, http.StatusBadRequest, string(contracts.CodeInvalidArgument),
			fmt.Sprintf("query limit=%q: want an integer from 1 to %d", s, contracts.MaxListLimit))
		return 0, false
	}
	return n, true
}

// setNextLink points a list's client at its next page (RFC 8288).
func setNextLink(w http.ResponseWriter, r *http.Request, param, value string) {
	q := r.URL.Query()
	q.Set(param, value)
	w.Header().Set("Link", fmt.Sprintf(`<%s?%s>; rel="next"`, r.URL.Path, q.Encode()))
}

// emptyBody accepts a request without a body, or with an empty JSON
// object, for actions that take no arguments (cancel, retry, approve).
func emptyBody(w http.ResponseWriter, r *http.Request) bool {
	var body struct{}
	return optionalBody(w, r, &body)
}

// optionalBody decodes a body whose fields are all optional: no body at
// all is accepted as an empty object.
func optionalBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if r.ContentLength == 0 {
		return true
	}
	return decodeBody(w, r, v)
}
