package cli

import (
	"bytes"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/wispfn/wisp/protocol"
)

// maxScript is the controller's limit on an APP script.
const maxScript = 1 << 20

func (a *app) appCommand() *cobra.Command {
	cmd := group("app", "Manage APP scheduling scripts", "script", "apps")
	create := &cobra.Command{
		Use: "create <name> <file.yaml>", Short: "Upload an APP scheduling script", Args: nargs(2, 2, "<name> <file.yaml>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkName("script", args[0]); err != nil {
				return err
			}
			src, err := readLimited(args[1], maxScript, "the script limit")
			if err != nil {
				return err
			}
			var buf bytes.Buffer
			mw := multipart.NewWriter(&buf)
			mw.WriteField("name", args[0])
			part, _ := mw.CreateFormFile("file", filepath.Base(args[1]))
			part.Write(src)
			mw.Close()
			c, err := a.client()
			if err != nil {
				return err
			}
			data, err := c.call(a.ctx, request{method: http.MethodPost, path: "/v1/scripts/app", body: buf.Bytes(), contentType: mw.FormDataContentType()}, nil)
			if err != nil {
				return err
			}
			return a.emit(data, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "created APP script %s\n", args[0])
				return err
			})
		},
	}
	list := &cobra.Command{
		Use: "list", Aliases: []string{"ls"}, Short: "List APP scripts", Args: nargs(0, 0, ""),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var items []nameItem
			data, err := c.call(a.ctx, request{method: http.MethodGet, path: "/v1/scripts/app"}, &items)
			if err != nil {
				return err
			}
			return a.emit(data, func(w io.Writer) error {
				rows := make([][]string, len(items))
				for i, s := range items {
					rows[i] = []string{s.Name}
				}
				return table(w, []string{"NAME"}, rows)
			})
		},
	}
	get := &cobra.Command{
		Use: "get <name>", Short: "Show an APP script and its source", Args: nargs(1, 1, "<name>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkName("script", args[0]); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var s struct{ Name, Source, Created string }
			data, err := c.call(a.ctx, request{method: http.MethodGet, path: "/v1/scripts/app/" + url.PathEscape(args[0])}, &s)
			if err != nil {
				return err
			}
			return a.emit(data, func(w io.Writer) error {
				fmt.Fprintf(w, "# APP script %s, created %s\n", s.Name, when(s.Created))
				_, err := io.WriteString(w, strings.TrimRight(s.Source, "\n")+"\n")
				return err
			})
		},
	}
	cmd.AddCommand(create, list, get)
	return cmd
}

func (a *app) adminCommand() *cobra.Command {
	cmd := group("admin", "Administration (needs the admin token)")
	user := group("user", "Manage users (subjects) and their API tokens", "users", "subject")
	create := &cobra.Command{
		Use: "create <name>", Short: "Create a user; prints its token, which is shown only once", Args: nargs(1, 1, "<name>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkName("user", args[0]); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var r struct{ Name, Token string }
			body := jsonBody(map[string]any{"subject": map[string]string{"name": args[0]}})
			data, err := c.call(a.ctx, request{method: http.MethodPost, path: "/v1/admin/subjects", body: body, contentType: "application/json"}, &r)
			if err != nil {
				return err
			}
			return a.emit(data, func(w io.Writer) error {
				a.note("created user %s; its token follows and is never shown again", r.Name)
				_, err := fmt.Fprintln(w, r.Token)
				return err
			})
		},
	}
	list := &cobra.Command{
		Use: "list", Aliases: []string{"ls"}, Short: "List users", Args: nargs(0, 0, ""),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var users []struct {
				Name    string `json:"name"`
				Admin   bool   `json:"admin"`
				Created string `json:"created"`
			}
			data, err := c.call(a.ctx, request{method: http.MethodGet, path: "/v1/admin/subjects"}, &users)
			if err != nil {
				return err
			}
			return a.emit(data, func(w io.Writer) error {
				rows := make([][]string, len(users))
				for i, u := range users {
					rows[i] = []string{u.Name, yesNo(u.Admin), when(u.Created)}
				}
				return table(w, []string{"NAME", "ADMIN", "CREATED"}, rows)
			})
		},
	}
	user.AddCommand(create, list)
	user.AddCommand(a.subjectChangeCommands()...)
	cmd.AddCommand(user)
	return cmd
}

func (a *app) agentCommand() *cobra.Command {
	cmd := group("agent", "Edge agents known to the controller", "agents")
	list := &cobra.Command{
		Use: "list", Aliases: []string{"ls"}, Short: "List the cluster's agents, connected first, with the controllers each is connected to (needs the admin token)", Args: nargs(0, 0, ""),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var agents []struct {
				ID          string   `json:"id"`
				Name        string   `json:"name"`
				Connected   bool     `json:"connected"`
				Controllers []string `json:"controllers"`
				Cordoned    bool     `json:"cordoned"`
				OS          string   `json:"os"`
				Arch        string   `json:"arch"`
				Engine      string   `json:"engine"`
				Labels      []string `json:"labels"`
				CPUs        int      `json:"cpus"`
				MemTotal    int64    `json:"mem_total_bytes"`
				MemAvail    int64    `json:"mem_avail_bytes"`
				InFlight    int      `json:"in_flight"`
				Digests     int      `json:"digests"`
				Version     string   `json:"version"`
				LastSeen    string   `json:"last_seen"`
			}
			data, err := c.call(a.ctx, request{method: http.MethodGet, path: "/v1/agents"}, &agents)
			if err != nil {
				return err
			}
			return a.emit(data, func(w io.Writer) error {
				rows := make([][]string, len(agents))
				for i, g := range agents {
					mem := ""
					if g.MemTotal > 0 {
						mem = humanBytes(g.MemAvail) + " / " + humanBytes(g.MemTotal)
					}
					rows[i] = []string{g.Name, g.ID, yesNo(g.Connected), yesNo(g.Cordoned), g.OS + "/" + g.Arch, g.Engine,
						strconv.Itoa(g.CPUs), mem, strconv.Itoa(g.InFlight), strconv.Itoa(g.Digests),
						strings.Join(g.Labels, ","), g.Version, when(g.LastSeen), strings.Join(g.Controllers, ",")}
				}
				return table(w, []string{"NAME", "ID", "CONNECTED", "CORDONED", "PLATFORM", "ENGINE", "CPUS", "MEM AVAIL", "IN FLIGHT", "CODES", "LABELS", "VERSION", "LAST SEEN", "CONTROLLERS"}, rows)
			})
		},
	}
	cmd.AddCommand(list)
	cmd.AddCommand(a.agentControlCommands()...)
	return cmd
}

// parseSince reads an RFC 3339 time or a duration before now.
func parseSince(s string, now time.Time) (string, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC().Format(time.RFC3339Nano), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return "", fmt.Errorf("bad time")
	}
	return now.Add(-d).UTC().Format(time.RFC3339Nano), nil
}

func (a *app) tokenCommand() *cobra.Command {
	cmd := group("token", "Join tokens for new agents")
	var ttl time.Duration
	var uses int
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a join token for a new agent (needs the admin token)",
		Long: `Create a join token and print it. It lets one agent join (--uses for more)
within 24 hours (--ttl). Start an agent with it once:
  wisp-agent run --controllers <host:4433> --join-token-file <file> ...`,
		Args: nargs(0, 0, ""),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			req := map[string]any{"uses": uses}
			if cmd.Flags().Changed("ttl") {
				if ttl <= 0 {
					return usagef(cmd, "--ttl must be positive")
				}
				req["ttl"] = ttl.String()
			}
			if uses < 1 {
				return usagef(cmd, "--uses must be at least 1")
			}
			body := jsonBody(req)
			var r struct {
				ID, Token, Expires string
				Uses               int
			}
			data, err := c.call(a.ctx, request{method: http.MethodPost, path: "/v1/admin/tokens", body: body, contentType: "application/json"}, &r)
			if err != nil {
				return err
			}
			return a.emit(data, func(w io.Writer) error {
				exp := "never expires"
				if r.Expires != "" {
					exp = "expires " + when(r.Expires)
				}
				a.note("join token %s for %d agent(s) (%s); it is shown only once", r.ID, r.Uses, exp)
				_, err := fmt.Fprintln(w, r.Token)
				return err
			})
		},
	}
	create.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "lifetime of the token (24h, 90m)")
	create.Flags().IntVar(&uses, "uses", 1, "how many agents may join with the token")
	list := &cobra.Command{
		Use: "list", Aliases: []string{"ls"}, Short: "List join tokens (never their secrets), used-up and expired ones too", Args: nargs(0, 0, ""),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var ts []struct {
				ID      string `json:"id"`
				Created string `json:"created"`
				Expires string `json:"expires"`
				Uses    int    `json:"uses"`
				Used    int    `json:"used"`
				State   string `json:"state"`
			}
			data, err := c.call(a.ctx, request{method: http.MethodGet, path: "/v1/admin/tokens"}, &ts)
			if err != nil {
				return err
			}
			return a.emit(data, func(w io.Writer) error {
				rows := make([][]string, 0, len(ts))
				for _, t := range ts {
					uses := fmt.Sprintf("%d/%d", t.Used, t.Uses)
					if t.Uses == 0 {
						uses = fmt.Sprintf("%d/unlimited", t.Used)
					}
					exp := "never"
					if t.Expires != "" {
						exp = when(t.Expires)
					}
					rows = append(rows, []string{t.ID, t.State, uses, exp, when(t.Created)})
				}
				return table(w, []string{"ID", "STATE", "USED", "EXPIRES", "CREATED"}, rows)
			})
		},
	}
	revoke := &cobra.Command{
		Use: "revoke <id>", Short: "Revoke a join token: no agent joins with it any more (agents that joined keep their credentials)", Args: nargs(1, 1, "<id>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			data, err := c.call(a.ctx, request{method: http.MethodDelete, path: "/v1/admin/tokens/" + url.PathEscape(args[0])}, nil)
			if err != nil {
				return err
			}
			return a.emit(data, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "revoked %s\n", args[0])
				return err
			})
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}

func (a *app) quarantineCommand() *cobra.Command {
	cmd := group("quarantine", "Code no agent may run: it was running when an agent died (needs the admin token)")
	list := &cobra.Command{
		Use: "list", Aliases: []string{"ls"}, Short: "List quarantined and held code, with the functions that use it", Args: nargs(0, 0, ""),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var qs []struct {
				Digest    string   `json:"digest"`
				State     string   `json:"state"`
				Reason    string   `json:"reason"`
				AgentName string   `json:"agent_name"`
				Since     string   `json:"since"`
				Until     string   `json:"until"`
				Functions []string `json:"functions"`
			}
			data, err := c.call(a.ctx, request{method: http.MethodGet, path: "/v1/admin/quarantine"}, &qs)
			if err != nil {
				return err
			}
			return a.emit(data, func(w io.Writer) error {
				rows := make([][]string, len(qs))
				for i, q := range qs {
					state := q.State
					if q.Until != "" {
						state += " until " + when(q.Until)
					}
					rows[i] = []string{q.Digest, state, strings.Join(q.Functions, ","), q.AgentName, when(q.Since), q.Reason}
				}
				return table(w, []string{"DIGEST", "STATE", "FUNCTIONS", "AGENT", "SINCE", "REASON"}, rows)
			})
		},
	}
	release := &cobra.Command{
		Use: "release <digest>", Short: "Let quarantined or held code run again, on every agent", Args: nargs(1, 1, "<digest>"),
		Long: `Release a digest (as quarantine list shows it): the controller forgets the
quarantine and tells every agent, so the code runs again at once. If it is
still a poison pill, it takes down the agent that runs it next, and is
quarantined again when that agent restarts.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !protocol.IsDigest(args[0]) {
				return usagef(cmd, "%q is not a digest: want sha256:<64 lowercase hex digits>, as quarantine list shows", args[0])
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			data, err := c.call(a.ctx, request{method: http.MethodDelete, path: "/v1/admin/quarantine/" + args[0]}, nil)
			if err != nil {
				return err
			}
			return a.emit(data, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "released %s\n", args[0])
				return err
			})
		},
	}
	cmd.AddCommand(list, release)
	return cmd
}
