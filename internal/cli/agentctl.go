package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	serversettings "github.com/wispfn/wisp/internal/settings"
)

// controlState is what the agent control routes answer.
type controlState struct {
	ID           string   `json:"id"`
	Name         string   `json:"name"`
	Connected    bool     `json:"connected"`
	Cordoned     bool     `json:"cordoned"`
	Labels       []string `json:"labels"`
	MemCapBytes  int64    `json:"mem_cap_bytes"`
	JoinMemBytes int64    `json:"join_mem_bytes"`
	InFlight     int      `json:"in_flight"`
}

func (s controlState) text(w io.Writer) error {
	capText := "none"
	if s.MemCapBytes > 0 {
		capText = humanBytes(s.MemCapBytes)
	}
	joined := "unknown"
	if s.JoinMemBytes > 0 {
		joined = humanBytes(s.JoinMemBytes)
	}
	return table(w, []string{"NAME", "ID", "CONNECTED", "CORDONED", "IN FLIGHT", "OPERATOR LABELS", "MEM CAP", "MEM AT JOIN"},
		[][]string{{s.Name, s.ID, yesNo(s.Connected), yesNo(s.Cordoned), fmt.Sprint(s.InFlight), strings.Join(s.Labels, ","), capText, joined}})
}

// agentPath is the control route of agent id, checked before any request.
func agentPath(cmd *cobra.Command, id, sub string) (string, error) {
	hex, ok := strings.CutPrefix(id, "ag_")
	if !ok || hex == "" || strings.Trim(hex, "0123456789abcdef") != "" {
		return "", usagef(cmd, "%q is not an agent id: want ag_ and hex digits, as agent list shows", id)
	}
	return "/v1/admin/agents/" + id + sub, nil
}

// agentControlCommands are wisp agent remove|cordon|uncordon|drain|label|cap.
func (a *app) agentControlCommands() []*cobra.Command {
	// control sends one request and shows the agent's control state.
	control := func(cmd *cobra.Command, method, path string, query url.Values, body any) (controlState, json.RawMessage, error) {
		var st controlState
		c, err := a.client()
		if err != nil {
			return st, nil, err
		}
		r := request{method: method, path: path, query: query}
		if body != nil {
			r.body = jsonBody(body)
			r.contentType = "application/json"
		}
		data, err := c.call(a.ctx, r, &st)
		return st, data, err
	}
	show := func(method, sub string, body func(cmd *cobra.Command, args []string) (any, error)) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			path, err := agentPath(cmd, args[0], sub)
			if err != nil {
				return err
			}
			var b any
			if body != nil {
				if b, err = body(cmd, args[1:]); err != nil {
					return err
				}
			}
			st, data, err := control(cmd, method, path, nil, b)
			if err != nil {
				return err
			}
			return a.emit(data, st.text)
		}
	}

	remove := &cobra.Command{
		Use: "remove <agent id>", Aliases: []string{"rm"}, Short: "Remove an agent: its credential is revoked and it is disconnected", Args: nargs(1, 1, "<agent id>"),
		Long: `Remove an agent (connected or not). Its record and credential are deleted;
if it is connected it is disconnected, and its next connection is refused: it
gets no code, desired set or invocation any more. The agent then tries its
join token once (refused if single-use and spent) and stops, with the reason
in its log; its local API and MQTT triggers stop with it (README, "Removing an
agent"). To bring it back, give it a new join token and delete its data
directory's state file, or start it on a fresh directory.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := agentPath(cmd, args[0], "")
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			data, err := c.call(a.ctx, request{method: http.MethodDelete, path: path}, nil)
			if err != nil {
				return err
			}
			return a.emit(data, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "removed %s\n", args[0])
				return err
			})
		},
	}
	cordon := &cobra.Command{
		Use: "cordon <agent id>", Short: "Schedule no new invocation to an agent (running ones finish)", Args: nargs(1, 1, "<agent id>"),
		RunE: show(http.MethodPut, "/cordon", nil),
	}
	uncordon := &cobra.Command{
		Use: "uncordon <agent id>", Short: "Schedule invocations to a cordoned agent again", Args: nargs(1, 1, "<agent id>"),
		RunE: show(http.MethodDelete, "/cordon", nil),
	}
	var timeout time.Duration
	drain := &cobra.Command{
		Use: "drain <agent id>", Short: "Cordon an agent and wait until no invocation runs there", Args: nargs(1, 1, "<agent id>"),
		Long: `Cordon an agent and wait (at most --timeout) until the invocations the
controller runs there are done. Exits 1 if some still run at the timeout; the
agent stays cordoned either way (uncordon to undo).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := agentPath(cmd, args[0], "/drain")
			if err != nil {
				return err
			}
			deadline := time.Now().Add(timeout)
			for {
				// The controller waits at most 30 s per request.
				wait := min(time.Until(deadline), 30*time.Second).Round(time.Second)
				st, data, err := control(cmd, http.MethodPost, path, url.Values{"wait": {max(wait, 0).String()}}, nil)
				if err != nil {
					return err
				}
				if st.InFlight == 0 {
					return a.emit(data, func(w io.Writer) error {
						_, err := fmt.Fprintf(w, "drained %s: cordoned, nothing running\n", args[0])
						return err
					})
				}
				if !time.Now().Before(deadline) {
					return fmt.Errorf("%s is cordoned but still runs %d invocation(s) after %v", args[0], st.InFlight, timeout)
				}
			}
		},
	}
	drain.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait for running invocations")
	label := &cobra.Command{
		Use: "label <agent id> key=value... key-...", Short: "Set labels on an agent that override its own (key- removes one)", Args: nargs(2, -1, "<agent id> key=value..."),
		Long: `Set operator labels on an agent. Each overrides the agent's own label of the
same key, in the desired set (tag=<t> assigns functions tagged t) and in APP
scripts (a worker entry key=value names every agent carrying that label).
"key-" removes the operator's label of that key, so the agent's own applies
again. Labels survive controller restarts.`,
		RunE: show(http.MethodPost, "/labels", func(cmd *cobra.Command, args []string) (any, error) {
			body := struct {
				Set    []string `json:"set,omitempty"`
				Remove []string `json:"remove,omitempty"`
			}{}
			for _, arg := range args {
				if k, ok := strings.CutSuffix(arg, "-"); ok && !strings.Contains(arg, "=") {
					body.Remove = append(body.Remove, k)
					continue
				}
				if k, _, ok := strings.Cut(arg, "="); !ok || k == "" {
					return nil, usagef(cmd, "%q is neither key=value nor key-", arg)
				}
				body.Set = append(body.Set, arg)
			}
			return body, nil
		}),
	}
	capCmd := &cobra.Command{
		Use: "cap <agent id> <size>|none", Short: "Cap the memory the scheduler believes an agent has", Args: nargs(2, 2, "<agent id> <size>|none"),
		Long: `Cap the memory the scheduler believes an agent has (e.g. 512MiB, 2GiB), whatever
the agent reports. Without a cap it believes at most what the agent reported
when it joined. "none" removes the cap.`,
		RunE: show(http.MethodPut, "/cap", func(cmd *cobra.Command, args []string) (any, error) {
			var n int64
			if args[0] != "none" {
				var err error
				if n, err = serversettings.ParseSize(args[0]); err != nil {
					return nil, usagef(cmd, "%v, or none", err)
				}
			}
			return map[string]int64{"mem_cap_bytes": n}, nil
		}),
	}
	return []*cobra.Command{remove, cordon, uncordon, drain, label, capCmd}
}
