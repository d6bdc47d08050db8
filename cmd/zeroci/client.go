package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// Client defaults (SPEC.md §2).
const (
	defaultServer    = "http://127.0.0.1:8080"
	envServer        = "ZEROCI_SERVER"
	envToken         = "ZEROCI_TOKEN"
	requestTimeout   = 30 * time.Second // one plain (not streaming) API call
	maxResponseBytes = 64 << 20         // a plain answer larger than this is cut off
)

// defaultTokenFile is where `zeroci server` writes its admin token by
// default, relative to the working directory.
var defaultTokenFile = filepath.Join("zeroci-data", "admin.token")

// newClientCmds returns the client commands of SPEC.md §2, which talk to a
// server over its HTTP API.
func newClientCmds() []*cobra.Command {
	return []*cobra.Command{newRepoCmd(), newBuildCmd(), newLogsCmd(), newEventsCmd(), newSecretCmd(), newTokenCmd()}
}

// clientOpts are the flags every client command shares.
type clientOpts struct {
	server string
	token  string
	json   bool
}

// addClientFlags adds --server, --token and --json to cmd and its
// subcommands.
func addClientFlags(cmd *cobra.Command, o *clientOpts) {
	f := cmd.PersistentFlags()
	f.StringVar(&o.server, "server", "", "the server's URL (env "+envServer+", default "+defaultServer+")")
	f.StringVar(&o.token, "token", "", "an API token (env "+envToken+", default: the content of ./"+defaultTokenFile+")")
	f.BoolVar(&o.json, "json", false, "print the API's JSON as is, for scripts")
}

// client resolves the server and token: flag, then environment, then
// default. A missing token is not an error here: the server answers 401.
func (o *clientOpts) client(cmd *cobra.Command) (*apiClient, error) {
	server := firstNonEmpty(o.server, os.Getenv(envServer), defaultServer)
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, &exitError{code: exitUsage, err: fmt.Errorf("--server %q: want an http:// or https:// URL", server)}
	}
	token := firstNonEmpty(o.token, os.Getenv(envToken))
	if token == "" {
		if data, err := os.ReadFile(defaultTokenFile); err == nil {
			token = strings.TrimSpace(string(data))
		}
	}
	return &apiClient{
		base:   strings.TrimRight(server, "/"),
		token:  token,
		http:   &http.Client{},
		out:    cmd.OutOrStdout(),
		errOut: cmd.ErrOrStderr(),
	}, nil
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// apiClient makes calls to the HTTP API of SPEC.md §5.
type apiClient struct {
	base   string // http://host:port, no trailing slash
	token  string // empty: no Authorization header
	http   *http.Client
	out    io.Writer
	errOut io.Writer
}

// apiError is an error answer of the API: {"error", "code"} and the HTTP
// status.
type apiError struct {
	Status  int
	Message string
	Code    string
}

// Error reads "MESSAGE (CODE)", the line the CLI prints after "zeroci: ".
func (e *apiError) Error() string {
	if e.Code == "" {
		return e.Message
	}
	return fmt.Sprintf("%s (%s)", e.Message, e.Code)
}

// path joins escaped path segments under /api/v1.
func apiPath(segments ...string) string {
	var b strings.Builder
	b.WriteString("/api/v1")
	for _, s := range segments {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	return b.String()
}

// open sends a request and returns the response when its status is below
// 400; otherwise the API's error as an *apiError. body, when not nil, is
// sent as JSON. The caller closes the response's body.
func (c *apiClient) open(ctx context.Context, method, path string, body any, header http.Header) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	req.Header.Set("User-Agent", "zeroci-cli/"+buildVersion())
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("cannot reach the server at %s: %w", c.base, unwrapURLError(err))
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		return nil, readAPIError(resp)
	}
	return resp, nil
}

// unwrapURLError drops the "Get URL:" prefix url.Error adds: the caller
// says which server already.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// readAPIError turns an error answer into an *apiError; a body that is not
// the API's JSON error keeps the HTTP status as the message.
func readAPIError(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var body struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}
	if json.Unmarshal(data, &body) == nil && body.Error != "" {
		return &apiError{Status: resp.StatusCode, Message: body.Error, Code: body.Code}
	}
	msg := resp.Status
	if text := strings.TrimSpace(string(data)); text != "" && len(text) < 200 {
		msg += ": " + text
	}
	return &apiError{Status: resp.StatusCode, Message: "server answered " + msg}
}

// call makes a plain API call and returns the answer's body.
func (c *apiClient) call(ctx context.Context, method, path string, body any) ([]byte, error) {
	data, _, err := c.callHeader(ctx, method, path, body)
	return data, err
}

// callHeader makes a plain API call and returns the answer's body and
// headers.
func (c *apiClient) callHeader(ctx context.Context, method, path string, body any) ([]byte, http.Header, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	resp, err := c.open(ctx, method, path, body, http.Header{"Accept": {"application/json"}})
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	return data, resp.Header, nil
}

// callJSON makes a plain API call and decodes its JSON answer into out. It
// returns the raw answer too, for --json.
func (c *apiClient) callJSON(ctx context.Context, method, path string, body, out any) ([]byte, error) {
	data, err := c.call(ctx, method, path, body)
	if err != nil {
		return nil, err
	}
	if out != nil && len(bytes.TrimSpace(data)) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return nil, fmt.Errorf("%s %s: unexpected answer: %w", method, path, err)
		}
	}
	return data, nil
}

// printRaw writes the API's JSON as is, ending with a newline.
func (c *apiClient) printRaw(data []byte) error {
	data = bytes.TrimRight(data, "\n")
	if len(data) == 0 {
		data = []byte("{}")
	}
	_, err := fmt.Fprintf(c.out, "%s\n", data)
	return err
}

// clientFailed marks err as a failure of a command that ran (exit 1),
// unless it carries its own exit code already.
func clientFailed(err error) error {
	if err == nil {
		return nil
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return err
	}
	return &exitError{code: exitFailure, err: err}
}

// usageError is a bad argument found by a command (exit 2).
func usageError(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// parseNumber reads a build number argument.
func parseNumber(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 1 {
		return 0, usageError("build number %q: want a positive integer", s)
	}
	return n, nil
}

// completeRepos completes a REPO argument at position pos with the
// server's repository names; anything else gets no completion.
func completeRepos(o *clientOpts, pos int) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(cmd *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
		if len(args) != pos {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		c, err := o.client(cmd)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		repos, _, err := c.listRepos(cmdContext(cmd))
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var names []string
		for _, r := range repos {
			if strings.HasPrefix(r.Name, prefix) {
				names = append(names, r.Name)
			}
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}

// cmdContext is cmd's context, or the background one when cmd runs
// without (cobra's completion requests may).
func cmdContext(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}
