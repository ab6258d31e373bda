package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/wispfn/wisp/controller/fleet"
	"github.com/wispfn/wisp/controller/server"
	"github.com/wispfn/wisp/internal/settings"
)

// secretsCommand is `wisp-controller secrets`: rotate-key seals every
// module secret again under the current key.
func secretsCommand(d deps) *cobra.Command {
	group := settings.Group("secrets", "Manage the key sealing module secrets at rest")
	rotate := &cobra.Command{
		Use:   "rotate-key",
		Short: "Seal every module secret again under the current key (then the old keys are needed no more)",
		Long: `rotate-key reads every module secret with the current key and the old
ones (--secrets-old-key-files, WISP_SECRETS_OLD_KEYS) and seals again,
under the current key, each one sealed under another. A value set
meanwhile is left as it is. With Postgres, the cluster's controller
identity (sealed with the same key) is sealed again too, so every
controller of the cluster needs the new key before it restarts. Run it
with the store's settings; it is safe
while controllers on the same Postgres run (each reads the new rows
within seconds, given the same keys). The embedded store needs its
controller stopped.

To rotate: move the key file aside (mv secrets.key secrets.key.old), run
rotate-key --secrets-old-key-files secrets.key.old (it makes a new key),
start the controller, and delete the old key once it ran.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := load(cmd, d)
			if err != nil {
				return err
			}
			log := cfg.Log.Logger(d.stderr)
			scfg := cfg.server()
			scfg.Getenv = d.getenv
			st, err := server.OpenStore(cmd.Context(), scfg, log)
			if err != nil {
				return err
			}
			defer st.Close()
			svc, err := server.OpenSecrets(scfg, st, log)
			if err != nil {
				return err
			}
			rep, err := svc.Rotate(cmd.Context())
			if err != nil {
				return err
			}
			if _, err = fmt.Fprintf(d.stdout, "sealed again: %d; already under the current key: %d; changed meanwhile (left): %d\n", rep.Resealed, rep.Current, rep.Changed); err != nil {
				return err
			}
			// The cluster's identity (Postgres) is sealed with the same key.
			if is, ok := st.(fleet.IdentityStore); ok {
				ring, err := server.LoadSecretsRing(scfg, log)
				if err != nil {
					return err
				}
				resealed, err := fleet.ResealIdentity(cmd.Context(), is, ring)
				if err != nil {
					return err
				}
				if resealed {
					_, err = fmt.Fprintln(d.stdout, "the cluster's controller identity: sealed again")
				}
				return err
			}
			return nil
		},
	}
	addFlags(rotate, "data_dir", "database_url", "secrets_key_file", "secrets_old_key_files", "log_level", "log_format")
	group.AddCommand(rotate)
	return group
}
