package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/zeroci/zeroci/modules/buildscript/pipeline"
)

// newValidateCmd returns `zeroci validate [FILE]` (SPEC.md §2).
func newValidateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "validate [FILE]",
		Short: "Check a pipeline file",
		Long: `Check a pipeline file: FILE, or the current directory's .zeroci/pipeline.yaml
(.yml, .json). Each problem is printed (stdout) as "FILE:LINE: message",
then one line on stderr with their count.

Exit status: 0 when the file is valid, 1 when it has problems or cannot be
read, 2 for a bad command line.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := ""
			if len(args) == 1 {
				path = args[0]
			} else {
				found, err := pipeline.Find(".")
				if err != nil {
					return runFailed(fmt.Errorf("validate: %w", err))
				}
				path = found
			}
			p, err := pipeline.Load(path)
			var errs pipeline.Errors
			if errors.As(err, &errs) {
				// The problems are the command's report (stdout); the
				// one-line failure goes to stderr with the exit code.
				for _, e := range errs {
					fmt.Fprintln(cmd.OutOrStdout(), e)
				}
				return &exitError{code: exitFailure, err: fmt.Errorf("validate: %s: %d %s", path, len(errs), plural(len(errs), "problem"))}
			}
			if err != nil {
				return runFailed(fmt.Errorf("validate: %w", err))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: valid, %d %s\n", path, len(p.Jobs), plural(len(p.Jobs), "job"))
			return nil
		},
	}
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
