package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// repoJSON is a repository as the API shows it.
type repoJSON struct {
	Name             string    `json:"name"`
	URL              string    `json:"url"`
	DefaultBranch    string    `json:"default_branch"`
	PollSeconds      int64     `json:"poll_seconds,omitempty"`
	HasWebhookSecret bool      `json:"has_webhook_secret"`
	CreatedAt        time.Time `json:"created_at"`
}

// newRepoCmd returns `zeroci repo` and its subcommands.
func newRepoCmd() *cobra.Command {
	o := &clientOpts{}
	cmd := &cobra.Command{
		Use:   "repo",
		Short: "Add, list and remove repositories on a server",
		Args:  cobra.NoArgs,
	}
	addClientFlags(cmd, o)
	cmd.AddCommand(newRepoAddCmd(o), newRepoLsCmd(o), newRepoRmCmd(o))
	return cmd
}

func newRepoAddCmd(o *clientOpts) *cobra.Command {
	var branch, secret string
	var poll bool
	cmd := &cobra.Command{
		Use:   "add NAME URL [--branch B] [--webhook-secret S] [--poll]",
		Short: "Add a repository",
		Long: `Add the git repository at URL under NAME ([a-z0-9][a-z0-9._-]{0,62}).
--branch is its default branch (the server's default: main); --webhook-secret
checks the signatures of push webhooks sent to /api/v1/hooks/NAME; --poll
makes the server watch the default branch and build each new commit.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client(cmd)
			if err != nil {
				return err
			}
			body := struct {
				Name          string `json:"name"`
				URL           string `json:"url"`
				DefaultBranch string `json:"default_branch,omitempty"`
				WebhookSecret string `json:"webhook_secret,omitempty"`
				Poll          bool   `json:"poll,omitempty"`
			}{args[0], args[1], branch, secret, poll}
			var r repoJSON
			data, err := c.callJSON(cmdContext(cmd), http.MethodPost, apiPath("repos"), body, &r)
			if err != nil {
				return clientFailed(err)
			}
			if o.json {
				return clientFailed(c.printRaw(data))
			}
			_, err = fmt.Fprintf(c.out, "repo %s added (%s, branch %s)\n", r.Name, r.URL, r.DefaultBranch)
			return clientFailed(err)
		},
	}
	cmd.Flags().StringVar(&branch, "branch", "", "the default branch (default: the server's, main)")
	cmd.Flags().StringVar(&secret, "webhook-secret", "", "the secret push webhooks are signed with")
	cmd.Flags().BoolVar(&poll, "poll", false, "poll the default branch for new commits")
	return cmd
}

func newRepoLsCmd(o *clientOpts) *cobra.Command {
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List repositories",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client(cmd)
			if err != nil {
				return err
			}
			repos, data, err := c.listRepos(cmdContext(cmd))
			if err != nil {
				return clientFailed(err)
			}
			if o.json {
				return clientFailed(c.printRaw(data))
			}
			tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tBRANCH\tPOLL\tWEBHOOK\tURL")
			for _, r := range repos {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, r.DefaultBranch, pollText(r.PollSeconds), yesNo(r.HasWebhookSecret), r.URL)
			}
			return clientFailed(tw.Flush())
		},
	}
}

func newRepoRmCmd(o *clientOpts) *cobra.Command {
	return &cobra.Command{
		Use:               "rm NAME",
		Aliases:           []string{"remove"},
		Short:             "Remove a repository",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeRepos(o, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client(cmd)
			if err != nil {
				return err
			}
			data, err := c.call(cmdContext(cmd), http.MethodDelete, apiPath("repos", args[0]), nil)
			if err != nil {
				return clientFailed(err)
			}
			if o.json {
				return clientFailed(c.printRaw(data))
			}
			_, err = fmt.Fprintf(c.out, "repo %s removed\n", args[0])
			return clientFailed(err)
		},
	}
}

func pollText(seconds int64) string {
	if seconds <= 0 {
		return "-"
	}
	return (time.Duration(seconds) * time.Second).String()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// listRepos reads every repository, page by page (the API's pages end
// with a Link rel="next" header while there are more). raw is the whole
// list as one JSON array.
func (c *apiClient) listRepos(ctx context.Context) (repos []repoJSON, raw []byte, err error) {
	var all []json.RawMessage
	q := url.Values{"limit": {"1000"}}
	for {
		data, h, err := c.callHeader(ctx, http.MethodGet, apiPath("repos")+"?"+q.Encode(), nil)
		if err != nil {
			return nil, nil, err
		}
		var page []json.RawMessage
		if err := json.Unmarshal(data, &page); err != nil {
			return nil, nil, fmt.Errorf("GET /api/v1/repos: unexpected answer: %w", err)
		}
		for _, item := range page {
			var r repoJSON
			if err := json.Unmarshal(item, &r); err != nil {
				return nil, nil, fmt.Errorf("GET /api/v1/repos: unexpected answer: %w", err)
			}
			repos = append(repos, r)
		}
		all = append(all, page...)
		if len(page) == 0 || !strings.Contains(h.Get("Link"), `rel="next"`) {
			break
		}
		q.Set("after", repos[len(repos)-1].Name)
	}
	if all == nil {
		all = []json.RawMessage{}
	}
	raw, err = json.Marshal(all)
	return repos, raw, err
}
