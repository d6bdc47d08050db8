package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/zeroci/zeroci/internal/config"
)

// Exit codes.
const (
	exitFailure = 1 // the command ran and failed
	exitUsage   = 2 // bad command line or configuration: nothing was started
)

// newRootCmd returns the zeroci command tree.
func newRootCmd(log zerolog.Logger) *cobra.Command {
	root := &cobra.Command{
		Use:           "zeroci",
		Short:         "zeroci is a CI platform in one binary",
		Long:          "zeroci is a CI platform in one binary: run `zeroci server` for the whole platform in one process,\nor split its modules over processes and hosts (see `zeroci server --help`).",
		SilenceErrors: true, // report prints one line
		SilenceUsage:  true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return err })
	root.AddCommand(newServerCmd(log), newMigrateCmd(), newDatastoreCmd(), newValidateCmd(), newRunCmd(log), newVersionCmd())
	root.AddCommand(newClientCmds()...)
	return root
}

// exitError carries the exit code of an error returned by a command's RunE.
// Errors that do not carry one come from cobra (unknown command or flag,
// wrong arguments) and are usage errors.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// runFailed wraps an error of a command that ran: configuration problems
// are usage errors (exit 2), the rest failures (exit 1).
func runFailed(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, config.ErrInvalid) {
		return &exitError{code: exitUsage, err: err}
	}
	return &exitError{code: exitFailure, err: err}
}

// report prints err as one line on w and returns the exit code.
// oneLine puts an error message on one line: cobra's "Did you mean
// this?" list becomes "(did you mean a, b?)", other line breaks "; ".
func oneLine(msg string) string {
	head, suggest, found := strings.Cut(msg, "\n\nDid you mean this?\n")
	var parts []string
	for _, line := range strings.Split(head, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			parts = append(parts, line)
		}
	}
	out := strings.Join(parts, "; ")
	if found {
		out += " (did you mean " + strings.Join(strings.Fields(suggest), ", ") + "?)"
	}
	return out
}

func report(w io.Writer, cmd *cobra.Command, err error) int {
	if err == nil {
		return 0
	}
	msg := oneLine(err.Error())
	var ee *exitError
	if errors.As(err, &ee) {
		fmt.Fprintf(w, "zeroci: %s\n", msg)
		return ee.code
	}
	path := "zeroci"
	if cmd != nil {
		path = cmd.CommandPath()
	}
	fmt.Fprintf(w, "zeroci: %s (see '%s --help')\n", msg, path)
	return exitUsage
}
