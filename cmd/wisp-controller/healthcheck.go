package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/wispfn/wisp/internal/health"
	"github.com/wispfn/wisp/internal/settings"
)

// healthcheckCommand is `wisp-controller healthcheck`: GET /readyz (or,
// with --live, /healthz) of the controller on this machine and exit 0 when
// it answers 200, 1 otherwise. Images without curl or wget use it.
func healthcheckCommand(d deps) *cobra.Command {
	var live bool
	var url string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "healthcheck [flags]",
		Short: "Exit 0 when the controller on this machine is ready (/readyz; --live: /healthz), else 1",
		Long: `GET the controller's /readyz (or /healthz with --live) on this machine and
exit 0 when it answers 200 within --wait (it tries every 200ms), 1 otherwise,
for container health checks. It asks
the metrics listener (--metrics-addr) when there is one, else the REST port
(--listen; over TLS unless --tls off, without checking the certificate: the
answer is only ok or not, from this machine); --url overrides both.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := defaults()
			if err := cfg.table().Load(cmd.Flags(), d.env, d.stderr); err != nil {
				return settings.UsageError(err)
			}
			path := health.ReadyPath
			if live {
				path = health.LivePath
			}
			client := &http.Client{}
			if url == "" {
				listen, scheme := cfg.MetricsAddr, "http"
				if listen == "" {
					listen = cfg.Listen
					if cfg.TLS != "off" {
						scheme = "https"
						client.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} // loopback, and the answer is only ok or not
					}
				}
				if listen == "" {
					return settings.UsageError(errors.New("no listen address: give --url"))
				}
				var err error
				if url, err = health.LocalURL(scheme, listen, path); err != nil {
					return settings.UsageError(err)
				}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			if err := health.Wait(ctx, client, url); err != nil {
				return fmt.Errorf("%s: %w", url, err)
			}
			fmt.Fprintln(d.stdout, "ok")
			return nil
		},
	}
	addFlags(cmd, "listen", "metrics_addr", "tls")
	cmd.Flags().BoolVar(&live, "live", false, "check liveness (/healthz) instead of readiness (/readyz)")
	cmd.Flags().StringVar(&url, "url", "", "probe this `URL` instead")
	cmd.Flags().DurationVar(&timeout, "wait", 3*time.Second, "keep trying for this long (every 200ms) before giving up")
	return cmd
}
