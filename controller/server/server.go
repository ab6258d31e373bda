// Package server assembles a Wisp controller from its parts (store, REST
// API, fleet, scheduler, activation recorder, sinks, events) and runs it.
// cmd/wisp-controller parses configuration and calls Run; `wisp dev` runs
// one in the same process as an agent.
//
// It owns no logic of its own beyond wiring: each part is tested in its
// package. The few joins it makes (a function's events and sinks checked
// for FunLess's 207, cloud bindings of the stored functions, cloud
// messages turned into invocations) are tested here, in wiring_test.go;
// that no goroutine outlives Run is checked by internal/devenv's test.
// Several controllers on one Postgres (controller/cluster) are tested in
// cluster_test.go: two servers in one process, a real agent, real QUIC.
package server

import (
	"context"
	"crypto/tls"
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
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wispfn/wisp/agent/runtime"
	"github.com/wispfn/wisp/controller/activations"
	"github.com/wispfn/wisp/controller/api"
	"github.com/wispfn/wisp/controller/auth"
	"github.com/wispfn/wisp/controller/cluster"
	"github.com/wispfn/wisp/controller/events"
	"github.com/wispfn/wisp/controller/fleet"
	"github.com/wispfn/wisp/controller/secrets"
	"github.com/wispfn/wisp/controller/sinks"
	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/controller/timers"
	"github.com/wispfn/wisp/controller/tracing"
	"github.com/wispfn/wisp/internal/health"
	"github.com/wispfn/wisp/internal/keypin"
	"github.com/wispfn/wisp/internal/sealbox"
	"github.com/wispfn/wisp/internal/version"
)

// Config is what Run needs; cmd/wisp-controller documents each field's flag.
type Config struct {
	Listen          string // REST API, e.g. ":4000"
	QUICListen      string // agents, e.g. ":4433"
	DataDir         string
	DatabaseURL     string // "" = embedded store in DataDir
	MaxUploadBytes  int64
	ShutdownTimeout time.Duration
	InvokeTimeout   time.Duration
	// ModuleLimits bound uploads (zero fields: runtime defaults; Bytes
	// defaults to MaxUploadBytes). Compile bounds their validation.
	ModuleLimits runtime.ModuleLimits
	Compile      runtime.CompileBudget
	// ActivationBounds caps each activation record (zero fields: the
	// defaults); ActivationRetention bounds how many are kept (zero
	// fields: no bound); PruneInterval is the time between two retention
	// passes (0: activations.DefaultPruneInterval).
	ActivationBounds    activations.Bounds
	ActivationRetention activations.Retention
	PruneInterval       time.Duration
	// MaxInputBytes bounds an invocation's args (413 before dispatch); 0:
	// the agents' default input limit.
	MaxInputBytes int
	// CrashHold is fleet.Config.CrashHold; 0: its default.
	CrashHold time.Duration
	// FunctionVersions is api.Config.FunctionVersions: how many versions
	// of each function are kept; 0: api.DefaultFunctionVersions.
	FunctionVersions int

	// TLSCert and TLSKey are PEM files the REST API serves TLS with. When
	// they are empty, TLSSelfSigned serves it with the controller's own
	// certificate from the data dir (the one agents pin over QUIC); with
	// neither, the REST API is plain HTTP (as `wisp dev` serves it on
	// loopback). See RESTCertificate.
	TLSCert, TLSKey string
	TLSSelfSigned   bool
	// MetricsListen, when set, serves /metrics there (plain HTTP, no token,
	// like the agent's --metrics-addr) and not on the REST port; empty
	// keeps /metrics on the REST port, for the admin token only.
	MetricsListen string
	// OTLPEndpoint, when set, exports invocation spans to this OTLP/HTTP
	// receiver (controller/tracing); empty: tracing off.
	OTLPEndpoint string
	// DefaultAllowHosts is fleet.Config.DefaultAllowHosts: the egress
	// allowlist of functions whose config sets none (empty: deny).
	DefaultAllowHosts []string
	// InstanceID names this controller process in its cluster
	// (cluster.NewInstanceID); "" makes one from the host name.
	InstanceID string
	// SecretsKeyFile, SecretsOldKeyFiles and Getenv say where the keys
	// sealing module secrets are (controller/secrets.KeySource): the
	// key file ("" = <DataDir>/secrets.key, made on first start) unless
	// Getenv gives WISP_SECRETS_KEY.
	SecretsKeyFile     string
	SecretsOldKeyFiles []string
	Getenv             func(string) string
}

// LoadSecretsRing loads the key ring of cfg sealing module secrets and
// the cluster's identity (controller/secrets.LoadRing).
func LoadSecretsRing(cfg Config, log *slog.Logger) (*sealbox.Ring, error) {
	ring, created, err := secrets.LoadRing(secrets.KeySource{File: cfg.SecretsKeyFile, DataDir: cfg.DataDir, OldFiles: cfg.SecretsOldKeyFiles, Getenv: cfg.Getenv})
	if err != nil {
		return nil, err
	}
	if created {
		log.Info("created the key sealing module secrets; back it up with the store", "key_id", ring.CurrentID())
	}
	return ring, nil
}

// OpenSecrets loads the secrets key ring of cfg and returns the service
// over st (which must be a store.SecretStore, as both stores are).
func OpenSecrets(cfg Config, st store.Store, log *slog.Logger) (*secrets.Service, error) {
	ring, err := LoadSecretsRing(cfg, log)
	if err != nil {
		return nil, err
	}
	return newSecrets(st, ring)
}

func newSecrets(st store.Store, ring *sealbox.Ring) (*secrets.Service, error) {
	ss, ok := st.(store.SecretStore)
	if !ok {
		return nil, errors.New("the store keeps no secrets")
	}
	return secrets.New(ss, ring, 0), nil
}

// Identity is the controller's TLS identity (QUIC for agents, and the
// REST API's self-signed certificate): on Postgres the cluster's, shared
// by every controller on the database and sealed there with ring
// (fleet.SharedIdentity, which states the rules and refuses a data dir
// holding another one); on the embedded store the data dir's own
// controller.crt/.key, made there if absent.
func Identity(ctx context.Context, cfg Config, st store.Store, ring *sealbox.Ring, log *slog.Logger) (fleet.Identity, error) {
	if is, ok := st.(fleet.IdentityStore); ok {
		return fleet.SharedIdentity(ctx, is, cfg.DataDir, ring, log)
	}
	return fleet.LoadOrCreateIdentity(cfg.DataDir)
}

// RESTCertificate is the certificate the REST API serves (ok false: plain
// HTTP): the files of cfg.TLSCert and cfg.TLSKey, else, with
// cfg.TLSSelfSigned, the controller's identity id (see Identity: the
// cluster's on Postgres, so that every controller behind a load balancer
// presents the key the CLI pinned). `wisp-controller tls fingerprint`
// prints its key's fingerprint.
func RESTCertificate(cfg Config, id fleet.Identity) (cert tls.Certificate, ok bool, err error) {
	switch {
	case cfg.TLSCert != "" || cfg.TLSKey != "":
		if cfg.TLSCert == "" || cfg.TLSKey == "" {
			return cert, false, errors.New("TLS needs both a certificate and a key file")
		}
		cert, err = tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return cert, false, fmt.Errorf("REST TLS certificate: %w", err)
		}
		return cert, true, nil
	case cfg.TLSSelfSigned:
		return id.Cert, true, nil
	}
	return cert, false, nil
}

// OpenStore opens Postgres when a DSN is configured, else the embedded
// store in the data dir.
func OpenStore(ctx context.Context, cfg Config, log *slog.Logger) (store.Store, error) {
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

// Run runs a controller until ctx is done: the REST API, the QUIC listener
// for agents, the activation recorder and pruner, the sink worker, the
// cloud MQTT events, the cloud timers, and this controller's part in its
// cluster (its membership, and following the store's change feed). ready,
// when set, is called with
// the REST and QUIC addresses once both listen.
//
// Shutdown drains, for rolling restarts: /readyz answers 503 at once; the
// API closes its listener (new connections are refused), closes idle
// keep-alive connections, answers its requests in flight with
// "Connection: close" within cfg.ShutdownTimeout; the cloud timers and
// then the cloud MQTT events stop taking work and let their runs finish;
// the fleet waits for the invocations it runs on agents (cfg.ShutdownTimeout)
// and closes the agents' sessions with CloseShutdown; then the recorder
// (which flushes), the sink worker and the pruner stop, and the store
// closes last.
func Run(ctx context.Context, cfg Config, log *slog.Logger, ready func(rest, quic net.Addr)) (err error) {
	log.Info("starting wisp-controller", "version", version.Version)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	st, err := OpenStore(ctx, cfg, log)
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
	ring, err := LoadSecretsRing(cfg, log)
	if err != nil {
		return err
	}
	identity, err := Identity(ctx, cfg, st, ring, log)
	if err != nil {
		return err
	}
	secretSvc, err := newSecrets(st, ring)
	if err != nil {
		return err
	}
	// hot answers the reads of every invocation (token, function, module
	// owner) from memory, kept true by the store's change feed (Watch,
	// started with the fleet). Type assertions stay on st.
	hot := store.NewCached(st, store.CacheLimits{})
	reg := prometheus.NewRegistry()
	hostname := cluster.NewInstanceID(cfg.InstanceID)
	// Singleton work (sinks, events) runs under leases on Postgres; on the
	// embedded store this controller is the only one and holds them all.
	var leaseStore cluster.LeaseStore
	if ls, ok := st.(cluster.LeaseStore); ok {
		leaseStore = ls
	}
	leases, err := cluster.NewLeases(cluster.LeaseConfig{Store: leaseStore, Owner: hostname, Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	sinkWorker, err := sinks.NewWorker(sinks.Config{Queue: &sinks.StoreQueue{Store: st, Log: log}, Logger: log, Registerer: reg,
		// A sink back from an outage should see its backlog within seconds.
		MaxBackoff: 10 * time.Second,
		// Writes cut short stay pending (a repeat is a conflict, counted
		// as delivered): stop within the lease margin.
		DrainTimeout: time.Second})
	if err != nil {
		return err
	}
	traceMetrics := tracing.NewMetrics(reg)
	var tracer *tracing.Exporter // nil: tracing off
	if cfg.OTLPEndpoint != "" {
		if tracer, err = tracing.New(tracing.Config{Endpoint: cfg.OTLPEndpoint, Instance: hostname, Metrics: traceMetrics, Logger: log}); err != nil {
			return err
		}
		log.Info("exporting trace spans over OTLP/HTTP", "endpoint", cfg.OTLPEndpoint)
	}
	activationMetrics := activations.NewMetrics(reg)
	// The bell wakes the API's follow streams when activations are recorded.
	bell := &activations.Bell{}
	recorder := activations.New(activations.Config{Store: st, Recorded: func() { sinkWorker.Kick(); bell.Ring() },
		Bounds: cfg.ActivationBounds, Metrics: activationMetrics, Logger: log, Tracer: tracer})
	pruner := activations.NewPruner(activations.PrunerConfig{Store: st, Retention: cfg.ActivationRetention,
		Interval: cfg.PruneInterval, Metrics: activationMetrics, Logger: log})
	member, err := newMember(st, hostname, log)
	if err != nil {
		return err
	}
	flCfg := fleet.Config{
		Identity:     identity,
		Store:        st,
		Functions:    hot,
		ControllerID: hostname,
		Metrics:      fleet.NewMetrics(reg),
		Logger:       log,
		Outbox:       recorder,
		CrashHold:    cfg.CrashHold,
		DrainTimeout: cfg.ShutdownTimeout,

		DefaultAllowHosts: cfg.DefaultAllowHosts,
		Secrets:           secretSvc,
	}
	if member != nil {
		flCfg.Cluster = member
	}
	if _, ok := st.(store.ChangeFeed); ok {
		flCfg.AgentRefresh = -1 // the follower below refreshes agents
	}
	fl, err := fleet.New(flCfg)
	if err != nil {
		return err
	}
	dispatcher := fleet.NewDispatcher(fl, hot, cfg.InvokeTimeout)
	dispatcher.RecordWith(recorder)
	dispatcher.TraceWith(tracer)
	evs, err := events.New(events.Config{
		Invoke:   eventInvoker(hot, dispatcher),
		Instance: hostname,
		// One MQTT session per broker for the whole cluster, named after
		// the identity every controller of it shares.
		Cluster:  identity.String(),
		Logger:   log,
		Registry: reg,
	})
	if err != nil {
		return err
	}
	var claimer timers.Claimer // nil: every tick is this controller's (embedded store)
	if ts, ok := st.(cluster.TickStore); ok {
		claimer = &cluster.TickClaims{Store: ts, Owner: hostname, Log: log}
	}
	cloudTimers, err := timers.New(timers.Config{Functions: hot, Dispatcher: dispatcher, Claimer: claimer, Registerer: reg, Logger: log})
	if err != nil {
		return err
	}
	dist := &distributor{fleet: fl, events: evs, timers: cloudTimers, store: hot, log: log}
	follower, err := newFollower(st, dist, fl, log)
	if err != nil {
		return err
	}
	probe := newReadiness(ctx, st, log)
	defer probe.stopWatch()
	limits := cfg.ModuleLimits
	if limits.Bytes == 0 {
		limits.Bytes = int(min(cfg.MaxUploadBytes, 1<<30))
	}
	srv, err := api.New(api.Config{
		Store:               hot,
		Invoker:             dispatcher,
		Distributor:         dist,
		Agents:              fl,
		JoinTokens:          fl,
		AgentControl:        fl,
		Quarantine:          fl,
		Log:                 log,
		MaxUploadBytes:      cfg.MaxUploadBytes,
		Registerer:          reg,
		Gatherer:            reg,
		ShutdownTimeout:     cfg.ShutdownTimeout,
		MaxInvokeInputBytes: cfg.MaxInputBytes,
		Inspector:           runtime.NewInspector(runtime.InspectConfig{Limits: limits, Compile: cfg.Compile}),
		MetricsElsewhere:    cfg.MetricsListen != "",
		Tracer:              tracer,
		Recorded:            bell,
		Ready:               probe.reason,
		FunctionVersions:    cfg.FunctionVersions,
		Secrets:             secretSvc,
	})
	if err != nil {
		return err
	}
	pc, err := net.ListenPacket("udp", cfg.QUICListen)
	if err != nil {
		return fmt.Errorf("QUIC listen: %w", err)
	}
	defer pc.Close()
	cert, useTLS, err := RESTCertificate(cfg, identity)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	restLog := []any{"addr", ln.Addr().String(), "max_upload_bytes", cfg.MaxUploadBytes, "tls", useTLS}
	if useTLS {
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		restLog = append(restLog, "tls_fingerprint", keypin.Of(cert.Leaf).String())
	}
	var metricsSrv *http.Server
	if cfg.MetricsListen != "" {
		mln, err := net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("metrics listen: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		health.Register(mux, probe.reason)
		metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
			WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10}
		go metricsSrv.Serve(mln)
		defer metricsSrv.Close()
		log.Info("metrics", "addr", mln.Addr().String())
	}
	// Each part stops in turn once the REST server has drained (see Run's
	// doc): the cloud timers and events, whose runs drain through the
	// fleet; the fleet, whose sessions record outbox batches until they
	// close; then the recorder and the workers.
	bgCtx := context.WithoutCancel(ctx)
	fleetCtx, stopFleet := context.WithCancel(bgCtx)
	defer stopFleet()
	fleetDone := make(chan error, 1)
	go func() { fleetDone <- fl.Serve(fleetCtx, pc) }()
	workersCtx, stopWorkers := context.WithCancel(bgCtx)
	defer stopWorkers()
	recorderDone := make(chan error, 1)
	go func() { recorderDone <- recorder.Run(workersCtx) }()
	sinksDone := make(chan error, 1)
	go func() { sinksDone <- leases.Run(workersCtx, cluster.LeaseSinks, sinkWorker.Run) }()
	// The cache follows the store's changes for as long as the API, the
	// events and the fleet read through it: it stops with the workers.
	cacheDone := make(chan error, 1)
	go func() { cacheDone <- hot.Watch(workersCtx) }()
	prunerDone := make(chan error, 1)
	go func() { prunerDone <- leases.Run(workersCtx, cluster.LeasePruner, pruner.Run) }()
	// This controller in its cluster: its row and agent links, and the
	// changes other controllers commit (controller/cluster).
	clusterDone := make(chan struct{})
	go func() {
		defer close(clusterDone)
		var wg sync.WaitGroup
		if member != nil {
			member.SetAddrs(ln.Addr().String(), pc.LocalAddr().String())
			wg.Go(func() { member.Run(fleetCtx) })
		}
		if follower != nil {
			wg.Go(func() { follower.Run(fleetCtx) })
		}
		wg.Wait()
	}()
	eventsCtx, stopEvents := context.WithCancel(bgCtx)
	defer stopEvents()
	eventsDone := make(chan error, 1)
	go func() { eventsDone <- evs.Run(eventsCtx) }()
	eventsHeld := make(chan error, 1)
	go func() { eventsHeld <- leases.Run(eventsCtx, cluster.LeaseEvents, evs.Hold) }()
	// Cloud timers let their runs in flight finish (cron.DefaultDrainTimeout).
	timersCtx, stopTimers := context.WithCancel(bgCtx)
	defer stopTimers()
	timersDone := make(chan error, 1)
	go func() { timersDone <- cloudTimers.Run(timersCtx) }()
	// The span exporter stops last: after the fleet has drained, it sends
	// the spans still queued (within its timeout).
	traceCtx, stopTracing := context.WithCancel(context.WithoutCancel(ctx))
	defer stopTracing()
	traceDone := make(chan error, 1)
	if tracer != nil {
		go func() { traceDone <- tracer.Run(traceCtx) }()
	} else {
		traceDone <- nil
	}
	// Restore the cloud MQTT events and timers of every stored function.
	restored := make(chan struct{})
	go func() {
		defer close(restored)
		dist.syncTimers(fleetCtx)
		dist.syncEvents(fleetCtx)
	}()
	log.Info("QUIC listening", "addr", pc.LocalAddr().String(), "fingerprint", fmt.Sprintf("%x", identity.Fingerprint[:8]))
	log.Info("REST API listening", restLog...)
	probe.started.Store(true) // the store is open and the QUIC listener is up
	if ready != nil {
		ready(ln.Addr(), pc.LocalAddr())
	}
	runErr := srv.Run(ctx, ln)
	stopTimers()
	<-timersDone
	stopEvents()
	<-eventsHeld
	<-eventsDone // lets the invocations of messages in flight finish
	stopFleet()
	if err := <-fleetDone; err != nil && runErr == nil {
		runErr = err
	}
	stopWorkers()
	<-recorderDone // flushes the activations still queued
	<-sinksDone
	<-prunerDone // stops between two batches
	<-cacheDone
	<-clusterDone
	<-restored
	stopTracing()
	<-traceDone
	if runErr != nil {
		return runErr
	}
	log.Info("stopped; closing the store")
	return nil
}

// readiness is the controller's /readyz verdict, on the REST port and the
// metrics listener alike: ready once Run has the store open and the QUIC
// listener up, while the store answers (a ping at most once a second, two
// seconds at most: a storm of probes never hammers Postgres), and until
// shutdown begins.
type readiness struct {
	started  atomic.Bool
	stopping atomic.Bool
	store    *health.Cached // nil: the store cannot be pinged
	// stopWatch unregisters the watch on Run's context.
	stopWatch func() bool
}

// Readiness bounds of the store check.
const (
	storePingEvery   = time.Second
	storePingTimeout = 2 * time.Second
)

func newReadiness(ctx context.Context, st store.Store, log *slog.Logger) *readiness {
	r := &readiness{}
	if p, ok := st.(store.Pinger); ok {
		r.store = health.NewCached(health.CachedConfig{Check: p.Ping, Reason: health.ReasonStoreUnreachable,
			TTL: storePingEvery, Timeout: storePingTimeout, Logger: log})
	}
	r.stopWatch = context.AfterFunc(ctx, func() { r.stopping.Store(true) })
	return r
}

func (r *readiness) reason(ctx context.Context) string {
	switch {
	case r.stopping.Load():
		return health.ReasonStopping
	case !r.started.Load():
		return health.ReasonStarting
	case r.store != nil:
		return r.store.Reason(ctx)
	}
	return ""
}
