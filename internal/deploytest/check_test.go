package deploytest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// checker collects the problems of the deployment files. It reads them
// through overlay first, so a test can hand it a broken copy of one file.
type checker struct {
	names    names
	overlay  map[string]string // repo-relative path -> content
	problems []string
	// probes are the HTTP probes the files point at the binaries;
	// checkProbes asks live (when set) whether each path is served.
	probes []probe
	live   *liveServers
}

func (c *checker) errorf(file, format string, args ...any) {
	c.problems = append(c.problems, file+": "+fmt.Sprintf(format, args...))
}

func (c *checker) read(rel string) (string, bool) {
	if s, ok := c.overlay[rel]; ok {
		return s, true
	}
	b, err := os.ReadFile(filepath.Join(repo, rel))
	return string(b), err == nil
}

func (c *checker) mustRead(rel string) string {
	s, ok := c.read(rel)
	if !ok {
		c.errorf(rel, "missing")
	}
	return s
}

func (c *checker) exists(rel string) bool {
	if _, ok := c.overlay[rel]; ok {
		return true
	}
	_, err := os.Stat(filepath.Join(repo, rel))
	return err == nil
}

// deploymentFiles lists what checkAll reads, for the mutation test.
var deploymentFiles = []string{
	"builds/controller.Dockerfile", "builds/agent.Dockerfile",
	"builds/systemd/wisp-agent.service", "builds/install-agent.sh",
	"docker-compose.yml", "builds/prometheus/prometheus.yml", "builds/mosquitto/mosquitto.conf",
	"builds/k8s/namespace.yaml", "builds/k8s/secrets.example.yaml", "builds/k8s/controller.yaml", "builds/k8s/agent.yaml",
}

func (c *checker) checkAll() {
	c.checkDockerfile("builds/controller.Dockerfile", "wisp-controller")
	c.checkDockerfile("builds/agent.Dockerfile", "wisp-agent")
	c.checkUnit("builds/systemd/wisp-agent.service")
	c.checkInstallScript("builds/install-agent.sh")
	c.checkCompose("docker-compose.yml")
	c.checkK8s("builds/k8s")
	c.checkProbes()
}

// --- shared checks ---

// checkImage wants a tag (or digest) that is not "latest"; golang images must
// match go.mod's Go version.
func (c *checker) checkImage(file, image string) {
	image = expandDefaults(image)
	if strings.Contains(image, "@sha256:") {
		return
	}
	repoName, tag := splitImage(image)
	if tag == "" || tag == "latest" {
		c.errorf(file, "image %q has no pinned tag", image)
		return
	}
	if repoName == "golang" {
		gomod, _ := c.read("go.mod")
		m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(gomod)
		if m == nil || !strings.HasPrefix(tag, m[1]) {
			c.errorf(file, "builder image %s does not match go.mod's go %v", image, m)
		}
	}
}

func splitImage(image string) (repoName, tag string) {
	slash := strings.LastIndex(image, "/")
	if i := strings.LastIndex(image, ":"); i > slash {
		return image[:i], image[i+1:]
	}
	return image, ""
}

// binaryOfImage maps wisp-controller:1.0 or registry/x/wisp-agent:1.0 to its binary.
func binaryOfImage(image string) string {
	repoName, _ := splitImage(expandDefaults(image))
	return path.Base(repoName)
}

// expandDefaults replaces compose's ${VAR:-default} with default.
func expandDefaults(s string) string {
	return regexp.MustCompile(`\$\{[A-Z_]+:-([^}]*)\}`).ReplaceAllString(s, "$1")
}

// checkArgs checks a command line: binary [subcommand] flags. binary is the
// program the arguments go to; args start after it. It returns the settings
// the flags set, as WISP_* name -> value.
func (c *checker) checkArgs(file, binary string, args []string) map[string]string {
	b := c.names[binary]
	set := map[string]string{}
	if b == nil {
		return set
	}
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		if !b.commands[args[0]] {
			c.errorf(file, "%s has no command %q", binary, args[0])
		}
		if args[0] == "token" && len(args) > 1 {
			args = args[1:] // token create
		}
		args = args[1:]
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !b.flags[name] {
			c.errorf(file, "%s has no flag --%s", binary, name)
			continue
		}
		if !hasValue && i+1 < len(args) {
			i++
			value = args[i]
		}
		set[envName(name)] = value
	}
	return set
}

// checkEnv checks WISP_* names against the binary's and returns them.
func (c *checker) checkEnv(file, binary string, env map[string]string) {
	b := c.names[binary]
	if b == nil {
		return
	}
	for k := range env {
		if !strings.HasPrefix(k, "WISP_") {
			continue
		}
		if !b.env[k] {
			c.errorf(file, "%s reads no %s", binary, k)
		}
	}
}

// settings merges environment and flag settings; flags win, as in the binaries.
func settings(env, flags map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range env {
		if strings.HasPrefix(k, "WISP_") {
			out[k] = v
		}
	}
	for k, v := range flags {
		out[k] = v
	}
	return out
}

// shellWords splits a shell command line on blanks, dropping quotes. Good
// enough for the command lines of these files, which use no escapes.
func shellWords(s string) []string {
	var out []string
	for _, w := range regexp.MustCompile(`"[^"]*"|'[^']*'|[^\s;&|()]+`).FindAllString(s, -1) {
		out = append(out, strings.Trim(w, `"'`))
	}
	return out
}

// checkCommandLines finds the wisp binaries named inside free-form commands
// (sh -c strings, healthchecks) and checks the arguments that follow them.
func (c *checker) checkCommandLines(file, cmd string) {
	words := shellWords(cmd)
	for i, w := range words {
		bin := path.Base(strings.TrimPrefix(w, "$("))
		if c.names[bin] == nil {
			continue
		}
		end := i + 1
		for end < len(words) && !strings.ContainsAny(words[end], ">") && words[end] != "&&" {
			end++
		}
		c.checkArgs(file, bin, words[i+1:end])
	}
}

// --- Dockerfiles ---

type instruction struct {
	line      int
	cmd, args string
}

func dockerInstructions(src string) []instruction {
	var out []instruction
	var cur strings.Builder
	start := 0
	for i, l := range strings.Split(src, "\n") {
		t := strings.TrimSpace(l)
		if cur.Len() == 0 && (t == "" || strings.HasPrefix(t, "#")) {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if strings.HasSuffix(t, `\`) {
			cur.WriteString(strings.TrimSuffix(t, `\`) + " ")
			continue
		}
		cur.WriteString(t)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{start, strings.ToUpper(cmd), strings.TrimSpace(args)})
		cur.Reset()
	}
	return out
}

func jsonArray(s string) ([]string, bool) {
	var out []string
	if err := yaml.Unmarshal([]byte(s), &out); err != nil || !strings.HasPrefix(s, "[") {
		return nil, false
	}
	return out, true
}

func (c *checker) checkDockerfile(file, binary string) {
	src := c.mustRead(file)
	if !c.exists(file + ".dockerignore") {
		c.errorf(file, "no %s.dockerignore beside it (the build context is the whole repository)", file)
	}
	stages := map[string]bool{}
	built := map[string]bool{}  // paths go build writes
	copied := map[string]bool{} // paths in the final image
	env := map[string]string{}
	var exposed []port
	var user, entry string
	var volumes, cmd []string
	final := false
	for _, in := range dockerInstructions(src) {
		where := fmt.Sprintf("%s:%d", file, in.line)
		fields := strings.Fields(in.args)
		switch in.cmd {
		case "FROM":
			var image string
			for _, f := range fields {
				if !strings.HasPrefix(f, "--") {
					image = f
					break
				}
			}
			c.checkImage(where, image)
			if i := slices.IndexFunc(fields, func(f string) bool { return strings.EqualFold(f, "AS") }); i >= 0 && i+1 < len(fields) {
				stages[fields[i+1]] = true
				final = false
			} else {
				final = true
			}
		case "COPY":
			var from string
			var srcs []string
			for _, f := range fields {
				if v, ok := strings.CutPrefix(f, "--from="); ok {
					from = v
				} else if !strings.HasPrefix(f, "--") {
					srcs = append(srcs, f)
				}
			}
			if len(srcs) < 2 {
				c.errorf(where, "COPY needs a source and a destination")
				continue
			}
			dst := srcs[len(srcs)-1]
			for _, s := range srcs[:len(srcs)-1] {
				switch {
				case from != "" && !stages[from]:
					c.errorf(where, "COPY --from=%s: no such stage", from)
				case from != "" && !built[s]:
					c.errorf(where, "COPY --from=%s %s: no stage builds %s", from, s, s)
				case from == "" && !c.exists(s):
					c.errorf(where, "COPY %s: no such file in the repository", s)
				}
				if final {
					copied[dst] = true
				}
			}
		case "RUN":
			if !strings.Contains(in.args, "go build") {
				continue
			}
			for _, m := range regexp.MustCompile(`\./cmd/([a-z-]+)`).FindAllStringSubmatch(in.args, -1) {
				if !c.exists("cmd/" + m[1] + "/main.go") {
					c.errorf(where, "go build ./cmd/%s: no such command", m[1])
				}
			}
			for _, m := range regexp.MustCompile(`-X ([\w./-]+)\.(\w+)=`).FindAllStringSubmatch(in.args, -1) {
				pkg := strings.TrimPrefix(m[1], "github.com/wispfn/wisp/")
				found := false
				if ents, err := os.ReadDir(filepath.Join(repo, pkg)); err == nil {
					for _, e := range ents {
						s, _ := c.read(pkg + "/" + e.Name())
						found = found || regexp.MustCompile(`(?m)^var `+m[2]+`\b`).MatchString(s)
					}
				}
				if !found {
					c.errorf(where, "-X %s.%s: no such variable", m[1], m[2])
				}
			}
			if m := regexp.MustCompile(`-o (\S+)`).FindStringSubmatch(in.args); m != nil {
				built[m[1]] = true
				if path.Base(m[1]) != binary {
					c.errorf(where, "builds %s, want %s", m[1], binary)
				}
			}
		case "ENV":
			for _, kv := range fields {
				k, v, _ := strings.Cut(kv, "=")
				env[k] = v
			}
		case "EXPOSE":
			for _, f := range fields {
				p, proto, ok := strings.Cut(f, "/")
				if !ok {
					proto = "tcp"
				}
				exposed = append(exposed, mkPort(p, proto))
			}
		case "USER":
			user = in.args
		case "VOLUME":
			v, ok := jsonArray(in.args)
			if !ok {
				v = fields
			}
			volumes = append(volumes, v...)
		case "ENTRYPOINT":
			v, ok := jsonArray(in.args)
			if !ok || len(v) == 0 {
				c.errorf(where, "ENTRYPOINT should be a JSON array (exec form) so signals reach the binary")
				continue
			}
			entry = v[0]
		case "CMD":
			v, ok := jsonArray(in.args)
			if !ok {
				c.errorf(where, "CMD should be a JSON array")
			}
			cmd = v
		case "HEALTHCHECK":
			_, cmdArgs, _ := strings.Cut(in.args, "CMD ")
			if words, ok := jsonArray(strings.TrimSpace(cmdArgs)); ok && len(words) > 0 {
				// Exec form: no shell in the image needed.
				if path.Base(words[0]) != binary {
					c.errorf(where, "HEALTHCHECK runs %s, not %s", words[0], binary)
				} else if len(words) < 2 || words[1] != "healthcheck" {
					c.errorf(where, "HEALTHCHECK runs %s without its healthcheck command", binary)
				}
				c.checkArgs(where, binary, words[1:])
			} else {
				c.checkCommandLines(where, in.args)
			}
			for _, m := range regexp.MustCompile(`http://127\.0\.0\.1:(\d+)`).FindAllStringSubmatch(in.args, -1) {
				if c.names[binary] != nil {
					if _, ok := c.names[binary].listening(env)[mkPort(m[1], "tcp")]; !ok {
						c.errorf(where, "healthcheck port %s: %s does not listen there", m[1], binary)
					}
				}
			}
		}
	}
	c.checkEnv(file, binary, env)
	if user == "" || user == "root" || strings.HasPrefix(user, "0") {
		c.errorf(file, "runs as root (USER %q)", user)
	}
	if entry != "/usr/local/bin/"+binary || !copied[entry] {
		c.errorf(file, "ENTRYPOINT %q: want /usr/local/bin/%s, copied from the build stage", entry, binary)
	}
	flagSettings := c.checkArgs(file, binary, cmd)
	if c.names[binary] != nil {
		listening := c.names[binary].listening(settings(env, flagSettings))
		for _, p := range exposed {
			if _, ok := listening[p]; !ok {
				c.errorf(file, "EXPOSE %s: %s does not listen there (it listens on %v)", p, binary, keys(listening))
			}
		}
		for p, env := range listening {
			if !slices.Contains(exposed, p) {
				c.errorf(file, "%s listens on %s (%s) but it is not in EXPOSE", binary, p, env)
			}
		}
	}
	if dd := env["WISP_DATA_DIR"]; dd == "" || !slices.Contains(volumes, dd) {
		c.errorf(file, "WISP_DATA_DIR %q is not a VOLUME (%v)", dd, volumes)
	}
}

func keys[V any](m map[port]V) []port {
	out := make([]port, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// --- systemd unit and install script ---

// unitDirectives are the directives the unit may use, per section; a typo
// in a hardening option would otherwise be ignored by systemd with a warning.
var unitDirectives = map[string][]string{
	"Unit": {"Description", "Documentation", "Wants", "After", "Requires", "StartLimitIntervalSec", "StartLimitBurst"},
	"Service": {"Type", "User", "Group", "EnvironmentFile", "Environment", "StateDirectory", "StateDirectoryMode",
		"WorkingDirectory", "ExecStart", "Restart", "RestartSec", "KillSignal", "TimeoutStopSec", "LimitNOFILE",
		"NoNewPrivileges", "CapabilityBoundingSet", "AmbientCapabilities", "ProtectSystem", "ProtectHome", "PrivateTmp",
		"PrivateDevices", "PrivateUsers", "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
		"ProtectControlGroups", "ProtectClock", "ProtectHostname", "RestrictAddressFamilies", "RestrictNamespaces",
		"RestrictRealtime", "RestrictSUIDSGID", "LockPersonality", "RemoveIPC", "SystemCallArchitectures",
		"SystemCallFilter", "SystemCallErrorNumber", "UMask", "ReadWritePaths", "MemoryMax", "ExecStartPost"},
	"Install": {"WantedBy"},
}

func (c *checker) checkUnit(file string) {
	src := c.mustRead(file)
	install, _ := c.read("builds/install-agent.sh")
	section := ""
	got := map[string][]string{} // "Section.Key" -> values
	for i, l := range strings.Split(src, "\n") {
		l = strings.TrimSpace(l)
		where := fmt.Sprintf("%s:%d", file, i+1)
		switch {
		case l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, ";"):
		case strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]"):
			section = strings.Trim(l, "[]")
			if _, ok := unitDirectives[section]; !ok {
				c.errorf(where, "unknown section [%s]", section)
			}
		default:
			k, v, ok := strings.Cut(l, "=")
			if !ok {
				c.errorf(where, "want Key=value")
				continue
			}
			if !slices.Contains(unitDirectives[section], k) {
				c.errorf(where, "%s= is not a directive this unit expects in [%s] (typo?)", k, section)
			}
			got[section+"."+k] = append(got[section+"."+k], v)
		}
	}
	want := map[string]string{
		"Service.Restart": "always", "Service.NoNewPrivileges": "yes", "Service.ProtectSystem": "strict",
		"Service.User": "wisp", "Install.WantedBy": "multi-user.target",
	}
	for k, v := range want {
		if !slices.Contains(got[k], v) {
			c.errorf(file, "want %s=%s, have %v", k, v, got[k])
		}
	}
	if ef := got["Service.EnvironmentFile"]; len(ef) != 1 || strings.TrimPrefix(ef[0], "-") != "/etc/wisp/agent.env" || !strings.Contains(install, "/etc/wisp/agent.env") {
		c.errorf(file, "EnvironmentFile %v: want /etc/wisp/agent.env, the file install-agent.sh writes", ef)
	}
	env := map[string]string{}
	for _, e := range got["Service.Environment"] {
		for _, kv := range shellWords(e) {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
	}
	c.checkEnv(file, "wisp-agent", env)
	exec := shellWords(strings.Join(got["Service.ExecStart"], " "))
	if len(exec) == 0 || exec[0] != "/usr/local/bin/wisp-agent" || !strings.Contains(install, "/usr/local/bin/wisp-agent") {
		c.errorf(file, "ExecStart %v: want /usr/local/bin/wisp-agent, where install-agent.sh puts it", exec)
	} else {
		flags := c.checkArgs(file, "wisp-agent", exec[1:])
		if len(exec) < 2 || exec[1] != "run" {
			c.errorf(file, "ExecStart does not run `wisp-agent run`")
		}
		dd := settings(env, flags)["WISP_DATA_DIR"]
		if sd := got["Service.StateDirectory"]; len(sd) != 1 || "/var/lib/"+sd[0] != dd {
			c.errorf(file, "StateDirectory %v does not hold the data dir %q", sd, dd)
		}
	}
	for _, post := range got["Service.ExecStartPost"] {
		words := shellWords(post)
		if len(words) == 0 || strings.TrimLeft(words[0], "-") != "/usr/local/bin/wisp-agent" {
			c.errorf(file, "ExecStartPost %v: want /usr/local/bin/wisp-agent healthcheck", words)
			continue
		}
		if len(words) < 2 || words[1] != "healthcheck" {
			c.errorf(file, "ExecStartPost runs wisp-agent %v, not its healthcheck", words[1:])
		}
		c.checkArgs(file, "wisp-agent", words[1:])
	}
	if strings.Contains(src, "MemoryDenyWriteExecute=yes") {
		c.errorf(file, "MemoryDenyWriteExecute=yes breaks wazero's compiler")
	}
	if !regexp.MustCompile(`useradd[^\n]*\bwisp\b`).MatchString(install) {
		c.errorf(file, "User=wisp but install-agent.sh creates no wisp user")
	}
}

func (c *checker) checkInstallScript(file string) {
	src := c.mustRead(file)
	for _, e := range envWord.FindAllString(src, -1) {
		if !c.names["wisp-agent"].env[e] && e != "WISP_INSTALL_ROOT" && e != "WISP_INSTALL_ARCH" {
			c.errorf(file, "writes %s, which wisp-agent does not read", e)
		}
	}
	for _, u := range []string{"aarch64", "armv7l", "x86_64"} {
		if !strings.Contains(src, u) {
			c.errorf(file, "does not map uname -m %s to a release", u)
		}
	}
	if !strings.Contains(src, "systemd/wisp-agent.service") || !c.exists("builds/systemd/wisp-agent.service") {
		c.errorf(file, "does not install builds/systemd/wisp-agent.service")
	}
}

// --- docker-compose.yml and Prometheus ---

type composeFile struct {
	Name     string                    `yaml:"name"`
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
	// Extensions are the x- keys (anchors merged into services); any
	// other unknown key lands here too and is refused by checkCompose.
	Extensions map[string]any `yaml:",inline"`
}

type composeService struct {
	Image string `yaml:"image"`
	Build *struct {
		Context    string            `yaml:"context"`
		Dockerfile string            `yaml:"dockerfile"`
		Args       map[string]string `yaml:"args"`
	} `yaml:"build"`
	Entrypoint  []string          `yaml:"entrypoint"`
	Command     any               `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck *struct {
		Test     []string `yaml:"test"`
		Interval string   `yaml:"interval"`
		Timeout  string   `yaml:"timeout"`
		Retries  int      `yaml:"retries"`
	} `yaml:"healthcheck"`
	Restart string `yaml:"restart"`
}

// thirdPartyPorts are the ports the other images listen on by default.
var thirdPartyPorts = map[string][]port{
	"postgres":          {"5432/tcp"},
	"couchdb":           {"5984/tcp"},
	"prom/prometheus":   {"9090/tcp"},
	"eclipse-mosquitto": nil, // from its config file
}

func decodeStrict(src string, v any) error {
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	return dec.Decode(v)
}

func (c *checker) checkCompose(file string) {
	var cf composeFile
	if err := decodeStrict(c.mustRead(file), &cf); err != nil {
		c.errorf(file, "%v", err)
		return
	}
	for k := range cf.Extensions {
		if !strings.HasPrefix(k, "x-") {
			c.errorf(file, "unknown top-level key %q", k)
		}
	}
	// First pass: what each service listens on.
	listens := map[string]map[port]string{}
	svcBinary := map[string]string{}
	for name, s := range cf.Services {
		where := file + ": service " + name
		if s.Image == "" {
			c.errorf(where, "no image")
		}
		c.checkImage(where, s.Image)
		bin := binaryOfImage(s.Image)
		if s.Build != nil {
			if !c.exists(path.Join(s.Build.Context, s.Build.Dockerfile)) {
				c.errorf(where, "build: no %s", s.Build.Dockerfile)
			}
			if !strings.Contains(s.Build.Dockerfile, strings.TrimPrefix(bin, "wisp-")) {
				c.errorf(where, "image %s is built from %s", s.Image, s.Build.Dockerfile)
			}
		}
		listens[name] = map[port]string{}
		if b := c.names[bin]; b != nil {
			svcBinary[name] = bin
			c.checkEnv(where, bin, s.Environment)
			var flags map[string]string
			if len(s.Entrypoint) == 0 {
				args, _ := s.Command.([]any)
				var words []string
				for _, a := range args {
					words = append(words, fmt.Sprint(a))
				}
				flags = c.checkArgs(where, bin, words)
			} else {
				c.checkCommandLines(where, strings.Join(s.Entrypoint, " ")+" "+commandString(s.Command))
			}
			if len(s.Entrypoint) == 0 { // a one-shot with its own entrypoint serves nothing
				listens[name] = b.listening(settings(s.Environment, flags))
			}
		} else {
			repoName, _ := splitImage(s.Image)
			ps, known := thirdPartyPorts[repoName]
			if !known {
				c.errorf(where, "image %s: the test does not know its ports; add it to thirdPartyPorts", repoName)
			}
			for _, p := range ps {
				listens[name][p] = repoName
			}
		}
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") {
				if !c.exists(path.Clean(src)) {
					c.errorf(where, "mounts %s, which does not exist", src)
				}
			} else if _, ok := cf.Volumes[src]; !ok {
				c.errorf(where, "volume %s is not declared under volumes:", src)
			}
		}
		for dep, d := range s.DependsOn {
			ds, ok := cf.Services[dep]
			switch {
			case !ok:
				c.errorf(where, "depends on %s, which is no service", dep)
			case d.Condition == "service_healthy" && ds.Healthcheck == nil:
				c.errorf(where, "waits for %s to be healthy, which has no healthcheck", dep)
			case d.Condition != "" && !slices.Contains([]string{"service_started", "service_healthy", "service_completed_successfully"}, d.Condition):
				c.errorf(where, "depends_on %s: unknown condition %q", dep, d.Condition)
			}
		}
	}
	if mq, ok := c.read("builds/mosquitto/mosquitto.conf"); ok {
		for _, m := range regexp.MustCompile(`(?m)^listener (\d+)`).FindAllStringSubmatch(mq, -1) {
			for name, s := range cf.Services {
				if strings.HasPrefix(s.Image, "eclipse-mosquitto:") {
					listens[name][mkPort(m[1], "tcp")] = "mosquitto.conf"
				}
			}
		}
	}
	// Second pass: references between services.
	for name, s := range cf.Services {
		where := file + ": service " + name
		for _, p := range s.Ports {
			parts := strings.Split(p, ":")
			cp, proto, ok := strings.Cut(parts[len(parts)-1], "/")
			if !ok {
				proto = "tcp"
			}
			env, ok := listens[name][mkPort(cp, proto)]
			if !ok {
				c.errorf(where, "publishes %s but listens on %v", mkPort(cp, proto), keys(listens[name]))
			}
			if svcBinary[name] == "wisp-controller" && (env == "WISP_LISTEN" || env == "WISP_METRICS_ADDR") && (len(parts) < 3 || parts[0] != "127.0.0.1") {
				c.errorf(where, "publishes the controller's %s (%s) on every interface: only its QUIC port should be (bind it to 127.0.0.1)", env, p)
			}
		}
		refs := commandString(s.Command) + " " + strings.Join(s.Entrypoint, " ")
		if s.Healthcheck != nil {
			refs += " " + strings.Join(s.Healthcheck.Test, " ")
			if bin := svcBinary[name]; bin != "" {
				test := s.Healthcheck.Test
				if len(test) < 3 || test[0] != "CMD" || path.Base(test[1]) != bin || test[2] != "healthcheck" {
					c.errorf(where, "healthcheck %v: want [CMD, %s, healthcheck, ...] (the image has no curl; wget may go)", test, bin)
				} else {
					c.checkArgs(where, bin, test[2:])
				}
			}
		}
		for k, v := range s.Environment {
			refs += " " + v
			if k == "WISP_CONTROLLERS" {
				for _, hp := range strings.Split(v, ",") {
					h, p, _ := net.SplitHostPort(hp)
					if svcBinary[h] != "wisp-controller" {
						c.errorf(where, "WISP_CONTROLLERS names %s, which is no controller service", h)
					} else if listens[h][mkPort(p, "udp")] != "WISP_QUIC_LISTEN" {
						c.errorf(where, "WISP_CONTROLLERS %s: the controller's QUIC port is %v", hp, listens[h])
					}
				}
			}
			if k == "WISP_DATABASE_URL" {
				c.checkDSN(where, v, cf)
			}
		}
		c.checkHostPorts(where, refs, name, listens)
	}
	c.checkComposeCluster(file, cf, svcBinary)
	c.checkPrometheus("builds/prometheus/prometheus.yml", cf, listens, svcBinary)
}

// identityInStore reports whether the controllers keep their cluster's TLS
// identity in Postgres (a migration makes its table); until then every
// controller must find the same identity files in its data dir.
func (c *checker) identityInStore() bool {
	ents, err := os.ReadDir(filepath.Join(repo, "controller/store/migrations"))
	if err != nil {
		return false
	}
	for _, e := range ents {
		if b, err := os.ReadFile(filepath.Join(repo, "controller/store/migrations", e.Name())); err == nil &&
			strings.Contains(string(b), "CREATE TABLE cluster_identity") {
			return true
		}
	}
	return false
}

// clusterSize is how many controllers the deployment files run
// (docs/cluster.md).
const clusterSize = 3

// checkComposeCluster: the compose file runs clusterSize controllers that
// share one database, one secrets key and one identity, every agent links
// to all of them, and no host port is published twice.
func (c *checker) checkComposeCluster(file string, cf composeFile, svcBinary map[string]string) {
	var ctls []string
	for name, s := range cf.Services {
		if svcBinary[name] == "wisp-controller" && len(s.Entrypoint) == 0 {
			ctls = append(ctls, name)
		}
	}
	sort.Strings(ctls)
	if len(ctls) != clusterSize {
		c.errorf(file, "%d controller services (%v), want a cluster of %d", len(ctls), ctls, clusterSize)
	}
	same := func(what string, value func(s composeService) string) {
		vals := map[string][]string{}
		for _, n := range ctls {
			v := value(cf.Services[n])
			vals[v] = append(vals[v], n)
		}
		if _, empty := vals[""]; empty || len(vals) > 1 {
			c.errorf(file, "the controllers must share one %s: %v", what, vals)
		}
	}
	same("database (WISP_DATABASE_URL)", func(s composeService) string { return s.Environment["WISP_DATABASE_URL"] })
	same("secrets key (WISP_SECRETS_KEY)", func(s composeService) string { return s.Environment["WISP_SECRETS_KEY"] })
	if !c.identityInStore() {
		same("data volume (their TLS identity is in the data dir)", func(s composeService) string {
			for _, v := range s.Volumes {
				if src, dst, _ := strings.Cut(v, ":"); strings.TrimSuffix(dst, ":ro") == s.Environment["WISP_DATA_DIR"] {
					return src
				}
			}
			return ""
		})
	}
	published := map[string]string{}
	for name, s := range cf.Services {
		where := file + ": service " + name
		if v, ok := s.Environment["WISP_CONTROLLERS"]; ok {
			named := map[string]bool{}
			for _, hp := range strings.Split(v, ",") {
				h, _, _ := net.SplitHostPort(hp)
				named[h] = true
			}
			for _, ctl := range ctls {
				if !named[ctl] {
					c.errorf(where, "WISP_CONTROLLERS does not name controller %s: an agent must link to every controller", ctl)
				}
			}
		}
		for _, p := range s.Ports {
			parts := strings.Split(p, ":")
			if len(parts) < 2 {
				continue
			}
			_, proto, ok := strings.Cut(parts[len(parts)-1], "/")
			if !ok {
				proto = "tcp"
			}
			host := strings.Join(parts[:len(parts)-1], ":")
			if !strings.Contains(host, ":") {
				host = "0.0.0.0:" + host
			}
			key := host + "/" + proto
			if other, dup := published[key]; dup {
				c.errorf(where, "publishes %s, which %s publishes too", key, other)
			}
			published[key] = name
		}
	}
}

func commandString(cmd any) string {
	switch v := cmd.(type) {
	case string:
		return v
	case []any:
		var s []string
		for _, a := range v {
			s = append(s, fmt.Sprint(a))
		}
		return strings.Join(s, " ")
	}
	return ""
}

// checkHostPorts checks every scheme://host:port in s whose host is a
// service: that service must listen on that port.
func (c *checker) checkHostPorts(where, s, self string, listens map[string]map[port]string) {
	for _, m := range regexp.MustCompile(`([a-z]+)://(?:[^@\s/]*@)?([a-z0-9.-]+):(\d+)`).FindAllStringSubmatch(s, -1) {
		host, p := m[2], m[3]
		if host == "127.0.0.1" || host == "localhost" {
			host = self
		}
		l, ok := listens[host]
		if !ok {
			c.errorf(where, "%s names host %s, which is no service", m[0], host)
			continue
		}
		if _, ok := l[mkPort(p, "tcp")]; !ok {
			c.errorf(where, "%s: %s does not listen on %s/tcp (%v)", m[0], host, p, keys(l))
		}
	}
}

func (c *checker) checkDSN(where, dsn string, cf composeFile) {
	u, err := url.Parse(dsn)
	if err != nil {
		c.errorf(where, "WISP_DATABASE_URL: %v", err)
		return
	}
	pg, ok := cf.Services[u.Hostname()]
	if !ok {
		c.errorf(where, "WISP_DATABASE_URL host %s is no service", u.Hostname())
		return
	}
	pass, _ := u.User.Password()
	if u.User.Username() != pg.Environment["POSTGRES_USER"] || pass != pg.Environment["POSTGRES_PASSWORD"] ||
		strings.TrimPrefix(u.Path, "/") != pg.Environment["POSTGRES_DB"] {
		c.errorf(where, "WISP_DATABASE_URL user/password/database do not match %s's POSTGRES_* settings", u.Hostname())
	}
}

type promConfig struct {
	Global        map[string]any `yaml:"global"`
	RuleFiles     []string       `yaml:"rule_files"`
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		MetricsPath   string `yaml:"metrics_path"`
		StaticConfigs []struct {
			Targets []string          `yaml:"targets"`
			Labels  map[string]string `yaml:"labels"`
		} `yaml:"static_configs"`
	} `yaml:"scrape_configs"`
}

func (c *checker) checkPrometheus(file string, cf composeFile, listens map[string]map[port]string, svcBinary map[string]string) {
	var pc promConfig
	if err := decodeStrict(c.mustRead(file), &pc); err != nil {
		c.errorf(file, "%v", err)
		return
	}
	var promSvc string
	for name, s := range cf.Services {
		for _, v := range s.Volumes {
			if strings.HasPrefix(v, "./"+file+":") {
				promSvc = name
			}
		}
	}
	if promSvc == "" {
		c.errorf("docker-compose.yml", "no service mounts %s", file)
	}
	// Each rule file is beside the config, and mounted beside it.
	for _, rf := range pc.RuleFiles {
		rel := path.Join(path.Dir(file), rf)
		if !c.exists(rel) {
			c.errorf(file, "rule file %s: no %s", rf, rel)
		}
		mounted := false
		for _, v := range cf.Services[promSvc].Volumes {
			mounted = mounted || strings.HasPrefix(v, "./"+rel+":/etc/prometheus/"+rf+":")
		}
		if promSvc != "" && !mounted {
			c.errorf("docker-compose.yml", "service %s does not mount %s at /etc/prometheus/%s", promSvc, rel, rf)
		}
	}
	scraped := map[string]bool{}
	for _, sc := range pc.ScrapeConfigs {
		if sc.MetricsPath != "" && sc.MetricsPath != "/metrics" {
			c.errorf(file, "job %s: metrics path %s; Wisp serves /metrics", sc.JobName, sc.MetricsPath)
		}
		for _, st := range sc.StaticConfigs {
			for _, tg := range st.Targets {
				h, p, err := net.SplitHostPort(tg)
				if err != nil {
					c.errorf(file, "job %s: target %q: %v", sc.JobName, tg, err)
					continue
				}
				if h == "localhost" {
					h = promSvc
				}
				l, ok := listens[h]
				if !ok {
					c.errorf(file, "job %s: target %s is no docker-compose service", sc.JobName, tg)
					continue
				}
				env, ok := l[mkPort(p, "tcp")]
				switch {
				case !ok:
					c.errorf(file, "job %s: %s does not listen on %s (%v)", sc.JobName, h, p, keys(l))
				case svcBinary[h] != "" && env != "WISP_LISTEN" && env != "WISP_METRICS_ADDR":
					c.errorf(file, "job %s: %s is %s's %s, not its metrics", sc.JobName, tg, svcBinary[h], env)
				}
				scraped[h] = true
			}
		}
	}
	for name, bin := range svcBinary {
		if len(listens[name]) > 0 && !scraped[name] {
			c.errorf(file, "%s (%s) is not scraped", name, bin)
		}
	}
}

// --- Kubernetes ---

type obj = map[string]any

func get(o any, keys ...string) any {
	for _, k := range keys {
		m, ok := o.(obj)
		if !ok {
			return nil
		}
		o = m[k]
	}
	return o
}

func str(o any, keys ...string) string { s, _ := get(o, keys...).(string); return s }
func list(o any, keys ...string) []any { l, _ := get(o, keys...).([]any); return l }

func (c *checker) checkK8s(dir string) {
	var docs []obj
	where := map[int]string{}
	files := []string{"namespace.yaml", "secrets.example.yaml", "controller.yaml", "agent.yaml"}
	for _, f := range files {
		rel := dir + "/" + f
		dec := yaml.NewDecoder(strings.NewReader(c.mustRead(rel)))
		for {
			var o obj
			err := dec.Decode(&o)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				c.errorf(rel, "%v", err)
				break
			}
			if o == nil {
				continue
			}
			where[len(docs)] = fmt.Sprintf("%s: %s %s", rel, str(o, "kind"), str(o, "metadata", "name"))
			docs = append(docs, o)
		}
	}
	secrets := map[string]map[string]bool{}
	namespaces := map[string]bool{}
	for _, o := range docs {
		switch str(o, "kind") {
		case "Namespace":
			namespaces[str(o, "metadata", "name")] = true
		case "Secret":
			ks := map[string]bool{}
			for _, field := range []string{"data", "stringData"} {
				if m, ok := get(o, field).(obj); ok {
					for k := range m {
						ks[k] = true
					}
				}
			}
			secrets[str(o, "metadata", "name")] = ks
		}
	}
	identity, _ := c.read("controller/fleet/identity.go")
	adminFile, _ := c.read("controller/auth/token.go")
	identity += adminFile // the files the controller reads from its data dir
	type workload struct {
		kind, name string
		replicas   int
		labels     obj
		ports      map[string]port // name -> port; also "4000" -> port
		listen     map[port]string
		bin        string
	}
	// An agent's WISP_CONTROLLERS, checked once the Services are known.
	type agentTarget struct{ where, host, port string }
	var agentTargets []agentTarget
	headless := map[string]bool{} // Service name -> clusterIP None
	for _, o := range docs {
		if str(o, "kind") == "Service" && str(o, "spec", "clusterIP") == "None" {
			headless[str(o, "metadata", "name")] = true
		}
	}
	var workloads []workload
	for i, o := range docs {
		w := where[i]
		if str(o, "apiVersion") == "" || str(o, "metadata", "name") == "" {
			c.errorf(w, "no apiVersion or metadata.name")
		}
		if ns := str(o, "metadata", "namespace"); str(o, "kind") != "Namespace" && !namespaces[ns] {
			c.errorf(w, "namespace %q is not created by namespace.yaml", ns)
		}
		kind := str(o, "kind")
		if kind != "Deployment" && kind != "DaemonSet" && kind != "StatefulSet" {
			continue
		}
		replicas := 1
		if n, ok := get(o, "spec", "replicas").(int); ok {
			replicas = n
		}
		if kind == "StatefulSet" && !headless[str(o, "spec", "serviceName")] {
			c.errorf(w, "serviceName %q is no headless Service (clusterIP: None)", str(o, "spec", "serviceName"))
		}
		tmpl := get(o, "spec", "template")
		labels, _ := get(tmpl, "metadata", "labels").(obj)
		for k, v := range get(o, "spec", "selector", "matchLabels").(obj) {
			if labels[k] != v {
				c.errorf(w, "selector %s=%v does not match the pod labels", k, v)
			}
		}
		volumes := map[string]any{}
		for _, v := range list(tmpl, "spec", "volumes") {
			volumes[str(v, "name")] = v
		}
		wl := workload{kind: kind, name: str(o, "metadata", "name"), replicas: replicas, labels: labels, ports: map[string]port{}}
		containers := append(list(tmpl, "spec", "initContainers"), list(tmpl, "spec", "containers")...)
		initCount := len(list(tmpl, "spec", "initContainers"))
		for ci, ct := range containers {
			cw := w + " container " + str(ct, "name")
			image := str(ct, "image")
			c.checkImage(cw, image)
			bin := binaryOfImage(image)
			env := map[string]string{}
			for _, e := range list(ct, "env") {
				env[str(e, "name")] = str(e, "value")
				if sk := get(e, "valueFrom", "secretKeyRef"); sk != nil {
					env[str(e, "name")] = "(secret)"
					if !secrets[str(sk, "name")][str(sk, "key")] {
						c.errorf(cw, "env %s: secret %s has no key %s", str(e, "name"), str(sk, "name"), str(sk, "key"))
					}
				}
				if get(e, "valueFrom", "fieldRef") != nil {
					env[str(e, "name")] = "(field)"
				}
			}
			var args []string
			for _, a := range list(ct, "args") {
				args = append(args, fmt.Sprint(a))
			}
			if ci < initCount {
				continue // init containers run other programs of the image
			}
			if c.names[bin] == nil {
				c.errorf(cw, "image %s runs no Wisp binary", image)
				continue
			}
			c.checkEnv(cw, bin, env)
			flags := c.checkArgs(cw, bin, args)
			set := settings(env, flags)
			wl.bin = bin
			wl.listen = c.names[bin].listening(set)
			for _, p := range list(ct, "ports") {
				pp := mkPort(fmt.Sprint(get(p, "containerPort")), strings.ToLower(str(p, "protocol")))
				if str(p, "protocol") == "" {
					pp = mkPort(fmt.Sprint(get(p, "containerPort")), "tcp")
				}
				if _, ok := wl.listen[pp]; !ok {
					c.errorf(cw, "containerPort %s: %s listens on %v", pp, bin, keys(wl.listen))
				}
				wl.ports[str(p, "name")] = pp
				wl.ports[fmt.Sprint(get(p, "containerPort"))] = pp
			}
			for p := range wl.listen {
				if !slices.Contains(mapValues(wl.ports), p) {
					c.errorf(cw, "%s listens on %s but it is not a containerPort", bin, p)
				}
			}
			want := map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz"}
			for _, kp := range []string{"readinessProbe", "livenessProbe"} {
				if p := str(get(ct, kp, "httpGet"), "path"); p != want[kp] {
					c.errorf(cw, "%s: httpGet path %q, want %s", kp, p, want[kp])
				}
				for _, kind := range []string{"httpGet", "tcpSocket"} {
					if pr := get(ct, kp, kind); pr != nil {
						pp, ok := wl.ports[fmt.Sprint(get(pr, "port"))]
						if !ok {
							c.errorf(cw, "%s port %v is no containerPort", kp, get(pr, "port"))
						}
						if kind == "httpGet" && ok {
							c.probes = append(c.probes, probe{where: cw + " " + kp, bin: bin, listener: wl.listen[pp], path: str(pr, "path")})
						}
					}
				}
			}
			if ann := str(tmpl, "metadata", "annotations", "prometheus.io/port"); ann != "" && wl.listen[mkPort(ann, "tcp")] != "WISP_LISTEN" && wl.listen[mkPort(ann, "tcp")] != "WISP_METRICS_ADDR" {
				c.errorf(cw, "prometheus.io/port %s is not %s's metrics port", ann, bin)
			}
			dataDir := set["WISP_DATA_DIR"]
			onVolume, dataEmpty, adminFromSecret := false, false, false
			fromSecret := map[string]string{} // data-dir file -> the Secret it is mounted from
			for _, vm := range list(ct, "volumeMounts") {
				v, ok := volumes[str(vm, "name")]
				if !ok {
					c.errorf(cw, "mounts volume %s, which the pod does not define", str(vm, "name"))
					continue
				}
				mp := str(vm, "mountPath")
				onVolume = onVolume || mp == dataDir
				if mp == dataDir && get(v, "emptyDir") != nil {
					dataEmpty = true
				}
				if mp == path.Join(dataDir, "admin.token") && str(v, "secret", "secretName") != "" {
					adminFromSecret = true
				}
				if sn := str(v, "secret", "secretName"); sn != "" && path.Dir(mp) == dataDir {
					fromSecret[path.Base(mp)] = sn
				}
				if sub := str(vm, "subPath"); sub != "" {
					sn := str(v, "secret", "secretName")
					if !secrets[sn][sub] {
						c.errorf(cw, "subPath %s: secret %s has no such key", sub, sn)
					}
					if path.Dir(mp) != dataDir || !strings.Contains(identity, `"`+path.Base(mp)+`"`) {
						c.errorf(cw, "%s is not a file the controller reads from its data dir %s", mp, dataDir)
					}
				}
			}
			if !onVolume {
				c.errorf(cw, "data dir %q is not on a volume (readOnlyRootFilesystem)", dataDir)
			}
			if bin == "wisp-controller" && dataEmpty && !adminFromSecret {
				c.errorf(cw, "the data dir is an emptyDir but admin.token is not mounted from a Secret: the admin token would be lost with the pod")
			}
			if ctls := set["WISP_CONTROLLERS"]; ctls != "" {
				for _, hp := range strings.Split(ctls, ",") {
					h, p, _ := net.SplitHostPort(hp)
					c.checkK8sService(cw, docs, h, p, "UDP")
					agentTargets = append(agentTargets, agentTarget{cw, h, p})
				}
			}
			if bin == "wisp-controller" {
				// A cluster (docs/cluster.md): clusterSize controllers on
				// Postgres, sharing the secrets key and the identity.
				if replicas != clusterSize {
					c.errorf(cw, "%d replicas, want a cluster of %d controllers", replicas, clusterSize)
				}
				if replicas > 1 {
					if set["WISP_DATABASE_URL"] == "" {
						c.errorf(cw, "%d replicas on the embedded store, which serves one controller: set WISP_DATABASE_URL", replicas)
					}
					if set["WISP_SECRETS_KEY"] != "(secret)" && fromSecret["secrets.key"] == "" {
						c.errorf(cw, "%d replicas without one secrets key: give WISP_SECRETS_KEY from a Secret (or mount secrets.key from one)", replicas)
					}
					if !c.identityInStore() && (fromSecret["controller.crt"] == "" || fromSecret["controller.crt"] != fromSecret["controller.key"]) {
						c.errorf(cw, "%d replicas without one identity: mount controller.crt and controller.key from one Secret", replicas)
					}
				}
			}
		}
		workloads = append(workloads, wl)
	}
	restServices := map[string]string{} // Service name (and name/port name) -> port of the controller's REST API
	for i, o := range docs {
		if str(o, "kind") != "Service" {
			continue
		}
		w := where[i]
		var target *workload
		onePod := false
		for j := range workloads {
			match := true
			for k, v := range get(o, "spec", "selector").(obj) {
				if k == "statefulset.kubernetes.io/pod-name" {
					// One pod of a StatefulSet: <name>-<ordinal>.
					ord, ok := strings.CutPrefix(fmt.Sprint(v), workloads[j].name+"-")
					n, err := strconv.Atoi(ord)
					match = match && ok && err == nil && workloads[j].kind == "StatefulSet" && n >= 0 && n < workloads[j].replicas
					onePod = true
					continue
				}
				match = match && workloads[j].labels[k] == v
			}
			if match {
				target = &workloads[j]
			}
		}
		if target == nil {
			c.errorf(w, "selects no Deployment, StatefulSet or DaemonSet (or no pod of one)")
			continue
		}
		if target.bin == "wisp-controller" && target.replicas > 1 && !onePod && !headless[str(o, "metadata", "name")] {
			for _, p := range list(o, "spec", "ports") {
				if target.listen[target.ports[fmt.Sprint(get(p, "targetPort"))]] == "WISP_QUIC_LISTEN" {
					c.errorf(w, "balances the QUIC port over %d controllers: an agent would reach one of them only; make it headless or select one pod", target.replicas)
				}
			}
		}
		public := str(o, "spec", "type") == "LoadBalancer" || str(o, "spec", "type") == "NodePort"
		for _, p := range list(o, "spec", "ports") {
			tp := fmt.Sprint(get(p, "targetPort"))
			cp, ok := target.ports[tp]
			proto := strings.ToLower(str(p, "protocol"))
			if proto == "" {
				proto = "tcp"
			}
			if !ok || !strings.HasSuffix(string(cp), "/"+proto) {
				c.errorf(w, "port %v: targetPort %s/%s is no containerPort of %s", get(p, "port"), tp, proto, target.bin)
			}
			if env := target.listen[cp]; public && target.bin == "wisp-controller" && (env == "WISP_LISTEN" || env == "WISP_METRICS_ADDR") {
				c.errorf(w, "a %s Service publishes the controller's %s (%s) outside the cluster: keep it behind a ClusterIP Service (REST through an Ingress with TLS)",
					str(o, "spec", "type"), env, cp)
			}
		}
		if target.bin == "wisp-controller" {
			for _, p := range list(o, "spec", "ports") {
				if target.listen[target.ports[fmt.Sprint(get(p, "targetPort"))]] == "WISP_LISTEN" {
					restServices[str(o, "metadata", "name")] = fmt.Sprint(get(p, "port"))
					restServices[str(o, "metadata", "name")+"/"+str(p, "name")] = fmt.Sprint(get(p, "port"))
				}
			}
		}
	}
	// Agents dial every controller: a name they give must resolve to each
	// (a headless Service) or to one controller's pod.
	for _, at := range agentTargets {
		name := strings.Split(at.host, ".")[0]
		for _, o := range docs {
			if str(o, "kind") == "Service" && str(o, "metadata", "name") == name && str(o, "spec", "clusterIP") != "None" {
				if _, byPod := get(o, "spec", "selector").(obj)["statefulset.kubernetes.io/pod-name"]; !byPod {
					c.errorf(at.where, "WISP_CONTROLLERS %s:%s is a balanced Service: the agent would link to one controller only; name the headless Service", at.host, at.port)
				}
			}
		}
	}
	// The REST API is reached from outside through an Ingress with TLS.
	ingressed := false
	for i, o := range docs {
		if str(o, "kind") != "Ingress" {
			continue
		}
		if len(list(o, "spec", "tls")) == 0 {
			c.errorf(where[i], "no tls: the REST API carries bearer tokens")
		}
		for _, r := range list(o, "spec", "rules") {
			for _, hp := range list(r, "http", "paths") {
				svc := get(hp, "backend", "service")
				name := str(svc, "name")
				if pn := str(svc, "port", "name"); pn != "" {
					name += "/" + pn
				} else if get(svc, "port", "number") != nil && restServices[name] != fmt.Sprint(get(svc, "port", "number")) {
					name = ""
				}
				if _, ok := restServices[name]; ok {
					ingressed = true
				} else {
					c.errorf(where[i], "backend %v is not the controller's REST port behind a Service", svc)
				}
			}
		}
	}
	if !ingressed {
		c.errorf(dir, "no Ingress with TLS leads to the controller's REST API")
	}
}

// checkK8sService checks that host (svc.ns.svc.cluster.local, svc.ns or svc)
// is a Service with port p/proto.
func (c *checker) checkK8sService(where string, docs []obj, host, p, proto string) {
	parts := strings.Split(host, ".")
	for _, o := range docs {
		if str(o, "kind") != "Service" || str(o, "metadata", "name") != parts[0] {
			continue
		}
		if len(parts) > 1 && str(o, "metadata", "namespace") != parts[1] {
			continue
		}
		for _, sp := range list(o, "spec", "ports") {
			if fmt.Sprint(get(sp, "port")) == p && str(sp, "protocol") == proto {
				return
			}
		}
		c.errorf(where, "%s:%s: Service %s has no %s port %s", host, p, parts[0], proto, p)
		return
	}
	c.errorf(where, "%s:%s names no Service in builds/k8s", host, p)
}

func mapValues(m map[string]port) []port {
	var out []port
	for _, v := range m {
		out = append(out, v)
	}
	return out
}
