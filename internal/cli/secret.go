package cli

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"time"

	"github.com/spf13/cobra"
)

// maxSecretValue is the controller's bound on a secret's value (16 KiB).
const maxSecretValue = 16 << 10

var secretNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)

func secretPath(module, name string) string {
	p := "/v1/secrets/" + url.PathEscape(module)
	if name != "" {
		p += "/" + url.PathEscape(name)
	}
	return p
}

func checkSecretArgs(args []string) error {
	if err := checkName("module", args[0]); err != nil {
		return err
	}
	if len(args) > 1 && !secretNameRE.MatchString(args[1]) {
		return fmt.Errorf("invalid secret name %q: use letters, digits and underscores, not first a digit (an environment variable name), at most 128", args[1])
	}
	return nil
}

// readSecretValue reads a value, never from an argument (visible in ps
// and shell history): from the file, or else stdin, whose one trailing
// newline (echo's) is dropped. At most maxSecretValue bytes.
func readSecretValue(stdin io.Reader, file string) ([]byte, error) {
	src, what := stdin, "stdin"
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		src, what = f, file
	}
	v, err := io.ReadAll(io.LimitReader(src, maxSecretValue+3))
	if err != nil {
		return nil, fmt.Errorf("reading the value from %s: %w", what, err)
	}
	if file == "" {
		v = bytes.TrimSuffix(v, []byte("\n"))
		v = bytes.TrimSuffix(v, []byte("\r"))
	}
	if len(v) > maxSecretValue {
		return nil, fmt.Errorf("the value from %s is over %d bytes, the limit", what, maxSecretValue)
	}
	return v, nil
}

func (a *app) secretCommand() *cobra.Command {
	cmd := group("secret", "Manage a module's secrets (values reach its functions' environment, never an answer or a log)", "secrets")

	var fromFile string
	set := &cobra.Command{
		Use:   "set <module> <name>",
		Short: "Create or replace a secret; the value comes from stdin or --from-file, never an argument",
		Long: `set stores a secret of the module, encrypted at rest. The functions of the
module whose config names it ("secrets":["NAME"]) read it as the
environment variable NAME. The value is read from --from-file (as is)
or from stdin (one trailing newline dropped), never from an argument,
which every local user could see: printf %s "$KEY" | wisp secret set m API_KEY.`,
		Args: nargs(2, 2, "<module> <name>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkSecretArgs(args); err != nil {
				return err
			}
			value, err := readSecretValue(a.stdin, fromFile)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			body := jsonBody(map[string]string{"value": string(value)})
			clear(value)
			data, err := c.call(a.ctx, request{method: http.MethodPut, path: secretPath(args[0], args[1]), body: body, contentType: "application/json"}, nil)
			if err != nil {
				return err
			}
			return a.emit(data, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "set secret %s of module %s\n", args[1], args[0])
				return err
			})
		},
	}
	set.Flags().StringVar(&fromFile, "from-file", "", "read the value from this `file` (as is) instead of stdin")

	list := &cobra.Command{
		Use: "list <module>", Aliases: []string{"ls"}, Short: "List a module's secrets: names and times, never values", Args: nargs(1, 1, "<module>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkSecretArgs(args); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var items []struct {
				Name    string    `json:"name"`
				Updated time.Time `json:"updated"`
			}
			data, err := c.call(a.ctx, request{method: http.MethodGet, path: secretPath(args[0], "")}, &items)
			if err != nil {
				return err
			}
			return a.emit(data, func(w io.Writer) error {
				rows := make([][]string, len(items))
				for i, s := range items {
					rows[i] = []string{s.Name, s.Updated.UTC().Format(time.RFC3339)}
				}
				return table(w, []string{"NAME", "UPDATED"}, rows)
			})
		},
	}

	del := &cobra.Command{
		Use: "delete <module> <name>", Aliases: []string{"rm"}, Short: "Delete a secret (refused while a function's config names it)", Args: nargs(2, 2, "<module> <name>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkSecretArgs(args); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			data, err := c.call(a.ctx, request{method: http.MethodDelete, path: secretPath(args[0], args[1])}, nil)
			if err != nil {
				return err
			}
			if data == nil {
				data = []byte(fmt.Sprintf(`{"module":%q,"name":%q}`, args[0], args[1]))
			}
			return a.emit(data, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "deleted secret %s of module %s\n", args[1], args[0])
				return err
			})
		},
	}
	cmd.AddCommand(set, list, del)
	return cmd
}
