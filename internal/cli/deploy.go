package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/wispfn/wisp/internal/fntemplate"
)

func (a *app) deployCommand() *cobra.Command {
	var file string
	var opts deployOptions
	cmd := &cobra.Command{
		Use:   "deploy [-f wisp.yaml] [--dry-run] [--prune]",
		Short: "Create or update a module and its functions from a manifest",
		Long: `Create or update a whole app — a module, its functions (built from source or
prebuilt .wasm), their events, timers, sinks, metadata and config — from one
YAML manifest (docs/manifest.md). It is idempotent: each function is
compared with what the controller has (code digest, events, sinks,
metadata, config) and only what differs is written; a second deploy prints
"unchanged" and writes nothing.

Everything is checked before anything is changed: the manifest (strictly:
an unknown key is an error naming its line), the code (sources are built
with 'wisp fn build', prebuilt files are read and checked), and the secrets
the manifest references (they must exist: 'wisp secret set').

Functions of the module that the manifest does not list are reported and
kept; --prune deletes them. --dry-run prints the plan (with the old and new
value of each changed field) and changes nothing on the controller (sources
are still built, to know their digest).

A sink password is not shown back by the controller, so changing only a
password is not seen as a change: use --force to update every function.`,
		Args: nargs(0, 0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.deploy(file, opts)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&file, "file", "f", DefaultManifest, "the manifest")
	f.BoolVar(&opts.dryRun, "dry-run", false, "print the plan and change nothing")
	f.BoolVar(&opts.prune, "prune", false, "delete the module's functions that the manifest does not list")
	f.BoolVar(&opts.force, "force", false, "update every function, even those that look unchanged")
	f.BoolVar(&opts.wait, "wait", false, "wait until the code is on the connected agents")
	return cmd
}

type deployOptions struct {
	dryRun, prune, force, wait bool
}

// Actions of a deploy item.
const (
	actCreate    = "create"
	actUpdate    = "update"
	actUnchanged = "unchanged"
	actKeep      = "keep" // in the module, not in the manifest
	actDelete    = "delete"
)

// deployItem is one line of the plan.
type deployItem struct {
	Kind    string        `json:"kind"` // module or function
	Name    string        `json:"name"`
	Action  string        `json:"action"`
	Fields  []string      `json:"fields,omitempty"` // of an update
	Changes []fieldChange `json:"changes,omitempty"`

	fn   *manifestFunction
	code []byte
	file string // the wasm file the code came from
	// sendEmptyConfig: the function has a config the manifest drops.
	sendEmptyConfig bool
}

type fieldChange struct {
	Field string `json:"field"`
	Old   string `json:"old"`
	New   string `json:"new"`
}

// deployReport is the -o json output.
type deployReport struct {
	Manifest string       `json:"manifest"`
	Module   string       `json:"module"`
	DryRun   bool         `json:"dry_run"`
	Items    []deployItem `json:"items"`
}

func (a *app) deploy(file string, opts deployOptions) error {
	raw, err := readLimited(file, maxManifestBytes, "the manifest limit")
	if err != nil {
		return fmt.Errorf("%v (make one with 'wisp fn new', see docs/manifest.md)", err)
	}
	m, err := parseManifest(file, filepath.Dir(file), raw)
	if err != nil {
		return err
	}
	codes, err := a.loadCode(m)
	if err != nil {
		return err
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	plan, err := a.planDeploy(c, m, codes, opts)
	if err != nil {
		return err
	}
	report := deployReport{Manifest: file, Module: m.Module, DryRun: opts.dryRun, Items: plan}
	text := a.g.output != "json"
	for i := range plan {
		it := &plan[i]
		if !opts.dryRun {
			if err := a.applyItem(c, m, it, opts); err != nil {
				return fmt.Errorf("%s %s: %w (the items above were applied)", it.Kind, qualified(m.Module, it), err)
			}
		}
		if text {
			a.printItem(m, it, opts)
		}
	}
	if !text {
		return a.printJSON(mustJSON(report))
	}
	return a.printSummary(m, plan, opts)
}

// loadCode builds the sources and reads the wasm files, in manifest order.
func (a *app) loadCode(m *manifest) (map[string]codeFile, error) {
	out := make(map[string]codeFile, len(m.Functions))
	tc := fntemplate.Toolchain{Clang: a.getenv("WISP_CLANG"), Go: a.getenv("WISP_GO"), Rustc: a.getenv("WISP_RUSTC")}
	built := map[string]string{} // source dir -> wasm, when two functions share a source
	for _, f := range m.Functions {
		path := f.Wasm
		if f.Source != "" {
			if p, ok := built[f.Source]; ok {
				path = p
			} else {
				a.note("building %s from %s", f.Name, f.Source)
				p, err := fntemplate.Build(a.ctx, f.Source, tc, a.stderr)
				if errors.Is(err, fntemplate.ErrBuild) {
					return nil, fmt.Errorf("%s:%d: function %s: %v (the compiler's messages are above); nothing was changed", m.file, f.line, f.Name, err)
				}
				if err != nil {
					return nil, fmt.Errorf("%s:%d: function %s: source %s: %v; nothing was changed", m.file, f.line, f.Name, f.Source, err)
				}
				built[f.Source], path = p, p
			}
		}
		code, err := readWasm(path, DefaultMaxUpload)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: function %s: %v; nothing was changed", m.file, f.line, f.Name, err)
		}
		sum := sha256.Sum256(code)
		out[f.Name] = codeFile{path: path, code: code, digest: "sha256:" + hex.EncodeToString(sum[:])}
	}
	return out, nil
}

type codeFile struct {
	path, digest string
	code         []byte
}

// current is what the controller shows of a function.
type current struct {
	Digest   string          `json:"digest"`
	Size     int64           `json:"size"`
	Events   json.RawMessage `json:"events"`
	Sinks    json.RawMessage `json:"sinks"`
	Metadata json.RawMessage `json:"metadata"`
	Config   json.RawMessage `json:"config"` // absent before issue 14's config
}

// planDeploy reads what the controller has and compares it with m. It
// writes nothing.
func (a *app) planDeploy(c *client, m *manifest, codes map[string]codeFile, opts deployOptions) ([]deployItem, error) {
	var mod struct {
		Functions []nameItem `json:"functions"`
	}
	moduleExists := true
	if _, err := c.call(a.ctx, request{method: http.MethodGet, path: fnPath(m.Module, "")}, &mod); err != nil {
		var ae *apiError
		if !errors.As(err, &ae) || ae.status != http.StatusNotFound {
			return nil, err
		}
		moduleExists = false
	}
	if err := a.checkSecrets(c, m, moduleExists); err != nil {
		return nil, err
	}
	var plan []deployItem
	modItem := deployItem{Kind: "module", Name: m.Module, Action: actUnchanged}
	if !moduleExists {
		modItem.Action = actCreate
	}
	plan = append(plan, modItem)
	existing := map[string]bool{}
	for _, f := range mod.Functions {
		existing[f.Name] = true
	}
	for i := range m.Functions {
		f := &m.Functions[i]
		cf := codes[f.Name]
		it := deployItem{Kind: "function", Name: f.Name, fn: f, code: cf.code, file: cf.path}
		if !existing[f.Name] {
			it.Action = actCreate
			plan = append(plan, it)
			continue
		}
		var cur current
		if _, err := c.call(a.ctx, request{method: http.MethodGet, path: fnPath(m.Module, f.Name)}, &cur); err != nil {
			return nil, fmt.Errorf("reading function %s/%s: %w", m.Module, f.Name, err)
		}
		curConfig, err := normConfig(cur.Config)
		if err != nil {
			curConfig = compactJSON(cur.Config)
		}
		curMeta, err := normMetadata(cur.Metadata)
		if err != nil {
			curMeta = compactJSON(cur.Metadata)
		}
		diffs := []fieldChange{}
		if cur.Digest != cf.digest {
			diffs = append(diffs, fieldChange{"code", shortDigest(cur.Digest) + " (" + humanBytes(cur.Size) + ")", shortDigest(cf.digest) + " (" + humanBytes(int64(len(cf.code))) + ")"})
		}
		for _, d := range []struct{ field, old, new string }{
			{"events", normEventsShown(cur.Events), f.Spec.Events},
			{"sinks", normSinksShown(cur.Sinks), f.Spec.sinksShown},
			{"metadata", curMeta, f.Spec.Metadata},
			{"config", curConfig, f.Spec.Config},
		} {
			if d.old != d.new {
				diffs = append(diffs, fieldChange{d.field, orNone(d.old), orNone(d.new)})
			}
		}
		it.sendEmptyConfig = curConfig != "" && f.Spec.Config == ""
		switch {
		case len(diffs) > 0:
			it.Action, it.Changes = actUpdate, diffs
			for _, d := range diffs {
				it.Fields = append(it.Fields, d.Field)
			}
		case opts.force:
			it.Action, it.Fields = actUpdate, []string{"forced"}
		default:
			it.Action = actUnchanged
		}
		plan = append(plan, it)
	}
	listed := map[string]bool{}
	for _, f := range m.Functions {
		listed[f.Name] = true
	}
	for _, f := range mod.Functions {
		if listed[f.Name] {
			continue
		}
		act := actKeep
		if opts.prune {
			act = actDelete
		}
		plan = append(plan, deployItem{Kind: "function", Name: f.Name, Action: act})
	}
	return plan, nil
}

func hasKey(raw json.RawMessage, key string) bool {
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil {
		return false
	}
	_, ok := obj[key]
	return ok
}

// checkSecrets makes sure every secret the manifest names exists in the
// module (GET /v1/secrets/{module} lists their names).
func (a *app) checkSecrets(c *client, m *manifest, moduleExists bool) error {
	if len(m.Secrets) == 0 {
		return nil
	}
	if !moduleExists {
		return fmt.Errorf("%s: module %s does not exist yet, so it has none of the secrets the manifest needs (%s): "+
			"create the module ('wisp mod create %s'), set them ('wisp secret set'), then deploy; nothing was changed",
			m.file, m.Module, strings.Join(m.Secrets, ", "), m.Module)
	}
	data, err := c.call(a.ctx, request{method: http.MethodGet, path: "/v1/secrets/" + url.PathEscape(m.Module)}, nil)
	if err != nil {
		var ae *apiError
		if errors.As(err, &ae) && (ae.status == http.StatusNotFound || ae.status == http.StatusMethodNotAllowed) {
			return fmt.Errorf("%s: the manifest references secrets (%s) but the controller at %s does not list secrets (GET /v1/secrets/%s: %v); nothing was changed",
				m.file, strings.Join(m.Secrets, ", "), c.host, m.Module, err)
		}
		return fmt.Errorf("listing the secrets of module %s: %w", m.Module, err)
	}
	have, err := secretNames(data)
	if err != nil {
		return fmt.Errorf("unexpected answer listing the secrets of module %s at %s: %v", m.Module, c.host, err)
	}
	var missing []string
	for _, s := range m.Secrets {
		if !have[s] {
			missing = append(missing, s)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s: module %s lacks the secret(s) %s: set them with 'wisp secret set' first; nothing was changed",
			m.file, m.Module, strings.Join(missing, ", "))
	}
	return nil
}

// secretNames reads a list of secrets: names, or objects with a name.
func secretNames(data json.RawMessage) (map[string]bool, error) {
	out := map[string]bool{}
	if absentJSON(data) {
		return out, nil
	}
	var names []string
	if json.Unmarshal(data, &names) == nil {
		for _, n := range names {
			out[n] = true
		}
		return out, nil
	}
	var items []nameItem
	if err := json.Unmarshal(data, &items); err != nil {
		return nil, err
	}
	for _, it := range items {
		out[it.Name] = true
	}
	return out, nil
}

// applyItem makes one change.
func (a *app) applyItem(c *client, m *manifest, it *deployItem, opts deployOptions) error {
	switch {
	case it.Kind == "module" && it.Action == actCreate:
		_, err := c.call(a.ctx, request{method: http.MethodPost, path: "/v1/fn", body: moduleBody(m.Module), contentType: "application/json"}, nil)
		return err
	case it.Kind == "function" && (it.Action == actCreate || it.Action == actUpdate):
		f := it.fn
		form := uploadForm{name: f.Name, file: it.file, code: it.code, events: f.Spec.Events, sinks: f.Spec.Sinks,
			metadata: f.Spec.Metadata, config: f.Spec.Config, wait: opts.wait}
		if it.sendEmptyConfig {
			form.config = "{}"
		}
		body, ctype, err := form.encode()
		if err != nil {
			return err
		}
		method, path := http.MethodPost, fnPath(m.Module, "")
		if it.Action == actUpdate {
			method, path = http.MethodPut, fnPath(m.Module, f.Name)
		}
		wrap := a.progress(body, "uploading "+f.Name)
		data, status, err := c.do(a.ctx, request{method: method, path: path, body: body, wrap: wrap, contentType: ctype})
		if err != nil {
			return err
		}
		if status == http.StatusMultiStatus {
			a.partialFailures(data)
		}
		if f.Spec.Config != "" {
			return a.checkConfigKept(c, m, f)
		}
		return nil
	case it.Kind == "function" && it.Action == actDelete:
		_, err := c.call(a.ctx, request{method: http.MethodDelete, path: fnPath(m.Module, it.Name)}, nil)
		return err
	}
	return nil
}

// checkConfigKept reads a function back after a write that set its
// config: a controller older than config support ignores the field, and a
// GET without a config key cannot tell "none" from "not supported" before.
func (a *app) checkConfigKept(c *client, m *manifest, f *manifestFunction) error {
	var cur current
	raw, err := c.call(a.ctx, request{method: http.MethodGet, path: fnPath(m.Module, f.Name)}, &cur)
	if err != nil {
		return err
	}
	if got, err := normConfig(cur.Config); err != nil || got != f.Spec.Config || !hasKey(raw, "config") {
		return fmt.Errorf("the controller at %s ignored the function's config (it is older than config support); the code, events, sinks and metadata were written", c.host)
	}
	return nil
}

func qualified(module string, it *deployItem) string {
	if it.Kind == "module" {
		return it.Name
	}
	return module + "/" + it.Name
}

// printItem writes one line of the plan (and the changed fields of an
// update) as done, or as planned with --dry-run.
func (a *app) printItem(m *manifest, it *deployItem, opts deployOptions) {
	w := a.stdout
	var what string
	switch it.Action {
	case actCreate:
		what = pick(opts.dryRun, "would be created", "created")
	case actUpdate:
		what = pick(opts.dryRun, "would be updated", "updated") + " (" + strings.Join(it.Fields, ", ") + ")"
	case actUnchanged:
		what = "unchanged"
	case actKeep:
		what = "not in " + m.file + ", kept (--prune deletes it)"
	case actDelete:
		what = pick(opts.dryRun, "not in "+m.file+", would be deleted", "not in "+m.file+", deleted")
	}
	fmt.Fprintf(w, "%s %s: %s\n", it.Kind, qualified(m.Module, it), what)
	for _, ch := range it.Changes {
		fmt.Fprintf(w, "    %s: %s -> %s\n", ch.Field, clip(ch.Old), clip(ch.New))
	}
}

func (a *app) printSummary(m *manifest, plan []deployItem, opts deployOptions) error {
	count := map[string]int{}
	for _, it := range plan {
		if it.Kind == "function" {
			count[it.Action]++
		}
	}
	var parts []string
	for _, k := range []struct{ act, done, dry string }{
		{actCreate, "created", "to create"}, {actUpdate, "updated", "to update"}, {actUnchanged, "unchanged", "unchanged"},
		{actDelete, "deleted", "to delete"}, {actKeep, "kept (not in the manifest)", "kept (not in the manifest)"},
	} {
		if n := count[k.act]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, pick(opts.dryRun, k.dry, k.done)))
		}
	}
	line := fmt.Sprintf("module %s: %s", m.Module, strings.Join(parts, ", "))
	if opts.dryRun {
		line += " (dry run: nothing was changed)"
	}
	_, err := fmt.Fprintln(a.stdout, line)
	return err
}

func pick(cond bool, yes, no string) string {
	if cond {
		return yes
	}
	return no
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func shortDigest(d string) string {
	if d == "" {
		return "none"
	}
	if len(d) > 7+12 {
		return d[:7+12] + "…"
	}
	return d
}

// clip keeps a field's value on a readable line.
func clip(s string) string {
	const max = 200
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
