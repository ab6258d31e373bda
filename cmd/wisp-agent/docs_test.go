package main

import (
	"os"
	"testing"
)

// TestConfigurationDoc: docs/configuration.md's table of the agent's
// settings is the settings table (WISP_UPDATE_DOCS=1 rewrites it).
func TestConfigurationDoc(t *testing.T) {
	const path = "../../docs/configuration.md"
	c := defaultConfig()
	stale, err := c.table().SyncReference(path, "wisp-agent", os.Getenv("WISP_UPDATE_DOCS") == "1")
	if err != nil {
		t.Fatal(err)
	}
	if stale {
		t.Fatalf("%s does not list the agent's settings as they are: run WISP_UPDATE_DOCS=1 go test ./cmd/wisp-agent", path)
	}
}
