// Package node assembles a Wisp agent from its parts (runtime, state,
// executor, controller links, local invoke API, local MQTT triggers,
// local timers, metrics) and runs it. cmd/wisp-agent parses configuration and calls Run;
// `wisp dev` runs one in the same process as a controller.
//
// It also decides the agent's readiness (/readyz on the local API and the
// metrics listener; status.go) and makes its status report, live for the
// local API and from a stopped agent's data dir (ReadStatus).
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
	"strings"
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
	"github.com/wispfn/wisp/agent/status"
	"github.com/wispfn/wisp/agent/timers"
	"github.com/wispfn/wisp/agent/triggers"
	"github.com/wispfn/wisp/internal/health"
	"github.com/wispfn/wisp/protocol"
)

// Config is what Run needs; cmd/wisp-agent documents each field's flag.
type Config struct {
	Controllers []string
	// ResolveEvery is how often controller host names are resolved again
	// (link.PoolConfig.ResolveEvery; 0: its default).
	ResolveEvery time.Duration
	JoinToken    string
	DataDir      string
	Name         string
	Labels       []string
	Engine       string
	MetricsAddr  string // "" disables
	LocalAPI     string // "" disables
	// LocalAPIUnsynced answers local API calls before the outbox fsync
	// (localapi.Config.Unsynced).
	LocalAPIUnsynced bool
	MQTTBroker       string // "" disables edge-local triggers
	Timeout          time.Duration
	MemoryMiB        uint64
	// LogMaxLines and LogMaxBytes bound a function's log per invocation
	// (runtime.Limits.LogLines, LogBytes; zero: the runtime's defaults).
	LogMaxLines int
	LogMaxBytes int
	// MaxConcurrent, MaxPerFunction and MaxQueuedPerFunction bound the
	// runtime's instance slots (runtime.Config; zero: its defaults).
	MaxConcurrent        int
	MaxPerFunction       int
	MaxQueuedPerFunction int
	// MaxCompiledBytes bounds the compiled modules kept in memory
	// (runtime.Config; zero: its default).
	MaxCompiledBytes int64
	// ModuleLimits and Compile bound what the agent compiles: it checks
	// every module itself, whatever its controller accepted.
	ModuleLimits runtime.ModuleLimits
	Compile      runtime.CompileBudget
	// ReadyRequiresLink makes /readyz answer 503 while no controller link
	// is up. Off by default: an agent cut off from its controllers still
	// serves its local API and MQTT triggers from its desired set.
	ReadyRequiresLink bool
}

// Run runs an agent until ctx is done: its runtime and state, a link to
// every controller (link.Pool: one per address the controllers given
// resolve to), the local invoke API, the edge-local triggers and the
// metrics endpoint. It returns early, with an error, when the controllers
// refuse the agent for good (every link refused: link's keeper).
//
// Every goroutine it starts is waited for before it returns. Shutdown
// drains: the links refuse new invocations and let those in flight finish,
// the local API stops listening and finishes its requests, the triggers
// stop taking messages and finish theirs (each within its own bound, 10s);
// then the runtime closes (stopping what still runs after a fresh 10s) and
// the state file last.
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
		MaxCompiledBytes:     cfg.MaxCompiledBytes,
		Limits: runtime.Limits{Timeout: cfg.Timeout, MemoryBytes: cfg.MemoryMiB << 20,
			LogLines: cfg.LogMaxLines, LogBytes: cfg.LogMaxBytes},
		ModuleLimits: cfg.ModuleLimits,
		Compile:      cfg.Compile,
		Logger:       log,
		Track:        executor.CrashMarks(st, log),
	})
	if err != nil {
		return err
	}
	a, err := build(cfg, st, rt, log)
	if err != nil {
		rt.Close(context.Background())
		return err
	}
	runErr := a.run(ctx)
	// Every part has stopped; a local API request still running past the
	// API's own 10s is stopped by the runtime's Close.
	dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rt.Close(dctx); err != nil {
		log.Warn("closing runtime", "err", err)
	}
	return runErr
}

// agent is an agent's parts, built without goroutines; run starts them.
type agent struct {
	cfg      Config
	st       *state.State
	rt       *runtime.Runtime
	ex       *executor.Executor
	log      *slog.Logger
	reg      *prometheus.Registry
	runner   *activation.Runner
	links    *link.Pool
	lapi     *localapi.Server
	local    atomic.Pointer[triggers.Local]
	timers   *timers.Timers
	syncMu   sync.Mutex // syncs take turns (resync)
	metricLn net.Listener
	apiLn    net.Listener
	// recent is the ring of the last activations, every path (status).
	recent *status.Recent
	// serving: run has started every part; stopping: it is draining.
	serving, stopping atomic.Bool
}

// build makes the parts and opens the listeners; on error it closes what
// it opened.
func build(cfg Config, st *state.State, rt *runtime.Runtime, log *slog.Logger) (_ *agent, err error) {
	a := &agent{cfg: cfg, st: st, rt: rt, log: log, reg: prometheus.NewRegistry(), recent: status.NewRecent(status.DefaultRecent)}
	defer func() {
		if err != nil {
			for _, ln := range []net.Listener{a.metricLn, a.apiLn} {
				if ln != nil {
					ln.Close()
				}
			}
		}
	}()
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), outboxCollector{st}, quarantineCollector{st})
	a.ex = executor.New(rt, st, executor.NewMetrics(a.reg, rt), log)
	a.ex.KeepRecent(a.recent)
	// Local activations, from the local API and the triggers alike, run
	// and are recorded by one runner; each wakes the outbox drains.
	if a.runner, err = activation.New(activation.Config{Executor: a.ex, State: st, OnRecord: a.kick, Logger: log}); err != nil {
		return nil, err
	}
	if a.timers, err = timers.New(timers.Config{Invoke: timerInvoker(a.runner), Registry: a.reg, Logger: log}); err != nil {
		return nil, err
	}
	if a.links, err = link.NewPool(link.PoolConfig{Controllers: cfg.Controllers, ResolveEvery: cfg.ResolveEvery,
		Link: link.Config{JoinToken: cfg.JoinToken, State: st, Executor: a.ex,
			Name: cfg.Name, Labels: cfg.Labels, Logger: log, OnDesired: a.onDesired}}); err != nil {
		return nil, err
	}
	a.reg.MustRegister(linkCollector{links: a.links.Status})
	if cfg.LocalAPI != "" {
		tok, err := localapi.LoadOrCreateToken(cfg.DataDir)
		if err != nil {
			return nil, err
		}
		if a.lapi, err = localapi.New(localapi.Config{Runner: a.runner, Token: tok, MaxInputBytes: rt.Limits().InputBytes, Logger: log, Unsynced: cfg.LocalAPIUnsynced,
			Ready: a.ready, Status: a.status}); err != nil {
			return nil, err
		}
		if a.apiLn, err = net.Listen("tcp", cfg.LocalAPI); err != nil {
			return nil, fmt.Errorf("local API listener: %w", err)
		}
	}
	if cfg.MetricsAddr != "" {
		if a.metricLn, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			return nil, fmt.Errorf("metrics listener: %w", err)
		}
	}
	return a, nil
}

// kick wakes the links' outbox drain.
func (a *agent) kick() { a.links.Kick() }

// onDesired re-syncs the local triggers and timers after a link stored a
// new desired set, or a delta that touched a function with some (the
// resync reads the whole set: a delta that touched none costs nothing).
func (a *agent) onDesired(_ []protocol.DesiredFunction, triggers bool) {
	if !triggers {
		return
	}
	a.resyncTimers()
	if l := a.local.Load(); l != nil {
		a.resync(context.Background(), l)
	}
}

// resyncTimers makes the local timers follow the desired set as stored;
// syncs take turns with the triggers'.
func (a *agent) resyncTimers() {
	a.syncMu.Lock()
	defer a.syncMu.Unlock()
	fs, err := a.st.Desired()
	if err != nil {
		a.log.Error("reading the desired set for local timers", "err", err)
		return
	}
	a.timers.Sync(fs)
}

// resync makes the local triggers follow the desired set as stored when it
// runs; syncs take turns, so a slow sync can never put back an older set.
func (a *agent) resync(ctx context.Context, l *triggers.Local) {
	a.syncMu.Lock()
	defer a.syncMu.Unlock()
	fs, err := a.st.Desired()
	if err != nil {
		a.log.Error("reading the desired set for local triggers", "err", err)
		return
	}
	syncTriggers(ctx, l, fs, a.log)
}

// run starts every part in a goroutine of its own and waits for all of
// them: until ctx is done, or the controllers refuse the agent for good
// (the links' error is returned), then while they drain.
func (a *agent) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		a.stopping.Store(true)
		cancel()
		wg.Wait()
	}()
	errc := make(chan error, 1)
	wg.Go(func() {
		if err := a.links.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			errc <- fmt.Errorf("controllers %s: %w", strings.Join(a.cfg.Controllers, ","), err)
		}
	})
	// Appended entries reach the drain's reads a little after they are
	// durable (agent/state's journal): wake it then too.
	a.st.OnOutboxCommit(a.kick)
	a.log.Info("agent running", "controllers", a.cfg.Controllers, "engine", a.rt.Engine(), "data_dir", a.cfg.DataDir)
	if a.metricLn != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{}))
		health.Register(mux, a.ready)
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		a.log.Info("metrics", "addr", a.metricLn.Addr().String())
		wg.Go(func() { serveHTTP(ctx, srv, a.metricLn, a.log) })
	}
	if a.lapi != nil {
		a.log.Info("local invoke API", "addr", a.apiLn.Addr().String(), "token_file", filepath.Join(a.cfg.DataDir, "local.token"))
		wg.Go(func() {
			if err := a.lapi.Run(ctx, a.apiLn); err != nil {
				a.log.Error("local API stopped", "err", err)
			}
		})
	}
	if a.cfg.MQTTBroker != "" {
		wg.Go(func() { a.runTriggers(ctx) })
	}
	// Edge-local timers run from the persisted desired set, with or
	// without a controller.
	a.resyncTimers()
	wg.Go(func() {
		if err := a.timers.Run(ctx); err != nil {
			a.log.Error("local timers stopped", "err", err)
		}
	})
	a.serving.Store(true)
	select {
	case <-ctx.Done():
		a.stopping.Store(true)
		a.log.Info("agent stopping: draining in-flight invocations", "in_flight", a.ex.InFlight())
		return nil
	case err := <-errc: // refused for good: stop
		a.log.Info("agent stopping", "err", err)
		return err
	}
}

// runTriggers runs the edge-local triggers until ctx is done. The MQTT
// client id derives from the agent id: it waits for the first join.
func (a *agent) runTriggers(ctx context.Context) {
	id, err := a.st.Identity()
	for err == nil && id.AgentID == "" {
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		id, err = a.st.Identity()
	}
	if err != nil {
		a.log.Error("reading identity", "err", err)
		return
	}
	l, err := triggers.New(triggers.Config{
		Broker: a.cfg.MQTTBroker, ClientID: triggers.ClientID(id.AgentID), Logger: a.log, Registry: a.reg,
		Invoke: triggerInvoker(a.runner),
	})
	if err != nil {
		a.log.Error("local triggers", "err", err)
		return
	}
	a.local.Store(l)
	a.resync(ctx, l)
	if err := l.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		a.log.Error("local triggers stopped", "err", err)
	}
}

// serveHTTP serves srv on ln until ctx is done, then shuts it down (at
// most 5s for requests in flight).
func serveHTTP(ctx context.Context, srv *http.Server, ln net.Listener, log *slog.Logger) {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		log.Error("metrics endpoint stopped", "err", err)
		return
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	<-errc
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

// timerInvoker runs a function for a tick of its local timer and records
// it (activation.Runner.Run, source local-timer, fsync'd).
func timerInvoker(runner *activation.Runner) timers.Invoke {
	return func(ctx context.Context, t timers.Tick) (bool, error) {
		res, err := runner.Run(ctx, activation.Request{Module: t.Module, Function: t.Function, Args: t.Args, Source: activation.SourceLocalTimer})
		if err != nil {
			return false, err
		}
		return true, res.Err
	}
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
