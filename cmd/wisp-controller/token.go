package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/wispfn/wisp/controller/fleet"
	"github.com/wispfn/wisp/controller/server"
	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/internal/keypin"
	"github.com/wispfn/wisp/internal/settings"
)

// tokenCommand is `wisp-controller token create`: it makes a join token
// for new agents and prints it on stdout.
//
// It asks the running controller (POST /v1/admin/tokens with the admin
// token from the data dir) at --url, by default the address of --listen on
// this machine. When no controller answers there it writes the token to
// the store itself, which is what a first setup before the controller's
// first start needs (an embedded store is locked while its controller runs,
// so that path works only with the controller stopped, or with Postgres).
func tokenCommand(d deps) *cobra.Command {
	var ttl time.Duration
	var uses int
	var url string
	create := &cobra.Command{
		Use:   "create",
		Short: "Make a join token for new agents and print it",
		Long: `Make a join token for new agents and print it on stdout.

It asks the running controller at --url (by default the address of --listen
on this machine) with the admin token from the data dir. When no controller
answers there, it writes the token to the store itself: a first setup before
the controller's first start, or with Postgres (an embedded store is locked
while its controller runs).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ttl < 0 {
				return settings.UsageError(fmt.Errorf("--ttl %s: want a positive duration such as 24h", ttl))
			}
			if uses < 1 || uses > fleet.MaxJoinTokenUses {
				return settings.UsageError(fmt.Errorf("--uses %d: want a whole number from 1 to %d", uses, fleet.MaxJoinTokenUses))
			}
			cfg, err := load(cmd, d)
			if err != nil {
				return err
			}
			if url == "" {
				url = localURL(cfg.Listen, cfg.TLS != "off")
			}
			url = strings.TrimRight(url, "/")
			log := cfg.Log.Logger(io.Discard)
			id, err := controllerIdentity(cmd.Context(), cfg, d, log)
			if err != nil {
				return err
			}
			client, err := restClient(cfg, id)
			if err != nil {
				return err
			}
			tok, err := tokenViaAPI(cmd.Context(), client, url, cfg.DataDir, ttl, uses)
			if errors.Is(err, errNoController) {
				tok, err = tokenViaStore(cmd.Context(), cfg, id, ttl, uses)
			}
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(d.stdout, tok)
			return err
		},
	}
	f := create.Flags()
	f.DurationVar(&ttl, "ttl", 0, "how long the token stays valid; 0: the controller's default (24h)")
	f.IntVar(&uses, "uses", 1, "how many agents may join with the token")
	f.StringVar(&url, "url", "", "the running controller's REST `address` (default: --listen on this machine)")
	addFlags(create, "listen", "tls", "tls_cert", "tls_key", "data_dir", "database_url", "secrets_key_file", "secrets_old_key_files", "log_level", "log_format")
	token := settings.Group("token", "Manage join tokens")
	token.AddCommand(create)
	return token
}

func localURL(listen string, useTLS bool) string {
	scheme := "http://"
	if useTLS {
		scheme = "https://"
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return scheme + "127.0.0.1:4000"
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return scheme + net.JoinHostPort(host, port)
}

// controllerIdentity is the identity the controller of cfg serves and
// join tokens pin: with Postgres the cluster's (it opens the store and
// the secrets key, and stores the identity if the cluster never started),
// else the data dir's (the embedded store is locked while its controller
// runs, and keeps no identity).
func controllerIdentity(ctx context.Context, cfg config, d deps, log *slog.Logger) (fleet.Identity, error) {
	sc := cfg.server()
	sc.Getenv = d.getenv
	if sc.DatabaseURL == "" {
		return fleet.LoadOrCreateIdentity(sc.DataDir)
	}
	st, err := server.OpenStore(ctx, sc, log)
	if err != nil {
		return fleet.Identity{}, err
	}
	defer st.Close()
	ring, err := server.LoadSecretsRing(sc, log)
	if err != nil {
		return fleet.Identity{}, err
	}
	return server.Identity(ctx, sc, st, ring, log)
}

// restClient is an HTTP client for this machine's controller: over TLS it
// pins the key of the certificate the controller serves (cfg's files or
// the controller's identity id), which this command can read.
func restClient(cfg config, id fleet.Identity) (*http.Client, error) {
	if cfg.TLS == "off" {
		return http.DefaultClient, nil
	}
	cert, _, err := server.RESTCertificate(cfg.server(), id)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: keypin.ClientConfig(keypin.Of(cert.Leaf))}}, nil
}

var errNoController = errors.New("no controller answers")

func tokenViaAPI(ctx context.Context, client *http.Client, url, dataDir string, ttl time.Duration, uses int) (string, error) {
	admin, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		return "", errNoController // never started: no admin token yet
	}
	req := map[string]any{"uses": uses}
	if ttl > 0 {
		req["ttl"] = ttl.String()
	}
	body, _ := json.Marshal(req)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/admin/tokens", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	hreq.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(admin)))
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(hreq)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) {
			return "", errNoController
		}
		return "", fmt.Errorf("asking the controller at %s: %w", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("controller at %s answered %d: %s", url, resp.StatusCode, bytes.TrimSpace(b))
	}
	var env struct{ Data fleet.JoinTokenInfo }
	if err := json.Unmarshal(b, &env); err != nil || env.Data.Token == "" {
		return "", fmt.Errorf("controller at %s answered an unreadable token: %s", url, b)
	}
	return env.Data.Token, nil
}

func tokenViaStore(ctx context.Context, cfg config, id fleet.Identity, ttl time.Duration, uses int) (string, error) {
	st, err := server.OpenStore(ctx, cfg.server(), cfg.Log.Logger(io.Discard))
	if errors.Is(err, store.ErrLocked) {
		return "", fmt.Errorf("the embedded store is locked by a running controller that does not answer at --url: %w", err)
	}
	if err != nil {
		return "", err
	}
	defer st.Close()
	info, err := fleet.NewJoinToken(ctx, st, id, ttl, uses)
	if err != nil {
		return "", fmt.Errorf("storing the join token: %w", err)
	}
	return info.Token, nil
}
