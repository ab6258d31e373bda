package main

import (
	"os"
	"testing"
)

// TestConfigurationDoc: docs/configuration.md's table of the controller's
// settings is the settings table (WISP_UPDATE_DOCS=1 rewrites it).
func TestConfigurationDoc(t *testing.T) {
	const path = "../../docs/configuration.md"
	c := defaults()
	stale, err := c.table().SyncReference(path, "wisp-controller", os.Getenv("WISP_UPDATE_DOCS") == "1")
	if err != nil {
		t.Fatal(err)
	}
	if stale {
		t.Fatalf("%s does not list the controller's settings as they are: run WISP_UPDATE_DOCS=1 go test ./cmd/wisp-controller", path)
	}
}
