package cli

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/wispfn/wisp/internal/keypin"
)

// DefaultHost is where the controller listens by default (FunLess's port).
const DefaultHost = "http://127.0.0.1:4000"

// fileConfig is the config file: YAML with FunLess's key names.
//
//	api_host: https://ctl.example:4000
//	api_token: wisp_...
//	tls_fingerprint: sha256:...   (Wisp's own: pins the controller's key)
//
// api_host may list the controllers of a cluster, as a YAML list or
// separated by commas:
//
//	api_host: [https://ctl-a:4000, https://ctl-b:4000, https://ctl-c:4000]
type fileConfig struct {
	Hosts          hostList `yaml:"api_host,omitempty"`
	Token          string   `yaml:"api_token,omitempty"`
	TLSFingerprint string   `yaml:"tls_fingerprint,omitempty"`
}

// hostList is api_host: one address, several separated by commas, or a
// YAML list of them. It is written back as one string when it holds one
// address (FunLess's form), else as a list.
type hostList []string

func (h *hostList) UnmarshalYAML(n *yaml.Node) error {
	var items []string
	switch n.Kind {
	case yaml.ScalarNode:
		items = []string{n.Value}
	case yaml.SequenceNode:
		if err := n.Decode(&items); err != nil {
			return err
		}
	default:
		return fmt.Errorf("line %d: api_host: want an address or a list of addresses", n.Line)
	}
	*h = nil
	for _, it := range items {
		for _, a := range strings.Split(it, ",") {
			if a = strings.TrimSpace(a); a != "" {
				*h = append(*h, a)
			}
		}
	}
	return nil
}

func (h hostList) MarshalYAML() (any, error) {
	if len(h) == 1 {
		return h[0], nil
	}
	return []string(h), nil
}

// settings are the resolved connection settings and where each came from.
type settings struct {
	// hosts are the controllers' base URLs (one, or the controllers of a
	// cluster); host is them joined by commas, for people.
	hosts               []string
	host, token         string
	hostFrom, tokenFrom string // "default", the file path, "WISP_HOST", "--host"...
	// pin, when set, is the only controller key trusted over TLS (no CA
	// is consulted); pinFrom says where it came from.
	pin     *keypin.Fingerprint
	pinFrom string
	path    string // config file
}

// configPath is --config, else $WISP_CLI_CONFIG, else the former
// $WISP_CONFIG (with a deprecation warning on warn), else
// $XDG_CONFIG_HOME/wisp/config.yaml, else $HOME/.config/wisp/config.yaml.
func configPath(flagPath string, getenv func(string) string, warn io.Writer) (string, error) {
	if flagPath != "" {
		return flagPath, nil
	}
	if p := getenv("WISP_CLI_CONFIG"); p != "" {
		return p, nil
	}
	if p := getenv("WISP_CONFIG"); p != "" {
		fmt.Fprintln(warn, "wisp: warning: WISP_CONFIG is deprecated, use WISP_CLI_CONFIG (it names the CLI's config file only)")
		return p, nil
	}
	if x := getenv("XDG_CONFIG_HOME"); x != "" {
		return filepath.Join(x, "wisp", "config.yaml"), nil
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".config", "wisp", "config.yaml"), nil
	}
	return "", errors.New("cannot find a place for the config file: set HOME, XDG_CONFIG_HOME or WISP_CLI_CONFIG")
}

func readConfig(path string) (fileConfig, error) {
	var fc fileConfig
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fc, nil
	}
	if err != nil {
		return fc, fmt.Errorf("reading the config file: %v", err)
	}
	if err := yaml.Unmarshal(b, &fc); err != nil {
		return fc, fmt.Errorf("config file %s: %v", path, oneLine(err.Error()))
	}
	return fc, nil
}

// writeConfig writes fc with mode 0600 (the token is a secret), atomically.
func writeConfig(path string, fc fileConfig) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("writing the config file: %v", err)
	}
	b, err := yaml.Marshal(fc)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".config-*.yaml")
	if err != nil {
		return fmt.Errorf("writing the config file: %v", err)
	}
	defer os.Remove(tmp.Name())
	err = tmp.Chmod(0o600)
	if err == nil {
		_, err = tmp.Write(b)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("writing the config file %s: %v", path, err)
	}
	return nil
}

// resolve applies defaults < file < environment < flags.
func resolve(g *globals, getenv func(string) string, warn io.Writer) (settings, error) {
	s := settings{host: DefaultHost, hostFrom: "default", tokenFrom: "unset"}
	path, err := configPath(g.config, getenv, warn)
	if err != nil {
		return s, err
	}
	s.path = path
	fc, err := readConfig(path)
	if err != nil {
		return s, err
	}
	set := func(dst, from *string, v, src string) {
		if v != "" {
			*dst, *from = v, src
		}
	}
	set(&s.host, &s.hostFrom, strings.Join(fc.Hosts, ","), path)
	set(&s.token, &s.tokenFrom, fc.Token, path)
	set(&s.host, &s.hostFrom, getenv("WISP_HOST"), "WISP_HOST")
	set(&s.token, &s.tokenFrom, getenv("WISP_TOKEN"), "WISP_TOKEN")
	set(&s.host, &s.hostFrom, g.host, "--host")
	set(&s.token, &s.tokenFrom, g.token, "--token")
	var pin string
	set(&pin, &s.pinFrom, fc.TLSFingerprint, path)
	set(&pin, &s.pinFrom, getenv("WISP_TLS_FINGERPRINT"), "WISP_TLS_FINGERPRINT")
	set(&pin, &s.pinFrom, g.tlsFingerprint, "--tls-fingerprint")
	hosts, err := normalizeHosts(s.host)
	if err != nil {
		return s, fmt.Errorf("controller address from %s: %v", s.hostFrom, err)
	}
	s.hosts, s.host = hosts, strings.Join(hosts, ",")
	if pin != "" {
		fp, err := keypin.Parse(pin)
		if err != nil {
			return s, fmt.Errorf("TLS fingerprint from %s: %v", s.pinFrom, err)
		}
		// One pin for the cluster: its controllers share one key
		// (docs/cluster.md), so every address must be https://.
		for _, h := range s.hosts {
			if !strings.HasPrefix(h, "https://") {
				return s, fmt.Errorf("a TLS fingerprint is pinned (from %s) but the controller address %s (from %s) is not https://: "+
					"use https://, or unset the fingerprint to talk plain HTTP", s.pinFrom, h, s.hostFrom)
			}
		}
		s.pin = &fp
	}
	return s, nil
}

// normalizeHosts reads one controller address or several separated by
// commas (the controllers of one cluster), each as normalizeHost does. A
// repeated address is kept once.
func normalizeHosts(list string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, h := range strings.Split(list, ",") {
		if strings.TrimSpace(h) == "" {
			if strings.Contains(list, ",") {
				return nil, fmt.Errorf("%q: an empty address in the list", list)
			}
		}
		n, err := normalizeHost(h)
		if err != nil {
			return nil, err
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out, nil
}

// normalizeHost accepts "host:port", "http://host:port" or "https://...",
// and drops a trailing slash or /v1.
func normalizeHost(h string) (string, error) {
	h = strings.TrimSpace(h)
	if !strings.Contains(h, "://") {
		h = "http://" + h
	}
	u, err := url.Parse(h)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", fmt.Errorf("%q is not an http(s) address such as http://127.0.0.1:4000", h)
	}
	p := strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), "/v1")
	return u.Scheme + "://" + u.Host + strings.TrimSuffix(p, "/"), nil
}
