package main

import (
	"bytes"
	"os"
	"testing"
)

// TestConfigurationDoc: docs/configuration.md's table of the agent's
// settings is the settings table (WISP_UPDATE_DOCS=1 rewrites it).
func TestConfigurationDoc(t *testing.T) {
	const path = "../../docs/configuration.md"
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c := defaultConfig()
	want, err := c.table().ReplaceReference(doc, "wisp-agent")
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if bytes.Equal(doc, want) {
		return
	}
	if os.Getenv("WISP_UPDATE_DOCS") == "1" {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("%s does not list the agent's settings as they are: run WISP_UPDATE_DOCS=1 go test ./cmd/wisp-agent", path)
}
