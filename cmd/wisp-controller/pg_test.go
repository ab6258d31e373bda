package main

import (
	"testing"

	"github.com/wispfn/wisp/internal/testing/testpg"
)

// pgSchema: a fresh schema, dropped on cleanup (internal/testing/testpg).
func pgSchema(t *testing.T) string { return testpg.Schema(t, 4) }
