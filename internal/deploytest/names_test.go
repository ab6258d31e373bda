package deploytest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
)

// binNames is what one binary accepts, read from its help output.
type binNames struct {
	commands map[string]bool // subcommands ("run", "token", ...)
	flags    map[string]bool // flag names without dashes, main command and subcommands together
	env      map[string]bool // WISP_* variables
	// listens maps the WISP_* variable of each listen address to its
	// protocol and its default from cmd/<binary>/config.go.
	listens map[string]listen
}

type listen struct{ proto, def string }

// names holds binNames for wisp-controller and wisp-agent.
type names map[string]*binNames

var (
	namesOnce sync.Once
	namesVal  names
	namesErr  error
)

// knownNames runs the native binaries' help commands once and reads the
// listen defaults out of their config.go.
func knownNames() (names, error) {
	namesOnce.Do(func() { namesVal, namesErr = loadNames() })
	return namesVal, namesErr
}

var (
	flagLine = regexp.MustCompile(`(?m)^\s+-{1,2}([a-z][a-z0-9-]*)`)
	flagWord = regexp.MustCompile(`(?:^|[\s\[])--?([a-z][a-z0-9-]+)`)
	envWord  = regexp.MustCompile(`\bWISP_[A-Z0-9_]+\b`)
	cmdLine  = regexp.MustCompile(`(?m)^  ([a-z]+)\s`)
)

func helpOutput(bin string, args ...string) string {
	out, _ := exec.Command(nativeBin(bin), args...).CombinedOutput() // -h exits non-zero
	return string(out)
}

func loadNames() (names, error) {
	ctl := &binNames{commands: map[string]bool{"token": true}, flags: map[string]bool{}, env: map[string]bool{}}
	help := helpOutput("wisp-controller", "--help")
	for _, m := range flagLine.FindAllStringSubmatch(help, -1) {
		ctl.flags[m[1]] = true
	}
	for _, m := range flagWord.FindAllStringSubmatch(helpOutput("wisp-controller", "token"), -1) {
		ctl.flags[m[1]] = true // token create's own --ttl and --url
	}
	for _, e := range envWord.FindAllString(help, -1) {
		ctl.env[e] = true
	}
	if !ctl.flags["listen"] || !ctl.env["WISP_LISTEN"] {
		return nil, fmt.Errorf("wisp-controller --help lists no -listen / WISP_LISTEN:\n%s", help)
	}

	agent := &binNames{commands: map[string]bool{}, flags: map[string]bool{}, env: map[string]bool{}}
	usage := helpOutput("wisp-agent", "help")
	for _, m := range cmdLine.FindAllStringSubmatch(usage, -1) {
		agent.commands[m[1]] = true
	}
	for _, sub := range []string{"run", "invoke"} {
		h := helpOutput("wisp-agent", sub, "-h")
		for _, m := range flagLine.FindAllStringSubmatch(h, -1) {
			agent.flags[m[1]] = true
		}
		for _, e := range envWord.FindAllString(h, -1) {
			agent.env[e] = true
		}
	}
	if !agent.commands["run"] || !agent.flags["controllers"] || !agent.env["WISP_CONTROLLERS"] {
		return nil, fmt.Errorf("wisp-agent help / run -h lack run, -controllers or WISP_CONTROLLERS:\n%s", usage)
	}

	var err error
	if ctl.listens, err = listenDefaults("cmd/wisp-controller/config.go", map[string]string{
		"WISP_LISTEN": "tcp Listen", "WISP_QUIC_LISTEN": "udp QUICListen"}); err != nil {
		return nil, err
	}
	if agent.listens, err = listenDefaults("cmd/wisp-agent/config.go", map[string]string{
		"WISP_METRICS_ADDR": "tcp MetricsAddr", "WISP_LOCAL_API": "tcp LocalAPI"}); err != nil {
		return nil, err
	}
	return names{"wisp-controller": ctl, "wisp-agent": agent}, nil
}

// listenDefaults reads `Field: "addr",` defaults out of a config.go.
func listenDefaults(file string, fields map[string]string) (map[string]listen, error) {
	src, err := os.ReadFile(filepath.Join(repo, file))
	if err != nil {
		return nil, err
	}
	out := map[string]listen{}
	for env, pf := range fields {
		proto, field, _ := strings.Cut(pf, " ")
		m := regexp.MustCompile(`\b` + field + `:\s+"([^"]*)"`).FindSubmatch(src)
		if m == nil {
			return nil, fmt.Errorf("%s: no default for %s", file, field)
		}
		out[env] = listen{proto: proto, def: string(m[1])}
	}
	return out, nil
}

// envName is the WISP_* variable of a flag: both binaries derive flag names
// from variable names the same way (listen <-> WISP_LISTEN,
// quic-listen <-> WISP_QUIC_LISTEN).
func envName(flag string) string {
	return "WISP_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// port is a port and its protocol, "4433/udp".
type port string

func mkPort(p, proto string) port { return port(p + "/" + proto) }

// listening returns the ports a binary listens on with the given effective
// settings (WISP_* name -> value; flags already folded in). An empty value
// means the listener is off.
func (b *binNames) listening(settings map[string]string) map[port]string {
	out := map[port]string{}
	for env, l := range b.listens {
		addr, ok := settings[env]
		if !ok {
			addr = l.def
		}
		if addr == "" {
			continue
		}
		_, p, err := net.SplitHostPort(addr)
		if err != nil {
			continue
		}
		out[mkPort(p, l.proto)] = env
	}
	return out
}
