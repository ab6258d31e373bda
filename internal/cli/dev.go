package cli

import (
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/wispfn/wisp/agent/runtime"
	"github.com/wispfn/wisp/internal/devenv"
)

// devCommand is `wisp dev`: the whole platform in this process, with its
// data in one folder, and the CLI configured to talk to it.
func (a *app) devCommand() *cobra.Command {
	var cfg devenv.Config
	var verbose bool
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a controller, an agent and an MQTT broker in this process (Ctrl-C stops them)",
		Long: `Run a whole Wisp platform on this machine: a controller on the embedded store,
one agent and an embedded MQTT broker, with every file under --dir. The CLI
config is pointed at it, so the next wisp command just works.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level := slog.LevelWarn
			if verbose {
				level = slog.LevelInfo
			}
			log := slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level}))
			cfg.CompileWorker = runtime.SelfWorker()
			return devenv.Run(a.ctx, cfg, log, func(in devenv.Info) {
				path, err := configPath(a.g.config, a.getenv, a.stderr)
				if err == nil {
					fc, _ := readConfig(path)
					fc.Hosts, fc.Token = hostList{in.URL}, in.AdminToken
					err = writeConfig(path, fc)
				}
				dir, _ := filepath.Abs(in.Dir)
				fmt.Fprintf(a.stdout, "Wisp is running (Ctrl-C to stop).\n\n")
				fmt.Fprintf(a.stdout, "  REST API     %s\n", in.URL)
				fmt.Fprintf(a.stdout, "  admin token  %s\n", in.AdminToken)
				fmt.Fprintf(a.stdout, "  local API    %s (token in %s)\n", in.LocalAPI, filepath.Join(dir, "agent", "local.token"))
				fmt.Fprintf(a.stdout, "  MQTT broker  %s\n", in.MQTT)
				fmt.Fprintf(a.stdout, "  data         %s\n\n", dir)
				if err != nil {
					fmt.Fprintf(a.stderr, "wisp: could not write the CLI config: %v\n", err)
				} else {
					fmt.Fprintf(a.stdout, "The CLI config (%s) points at it: try\n  wisp fn upload hello testdata/wasm/hello_c.wasm --wait && wisp fn invoke hello -a name=Ada\n", path)
				}
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Dir, "dir", "wisp-dev", "folder for all the platform's data")
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:4000", "REST API address")
	f.StringVar(&cfg.QUICListen, "quic-listen", "127.0.0.1:4433", "controller's QUIC address for agents")
	f.StringVar(&cfg.MQTTListen, "mqtt-listen", "127.0.0.1:1883", "embedded MQTT broker address (another free port if taken)")
	f.StringVar(&cfg.LocalAPI, "local-api", "127.0.0.1:4080", "agent's local invoke API address")
	f.BoolVarP(&verbose, "verbose", "v", false, "log the platform's info messages")
	return cmd
}
