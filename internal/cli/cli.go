package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/wispfn/wisp/internal/failover"
	"github.com/wispfn/wisp/internal/keypin"
	"github.com/wispfn/wisp/internal/version"
)

// Exit codes of Run.
const (
	ExitOK    = 0
	ExitError = 1 // the command failed
	ExitUsage = 2 // the command line is wrong
)

// globals are the flags every command takes.
type globals struct {
	host, token, config, output string
	tlsFingerprint              string
}

// app is one Run: the streams, the environment and the global flags.
type app struct {
	ctx            context.Context
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	g              globals
	http           *http.Client
}

// usageError is a wrong command line (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(cmd *cobra.Command, format string, a ...any) error {
	return usageError{fmt.Errorf("%s (see '%s --help')", fmt.Sprintf(format, a...), cmd.CommandPath())}
}

// Run is the wisp command line without the process: args exclude the
// program name; it returns the exit code.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	a := &app{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv}
	a.http = &http.Client{Transport: &http.Transport{
		DialContext:           (&net.Dialer{Timeout: dialTimeout}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 10 * time.Minute, // an invocation may run long
	}}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	fmt.Fprintf(stderr, "wisp: %s\n", oneLine(err.Error()))
	var ue usageError
	if errors.As(err, &ue) {
		return ExitUsage
	}
	return ExitError
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "wisp",
		Short: "Manage functions on a Wisp (FunLess-compatible) controller",
		Long: `wisp manages functions, modules, APP scripts, users and agents of a Wisp
controller, and makes and builds new functions.

The controller's address and token come from the config file
(--config, WISP_CLI_CONFIG, else $XDG_CONFIG_HOME/wisp/config.yaml or
~/.config/wisp/config.yaml; see 'wisp config'), then WISP_HOST / WISP_TOKEN,
then --host / --token. A controller serving its self-signed certificate
(https://) is trusted by its key fingerprint: 'wisp config set
tls-fingerprint sha256:...' with what 'wisp-controller tls fingerprint'
prints on the controller.

Several controllers of one cluster: give them all, separated by commas
(--host https://a:4000,https://b:4000,https://c:4000, the same in WISP_HOST
or the config file). Each request goes to one of them, starting at a
random one and then keeping to the last that answered, and moves to the
next only when it provably did not reach the first (it could not connect,
nothing was sent, or the controller answered 503): an invocation is never
run twice by it. They share one key, so one fingerprint pins them all.`,
		Version:           version.Line("wisp"),
		SilenceErrors:     true,
		SilenceUsage:      true,
		Args:              cobra.ArbitraryArgs,
		RunE:              groupRun,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error { return a.checkOutput(cmd) },
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error { return usagef(cmd, "%v", err) })
	pf := root.PersistentFlags()
	pf.StringVar(&a.g.host, "host", "", "controller address, e.g. http://127.0.0.1:4000, or a cluster's controllers separated by commas (env WISP_HOST)")
	pf.StringVar(&a.g.token, "token", "", "API token (env WISP_TOKEN)")
	pf.StringVar(&a.g.tlsFingerprint, "tls-fingerprint", "", "trust only the controller whose key has this fingerprint, sha256:... from 'wisp-controller tls fingerprint' (env WISP_TLS_FINGERPRINT)")
	pf.StringVar(&a.g.config, "config", "", "config file (env WISP_CLI_CONFIG; default $XDG_CONFIG_HOME/wisp/config.yaml)")
	pf.StringVarP(&a.g.output, "output", "o", "text", "output format: text or json")
	root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"text", "json"}, cobra.ShellCompDirectiveNoFileComp))

	root.AddCommand(a.fnCommand(), a.modCommand(), a.appCommand(), a.adminCommand(),
		a.agentCommand(), a.activationCommand(), a.tokenCommand(), a.quarantineCommand(), a.configCommand(), a.devCommand(), a.deployCommand(), a.secretCommand(),
		&cobra.Command{
			Use: "version", Short: "Print the version and the source revision", Args: nargs(0, 0, ""),
			RunE: func(cmd *cobra.Command, _ []string) error {
				_, err := fmt.Fprintln(a.stdout, root.Version)
				return err
			},
		})
	return root
}

func (a *app) checkOutput(cmd *cobra.Command) error {
	switch a.g.output {
	case "text", "json":
		return nil
	}
	return usagef(cmd, "output format %q: want text or json", a.g.output)
}

// group makes a command that only holds subcommands.
func group(use, short string, aliases ...string) *cobra.Command {
	return &cobra.Command{Use: use, Short: short, Aliases: aliases, Args: cobra.ArbitraryArgs, RunE: groupRun}
}

// groupRun prints the help of a group called alone and refuses unknown
// subcommands in one line (cobra's own message spans several).
func groupRun(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return cmd.Help()
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 1
	}
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		for i := range s {
			s[i] = strconv.Quote(s[i])
		}
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return usagef(cmd, "%s", msg)
}

// nargs checks the number of positional arguments.
func nargs(min, max int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < min || (max >= 0 && len(args) > max) {
			if what == "" {
				return usagef(cmd, "%s takes no arguments", cmd.CommandPath())
			}
			return usagef(cmd, "want %s, got %d argument(s)", what, len(args))
		}
		return nil
	}
}

var nameRE = regexp.MustCompile(`^[_a-zA-Z0-9]{1,160}$`)

// checkName applies the controller's naming rule before anything is sent.
func checkName(kind, name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("invalid %s name %q: use 1 to 160 letters, digits and underscores", kind, name)
	}
	return nil
}

// client resolves the settings and returns a REST client.
func (a *app) client() (*client, error) {
	s, err := resolve(&a.g, a.getenv, a.stderr)
	if err != nil {
		return nil, err
	}
	base := a.http.Transport.(*http.Transport).Clone()
	if s.pin != nil {
		// Pinned: the controllers' key is trusted, no CA is consulted.
		base.TLSClientConfig = keypin.ClientConfig(*s.pin)
	}
	if len(s.hosts) > 1 {
		// A controller whose packets vanish costs this much before the
		// next is tried.
		base.DialContext = (&net.Dialer{Timeout: clusterDialTimeout}).DialContext
	}
	tr, err := failover.New(s.hosts, base)
	if err != nil {
		return nil, err
	}
	return &client{hosts: s.hosts, host: s.hosts[0], token: s.token, http: &http.Client{Transport: tr}, pinFrom: s.pinFrom}, nil
}

// Connect timeouts: one controller gets 10 s, each of a cluster's 3 s.
const (
	dialTimeout        = 10 * time.Second
	clusterDialTimeout = 3 * time.Second
)

// emit prints data as JSON with -o json, or calls text.
func (a *app) emit(data json.RawMessage, text func(w io.Writer) error) error {
	if a.g.output == "json" {
		return a.printJSON(data)
	}
	return text(a.stdout)
}

func (a *app) printJSON(data json.RawMessage) error {
	if len(data) == 0 {
		data = json.RawMessage("null")
	}
	var buf strings.Builder
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	_, err := io.WriteString(a.stdout, buf.String())
	return err
}

// note prints a remark for people on stderr (never in -o json scripts' stdout).
func (a *app) note(format string, args ...any) {
	fmt.Fprintf(a.stderr, format+"\n", args...)
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
