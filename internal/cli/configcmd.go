package cli

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

// configKey maps the names `config set|get` accept to the file's keys.
func configKey(cmd *cobra.Command, k string) (string, error) {
	switch k {
	case "host", "api_host":
		return "api_host", nil
	case "token", "api_token":
		return "api_token", nil
	}
	return "", usagef(cmd, "unknown setting %q: want host (api_host) or token (api_token)", k)
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
		Use:       "set <host|token> <value>",
		Short:     "Save a setting in the config file (mode 0600)",
		Args:      nargs(2, 2, "<host|token> <value>"),
		ValidArgs: []string{"host", "token"},
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
				h, err := normalizeHost(args[1])
				if err != nil {
					return err
				}
				fc.Host = h
			case "api_token":
				fc.Token = args[1]
			}
			if err := writeConfig(path, fc); err != nil {
				return err
			}
			a.note("saved %s in %s", key, path)
			return nil
		},
	}
	get := &cobra.Command{
		Use:   "get [host|token]",
		Short: "Show the settings in effect (file < WISP_* environment < flags)",
		Long: `Show the settings in effect and where each comes from. With a key, print only
its value (the token in full, for scripts).`,
		Args:      nargs(0, 1, "[host|token]"),
		ValidArgs: []string{"host", "token"},
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
			}
			data, _ := json.Marshal(map[string]string{"api_host": s.host, "api_token": s.token, "config_file": s.path})
			return a.emit(data, func(w io.Writer) error {
				tok := maskToken(s.token)
				return table(w, []string{"KEY", "VALUE", "FROM"}, [][]string{
					{"api_host", s.host, s.hostFrom},
					{"api_token", tok, s.tokenFrom},
					{"config_file", s.path, ""},
				})
			})
		},
	}
	cmd.AddCommand(set, get)
	return cmd
}
