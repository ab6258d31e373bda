package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wispfn/wisp/agent/executor"
	"github.com/wispfn/wisp/agent/link"
	"github.com/wispfn/wisp/agent/runtime"
	"github.com/wispfn/wisp/agent/state"
)

// runAgent is `wisp-agent run`: connect to the controllers and serve them
// until ctx is done, then drain.
func runAgent(ctx context.Context, args []string, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg, err := loadConfig(args, getenv, fs)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stderr, "wisp-agent: %v\n", err)
		}
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	if err := serveAgent(ctx, cfg, log); err != nil {
		log.Error("agent stopped", "err", err)
		return 1
	}
	return 0
}

func serveAgent(ctx context.Context, cfg config, log *slog.Logger) error {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return err
	}
	rt, err := runtime.New(ctx, runtime.Config{
		CacheDir:      filepath.Join(cfg.DataDir, "cache"),
		Engine:        cfg.Engine,
		MaxConcurrent: cfg.MaxConcurrent,
		Limits:        runtime.Limits{Timeout: cfg.Timeout, MemoryBytes: cfg.MemoryMiB << 20},
		Logger:        log,
	})
	if err != nil {
		return err
	}
	st, err := state.Open(filepath.Join(cfg.DataDir, "agent.db"))
	if err != nil {
		rt.Close(context.Background())
		return err
	}
	defer st.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
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

	var wg sync.WaitGroup
	errc := make(chan error, len(cfg.Controllers))
	for _, addr := range cfg.Controllers {
		l, err := link.New(link.Config{Addr: addr, JoinToken: cfg.JoinToken, State: st, Executor: ex,
			Name: cfg.Name, Labels: cfg.Labels, Logger: log})
		if err != nil {
			rt.Close(context.Background())
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				errc <- fmt.Errorf("controller %s: %w", addr, err)
			}
		}()
	}
	log.Info("agent running", "controllers", cfg.Controllers, "engine", rt.Engine(), "data_dir", cfg.DataDir)

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
