// Package devenv is `wisp dev`: a whole Wisp platform in one process for a
// newcomer's laptop — a controller on the embedded store, one agent, and an
// embedded MQTT broker (mochi-mqtt) for edge-local triggers — with its data
// in one folder, so nothing else needs installing.
//
// It is wiring only: the controller, the agent and the broker are the real
// ones, talking over real loopback sockets.
package devenv

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

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/wispfn/wisp/agent/node"
	"github.com/wispfn/wisp/agent/runtime"
	"github.com/wispfn/wisp/controller/activations"
	"github.com/wispfn/wisp/controller/server"
)

// Config configures a dev platform. Zero fields take the defaults.
type Config struct {
	// Dir holds everything: controller/, agent/ (default ./wisp-dev).
	Dir string
	// Listen is the REST API address (default 127.0.0.1:4000).
	Listen string
	// QUICListen is the controller's agent port (default 127.0.0.1:4433).
	QUICListen string
	// MQTTListen is the embedded broker (default 127.0.0.1:1883; if that
	// port is taken, any free port).
	MQTTListen string
	// LocalAPI is the agent's local invoke API (default 127.0.0.1:4080).
	LocalAPI string
	// CompileWorker is the compile worker command of both the controller
	// and the agent (runtime.CompileBudget.Worker); nil compiles in process.
	CompileWorker []string
}

// Info is what a running dev platform tells its user.
type Info struct {
	URL        string // the REST API
	AdminToken string
	MQTT       string // tcp://host:port of the embedded broker
	LocalAPI   string // the agent's local invoke API
	LocalToken string
	Dir        string
}

func (c *Config) defaults() {
	if c.Dir == "" {
		c.Dir = "wisp-dev"
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:4000"
	}
	if c.QUICListen == "" {
		c.QUICListen = "127.0.0.1:4433"
	}
	if c.MQTTListen == "" {
		c.MQTTListen = "127.0.0.1:1883"
	}
	if c.LocalAPI == "" {
		c.LocalAPI = "127.0.0.1:4080"
	}
}

// Run runs the platform until ctx is done. ready is called once the
// controller serves and the agent is connected.
func Run(ctx context.Context, cfg Config, log *slog.Logger, ready func(Info)) error {
	cfg.defaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return err
	}
	broker, mqttAddr, err := startBroker(cfg.MQTTListen, log)
	if err != nil {
		return fmt.Errorf("embedded MQTT broker: %w", err)
	}
	defer broker.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type addrs struct{ rest, quic net.Addr }
	up := make(chan addrs, 1)
	ctlDone := make(chan error, 1)
	ctlDir := filepath.Join(cfg.Dir, "controller")
	go func() {
		ctlDone <- server.Run(ctx, server.Config{
			Listen: cfg.Listen, QUICListen: cfg.QUICListen, DataDir: ctlDir,
			MaxUploadBytes: 16 << 20, ShutdownTimeout: 10 * time.Second, InvokeTimeout: 30 * time.Second,
			Compile:             runtime.CompileBudget{Worker: cfg.CompileWorker},
			ActivationRetention: activations.DefaultRetention,
		}, log.With("component", "controller"), func(rest, quic net.Addr) { up <- addrs{rest, quic} })
	}()
	var a addrs
	select {
	case a = <-up:
	case err := <-ctlDone:
		return fmt.Errorf("controller: %w", err)
	}
	url := "http://" + a.rest.String()
	admin, err := readToken(filepath.Join(ctlDir, "admin.token"))
	if err != nil {
		return err
	}
	agentDir := filepath.Join(cfg.Dir, "agent")
	join := ""
	if _, err := os.Stat(filepath.Join(agentDir, "agent.db")); errors.Is(err, os.ErrNotExist) {
		if join, err = joinToken(ctx, url, admin); err != nil {
			return err
		}
	}
	agentDone := make(chan error, 1)
	go func() {
		agentDone <- node.Run(ctx, node.Config{
			Controllers: []string{a.quic.String()}, JoinToken: join, DataDir: agentDir, Name: "dev",
			LocalAPI: cfg.LocalAPI, MQTTBroker: mqttAddr, Timeout: 10 * time.Second, MemoryMiB: 128,
			Compile: runtime.CompileBudget{Worker: cfg.CompileWorker},
		}, log.With("component", "agent"))
	}()
	if err := waitAgent(ctx, url, admin); err != nil {
		return err
	}
	localToken, _ := readToken(filepath.Join(agentDir, "local.token"))
	if ready != nil {
		ready(Info{URL: url, AdminToken: admin, MQTT: mqttAddr, LocalAPI: "http://" + cfg.LocalAPI, LocalToken: localToken, Dir: cfg.Dir})
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-ctlDone:
		cancel()
	case runErr = <-agentDone:
		cancel()
	}
	<-agentDone
	if err := <-ctlDone; runErr == nil {
		runErr = err
	}
	return runErr
}

func startBroker(addr string, log *slog.Logger) (*mqtt.Server, string, error) {
	b := mqtt.New(&mqtt.Options{Logger: log.With("component", "mqtt")})
	if err := b.AddHook(new(auth.AllowHook), nil); err != nil {
		return nil, "", err
	}
	l := listeners.NewTCP(listeners.Config{ID: "dev", Address: addr})
	if err := b.AddListener(l); err != nil {
		l = listeners.NewTCP(listeners.Config{ID: "dev", Address: "127.0.0.1:0"})
		if err := b.AddListener(l); err != nil {
			return nil, "", err
		}
		log.Warn("MQTT port taken; the embedded broker listens elsewhere", "wanted", addr, "addr", l.Address())
	}
	go b.Serve()
	return b, "tcp://" + l.Address(), nil
}

func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

func joinToken(ctx context.Context, url, admin string) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, "POST", url+"/v1/admin/tokens", bytes.NewReader([]byte("{}")))
	req.Header.Set("Authorization", "Bearer "+admin)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var env struct {
		Data struct{ Token string }
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(b, &env) != nil || env.Data.Token == "" {
		return "", fmt.Errorf("join token: %d %s", resp.StatusCode, b)
	}
	return env.Data.Token, nil
}

// waitAgent polls GET /v1/agents until one agent is connected.
func waitAgent(ctx context.Context, url, admin string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, "GET", url+"/v1/agents", nil)
		req.Header.Set("Authorization", "Bearer "+admin)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			var env struct {
				Data []struct{ Connected bool }
			}
			json.NewDecoder(resp.Body).Decode(&env)
			resp.Body.Close()
			if len(env.Data) > 0 && env.Data[0].Connected {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return errors.New("the dev agent did not connect within 30s")
}
