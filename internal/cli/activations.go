package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// activationHeader names an invoke answer's activation (the controller's
// invoke.ActivationHeader).
const activationHeader = "X-Wisp-Activation-Id"

type activation struct {
	ID         string          `json:"id"`
	Module     string          `json:"module"`
	Function   string          `json:"function"`
	Digest     string          `json:"digest"`
	Agent      string          `json:"agent"`
	Source     string          `json:"source"`
	Status     string          `json:"status"`
	Code       int             `json:"code"`
	Message    string          `json:"message"`
	Output     json.RawMessage `json:"output"`
	Started    string          `json:"started"`
	DurationUS int64           `json:"duration_us"`
	Truncated  bool            `json:"truncated"`
	Logs       []logLine       `json:"logs"`
}

// logLine is one line an activation's function wrote.
type logLine struct {
	Time   time.Time `json:"time"`
	Stream string    `json:"stream"`
	Text   string    `json:"text"`
}

func duration(us int64) string {
	return (time.Duration(us) * time.Microsecond).String()
}

func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

func compactOrNull(raw json.RawMessage) []byte {
	var b bytes.Buffer
	if len(bytes.TrimSpace(raw)) == 0 || json.Compact(&b, raw) != nil {
		return []byte("null")
	}
	return b.Bytes()
}

// shortID is the end of an activation id: its random part, unique enough
// to tell the lines of concurrent activations apart.
func shortID(id string) string {
	if len(id) > 8 {
		return id[len(id)-8:]
	}
	return id
}

// activationFilters are the filters `activation list` and `fn logs` share.
type activationFilters struct {
	mod, fn, agent, status, source, since, until string
}

func (f *activationFilters) query(cmd *cobra.Command, now time.Time) (url.Values, error) {
	q := url.Values{}
	for k, v := range map[string]string{"module": f.mod, "function": f.fn, "agent": f.agent, "status": f.status, "source": f.source} {
		if v != "" {
			q.Set(k, v)
		}
	}
	for k, v := range map[string]string{"since": f.since, "until": f.until} {
		if v == "" {
			continue
		}
		t, err := parseSince(v, now)
		if err != nil {
			return nil, usagef(cmd, "--%s %q: want an RFC 3339 time (2025-01-02T15:04:05Z) or a duration ago (1h, 30m)", k, v)
		}
		q.Set(k, t)
	}
	return q, nil
}

// follow reads GET /v1/activations?follow=1 with q and calls each with
// every activation until ctx ends or the stream does. ready, when not nil,
// is called once the controller has opened the stream: every activation
// recorded from then on comes through it.
func (c *client) follow(ctx context.Context, q url.Values, ready func() error, each func(activation) error) error {
	q.Set("follow", "1")
	hr, err := c.newRequest(ctx, http.MethodGet, "/v1/activations", q, nil, nil)
	if err != nil {
		return err
	}
	hr.Header.Set("Accept", "text/event-stream")
	resp, err := c.send(hr)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return c.statusError(resp.StatusCode, body)
	}
	if ready != nil {
		if err := ready(); err != nil {
			return err
		}
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 16<<20)
	var event, data string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if event == "activation" {
				var a activation
				if err := json.Unmarshal([]byte(data), &a); err != nil {
					return fmt.Errorf("unexpected event from the controller at %s: %v", c.host, err)
				}
				if err := each(a); err != nil {
					return err
				}
			}
			if event == "end" {
				return fmt.Errorf("the controller at %s is shutting down; the stream ended", c.host)
			}
			event, data = "", ""
		case strings.HasPrefix(line, "event: "):
			event = line[len("event: "):]
		case strings.HasPrefix(line, "data: "):
			data = line[len("data: "):]
		}
	}
	if ctx.Err() != nil {
		return nil // the user stopped it
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("the stream from %s broke: %v", c.host, err)
	}
	return fmt.Errorf("the controller at %s closed the stream", c.host)
}

// listAll pages newest first through GET /v1/activations with q, at most
// max records, and returns them oldest first.
func (c *client) listAll(ctx context.Context, q url.Values, max int) ([]activation, error) {
	var all []activation
	q.Set("limit", "1000")
	for len(all) < max {
		var page struct {
			Data []activation `json:"data"`
			Next string       `json:"next"`
		}
		data, _, err := c.rawGet(ctx, "/v1/activations", q)
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(data, &page); err != nil {
			return nil, fmt.Errorf("unexpected answer from the controller at %s: %v", c.host, err)
		}
		all = append(all, page.Data...)
		if page.Next == "" {
			break
		}
		q.Set("before", page.Next)
	}
	if len(all) > max {
		all = all[:max]
	}
	slices.Reverse(all)
	return all, nil
}

// rawGet is a GET whose whole 2xx body is returned (not only its data).
func (c *client) rawGet(ctx context.Context, path string, q url.Values) ([]byte, int, error) {
	hr, err := c.newRequest(ctx, http.MethodGet, path, q, nil, nil)
	if err != nil {
		return nil, 0, err
	}
	hr.Header.Set("Accept", "application/json")
	resp, err := c.send(hr)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, resp.StatusCode, fmt.Errorf("reading the controller's answer from %s: %v", c.host, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, resp.StatusCode, c.statusError(resp.StatusCode, body)
	}
	return body, resp.StatusCode, nil
}

func (a *app) activationCommand() *cobra.Command {
	cmd := group("activation", "Records of past invocations", "activations", "act")
	get := &cobra.Command{
		Use: "get <id>", Short: "Show one activation with its logs", Args: nargs(1, 1, "<id>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var r activation
			data, err := c.call(a.ctx, request{method: http.MethodGet, path: "/v1/activations/" + url.PathEscape(args[0])}, &r)
			if err != nil {
				return err
			}
			return a.emit(data, func(w io.Writer) error {
				kv := [][2]string{{"id", r.ID}, {"function", r.Module + "/" + r.Function}, {"status", r.Status},
					{"source", r.Source}, {"agent", r.Agent}, {"started", when(r.Started)},
					{"duration", duration(r.DurationUS)}, {"digest", r.Digest}}
				if r.Status != "success" {
					kv = append(kv, [2]string{"code", strconv.Itoa(r.Code)}, [2]string{"message", r.Message})
				}
				if len(r.Output) > 0 {
					kv = append(kv, [2]string{"output", compactOrNone(r.Output)})
				}
				if r.Truncated {
					kv = append(kv, [2]string{"truncated", "yes: the record kept only the beginning of the output or message"})
				}
				if len(r.Logs) > 0 {
					kv = append(kv, [2]string{"logs", fmt.Sprintf("%d line(s):", len(r.Logs))})
				}
				if err := fields(w, kv); err != nil {
					return err
				}
				for _, l := range r.Logs {
					if err := writeLogLine(w, r.ID, l); err != nil {
						return err
					}
				}
				return nil
			})
		},
	}
	var f activationFilters
	var before, after string
	var limit int
	var follow bool
	list := &cobra.Command{
		Use: "list", Aliases: []string{"ls"}, Short: "List activations, newest first, or follow new ones",
		Long: `List activations, newest first (a page of --limit; --before the last id
shown for the next one). --follow prints each activation recorded from
now on instead, as it is recorded, until interrupted.`,
		Args: nargs(0, 0, ""),
		RunE: func(cmd *cobra.Command, args []string) error {
			q, err := f.query(cmd, time.Now())
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if follow {
				if before != "" || after != "" || f.until != "" || cmd.Flags().Changed("limit") {
					return usagef(cmd, "--follow shows what is recorded from now on: --before, --after, --until and --limit do not apply")
				}
				return c.follow(a.ctx, q, nil, func(r activation) error {
					if a.g.output == "json" {
						return a.printJSONLine(r)
					}
					_, err := fmt.Fprintf(a.stdout, "%s  %s/%s  %s  %s  %s  %s  %s\n", r.ID, r.Module, r.Function, r.Status, r.Source, r.Agent, when(r.Started), duration(r.DurationUS))
					return err
				})
			}
			if before != "" {
				q.Set("before", before)
			}
			if after != "" {
				q.Set("after", after)
			}
			if limit < 1 || limit > 1000 {
				return usagef(cmd, "--limit %d: want 1 to 1000", limit)
			}
			q.Set("limit", strconv.Itoa(limit))
			var acts []activation
			data, err := c.call(a.ctx, request{method: http.MethodGet, path: "/v1/activations", query: q}, &acts)
			if err != nil {
				return err
			}
			return a.emit(data, func(w io.Writer) error {
				rows := make([][]string, len(acts))
				for i, r := range acts {
					rows[i] = []string{r.ID, r.Module + "/" + r.Function, r.Status, r.Source, r.Agent, when(r.Started), duration(r.DurationUS)}
				}
				return table(w, []string{"ID", "FUNCTION", "STATUS", "SOURCE", "AGENT", "STARTED", "DURATION"}, rows)
			})
		},
	}
	fl := list.Flags()
	fl.StringVarP(&f.mod, "module", "m", "", "only this module")
	fl.StringVarP(&f.fn, "function", "f", "", "only this function")
	fl.StringVar(&f.agent, "agent", "", "only activations run by this agent (id or name)")
	fl.StringVar(&f.status, "status", "", "only success or error")
	fl.StringVar(&f.source, "source", "", "only api, mqtt, timer, local-api, local-mqtt or local-timer")
	fl.StringVar(&f.since, "since", "", "only activations started since an RFC 3339 time or a duration ago (1h)")
	fl.StringVar(&f.until, "until", "", "only activations started before an RFC 3339 time or a duration ago")
	fl.StringVar(&before, "before", "", "only activations before this id (the next page)")
	fl.StringVar(&after, "after", "", "only activations after this id")
	fl.IntVar(&limit, "limit", 100, "at most this many (1 to 1000)")
	fl.BoolVar(&follow, "follow", false, "print new activations as they are recorded, until interrupted")
	cmd.AddCommand(get, list)
	return cmd
}

// printJSONLine writes v as one line of JSON (a stream's element).
func (a *app) printJSONLine(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = a.stdout.Write(append(b, '\n'))
	return err
}

// writeLogLine prints one line of an activation's logs: time, short id,
// stream, text.
func writeLogLine(w io.Writer, id string, l logLine) error {
	t := "-"
	if !l.Time.IsZero() {
		t = l.Time.UTC().Format("2006-01-02T15:04:05.000000Z")
	}
	_, err := fmt.Fprintf(w, "%s  %s  %-7s  %s\n", t, shortID(id), l.Stream, l.Text)
	return err
}

// fnLogsCommand is `fn logs FN`: the log lines of a function's
// activations, oldest first and in order within each, and with --follow
// those of the activations recorded from then on.
func (a *app) fnLogsCommand() *cobra.Command {
	var f activationFilters
	var follow bool
	var max int
	cmd := &cobra.Command{
		Use:   "logs <name>",
		Short: "Print the log lines of a function's activations",
		Long: `Print the log lines of a function's activations: each line with its time,
the activation's id (its last 8 characters), its stream and its text, oldest
activation first and in order within each. <name> is a function of the
module -m (default _), or module/function. --since limits how far back
(10m, or an RFC 3339 time); without it the last --max activations are read.
--follow then prints the lines of every new activation as it is recorded,
until interrupted. -o json prints one activation per line with its logs.`,
		Args: nargs(1, 1, "<name>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if mod, fn, ok := strings.Cut(args[0], "/"); ok {
				if cmd.Flags().Changed("module") && mod != f.mod {
					return usagef(cmd, "%q names module %s and -m says %s", args[0], mod, f.mod)
				}
				f.mod, f.fn = mod, fn
			} else {
				f.fn = args[0]
			}
			if err := checkNames(f.mod, f.fn); err != nil {
				return err
			}
			if max < 1 {
				return usagef(cmd, "--max %d: want at least 1", max)
			}
			q, err := f.query(cmd, time.Now())
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			shown := map[string]bool{}
			print := func(r activation) error {
				if shown[r.ID] {
					return nil
				}
				shown[r.ID] = true
				if a.g.output == "json" {
					return a.printJSONLine(r)
				}
				for _, l := range r.Logs {
					if err := writeLogLine(a.stdout, r.ID, l); err != nil {
						return err
					}
				}
				return nil
			}
			history := func() error {
				hq := url.Values{}
				for k, v := range q {
					hq[k] = slices.Clone(v)
				}
				past, err := c.listAll(a.ctx, hq, max)
				if err != nil {
					return err
				}
				for _, r := range past {
					if err := print(r); err != nil {
						return err
					}
				}
				return nil
			}
			if !follow {
				return history()
			}
			// The stream opens first, so that nothing recorded while the
			// history is read is missed; what both show is printed once.
			fq := url.Values{}
			for k, v := range q {
				if k != "since" {
					fq[k] = slices.Clone(v)
				}
			}
			return c.follow(a.ctx, fq, history, print)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.mod, "module", "m", "_", "module of the function")
	fl.StringVar(&f.agent, "agent", "", "only activations run by this agent (id or name)")
	fl.StringVar(&f.since, "since", "", "only activations started since an RFC 3339 time or a duration ago (10m)")
	fl.BoolVar(&follow, "follow", false, "then print the logs of new activations as they are recorded, until interrupted")
	fl.IntVar(&max, "max", 1000, "read at most this many past activations")
	return cmd
}
