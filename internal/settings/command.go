package settings

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"

	"github.com/spf13/cobra"

	"github.com/wispfn/wisp/internal/version"
)

// Exit codes of Execute.
const (
	ExitOK    = 0
	ExitError = 1 // the command failed
	ExitUsage = 2 // the command line or a setting is wrong
)

// usageError is a wrong command line or setting (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// UsageError marks err as a wrong command line or setting: Execute exits 2.
func UsageError(err error) error {
	if err == nil {
		return nil
	}
	return usageError{err}
}

// loggedError is an error the command already logged (exit code 1, not
// printed again).
type loggedError struct{ err error }

func (e loggedError) Error() string { return e.err.Error() }
func (e loggedError) Unwrap() error { return e.err }

// Logged marks err as already logged by the command: Execute exits 1
// without printing it a second time (a server logs why it stopped in its
// own log format).
func Logged(err error) error {
	if err == nil {
		return nil
	}
	return loggedError{err}
}

// Server gives root, a server binary's root command, the habits the three
// Wisp binaries share: --version and a `version` command printing
// version.Line, errors printed once by Execute, flag errors as usage errors.
func Server(root *cobra.Command) *cobra.Command {
	root.Version = version.Line(root.Name())
	root.SetVersionTemplate("{{.Version}}\n")
	root.SilenceErrors, root.SilenceUsage = true, true
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return UsageError(fmt.Errorf("%v (see '%s --help')", err, cmd.CommandPath()))
	})
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the version and the source revision",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), root.Version)
			return err
		},
	})
	return root
}

// Execute runs root with args and returns the exit code: ExitOK, ExitUsage
// for a usage error (unknown command or flag, a setting Load refused) and
// ExitError otherwise; the error goes to stderr as "<program>: <error>".
// Single-dash long flags (-data-dir, the Go flag package's style the
// servers used to take) are read as --data-dir.
func Execute(ctx context.Context, root *cobra.Command, args []string, stdout, stderr io.Writer) int {
	root.SetArgs(DoubleDash(args))
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	var le loggedError
	if errors.As(err, &le) {
		return ExitError
	}
	fmt.Fprintf(stderr, "%s: %v\n", root.Name(), err)
	var ue usageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		return ExitUsage
	}
	return ExitError
}

var cobraUsage = regexp.MustCompile(`^(unknown command|accepts |invalid argument|unknown flag|unknown shorthand|flag needs)`)

// isCobraUsage recognises cobra's own usage errors (argument validators).
func isCobraUsage(err error) bool { return cobraUsage.MatchString(err.Error()) }

var singleDash = regexp.MustCompile(`^-[a-z][a-z0-9]*(-[a-z0-9]+)+(=.*)?$|^-[a-z]{2,}(=.*)?$`)

// DoubleDash rewrites single-dash long flags (-listen, -data-dir=x) to
// their double-dash form, up to a "--". A value that starts with a dash
// and a letter and follows its flag as a separate argument is rewritten
// too: write it as --flag=-value.
func DoubleDash(args []string) []string {
	out := make([]string, len(args))
	done := false
	for i, a := range args {
		done = done || a == "--"
		if !done && singleDash.MatchString(a) {
			a = "-" + a
		}
		out[i] = a
	}
	return out
}

// Group is a command that only holds subcommands: called alone or with an
// unknown subcommand it is a usage error (exit 2).
func Group(use, short string) *cobra.Command {
	return &cobra.Command{
		Use: use, Short: short, Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return UsageError(fmt.Errorf("%s needs a command (see '%s --help')", cmd.CommandPath(), cmd.CommandPath()))
			}
			return UsageError(fmt.Errorf("unknown command %q for %q (see '%s --help')", args[0], cmd.CommandPath(), cmd.CommandPath()))
		},
	}
}
