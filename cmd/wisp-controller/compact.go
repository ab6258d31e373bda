package main

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/internal/settings"
)

// compactCommand is `wisp-controller compact`: with the controller stopped,
// it rewrites the embedded store file without the room that pruned
// activation records left (bbolt reuses it but never returns it to the
// file system).
func compactCommand(d deps) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "compact",
		Short: "Give back to the file system the room pruned records left in the embedded store (controller stopped)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := load(cmd, d)
			if err != nil {
				return err
			}
			if cfg.DatabaseURL != "" {
				return settings.UsageError(errors.New("compact is for the embedded store; Postgres reuses the room of deleted rows " +
					"after (auto)VACUUM, and VACUUM FULL activations, sink_deliveries gives it back (it locks both tables while it runs)"))
			}
			path := filepath.Join(cfg.DataDir, "controller.db")
			before, after, err := store.CompactEmbedded(path)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(d.stdout, "%s: %d bytes, %d after compaction\n", path, before, after)
			return err
		},
	}
	addFlags(cmd, "data_dir", "database_url")
	return cmd
}
