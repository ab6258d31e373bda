package cli

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/wispfn/wisp/internal/keypin"
)

// configKey maps the names `config set|get` accept to the file's keys.
func configKey(cmd *cobra.Command, k string) (string, error) {
	switch k {
	case "host", "api_host":
		return "api_host", nil
	case "token", "api_token":
		return "api_token", nil
	case "tls-fingerprint", "tls_fingerprint":
		return "tls_fingerprint", nil
	}
	return "", usagef(cmd, "unknown setting %q: want host (api_host), token (api_token) or tls-fingerprint (tls_fingerprint)", k)
}

func maskToken(t string) string {
	if len(t) <= 10 {
		if t == "" {
			return ""
		}
		return "****"
	}
	return t[:9] + "…" + t[len(t)-4:]
}

func (a *app) configCommand() *cobra.Command {
	cmd := group("config", "Keep the controller address and token in the config file", "cfg")
	set := &cobra.Command{
		Use:   "set <host|token|tls-fingerprint> <value>",
		Short: "Save a setting in the config file (mode 0600)",
		Long: `Save a setting in the config file (mode 0600). host takes one controller
address or the controllers of a cluster separated by commas
(https://a:4000,https://b:4000): each request goes to one of them and moves
to the next only when it provably did not reach the first (docs/cluster.md).
tls-fingerprint pins the controller's key (sha256:..., as 'wisp-controller
tls fingerprint' prints it; the controllers of a cluster share one key):
over https:// only that key is trusted, no CA; an empty value removes the
pin.`,
		Args:      nargs(2, 2, "<host|token|tls-fingerprint> <value>"),
		ValidArgs: []string{"host", "token", "tls-fingerprint"},
		RunE: func(cmd *cobra.Command, args []string) error {
			key, err := configKey(cmd, args[0])
			if err != nil {
				return err
			}
			path, err := configPath(a.g.config, a.getenv, a.stderr)
			if err != nil {
				return err
			}
			fc, err := readConfig(path)
			if err != nil {
				return err
			}
			switch key {
			case "api_host":
				hs, err := normalizeHosts(args[1])
				if err != nil {
					return err
				}
				fc.Hosts = hs
			case "api_token":
				fc.Token = args[1]
			case "tls_fingerprint":
				fc.TLSFingerprint = ""
				if args[1] != "" {
					fp, err := keypin.Parse(args[1])
					if err != nil {
						return err
					}
					fc.TLSFingerprint = fp.String()
				}
			}
			if err := writeConfig(path, fc); err != nil {
				return err
			}
			a.note("saved %s in %s", key, path)
			return nil
		},
	}
	get := &cobra.Command{
		Use:   "get [host|token|tls-fingerprint]",
		Short: "Show the settings in effect (file < WISP_* environment < flags)",
		Long: `Show the settings in effect and where each comes from. With a key, print only
its value (the token in full, for scripts).`,
		Args:      nargs(0, 1, "[host|token|tls-fingerprint]"),
		ValidArgs: []string{"host", "token", "tls-fingerprint"},
		RunE: func(cmd *cobra.Command, args []string) error {
			var key string
			if len(args) == 1 {
				k, err := configKey(cmd, args[0])
				if err != nil {
					return err
				}
				key = k
			}
			s, err := resolve(&a.g, a.getenv, a.stderr)
			if err != nil {
				return err
			}
			switch key {
			case "api_host":
				_, err := fmt.Fprintln(a.stdout, s.host)
				return err
			case "api_token":
				if s.token == "" {
					return fmt.Errorf("no token set; set one with 'wisp config set token <token>', WISP_TOKEN or --token")
				}
				_, err := fmt.Fprintln(a.stdout, s.token)
				return err
			case "tls_fingerprint":
				if s.pin == nil {
					return fmt.Errorf("no TLS fingerprint pinned; pin one with 'wisp config set tls-fingerprint sha256:...'")
				}
				_, err := fmt.Fprintln(a.stdout, s.pin)
				return err
			}
			pin, pinFrom := "", ""
			if s.pin != nil {
				pin, pinFrom = s.pin.String(), s.pinFrom
			}
			data, _ := json.Marshal(map[string]string{"api_host": s.host, "api_token": s.token, "tls_fingerprint": pin, "config_file": s.path})
			return a.emit(data, func(w io.Writer) error {
				tok := maskToken(s.token)
				return table(w, []string{"KEY", "VALUE", "FROM"}, [][]string{
					{"api_host", s.host, s.hostFrom},
					{"api_token", tok, s.tokenFrom},
					{"tls_fingerprint", pin, pinFrom},
					{"config_file", s.path, ""},
				})
			})
		},
	}
	cmd.AddCommand(set, get)
	return cmd
}
