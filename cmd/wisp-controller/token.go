package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/wispfn/wisp/controller/fleet"
	"github.com/wispfn/wisp/controller/server"
	"github.com/wispfn/wisp/controller/store"
)

const tokenUsage = "usage: wisp-controller token create [--ttl DURATION] [--url URL] [controller flags: --data-dir, --database-url, --listen, --config]"

// runToken is `wisp-controller token create`: it makes a join token for
// new agents and prints it on stdout.
//
// It asks the running controller (POST /v1/admin/tokens with the admin
// token from the data dir) at --url, by default the address of --listen on
// this machine. When no controller answers there it writes the token to
// the store itself, which is what a first setup before the controller's
// first start needs (an embedded store is locked while its controller runs,
// so that path works only with the controller stopped, or with Postgres).
func runToken(ctx context.Context, args []string, d deps) int {
	if len(args) == 0 || args[0] != "create" {
		fmt.Fprintln(d.stderr, tokenUsage)
		return 2
	}
	ttl, url, rest, err := tokenFlags(args[1:])
	if err != nil {
		fmt.Fprintf(d.stderr, "wisp-controller: %v\n%s\n", err, tokenUsage)
		return 2
	}
	cfg, err := loadConfig(rest, d.getenv, d.stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(d.stderr, "wisp-controller: %v\n", err)
		return 2
	}
	if url == "" {
		url = localURL(cfg.Listen)
	}
	tok, err := tokenViaAPI(ctx, url, cfg.DataDir, ttl)
	if errors.Is(err, errNoController) {
		tok, err = tokenViaStore(ctx, cfg, ttl)
	}
	if err != nil {
		fmt.Fprintf(d.stderr, "wisp-controller: %v\n", err)
		return 1
	}
	fmt.Fprintln(d.stdout, tok)
	return 0
}

// tokenFlags takes --ttl and --url out of args and leaves the rest to loadConfig.
func tokenFlags(args []string) (ttl time.Duration, url string, rest []string, err error) {
	for i := 0; i < len(args); i++ {
		name, value, hasValue := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
		if !strings.HasPrefix(args[i], "-") || (name != "ttl" && name != "url") {
			rest = append(rest, args[i])
			continue
		}
		if !hasValue {
			if i+1 >= len(args) {
				return 0, "", nil, fmt.Errorf("--%s needs a value", name)
			}
			i++
			value = args[i]
		}
		switch name {
		case "ttl":
			if ttl, err = time.ParseDuration(value); err != nil || ttl <= 0 {
				return 0, "", nil, fmt.Errorf("--ttl %q: want a positive duration such as 24h", value)
			}
		case "url":
			url = strings.TrimRight(value, "/")
		}
	}
	return ttl, url, rest, nil
}

func localURL(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "http://127.0.0.1:4000"
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

var errNoController = errors.New("no controller answers")

func tokenViaAPI(ctx context.Context, url, dataDir string, ttl time.Duration) (string, error) {
	admin, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		return "", errNoController // never started: no admin token yet
	}
	body, _ := json.Marshal(map[string]string{"ttl": ttlString(ttl)})
	if ttl == 0 {
		body = []byte("{}")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/admin/tokens", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(admin)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
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

func ttlString(d time.Duration) string { return d.String() }

func tokenViaStore(ctx context.Context, cfg config, ttl time.Duration) (string, error) {
	id, err := fleet.LoadOrCreateIdentity(cfg.DataDir)
	if err != nil {
		return "", err
	}
	st, err := server.OpenStore(ctx, cfg.server(), newLogger(cfg, io.Discard))
	if errors.Is(err, store.ErrLocked) {
		return "", fmt.Errorf("the embedded store is locked by a running controller that does not answer at --url: %w", err)
	}
	if err != nil {
		return "", err
	}
	defer st.Close()
	info, err := fleet.NewJoinToken(ctx, st, id, ttl)
	if err != nil {
		return "", fmt.Errorf("storing the join token: %w", err)
	}
	return info.Token, nil
}
