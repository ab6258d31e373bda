package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/wispfn/wisp/controller/auth"
	"github.com/wispfn/wisp/controller/server"
	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/internal/settings"
)

// adminTokenCommand is `wisp-controller admin-token rotate`: it gives the
// admin subject a new token, written to <data dir>/admin.token, through the
// store itself, so it works with the controller stopped (and with Postgres
// while controllers run: they look every token up in the store). The old
// token stops working at once.
func adminTokenCommand(d deps) *cobra.Command {
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Give the admin a new token (in <data dir>/admin.token); the old one stops working",
		Long: `Give the admin subject a new token and write it to <data dir>/admin.token
(mode 0600, replacing the old file). The old token stops working at once.

It writes to the store itself: with the embedded store, stop the controller
first (its file is locked while the controller runs); with Postgres it works
while controllers run. Each controller's data dir keeps its own copy of the
file: copy the new one to the others (or keep it in a shared Secret).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := load(cmd, d)
			if err != nil {
				return err
			}
			if cfg.DatabaseURL == "" {
				db := filepath.Join(cfg.DataDir, "controller.db")
				if _, err := os.Stat(db); errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("no embedded store at %s: the controller has never run with this --data-dir (it makes the admin token on first start)", db)
				}
			}
			st, err := server.OpenStore(cmd.Context(), cfg.server(), cfg.Log.Logger(io.Discard))
			if errors.Is(err, store.ErrLocked) {
				return fmt.Errorf("the embedded store is locked: a controller is running on %s; stop it, rotate, start it again (%w)", cfg.DataDir, err)
			}
			if err != nil {
				return err
			}
			defer st.Close()
			path, err := auth.RotateAdmin(cmd.Context(), st, cfg.DataDir)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(d.stdout, "new admin token written to %s; the old one no longer works\n", path)
			return err
		},
	}
	addFlags(rotate, "data_dir", "database_url", "log_level", "log_format")
	group := settings.Group("admin-token", "Manage the admin token")
	group.AddCommand(rotate)
	return group
}
