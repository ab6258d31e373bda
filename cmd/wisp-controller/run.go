package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wispfn/wisp/controller/activations"
	"github.com/wispfn/wisp/controller/api"
	"github.com/wispfn/wisp/controller/auth"
	"github.com/wispfn/wisp/controller/events"
	"github.com/wispfn/wisp/controller/fleet"
	"github.com/wispfn/wisp/controller/sinks"
	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/internal/version"
)

// run is main without the process: exit code instead of os.Exit.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runWith(ctx, args, deps{getenv: os.Getenv, stdout: stdout, stderr: stderr})
}

// deps is what run takes from the process, so tests can supply their own.
type deps struct {
	getenv func(string) string
	stdout io.Writer
	stderr io.Writer
	// ready, when set, is called with the REST listener's address once the
	// controller is about to serve.
	ready func(addr net.Addr)
}

// runWith dispatches to a command. There is one, serve, for now; a later
// "token create" becomes another case here with its own flag set.
func runWith(ctx context.Context, args []string, d deps) int {
	if len(args) == 1 && (args[0] == "--version" || args[0] == "-version" || args[0] == "version") {
		fmt.Fprintln(d.stdout, "wisp-controller", version.Version)
		return 0
	}
	if len(args) >= 1 && args[0] == "token" {
		return runToken(ctx, args[1:], d)
	}
	cfg, err := loadConfig(args, d.getenv, d.stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(d.stderr, "wisp-controller: %v\n", err)
		return 2
	}
	log := newLogger(cfg, d.stderr)
	if err := serve(ctx, cfg, log, d.ready); err != nil {
		log.Error("controller stopped", "err", err)
		return 1
	}
	return 0
}

func newLogger(cfg config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel)) // checked by Validate
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// openStore opens Postgres when a DSN is configured, else the embedded store.
func openStore(ctx context.Context, cfg config, log *slog.Logger) (store.Store, error) {
	if cfg.DatabaseURL != "" {
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		st, err := store.OpenPostgres(octx, cfg.DatabaseURL, log)
		if err != nil {
			return nil, err
		}
		log.Info("store: postgres")
		return st, nil
	}
	path := filepath.Join(cfg.DataDir, "controller.db")
	st, err := store.OpenEmbedded(path, log)
	if err != nil {
		return nil, err
	}
	log.Info("store: embedded", "path", path)
	return st, nil
}

// serve runs the controller until ctx is done.
func serve(ctx context.Context, cfg config, log *slog.Logger, ready func(net.Addr)) (err error) {
	log.Info("starting wisp-controller", "version", version.Version)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	st, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := st.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close store: %w", cerr)
		}
	}()
	if _, _, err := auth.EnsureAdmin(ctx, st, cfg.DataDir, log); err != nil {
		return err
	}
	identity, err := fleet.LoadOrCreateIdentity(cfg.DataDir)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	hostname, _ := os.Hostname()
	sinkWorker, err := sinks.NewWorker(sinks.Config{Queue: sinkQueue{st}, Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	recorder := activations.New(st, sinkWorker.Kick, log)
	fl, err := fleet.New(fleet.Config{
		Identity:     identity,
		Store:        st,
		ControllerID: hostname,
		Metrics:      fleet.NewMetrics(reg),
		Logger:       log,
		Outbox:       recorder,
	})
	if err != nil {
		return err
	}
	dispatcher := fleet.NewDispatcher(fl, st, cfg.InvokeTimeout)
	dispatcher.RecordWith(recorder)
	evs, err := events.New(events.Config{
		Invoke:   eventInvoker(st, dispatcher),
		Instance: hostname,
		Logger:   log,
		Registry: reg,
	})
	if err != nil {
		return err
	}
	dist := &distributor{fleet: fl, events: evs, store: st, log: log}
	srv, err := api.New(api.Config{
		Store:           st,
		Invoker:         dispatcher,
		Distributor:     dist,
		Agents:          fl,
		JoinTokens:      fl,
		Log:             log,
		MaxUploadBytes:  cfg.MaxUploadBytes,
		Registerer:      reg,
		Gatherer:        reg,
		ShutdownTimeout: cfg.ShutdownTimeout,
	})
	if err != nil {
		return err
	}
	pc, err := net.ListenPacket("udp", cfg.QUICListen)
	if err != nil {
		return fmt.Errorf("QUIC listen: %w", err)
	}
	defer pc.Close()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// The fleet outlives the REST server: in-flight invocations drain
	// through it after the API stops accepting requests.
	fleetCtx, stopFleet := context.WithCancel(context.WithoutCancel(ctx))
	fleetDone := make(chan error, 1)
	go func() { fleetDone <- fl.Serve(fleetCtx, pc) }()
	recorderDone := make(chan error, 1)
	go func() { recorderDone <- recorder.Run(fleetCtx) }()
	eventsDone := make(chan error, 1)
	go func() { eventsDone <- evs.Run(fleetCtx) }()
	sinksDone := make(chan error, 1)
	go func() { sinksDone <- sinkWorker.Run(fleetCtx) }()
	// Restore the cloud MQTT events of every stored function.
	go dist.syncEvents(fleetCtx)
	log.Info("QUIC listening", "addr", pc.LocalAddr().String(), "fingerprint", fmt.Sprintf("%x", identity.Fingerprint[:8]))
	log.Info("REST API listening", "addr", ln.Addr().String(), "max_upload_bytes", cfg.MaxUploadBytes)
	if ready != nil {
		ready(ln.Addr())
	}
	runErr := srv.Run(ctx, ln)
	stopFleet()
	if err := <-fleetDone; err != nil && runErr == nil {
		runErr = err
	}
	<-eventsDone
	<-recorderDone // flushes the activations still queued
	<-sinksDone
	if runErr != nil {
		return runErr
	}
	log.Info("stopped; closing the store")
	return nil
}
