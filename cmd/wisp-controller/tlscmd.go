package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/wispfn/wisp/controller/fleet"
	"github.com/wispfn/wisp/controller/server"
	"github.com/wispfn/wisp/internal/keypin"
	"github.com/wispfn/wisp/internal/settings"
)

// tlsCommand is `wisp-controller tls fingerprint`: it prints the key
// fingerprint of the certificate the REST API serves, which the wisp CLI
// pins (wisp config set tls-fingerprint ...).
func tlsCommand(d deps) *cobra.Command {
	fingerprint := &cobra.Command{
		Use:   "fingerprint",
		Short: "Print the REST certificate's key fingerprint (sha256:...) for 'wisp config set tls-fingerprint'",
		Long: `Print the key fingerprint (sha256 of the public key) of the certificate the
REST API serves: --tls-cert when given, else the controller's self-signed
certificate: with --database-url the cluster's, kept in the database
(stored now if no controller has started on it), else the one in the
data dir, made there now if the controller has never started. Clients pin it: 'wisp config set tls-fingerprint sha256:...'.
It is also the fingerprint join tokens carry for QUIC when the REST API uses
the self-signed certificate.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := load(cmd, d)
			if err != nil {
				return err
			}
			sc := cfg.server()
			sc.TLSSelfSigned = true // print what --tls auto would serve, even under --tls off
			var id fleet.Identity
			if sc.TLSCert == "" && sc.TLSKey == "" {
				if id, err = controllerIdentity(cmd.Context(), cfg, d, cfg.Log.Logger(d.stderr)); err != nil {
					return err
				}
			}
			cert, _, err := server.RESTCertificate(sc, id)
			if err != nil {
				return err
			}
			if cert.Leaf == nil {
				return errors.New("the certificate could not be parsed")
			}
			_, err = fmt.Fprintln(d.stdout, keypin.Of(cert.Leaf))
			return err
		},
	}
	addFlags(fingerprint, "data_dir", "database_url", "secrets_key_file", "secrets_old_key_files", "tls_cert", "tls_key", "log_level", "log_format")
	group := settings.Group("tls", "The REST API's TLS certificate")
	group.AddCommand(fingerprint)
	return group
}
