package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/wispfn/wisp/agent/node"
	"github.com/wispfn/wisp/agent/state"
	"github.com/wispfn/wisp/agent/status"
	"github.com/wispfn/wisp/internal/health"
	"github.com/wispfn/wisp/internal/settings"
)

// statusCommand is `wisp-agent status`: the agent's links, desired set,
// outbox backlog and last activations, from the running agent's local API
// or, when it does not answer, from the data dir.
func statusCommand(d deps) *cobra.Command {
	var output string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "status [flags]",
		Short: "Show the agent's controller links, desired set, outbox backlog and last activations",
		Long: `Show what the agent is doing: its link to each controller (connected or not,
since when, the last error; a host name that resolves to several addresses
has a link per address, and the link that sends the outbox is marked), its desired set (functions, digests, local MQTT
topics), its outbox backlog (activations run here that no controller has
recorded yet: count, age of the oldest, bytes) and its last activations with
their log lines.

It asks the running agent's local API (GET /v1/status at --local-api, with
the token in <data dir>/local.token). When the agent does not answer it
reads the data dir itself, read only, so it works with the agent stopped;
then it shows no links, and the outbox's undelivered activations as the
last ones. Give it the agent's settings (--data-dir, --local-api, --config,
or the WISP_* variables the agent runs with).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := defaultConfig()
			if err := cfg.table().Load(cmd.Flags(), d.env, d.stderr); err != nil {
				return settings.UsageError(err)
			}
			if output != "text" && output != "json" {
				return settings.UsageError(fmt.Errorf("--output %q: want text or json", output))
			}
			rep, err := readStatus(cmd.Context(), cfg, timeout, d.stderr)
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(d.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			printStatus(d.stdout, rep, time.Now())
			return nil
		},
	}
	addFlags(cmd.Flags(), "data_dir", "local_api")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output `format`: text or json")
	cmd.Flags().DurationVar(&timeout, "wait", 3*time.Second, "how long to wait for the local API, then for the state file's lock")
	return cmd
}

// readStatus asks the local API, then reads the data dir.
func readStatus(ctx context.Context, cfg config, timeout time.Duration, stderr io.Writer) (status.Report, error) {
	var apiErr error
	if cfg.LocalAPI != "" {
		rep, err := fetchStatus(ctx, cfg, timeout)
		if err == nil {
			return rep, nil
		}
		apiErr = err
	} else {
		apiErr = errors.New("the local API is off (--local-api is empty)")
	}
	rep, err := node.ReadStatus(cfg.DataDir, timeout)
	if errors.Is(err, state.ErrLocked) {
		return rep, fmt.Errorf("the agent is running (it holds %s) but its local API did not answer: %w",
			filepath.Join(cfg.DataDir, "agent.db"), apiErr)
	}
	if err != nil {
		return rep, fmt.Errorf("local API: %v; data dir: %w", apiErr, err)
	}
	return rep, nil
}

// fetchStatus is GET /v1/status on the local API.
func fetchStatus(ctx context.Context, cfg config, timeout time.Duration) (status.Report, error) {
	var out struct {
		Data status.Report `json:"data"`
	}
	tok, err := os.ReadFile(filepath.Join(cfg.DataDir, "local.token"))
	if err != nil {
		return out.Data, fmt.Errorf("local API token: %w", err)
	}
	url, err := health.LocalURL("http", cfg.LocalAPI, "/v1/status")
	if err != nil {
		return out.Data, fmt.Errorf("--local-api %q: %w", cfg.LocalAPI, err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return out.Data, err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return out.Data, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return out.Data, err
	}
	if resp.StatusCode != http.StatusOK {
		return out.Data, fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return out.Data, fmt.Errorf("GET %s: %w", url, err)
	}
	return out.Data, nil
}

// printStatus writes rep for people.
func printStatus(w io.Writer, rep status.Report, now time.Time) {
	id := rep.AgentID
	if id == "" {
		id = "(not joined yet)"
	}
	from := "from its local API"
	if rep.From == status.FromDataDir {
		from = "from its data dir: the agent is not running"
	}
	fmt.Fprintf(w, "agent %s, data dir %s, %s\n", id, rep.DataDir, from)
	if rep.Ready != nil {
		if rep.Ready.Ready {
			fmt.Fprintln(w, "ready: yes")
		} else {
			fmt.Fprintf(w, "ready: no (%s)\n", rep.Ready.Reason)
		}
	}
	if rep.From == status.FromAPI {
		fmt.Fprintf(w, "\ncontrollers (%d):\n", len(rep.Links))
		for _, l := range rep.Links {
			state := "disconnected"
			if l.Connected {
				state = "connected"
			}
			name := l.Controller
			if l.Address != "" {
				name += " (" + l.Address + ")"
			}
			fmt.Fprintf(w, "  %-24s %-12s since %s", name, state, ago(l.Since, now))
			if l.ControllerID != "" {
				fmt.Fprintf(w, "  controller %s", l.ControllerID)
			}
			if l.DrainsOutbox {
				fmt.Fprint(w, "  sends the outbox")
			}
			if l.Note != "" {
				fmt.Fprintf(w, "  %s", l.Note)
			}
			if l.LastError != "" {
				fmt.Fprintf(w, "  last error: %s", l.LastError)
			}
			fmt.Fprintln(w)
		}
	}
	fmt.Fprintf(w, "\ndesired functions (%d):\n", len(rep.Desired))
	for _, f := range rep.Desired {
		code := "code here"
		if !f.HasCode {
			code = "code missing"
		}
		fmt.Fprintf(w, "  %s/%s  %s  %s", f.Module, f.Name, shortDigest(f.Digest), code)
		if len(f.LocalTopics) > 0 {
			fmt.Fprintf(w, "  local topics: %s", strings.Join(f.LocalTopics, ", "))
		}
		if len(f.LocalTimers) > 0 {
			fmt.Fprintf(w, "  local timers: %s", strings.Join(f.LocalTimers, ", "))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "\noutbox: %d waiting", rep.Outbox.Count)
	if rep.Outbox.Count > 0 {
		fmt.Fprintf(w, ", oldest %s old, %s", rep.Outbox.OldestAge(now).Round(time.Second), bytesOf(rep.Outbox.Bytes))
	}
	fmt.Fprintln(w)
	if rep.From == status.FromDataDir {
		fmt.Fprintf(w, "\nundelivered activations in the outbox (newest %d, newest first):\n", len(rep.Recent))
	} else {
		fmt.Fprintf(w, "\nlast activations (%d, newest first):\n", len(rep.Recent))
	}
	for _, a := range rep.Recent {
		fmt.Fprintf(w, "  %s  %s  %s/%s  %s  %s  %s\n", a.Started.UTC().Format(time.RFC3339Nano), a.ID, a.Module, a.Function,
			a.Source, a.Status, a.Duration.Round(time.Microsecond))
		for _, l := range a.Logs {
			fmt.Fprintf(w, "      %s %-7s %s\n", time.UnixMicro(int64(l.UnixUS)).UTC().Format("15:04:05.000"), l.Stream, l.Text)
		}
	}
}

func ago(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return fmt.Sprintf("%s (%s ago)", t.UTC().Format(time.RFC3339), now.Sub(t).Round(time.Second))
}

func shortDigest(d string) string {
	if len(d) > len("sha256:")+12 {
		return d[:len("sha256:")+12]
	}
	return d
}

func bytesOf(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

// healthcheckCommand is `wisp-agent healthcheck`: GET /readyz (or, with
// --live, /healthz) of the agent on this machine and exit 0 when it
// answers 200, 1 otherwise. Images without curl or wget use it.
func healthcheckCommand(d deps) *cobra.Command {
	var live bool
	var url string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "healthcheck [flags]",
		Short: "Exit 0 when the agent on this machine is ready (/readyz; --live: /healthz), else 1",
		Long: `GET the agent's /readyz (or /healthz with --live) on this machine and exit 0
when it answers 200 within --wait (it tries every 200ms), 1 otherwise, for container
and service health checks.
It asks the metrics listener (--metrics-addr), else the local API
(--local-api), as the agent's settings give them; --url overrides both.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := defaultConfig()
			if err := cfg.table().Load(cmd.Flags(), d.env, d.stderr); err != nil {
				return settings.UsageError(err)
			}
			path := health.ReadyPath
			if live {
				path = health.LivePath
			}
			if url == "" {
				listen := cfg.MetricsAddr
				if listen == "" {
					listen = cfg.LocalAPI
				}
				if listen == "" {
					return settings.UsageError(errors.New("the metrics listener and the local API are both off: give --url"))
				}
				var err error
				if url, err = health.LocalURL("http", listen, path); err != nil {
					return settings.UsageError(err)
				}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			if err := health.Wait(ctx, &http.Client{}, url); err != nil {
				return fmt.Errorf("%s: %w", url, err)
			}
			fmt.Fprintln(d.stdout, "ok")
			return nil
		},
	}
	addFlags(cmd.Flags(), "metrics_addr", "local_api")
	cmd.Flags().BoolVar(&live, "live", false, "check liveness (/healthz) instead of readiness (/readyz)")
	cmd.Flags().StringVar(&url, "url", "", "probe this `URL` instead")
	cmd.Flags().DurationVar(&timeout, "wait", 3*time.Second, "keep trying for this long (every 200ms) before giving up")
	return cmd
}
