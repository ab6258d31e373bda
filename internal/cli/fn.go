package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
)

func fnPath(mod, fn string) string {
	p := "/v1/fn/" + url.PathEscape(mod)
	if fn != "" {
		p += "/" + url.PathEscape(fn)
	}
	return p
}

func (a *app) fnCommand() *cobra.Command {
	cmd := group("fn", "Upload, invoke and manage functions; make new ones", "function", "fns")
	cmd.AddCommand(a.fnUploadCommand(false), a.fnUploadCommand(true), a.fnInvokeCommand(), a.fnLogsCommand(),
		a.fnGetCommand(), a.fnListCommand(), a.fnDeleteCommand(), a.fnNewCommand(), a.fnBuildCommand(),
		a.fnVersionsCommand(), a.fnRollbackCommand())
	return cmd
}

// fnUploadCommand is `fn upload` (POST, create) or `fn update` (PUT).
func (a *app) fnUploadCommand(update bool) *cobra.Command {
	var mod, events, sinks, metadata, configFile string
	var wait bool
	var max int64
	cmd := &cobra.Command{
		Use:   "upload <name> <file.wasm>",
		Short: "Upload a new function",
		Long: `Upload a new function from a .wasm file. The file is checked (wasm magic,
size limit) before anything is sent. Events, sinks and metadata are JSON:
  --events '[{"type":"mqtt","params":{"host":"broker","port":1883,"topic":"t"}}]'
  --events '[{"type":"timer","params":{"cron":"*/5 * * * *"}}]'   (UTC; or "every":"30s"; "local":true runs it on the agents)
  --sinks '[{"type":"couchdb","params":{"url":"http://couch:5984/db"}}]'
  --metadata '{"tag":"edge","capacity":1024}'   (capacity in KiB)
The function's configuration is a JSON file (--fn-config FILE; --config
is the CLI's own config file):
  {"env":{"GREETING":"hi"},"secrets":["API_KEY"],"allow_hosts":["api.example.com","*.example.org:443"]}
env and the named secrets reach the function as environment variables;
allow_hosts are the hosts __http_request may reach (without it, the
controller's --default-allow-hosts, which denies every host unless set).`,
		Args: nargs(2, 2, "<name> <file.wasm>"),
	}
	if update {
		cmd.Use = "update <name> <file.wasm>"
		cmd.Short = "Replace a function's code, events, sinks, metadata and config"
		cmd.Long = strings.Replace(cmd.Long, "Upload a new function", "Replace a function's code (absent events, sinks, metadata and config are cleared)", 1)
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		name, file := args[0], args[1]
		if err := checkName("function", name); err != nil {
			return err
		}
		if err := checkName("module", mod); err != nil {
			return err
		}
		if err := checkJSON("events", events, true); err != nil {
			return err
		}
		if err := checkJSON("sinks", sinks, true); err != nil {
			return err
		}
		if err := checkJSON("metadata", metadata, false); err != nil {
			return err
		}
		config, err := readFunctionConfig(configFile)
		if err != nil {
			return err
		}
		code, err := readWasm(file, max)
		if err != nil {
			return err
		}
		form := uploadForm{name: name, file: file, code: code, events: events, sinks: sinks, metadata: metadata, config: config, wait: wait}
		body, ctype, err := form.encode()
		if err != nil {
			return err
		}
		c, err := a.client()
		if err != nil {
			return err
		}
		wrap := a.progress(body, "uploading "+file)
		method := http.MethodPost
		if update {
			method = http.MethodPut
		}
		path := fnPath(mod, "")
		if update {
			path = fnPath(mod, name)
		}
		data, status, err := c.do(a.ctx, request{method: method, path: path, body: body, wrap: wrap, contentType: ctype})
		if err != nil {
			return err
		}
		return a.emit(data, func(w io.Writer) error {
			verb := "uploaded"
			if update {
				verb = "updated"
			}
			fmt.Fprintf(w, "%s function %s in module %s (%s)\n", verb, name, mod, humanBytes(int64(len(code))))
			if status == http.StatusMultiStatus {
				a.partialFailures(data)
			}
			return nil
		})
	}
	f := cmd.Flags()
	f.StringVarP(&mod, "module", "m", "_", "module of the function")
	f.StringVar(&events, "events", "", "events that invoke the function (JSON array)")
	f.StringVar(&sinks, "sinks", "", "where outputs are stored (JSON array)")
	f.StringVar(&metadata, "metadata", "", `scheduling metadata (JSON object: {"tag":"t","capacity":KiB})`)
	f.StringVar(&configFile, "fn-config", "", "JSON `file` of the function's config: env, secrets (names), allow_hosts")
	f.BoolVar(&wait, "wait", false, "wait until the code is on the connected agents")
	f.Int64Var(&max, "max-size", DefaultMaxUpload, "largest file to send, in bytes (the controller's limit)")
	return cmd
}

// partialFailures reports the failed events and sinks of a 207 answer.
func (a *app) partialFailures(data json.RawMessage) {
	var r struct {
		Events []struct{ Status, Message string } `json:"events"`
		Sinks  []struct{ Status, Message string } `json:"sinks"`
	}
	if json.Unmarshal(data, &r) != nil {
		return
	}
	for i, e := range r.Events {
		if e.Status != "success" {
			a.note("warning: event %d did not connect: %s", i+1, e.Message)
		}
	}
	for i, s := range r.Sinks {
		if s.Status != "success" {
			a.note("warning: sink %d did not connect: %s", i+1, s.Message)
		}
	}
}

func (a *app) fnInvokeCommand() *cobra.Command {
	var mod, jsonArgs, script string
	var kv []string
	cmd := &cobra.Command{
		Use:   "invoke <name>",
		Short: "Invoke a function and print its output JSON",
		Long: `Invoke a function and print its output JSON. Arguments are either
key=value pairs (-a name=Ada -a lang=en, values are strings) or one JSON
object (-j '{"name":"Ada"}'). --script picks an APP scheduling script.`,
		Args: nargs(1, 1, "<name>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := checkName("function", name); err != nil {
				return err
			}
			if err := checkName("module", mod); err != nil {
				return err
			}
			if len(kv) > 0 && jsonArgs != "" {
				return usagef(cmd, "use -a key=value or -j JSON, not both")
			}
			body := map[string]any{}
			switch {
			case jsonArgs != "":
				var obj map[string]any
				dec := json.NewDecoder(strings.NewReader(jsonArgs))
				dec.UseNumber()
				if err := dec.Decode(&obj); err != nil || obj == nil {
					return fmt.Errorf("-j must be a JSON object, e.g. '{\"name\":\"Ada\"}'")
				}
				body["args"] = obj
			case len(kv) > 0:
				obj := map[string]string{}
				for _, p := range kv {
					k, v, ok := strings.Cut(p, "=")
					if !ok || k == "" {
						return usagef(cmd, "-a %q: want key=value", p)
					}
					obj[k] = v
				}
				body["args"] = obj
			}
			if script != "" {
				if err := checkName("script", script); err != nil {
					return err
				}
				body["scheduling"] = map[string]string{"language": "app", "script": script}
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var h http.Header
			data, err := c.call(a.ctx, request{method: http.MethodPost, path: fnPath(mod, name), body: jsonBody(body),
				contentType: "application/json", header: &h}, nil)
			id := h.Get(activationHeader)
			if err != nil {
				if id != "" {
					return fmt.Errorf("%w (activation %s)", err, id)
				}
				return err
			}
			if a.g.output == "json" {
				// The output and the activation that recorded it.
				return a.printJSON(mustJSON(map[string]any{"activation": id, "output": json.RawMessage(compactOrNull(data))}))
			}
			var out bytes.Buffer
			if json.Compact(&out, data) != nil {
				out.Reset()
				out.Write(data)
			}
			out.WriteByte('\n')
			_, err = a.stdout.Write(out.Bytes())
			return err
		},
	}
	f := cmd.Flags()
	f.StringVarP(&mod, "module", "m", "_", "module of the function")
	f.StringArrayVarP(&kv, "args", "a", nil, "an argument as key=value (repeatable)")
	f.StringVarP(&jsonArgs, "json", "j", "", "the arguments as one JSON object")
	f.StringVar(&script, "script", "", "APP scheduling script to use")
	return cmd
}

type functionInfo struct {
	Name     string          `json:"name"`
	Module   string          `json:"module"`
	Digest   string          `json:"digest"`
	Size     int64           `json:"size"`
	ABI      string          `json:"abi"`
	Events   json.RawMessage `json:"events"`
	Sinks    json.RawMessage `json:"sinks"`
	Metadata json.RawMessage `json:"metadata"`
	Config   struct {
		Env        map[string]string `json:"env"`
		Secrets    []string          `json:"secrets"`
		AllowHosts []string          `json:"allow_hosts"`
	} `json:"config"`
	Created  string `json:"created"`
	Updated  string `json:"updated"`
	Failures []struct {
		Activation string `json:"activation"`
		Sink       int    `json:"sink"`
		Attempts   int    `json:"attempts"`
		LastError  string `json:"last_error"`
	} `json:"sink_failures"`
}

func (a *app) fnGetCommand() *cobra.Command {
	var mod string
	cmd := &cobra.Command{
		Use:   "get <name>",
		Short: "Show a function",
		Args:  nargs(1, 1, "<name>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkNames(mod, args[0]); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var fi functionInfo
			data, err := c.call(a.ctx, request{method: http.MethodGet, path: fnPath(mod, args[0])}, &fi)
			if err != nil {
				return err
			}
			return a.emit(data, func(w io.Writer) error {
				kv := [][2]string{
					{"name", fi.Name}, {"module", fi.Module}, {"digest", fi.Digest},
					{"size", humanBytes(fi.Size)}, {"abi", fi.ABI},
					{"events", compactOrNone(fi.Events)}, {"sinks", compactOrNone(fi.Sinks)},
					{"metadata", compactOrNone(fi.Metadata)},
					{"env", envLine(fi.Config.Env)}, {"secrets", listOrNone(fi.Config.Secrets, "none")},
					{"allow hosts", listOrNone(fi.Config.AllowHosts, "the controller's default")},
					{"created", when(fi.Created)}, {"updated", when(fi.Updated)},
				}
				for _, f := range fi.Failures {
					kv = append(kv, [2]string{"sink failure", fmt.Sprintf("sink %d, activation %s, %d attempts: %s", f.Sink, f.Activation, f.Attempts, f.LastError)})
				}
				return fields(w, kv)
			})
		},
	}
	cmd.Flags().StringVarP(&mod, "module", "m", "_", "module of the function")
	return cmd
}

// checkNames checks a module and a function name.
func checkNames(mod, fn string) error {
	if err := checkName("module", mod); err != nil {
		return err
	}
	return checkName("function", fn)
}

// envLine shows a function's env as NAME=value pairs sorted by name.
func envLine(env map[string]string) string {
	if len(env) == 0 {
		return "none"
	}
	kv := make([]string, 0, len(env))
	for k, v := range env {
		kv = append(kv, k+"="+strconv.Quote(v))
	}
	sort.Strings(kv)
	return strings.Join(kv, " ")
}

func listOrNone(l []string, none string) string {
	if len(l) == 0 {
		return none
	}
	return strings.Join(l, ", ")
}

func compactOrNone(raw json.RawMessage) string {
	s := strings.TrimSpace(string(raw))
	if s == "" || s == "null" || s == "[]" || s == "{}" {
		return "none"
	}
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return s
	}
	return b.String()
}

type nameItem struct {
	Name string `json:"name"`
}

func (a *app) fnListCommand() *cobra.Command {
	var mod string
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the functions of a module",
		Args:    nargs(0, 0, ""),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkName("module", mod); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var m struct {
				Functions []nameItem `json:"functions"`
			}
			if _, err := c.call(a.ctx, request{method: http.MethodGet, path: fnPath(mod, "")}, &m); err != nil {
				return err
			}
			if a.g.output == "json" {
				b, _ := json.Marshal(m.Functions)
				if m.Functions == nil {
					b = []byte("[]")
				}
				return a.printJSON(b)
			}
			rows := make([][]string, len(m.Functions))
			for i, f := range m.Functions {
				rows[i] = []string{f.Name, mod}
			}
			return table(a.stdout, []string{"NAME", "MODULE"}, rows)
		},
	}
	cmd.Flags().StringVarP(&mod, "module", "m", "_", "module to list")
	return cmd
}

func (a *app) fnDeleteCommand() *cobra.Command {
	var mod string
	cmd := &cobra.Command{
		Use:     "delete <name>",
		Aliases: []string{"rm"},
		Short:   "Delete a function",
		Args:    nargs(1, 1, "<name>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkNames(mod, args[0]); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if _, err := c.call(a.ctx, request{method: http.MethodDelete, path: fnPath(mod, args[0])}, nil); err != nil {
				return err
			}
			return a.emit(json.RawMessage(fmt.Sprintf(`{"name":%q,"module":%q}`, args[0], mod)), func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "deleted function %s from module %s\n", args[0], mod)
				return err
			})
		},
	}
	cmd.Flags().StringVarP(&mod, "module", "m", "_", "module of the function")
	return cmd
}
