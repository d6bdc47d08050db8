package main

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/zeroci/zeroci/contracts"
)

// buildJSON is a build as the API shows it.
type buildJSON struct {
	Repo       string            `json:"repo"`
	Number     int64             `json:"number"`
	Status     string            `json:"status"`
	Ref        string            `json:"ref"`
	Commit     string            `json:"commit"`
	Params     map[string]string `json:"params"`
	Event      string            `json:"event"`
	User       string            `json:"user"`
	RetryOf    int64             `json:"retry_of"`
	Error      string            `json:"error"`
	CreatedAt  time.Time         `json:"created_at"`
	StartedAt  time.Time         `json:"started_at"`
	FinishedAt time.Time         `json:"finished_at"`
	Jobs       []jobJSON         `json:"jobs"`
}

// jobJSON is a job of a build as the API shows it.
type jobJSON struct {
	ID         string    `json:"id"`
	Status     string    `json:"status"`
	DependsOn  []string  `json:"depends_on"`
	Manual     bool      `json:"manual"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	ExitCode   *int      `json:"exit_code"`
	Reason     string    `json:"reason"`
}

// newBuildCmd returns `zeroci build` and its subcommands.
func newBuildCmd() *cobra.Command {
	o := &clientOpts{}
	cmd := &cobra.Command{
		Use:   "build",
		Short: "Trigger, list, show, cancel, retry and approve builds",
		Args:  cobra.NoArgs,
	}
	addClientFlags(cmd, o)
	cmd.AddCommand(newBuildTriggerCmd(o), newBuildLsCmd(o), newBuildShowCmd(o),
		newBuildActionCmd(o, "cancel", "Cancel a build"),
		newBuildActionCmd(o, "retry", "Run a build again as a new build (prints its number)"),
		newBuildApproveCmd(o))
	return cmd
}

func buildPath(repo string, number int64, rest ...string) string {
	return apiPath(append([]string{"repos", repo, "builds", strconv.FormatInt(number, 10)}, rest...)...)
}

func newBuildTriggerCmd(o *clientOpts) *cobra.Command {
	var ref, commit string
	var params []string
	var wait bool
	cmd := &cobra.Command{
		Use:   "trigger REPO [--ref REF] [--commit SHA] [--param K=V]... [--wait]",
		Short: "Start a build and print its number",
		Long: `Start a build of REPO at --ref (default: its default branch) or --commit,
with build parameters --param K=V, and print the build's number.

--wait then follows every job's log live, each line prefixed with "[JOB] "
and passed through as printed (colours included), prints the jobs'
results on stderr, and exits 0 if the build succeeded, 1 otherwise. With
--json, --wait prints only the finished build's JSON.`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeRepos(o, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			ps, err := parseKVs(params)
			if err != nil {
				return err
			}
			c, err := o.client(cmd)
			if err != nil {
				return err
			}
			body := struct {
				Ref    string            `json:"ref,omitempty"`
				Commit string            `json:"commit,omitempty"`
				Params map[string]string `json:"params,omitempty"`
			}{ref, commit, ps}
			var b buildJSON
			data, err := c.callJSON(cmdContext(cmd), http.MethodPost, apiPath("repos", args[0], "builds"), body, &b)
			if err != nil {
				return clientFailed(err)
			}
			if !wait {
				if o.json {
					return clientFailed(c.printRaw(data))
				}
				_, err := fmt.Fprintln(c.out, b.Number)
				return clientFailed(err)
			}
			if !o.json {
				if _, err := fmt.Fprintln(c.out, b.Number); err != nil {
					return clientFailed(err)
				}
			}
			w := newBuildWaiter(c, args[0], b.Number, !o.json)
			final, raw, err := w.wait(cmdContext(cmd))
			if err != nil {
				return clientFailed(err)
			}
			if o.json {
				if err := c.printRaw(raw); err != nil {
					return clientFailed(err)
				}
			} else {
				printResults(c, final)
			}
			return buildResult(final)
		},
	}
	cmd.Flags().StringVar(&ref, "ref", "", "the branch or tag to build (default: the repository's default branch)")
	cmd.Flags().StringVar(&commit, "commit", "", "the commit to build")
	cmd.Flags().StringArrayVar(&params, "param", nil, "a build parameter K=V (repeatable)")
	cmd.Flags().BoolVar(&wait, "wait", false, "follow the jobs' logs and exit with the build's result")
	return cmd
}

// parseKVs reads --param K=V flags.
func parseKVs(kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usageError("--param %q: want K=V", kv)
		}
		out[k] = v
	}
	return out, nil
}

// buildResult is nil for a successful build, else an exit 1 error saying
// how it ended.
func buildResult(b buildJSON) error {
	if b.Status == string(contracts.BuildStatusSuccess) {
		return nil
	}
	msg := fmt.Sprintf("build %s #%d: %s", b.Repo, b.Number, b.Status)
	if b.Error != "" {
		msg += ": " + b.Error
	}
	return &exitError{code: exitFailure, err: fmt.Errorf("%s", msg)}
}

// printResults writes each job's result and the build's on stderr.
func printResults(c *apiClient, b buildJSON) {
	for _, j := range b.Jobs {
		line := fmt.Sprintf("[%s] %s", j.ID, j.Status)
		if j.ExitCode != nil {
			line += fmt.Sprintf(" (exit %d)", *j.ExitCode)
		}
		if j.Reason != "" {
			line += ": " + j.Reason
		}
		fmt.Fprintln(c.errOut, line)
	}
	fmt.Fprintf(c.errOut, "build %s #%d %s\n", b.Repo, b.Number, b.Status)
}

func newBuildLsCmd(o *clientOpts) *cobra.Command {
	var status string
	var limit int
	var before int64
	cmd := &cobra.Command{
		Use:               "ls REPO",
		Aliases:           []string{"list"},
		Short:             "List a repository's builds, newest first",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeRepos(o, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client(cmd)
			if err != nil {
				return err
			}
			q := url.Values{}
			if status != "" {
				q.Set("status", status)
			}
			if limit > 0 {
				q.Set("limit", strconv.Itoa(limit))
			}
			if before > 0 {
				q.Set("before", strconv.FormatInt(before, 10))
			}
			path := apiPath("repos", args[0], "builds")
			if len(q) > 0 {
				path += "?" + q.Encode()
			}
			var builds []buildJSON
			data, err := c.callJSON(cmdContext(cmd), http.MethodGet, path, nil, &builds)
			if err != nil {
				return clientFailed(err)
			}
			if o.json {
				return clientFailed(c.printRaw(data))
			}
			tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NUMBER\tSTATUS\tREF\tCOMMIT\tEVENT\tCREATED\tDURATION")
			for _, b := range builds {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", b.Number, b.Status, dash(b.Ref), dash(shortCommit(b.Commit)),
					dash(b.Event), b.CreatedAt.Local().Format(time.DateTime), duration(b.StartedAt, b.FinishedAt))
			}
			return clientFailed(tw.Flush())
		},
	}
	cmd.Flags().StringVar(&status, "status", "", "only builds in this status (queued|running|success|failure|canceled|error)")
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many builds (default: the server's)")
	cmd.Flags().Int64Var(&before, "before", 0, "only builds numbered below this")
	_ = cmd.RegisterFlagCompletionFunc("status", cobra.FixedCompletions(
		[]string{"queued", "running", "success", "failure", "canceled", "error"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func newBuildShowCmd(o *clientOpts) *cobra.Command {
	return &cobra.Command{
		Use:               "show REPO NUMBER",
		Short:             "Show a build and its jobs (status, exit code, reason)",
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: completeRepos(o, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, n, err := o.buildClient(cmd, args)
			if err != nil {
				return err
			}
			var b buildJSON
			data, err := c.callJSON(cmdContext(cmd), http.MethodGet, buildPath(args[0], n), nil, &b)
			if err != nil {
				return clientFailed(err)
			}
			if o.json {
				return clientFailed(c.printRaw(data))
			}
			return clientFailed(printBuild(c, b))
		},
	}
}

// printBuild writes a build's fields, then its jobs as a table.
func printBuild(c *apiClient, b buildJSON) error {
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "build:\t%s #%d\n", b.Repo, b.Number)
	fmt.Fprintf(tw, "status:\t%s\n", b.Status)
	fmt.Fprintf(tw, "ref:\t%s\n", dash(b.Ref))
	fmt.Fprintf(tw, "commit:\t%s\n", dash(b.Commit))
	event := dash(b.Event)
	if b.User != "" {
		event += " by " + b.User
	}
	fmt.Fprintf(tw, "event:\t%s\n", event)
	if b.RetryOf > 0 {
		fmt.Fprintf(tw, "retry of:\t#%d\n", b.RetryOf)
	}
	for _, k := range sortedKeys(b.Params) {
		fmt.Fprintf(tw, "param:\t%s=%s\n", k, b.Params[k])
	}
	fmt.Fprintf(tw, "created:\t%s\n", b.CreatedAt.Local().Format(time.DateTime))
	fmt.Fprintf(tw, "duration:\t%s\n", duration(b.StartedAt, b.FinishedAt))
	if b.Error != "" {
		fmt.Fprintf(tw, "error:\t%s\n", b.Error)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(b.Jobs) == 0 {
		return nil
	}
	fmt.Fprintln(c.out)
	tw = tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tSTATUS\tEXIT\tDURATION\tDEPENDS ON\tREASON")
	for _, j := range b.Jobs {
		exit := "-"
		if j.ExitCode != nil {
			exit = strconv.Itoa(*j.ExitCode)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", j.ID, j.Status, exit, duration(j.StartedAt, j.FinishedAt),
			dash(strings.Join(j.DependsOn, ",")), dash(j.Reason))
	}
	return tw.Flush()
}

// newBuildActionCmd returns `build cancel` or `build retry`: a POST to
// .../builds/NUMBER/ACTION answered with a build.
func newBuildActionCmd(o *clientOpts, action, short string) *cobra.Command {
	return &cobra.Command{
		Use:               action + " REPO NUMBER",
		Short:             short,
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: completeRepos(o, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, n, err := o.buildClient(cmd, args)
			if err != nil {
				return err
			}
			var b buildJSON
			data, err := c.callJSON(cmdContext(cmd), http.MethodPost, buildPath(args[0], n, action), nil, &b)
			if err != nil {
				return clientFailed(err)
			}
			if o.json {
				return clientFailed(c.printRaw(data))
			}
			if action == "retry" {
				_, err = fmt.Fprintln(c.out, b.Number)
			} else {
				_, err = fmt.Fprintf(c.out, "build %s #%d: %s\n", args[0], n, dash(b.Status))
			}
			return clientFailed(err)
		},
	}
}

func newBuildApproveCmd(o *clientOpts) *cobra.Command {
	return &cobra.Command{
		Use:               "approve REPO NUMBER JOB",
		Short:             "Approve a blocked manual job",
		Args:              cobra.ExactArgs(3),
		ValidArgsFunction: completeRepos(o, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, n, err := o.buildClient(cmd, args)
			if err != nil {
				return err
			}
			data, err := c.call(cmdContext(cmd), http.MethodPost, buildPath(args[0], n, "jobs", args[2], "approve"), nil)
			if err != nil {
				return clientFailed(err)
			}
			if o.json {
				return clientFailed(c.printRaw(data))
			}
			_, err = fmt.Fprintf(c.out, "job %s of build %s #%d approved\n", args[2], args[0], n)
			return clientFailed(err)
		},
	}
}

func shortCommit(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// duration is how long something ran: "-" before it started, up to now
// while it runs.
func duration(start, end time.Time) string {
	if start.IsZero() {
		return "-"
	}
	if end.IsZero() {
		return time.Since(start).Round(time.Second).String() + "+"
	}
	return end.Sub(start).Round(100 * time.Millisecond).String()
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// buildClient parses the build NUMBER in args[1] and makes the client,
// for the commands that take REPO NUMBER.
func (o *clientOpts) buildClient(cmd *cobra.Command, args []string) (*apiClient, int64, error) {
	n, err := parseNumber(args[1])
	if err != nil {
		return nil, 0, err
	}
	c, err := o.client(cmd)
	return c, n, err
}
