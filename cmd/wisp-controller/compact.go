package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"path/filepath"

	"github.com/wispfn/wisp/controller/store"
)

// runCompact is `wisp-controller compact`: with the controller stopped, it
// rewrites the embedded store file without the room that pruned activation
// records left (bbolt reuses it but never returns it to the file system).
// It takes the controller's own flags, for --data-dir.
func runCompact(_ context.Context, args []string, d deps) int {
	cfg, err := loadConfig(args, d.getenv, d.stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(d.stderr, "wisp-controller: %v\n", err)
		return 2
	}
	if cfg.DatabaseURL != "" {
		fmt.Fprintln(d.stderr, "wisp-controller: compact is for the embedded store; Postgres reuses the room of deleted rows "+
			"after (auto)VACUUM, and VACUUM FULL activations, sink_deliveries gives it back (it locks both tables while it runs)")
		return 2
	}
	path := filepath.Join(cfg.DataDir, "controller.db")
	before, after, err := store.CompactEmbedded(path)
	if err != nil {
		fmt.Fprintf(d.stderr, "wisp-controller: %v\n", err)
		return 1
	}
	fmt.Fprintf(d.stdout, "%s: %d bytes, %d after compaction\n", path, before, after)
	return 0
}
