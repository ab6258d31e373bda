package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"go.yaml.in/yaml/v3"
)

// starterText is the manifest `wisp fn new` writes beside a new project.
const starterText = `# Wisp deploy manifest: 'wisp deploy' (run in this directory) creates or
# updates the module and every function listed here, and changes nothing
# that already matches. Keys and their meaning: docs/manifest.md.
module: _
functions:
  - name: %[1]s
    source: %[2]s          # a project to build ('wisp fn build'); or wasm: ./file.wasm
    # events: [{type: mqtt, params: {topic: %[1]s/in, local: true}}]
    # timers: [{every: 1m, local: true}]
    # metadata: {tag: edge, capacity: 1024}
    # config: {env: {GREETING: Hello}, secrets: [API_KEY], allow_hosts: [api.example.com]}
# secrets: [API_KEY]     # secrets the functions read; 'wisp secret set' them first
`

// starterManifest writes a manifest deploying the project in dir beside
// it, or adds the function to the manifest already there. It returns the
// manifest's path and what was done: created, extended, listed (the
// manifest names the function already) or kept (the file there is not a
// manifest, so it is left alone).
func starterManifest(dir, name string) (string, string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", "", err
	}
	path := filepath.Join(filepath.Dir(abs), DefaultManifest)
	shown := path
	if !filepath.IsAbs(dir) {
		if wd, err := os.Getwd(); err == nil {
			if rel, err := filepath.Rel(wd, path); err == nil {
				shown = rel
			}
		}
	}
	source := "./" + filepath.Base(abs)
	old, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return "", "", fmt.Errorf("writing the deploy manifest: %w", err)
		}
		_, err = fmt.Fprintf(f, starterText, name, source)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return shown, "created", err
	}
	if err != nil {
		return "", "", fmt.Errorf("reading %s: %w", shown, err)
	}
	var doc yaml.Node
	if yaml.Unmarshal(old, &doc) != nil || doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return shown, "kept", nil
	}
	root := doc.Content[0]
	var fns *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "functions" {
			fns = root.Content[i+1]
		}
	}
	if fns == nil || fns.Kind != yaml.SequenceNode {
		return shown, "kept", nil
	}
	for _, f := range fns.Content {
		if f.Kind != yaml.MappingNode {
			continue
		}
		for i := 0; i+1 < len(f.Content); i += 2 {
			if f.Content[i].Value == "name" && f.Content[i+1].Value == name {
				return shown, "listed", nil
			}
		}
	}
	str := func(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }
	fns.Content = append(fns.Content, &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map",
		Content: []*yaml.Node{str("name"), str(name), str("source"), str(source)}})
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return "", "", fmt.Errorf("extending %s: %w", shown, err)
	}
	enc.Close()
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return "", "", fmt.Errorf("extending %s: %w", shown, err)
	}
	return shown, "extended", nil
}
