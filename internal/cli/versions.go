package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
)

// versionItem is one element of GET /v1/fn/{mod}/{fn}/versions.
type versionItem struct {
	Version  int64  `json:"version"`
	Current  bool   `json:"current"`
	Digest   string `json:"digest"`
	Size     int64  `json:"size"`
	ABI      string `json:"abi"`
	Created  string `json:"created"`
	Settings struct {
		Events     int             `json:"events"`
		Sinks      int             `json:"sinks"`
		Metadata   json.RawMessage `json:"metadata"`
		Env        []string        `json:"env"`
		Secrets    []string        `json:"secrets"`
		AllowHosts []string        `json:"allow_hosts"`
		Unreadable bool            `json:"unreadable"`
	} `json:"settings"`
}

// settingsSummary is one line for a version's settings.
func (v versionItem) settingsSummary() string {
	s := v.Settings
	var parts []string
	if s.Events > 0 {
		parts = append(parts, fmt.Sprintf("%d events", s.Events))
	}
	if s.Sinks > 0 {
		parts = append(parts, fmt.Sprintf("%d sinks", s.Sinks))
	}
	if m := compactOrNone(s.Metadata); m != "none" {
		parts = append(parts, "metadata "+m)
	}
	if len(s.Env) > 0 {
		parts = append(parts, "env "+strings.Join(s.Env, ","))
	}
	if len(s.Secrets) > 0 {
		parts = append(parts, "secrets "+strings.Join(s.Secrets, ","))
	}
	if len(s.AllowHosts) > 0 {
		parts = append(parts, "hosts "+strings.Join(s.AllowHosts, ","))
	}
	if s.Unreadable {
		parts = append(parts, "UNREADABLE")
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, "; ")
}

func (a *app) fnVersionsCommand() *cobra.Command {
	var mod string
	cmd := &cobra.Command{
		Use:   "versions <name>",
		Short: "List a function's kept versions, newest (the current one) first",
		Args:  nargs(1, 1, "<name>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkNames(mod, args[0]); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var vs []versionItem
			data, err := c.call(a.ctx, request{method: http.MethodGet, path: fnPath(mod, args[0]) + "/versions"}, &vs)
			if err != nil {
				return err
			}
			return a.emit(data, func(w io.Writer) error {
				rows := make([][]string, len(vs))
				for i, v := range vs {
					n := strconv.FormatInt(v.Version, 10)
					if v.Current {
						n += " *"
					}
					digest := strings.TrimPrefix(v.Digest, "sha256:")
					rows[i] = []string{n, digest[:min(12, len(digest))], humanBytes(v.Size), v.ABI, when(v.Created), v.settingsSummary()}
				}
				return table(w, []string{"VERSION", "DIGEST", "SIZE", "ABI", "CREATED", "SETTINGS"}, rows)
			})
		},
	}
	cmd.Flags().StringVarP(&mod, "module", "m", "_", "module of the function")
	return cmd
}

func (a *app) fnRollbackCommand() *cobra.Command {
	var mod string
	var to int64
	cmd := &cobra.Command{
		Use:   "rollback <name>",
		Short: "Give a function the code and settings of an earlier version (the previous one, or --to N)",
		Long: "Give a function the code and settings of an earlier kept version: the previous one, or\n" +
			"version N with --to N (see 'wisp fn versions'). The rollback is a new version, so it can\n" +
			"be rolled back in turn.",
		Args: nargs(1, 1, "<name>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkNames(mod, args[0]); err != nil {
				return err
			}
			req := request{method: http.MethodPost, path: fnPath(mod, args[0]) + "/rollback"}
			if cmd.Flags().Changed("to") {
				if to < 1 {
					return fmt.Errorf("--to %d: want a version number from 1", to)
				}
				body := fmt.Sprintf(`{"to":%d}`, to)
				req.body, req.contentType = []byte(body), "application/json"
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var res struct {
				Name    string `json:"name"`
				Version int64  `json:"version"`
				From    int64  `json:"from"`
				Digest  string `json:"digest"`
			}
			data, err := c.call(a.ctx, req, &res)
			if err != nil {
				return err
			}
			return a.emit(data, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "rolled back %s/%s to version %d (now version %d, %s)\n", mod, args[0], res.From, res.Version, res.Digest)
				return err
			})
		},
	}
	cmd.Flags().StringVarP(&mod, "module", "m", "_", "module of the function")
	cmd.Flags().Int64Var(&to, "to", 0, "version to roll back to (default: the previous one)")
	return cmd
}
