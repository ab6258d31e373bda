// Package node assembles a Wisp agent from its parts (runtime, state,
// executor, controller links, local invoke API, local MQTT triggers,
// metrics) and runs it. cmd/wisp-agent parses configuration and calls Run;
// `wisp dev` runs one in the same process as a controller.
//
// It must never import controller packages.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wispfn/wisp/agent/activation"
	"github.com/wispfn/wisp/agent/executor"
	"github.com/wispfn/wisp/agent/link"
	"github.com/wispfn/wisp/agent/localapi"
	"github.com/wispfn/wisp/agent/runtime"
	"github.com/wispfn/wisp/agent/state"
	"github.com/wispfn/wisp/agent/triggers"
	"github.com/wispfn/wisp/protocol"
)

// Config is what Run needs; cmd/wisp-agent documents each field's flag.
type Config struct {
	Controllers []string
	JoinToken   string
	DataDir     string
	Name        string
	Labels      []string
	Engine      string
	MetricsAddr string // "" disables
	LocalAPI    string // "" disables
	// LocalAPIUnsynced answers local API calls before the outbox fsync
	// (localapi.Config.Unsynced).
	LocalAPIUnsynced bool
	MQTTBroker       string // "" disables edge-local triggers
	Timeout          time.Duration
	MemoryMiB        uint64
	// MaxConcurrent, MaxPerFunction and MaxQueuedPerFunction bound the
	// runtime's instance slots (runtime.Config; zero: its defaults).
	MaxConcurrent        int
	MaxPerFunction       int
	MaxQueuedPerFunction int
	// ModuleLimits and Compile bound what the agent compiles: it checks
	// every module itself, whatever its controller accepted.
	ModuleLimits runtime.ModuleLimits
	Compile      runtime.CompileBudget
}

// Run runs an agent until ctx is done: its runtime and state, one link per
// controller, the local invoke API, the edge-local triggers and the
// metrics endpoint. Shutdown drains: links stop taking work and let
// in-flight invocations finish (bounded), then the runtime and the state
// file close.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return err
	}
	// The state first: opening it quarantines the code that was running
	// when a previous process died, before anything can run it again.
	st, err := state.Open(filepath.Join(cfg.DataDir, "agent.db"))
	if err != nil {
		return err
	}
	defer st.Close() // after the runtime's Close below: it clears the crash markers
	for _, c := range st.Crashes() {
		log.Warn("the agent died while this code was "+c.Activity+"; it is quarantined until an operator releases it",
			"digest", c.Digest, "since", c.Since, "alongside", c.Alongside)
	}
	rt, err := runtime.New(ctx, runtime.Config{
		CacheDir:             filepath.Join(cfg.DataDir, "cache"),
		Engine:               cfg.Engine,
		MaxConcurrent:        cfg.MaxConcurrent,
		MaxPerFunction:       cfg.MaxPerFunction,
		MaxQueuedPerFunction: cfg.MaxQueuedPerFunction,
		Limits:               runtime.Limits{Timeout: cfg.Timeout, MemoryBytes: cfg.MemoryMiB << 20},
		ModuleLimits:         cfg.ModuleLimits,
		Compile:              cfg.Compile,
		Logger:               log,
		Track:                executor.CrashMarks(st, log),
	})
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), outboxCollector{st}, quarantineCollector{st})
	ex := executor.New(rt, st, executor.NewMetrics(reg, rt), log)

	var metricsSrv *http.Server
	if cfg.MetricsAddr != "" {
		ln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			rt.Close(context.Background())
			return fmt.Errorf("metrics listener: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go metricsSrv.Serve(ln)
		log.Info("metrics", "addr", ln.Addr().String())
	}

	// Edge-local triggers follow the desired set, stored or fresh.
	var local atomic.Pointer[triggers.Local]
	var links []*link.Link
	kick := func() {
		for _, l := range links {
			l.Kick()
		}
	}
	// Local activations, from the local API and the triggers alike, run
	// and are recorded by one runner.
	runner, err := activation.New(activation.Config{Executor: ex, State: st, OnRecord: kick, Logger: log})
	if err != nil {
		rt.Close(context.Background())
		return err
	}
	var lapi *localapi.Server
	if cfg.LocalAPI != "" {
		tok, err := localapi.LoadOrCreateToken(cfg.DataDir)
		if err != nil {
			rt.Close(context.Background())
			return err
		}
		if lapi, err = localapi.New(localapi.Config{Runner: runner, Token: tok, MaxInputBytes: rt.Limits().InputBytes, Logger: log, Unsynced: cfg.LocalAPIUnsynced}); err != nil {
			rt.Close(context.Background())
			return err
		}
	}
	// Syncs take turns and each applies the desired set as stored when it
	// runs, so a slow sync can never put back an older set.
	var syncMu sync.Mutex
	resync := func(l *triggers.Local) {
		syncMu.Lock()
		defer syncMu.Unlock()
		fs, err := st.Desired()
		if err != nil {
			log.Error("reading the desired set for local triggers", "err", err)
			return
		}
		syncTriggers(ctx, l, fs, log)
	}
	onDesired := func([]protocol.DesiredFunction) {
		if l := local.Load(); l != nil {
			resync(l)
		}
	}

	var wg sync.WaitGroup
	errc := make(chan error, len(cfg.Controllers))
	for _, addr := range cfg.Controllers {
		l, err := link.New(link.Config{Addr: addr, JoinToken: cfg.JoinToken, State: st, Executor: ex,
			Name: cfg.Name, Labels: cfg.Labels, Logger: log, OnDesired: onDesired})
		if err != nil {
			rt.Close(context.Background())
			return err
		}
		links = append(links, l)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				errc <- fmt.Errorf("controller %s: %w", addr, err)
			}
		}()
	}
	// Appended entries reach the drain's reads a little after they are
	// durable (agent/state's journal): wake it then too.
	st.OnOutboxCommit(kick)
	log.Info("agent running", "controllers", cfg.Controllers, "engine", rt.Engine(), "data_dir", cfg.DataDir)
	if lapi != nil {
		ln, err := net.Listen("tcp", cfg.LocalAPI)
		if err != nil {
			rt.Close(context.Background())
			return fmt.Errorf("local API listener: %w", err)
		}
		log.Info("local invoke API", "addr", ln.Addr().String(), "token_file", filepath.Join(cfg.DataDir, "local.token"))
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := lapi.Run(ctx, ln); err != nil {
				log.Error("local API stopped", "err", err)
			}
		}()
	}
	if cfg.MQTTBroker != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The MQTT client id derives from the agent id: wait for the first join.
			id, err := st.Identity()
			for err == nil && id.AgentID == "" {
				select {
				case <-ctx.Done():
					return
				case <-time.After(200 * time.Millisecond):
				}
				id, err = st.Identity()
			}
			if err != nil {
				log.Error("reading identity", "err", err)
				return
			}
			l, err := triggers.New(triggers.Config{
				Broker: cfg.MQTTBroker, ClientID: triggers.ClientID(id.AgentID), Logger: log, Registry: reg,
				Invoke: triggerInvoker(runner),
			})
			if err != nil {
				log.Error("local triggers", "err", err)
				return
			}
			local.Store(l)
			resync(l)
			if err := l.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				log.Error("local triggers stopped", "err", err)
			}
		}()
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc: // refused for good: stop
	}
	// Drain: links stop taking work as ctx ends; give running invocations
	// a fresh deadline to finish, then close everything.
	log.Info("agent stopping: draining in-flight invocations", "in_flight", ex.InFlight())
	dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rt.Close(dctx); err != nil {
		log.Warn("closing runtime", "err", err)
	}
	if metricsSrv != nil {
		metricsSrv.Shutdown(dctx)
	}
	if runErr != nil {
		return runErr
	}
	wg.Wait()
	return nil
}

// syncTriggers subscribes the local triggers of the desired set.
func syncTriggers(ctx context.Context, l *triggers.Local, fs []protocol.DesiredFunction, log *slog.Logger) {
	var bs []triggers.Binding
	for _, f := range fs {
		for _, t := range f.LocalTopics {
			bs = append(bs, triggers.Binding{Module: f.Module, Function: f.Name, Topic: t})
		}
	}
	if err := l.Sync(ctx, bs); err != nil {
		log.Warn("syncing local triggers", "err", err)
		return
	}
	log.Info("local triggers synced", "bindings", len(bs))
}

// triggerInvoker runs a function for a local MQTT message and records it
// (activation.Runner.RunMessage, with the message's key, so a redelivered
// message already recorded is not run again). Its error, which leaves the
// message unacknowledged, is the runner's: the function is not in the
// desired set, its code is not here, its queue is full, or the activation
// could not be recorded. A function that fails is a recorded activation.
func triggerInvoker(runner *activation.Runner) triggers.Invoke {
	return func(ctx context.Context, m triggers.Message) error {
		req := activation.Request{Module: m.Module, Function: m.Function, Args: m.Payload, Source: activation.SourceLocalMQTT, ActivationID: m.ActivationID}
		_, err := runner.RunMessage(ctx, req, activation.MessageKey(m.Module, m.Function, m.Topic, m.Payload), m.Redelivered)
		return err
	}
}
