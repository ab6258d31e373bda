package deploytest

import (
	"fmt"
	"net"
	"os/exec"
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
	// protocol and the default its --help shows.
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
// commands, flags, variables and listen defaults they show.
func knownNames() (names, error) {
	namesOnce.Do(func() { namesVal, namesErr = loadNames() })
	return namesVal, namesErr
}

var (
	flagLine = regexp.MustCompile(`(?m)^\s+-{1,2}([a-z][a-z0-9-]*)`)
	envWord  = regexp.MustCompile(`\bWISP_[A-Z0-9_]+\b`)
	cmdLine  = regexp.MustCompile(`(?m)^  ([a-z]+)\s`)
)

// helpOutput runs a help command, which must exit 0.
func helpOutput(bin string, args ...string) (string, error) {
	out, err := exec.Command(nativeBin(bin), args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s %s: %v\n%s", bin, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// helpDefault is a flag's default and variable in --help.
var helpDefault = regexp.MustCompile(`\(default "([^"]*)"; env (WISP_[A-Z0-9_]+)\)`)

func loadNames() (names, error) {
	ctl := &binNames{commands: map[string]bool{}, flags: map[string]bool{}, env: map[string]bool{}}
	agent := &binNames{commands: map[string]bool{}, flags: map[string]bool{}, env: map[string]bool{}}
	defaults := map[*binNames]map[string]string{} // WISP_* -> default, per binary
	for _, h := range []struct {
		b    *binNames
		bin  string
		args [][]string
	}{
		{ctl, "wisp-controller", [][]string{{"--help"}, {"token", "create", "--help"}, {"compact", "--help"},
			{"admin-token", "rotate", "--help"}, {"tls", "fingerprint", "--help"}, {"healthcheck", "--help"}}},
		{agent, "wisp-agent", [][]string{{"--help"}, {"run", "--help"}, {"invoke", "--help"}, {"status", "--help"}, {"healthcheck", "--help"}}},
	} {
		defaults[h.b] = map[string]string{}
		for i, args := range h.args {
			help, err := helpOutput(h.bin, args...)
			if err != nil {
				return nil, err
			}
			if i == 0 {
				for _, m := range cmdLine.FindAllStringSubmatch(help, -1) {
					h.b.commands[m[1]] = true
				}
			}
			for _, m := range flagLine.FindAllStringSubmatch(help, -1) {
				h.b.flags[m[1]] = true
			}
			for _, e := range envWord.FindAllString(help, -1) {
				h.b.env[e] = true
			}
			for _, m := range helpDefault.FindAllStringSubmatch(help, -1) {
				defaults[h.b][m[2]] = m[1]
			}
		}
	}
	if !ctl.flags["listen"] || !ctl.env["WISP_LISTEN"] || !ctl.commands["token"] || !ctl.flags["ttl"] {
		return nil, fmt.Errorf("wisp-controller's help lists no --listen / WISP_LISTEN / token, or token create no --ttl: %v", ctl)
	}
	if !agent.commands["run"] || !agent.flags["controllers"] || !agent.env["WISP_CONTROLLERS"] {
		return nil, fmt.Errorf("wisp-agent's help lacks run, --controllers or WISP_CONTROLLERS: %v", agent)
	}
	var err error
	if ctl.listens, err = listenDefaults(defaults[ctl], map[string]string{"WISP_LISTEN": "tcp", "WISP_QUIC_LISTEN": "udp", "WISP_METRICS_ADDR": "tcp"}); err != nil {
		return nil, err
	}
	if agent.listens, err = listenDefaults(defaults[agent], map[string]string{"WISP_METRICS_ADDR": "tcp", "WISP_LOCAL_API": "tcp"}); err != nil {
		return nil, err
	}
	return names{"wisp-controller": ctl, "wisp-agent": agent}, nil
}

// listenDefaults picks the listen variables' defaults out of the help's.
func listenDefaults(defaults map[string]string, protos map[string]string) (map[string]listen, error) {
	out := map[string]listen{}
	for env, proto := range protos {
		def, ok := defaults[env]
		if !ok {
			return nil, fmt.Errorf("no help shows the default of %s", env)
		}
		out[env] = listen{proto: proto, def: def}
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
