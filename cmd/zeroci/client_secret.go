package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/spf13/cobra"
)

// maxSecretBytes bounds the value `secret set` reads from stdin.
const maxSecretBytes = 256 << 10

// newSecretCmd returns `zeroci secret` and its subcommands.
func newSecretCmd() *cobra.Command {
	o := &clientOpts{}
	cmd := &cobra.Command{
		Use:   "secret",
		Short: "Set and list a repository's secrets",
		Args:  cobra.NoArgs,
	}
	addClientFlags(cmd, o)
	cmd.AddCommand(newSecretSetCmd(o), newSecretLsCmd(o))
	return cmd
}

func newSecretSetCmd(o *clientOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "set REPO NAME",
		Short: "Set a secret; its value is read from stdin",
		Long: `Set the secret NAME of REPO to the value read from stdin (one trailing
newline is dropped, so "echo VALUE | zeroci secret set REPO NAME" works).
Pipelines read it with {secret: NAME}; it is masked in logs.`,
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: completeRepos(o, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), maxSecretBytes+1))
			if err != nil {
				return clientFailed(fmt.Errorf("reading the secret from stdin: %w", err))
			}
			if len(data) > maxSecretBytes {
				return usageError("secret: the value on stdin is over %d bytes", maxSecretBytes)
			}
			value := strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r")
			c, err := o.client(cmd)
			if err != nil {
				return err
			}
			body := struct {
				Value string `json:"value"`
			}{value}
			raw, err := c.call(cmdContext(cmd), http.MethodPut, apiPath("repos", args[0], "secrets", args[1]), body)
			if err != nil {
				return clientFailed(err)
			}
			if o.json {
				return clientFailed(c.printRaw(raw))
			}
			_, err = fmt.Fprintf(c.out, "secret %s of %s set\n", args[1], args[0])
			return clientFailed(err)
		},
	}
}

func newSecretLsCmd(o *clientOpts) *cobra.Command {
	return &cobra.Command{
		Use:               "ls REPO",
		Aliases:           []string{"list"},
		Short:             "List a repository's secret names (never their values)",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeRepos(o, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client(cmd)
			if err != nil {
				return err
			}
			raw, err := c.call(cmdContext(cmd), http.MethodGet, apiPath("repos", args[0], "secrets"), nil)
			if err != nil {
				return clientFailed(err)
			}
			if o.json {
				return clientFailed(c.printRaw(raw))
			}
			names, err := secretNames(raw)
			if err != nil {
				return clientFailed(err)
			}
			for _, n := range names {
				if _, err := fmt.Fprintln(c.out, n); err != nil {
					return clientFailed(err)
				}
			}
			return nil
		},
	}
}

// secretNames reads the names out of the secrets list, which may be an
// array of names, an array of {"name"} objects, or {"names": [...]}.
func secretNames(raw []byte) ([]string, error) {
	var names []string
	if json.Unmarshal(raw, &names) == nil {
		return names, nil
	}
	var objs []struct {
		Name string `json:"name"`
	}
	if json.Unmarshal(raw, &objs) == nil {
		for _, o := range objs {
			names = append(names, o.Name)
		}
		return names, nil
	}
	var wrapped struct {
		Names   []string `json:"names"`
		Secrets []string `json:"secrets"`
	}
	if err := json.Unmarshal(raw, &wrapped); err != nil {
		return nil, fmt.Errorf("secrets: unexpected answer: %w", err)
	}
	return append(wrapped.Names, wrapped.Secrets...), nil
}

// newTokenCmd returns `zeroci token` and `token create`.
func newTokenCmd() *cobra.Command {
	o := &clientOpts{}
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create API tokens",
		Args:  cobra.NoArgs,
	}
	addClientFlags(cmd, o)
	cmd.AddCommand(newTokenCreateCmd(o))
	return cmd
}

func newTokenCreateCmd(o *clientOpts) *cobra.Command {
	var scope string
	cmd := &cobra.Command{
		Use:   "create NAME [--scope read|write|admin]",
		Short: "Create an API token and print it (it is shown once)",
		Long: `Create an API token named NAME with --scope read (see everything), write
(also change repositories, builds and secrets) or admin (also create
tokens), and print it on stdout. The server keeps only its hash: it
cannot be shown again. Needs an admin token.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch scope {
			case "read", "write", "admin":
			default:
				return usageError("--scope %q: want read, write or admin", scope)
			}
			c, err := o.client(cmd)
			if err != nil {
				return err
			}
			body := struct {
				Name  string `json:"name"`
				Scope string `json:"scope"`
			}{args[0], scope}
			var tok struct {
				Name  string `json:"name"`
				Scope string `json:"scope"`
				Token string `json:"token"`
			}
			raw, err := c.callJSON(cmdContext(cmd), http.MethodPost, apiPath("tokens"), body, &tok)
			if err != nil {
				return clientFailed(err)
			}
			if o.json {
				return clientFailed(c.printRaw(raw))
			}
			if tok.Token == "" {
				return clientFailed(fmt.Errorf("token create: the answer has no token"))
			}
			fmt.Fprintf(c.errOut, "token %s (scope %s) created; it is shown only now:\n", tok.Name, tok.Scope)
			_, err = fmt.Fprintln(c.out, tok.Token)
			return clientFailed(err)
		},
	}
	cmd.Flags().StringVar(&scope, "scope", "read", "read, write or admin")
	_ = cmd.RegisterFlagCompletionFunc("scope", cobra.FixedCompletions([]string{"read", "write", "admin"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}
