package deploytest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDeploymentFiles checks builds/ and docker-compose.yml against the code.
func TestDeploymentFiles(t *testing.T) {
	n, err := knownNames()
	if err != nil {
		t.Fatal(err)
	}
	c := &checker{names: n, live: startLiveServers(t)}
	c.checkAll()
	for _, p := range c.problems {
		t.Error(p)
	}
	for _, f := range []string{"builds/install-agent.sh"} {
		if out, err := exec.Command("sh", "-n", filepath.Join(repo, f)).CombinedOutput(); err != nil {
			t.Errorf("%s: sh -n: %v\n%s", f, err, out)
		}
	}
	for _, f := range []string{"scripts/release.sh", "scripts/install-toolchains.sh"} {
		if out, err := exec.Command("bash", "-n", filepath.Join(repo, f)).CombinedOutput(); err != nil {
			t.Errorf("%s: bash -n: %v\n%s", f, err, out)
		}
	}
}

// TestDeploymentChecksCatchMistakes breaks one name at a time in a copy of
// the files and wants the checker to notice each: a check that cannot fail
// checks nothing.
func TestDeploymentChecksCatchMistakes(t *testing.T) {
	n, err := knownNames()
	if err != nil {
		t.Fatal(err)
	}
	live := startLiveServers(t)
	mutations := []struct {
		name, file, old, new string
	}{
		{"compose env name", "docker-compose.yml", "WISP_CONTROLLERS: controller-1:4433", "WISP_CONTROLLER: controller-1:4433"},
		{"compose QUIC port", "docker-compose.yml", "controller-2:4433,controller-3", "controller-2:4434,controller-3"},
		{"compose untagged image", "docker-compose.yml", "image: postgres:17-alpine", "image: postgres"},
		{"compose latest tag", "docker-compose.yml", "couchdb:3.4.3", "couchdb:latest"},
		{"compose agent flag", "docker-compose.yml", `"--config"`, `"--conf"`},
		{"compose token flag", "docker-compose.yml", "--ttl 1h", "--expires 1h"},
		{"compose missing mount", "docker-compose.yml", "./builds/mosquitto/mosquitto.conf", "./builds/mosquitto/missing.conf"},
		{"compose broker host", "docker-compose.yml", "tcp://mosquitto:1883", "tcp://broker:1883"},
		{"compose published port", "docker-compose.yml", `"4433:4433/udp"`, `"4433:4433/tcp"`},
		{"compose DSN password", "docker-compose.yml", "postgres://wisp:wisp@", "postgres://wisp:secret@"},
		{"compose key typo", "docker-compose.yml", "    environment:\n      WISP_CONTROLLERS", "    enviroment:\n      WISP_CONTROLLERS"},
		{"prometheus agent port", "builds/prometheus/prometheus.yml", "agent:9464", "agent:9100"},
		{"prometheus controller host", "builds/prometheus/prometheus.yml", "controller-1:9465", "wisp:9465"},
		{"prometheus controller REST port", "builds/prometheus/prometheus.yml", "controller-1:9465", "controller-1:4433"},
		{"prometheus misses a controller", "builds/prometheus/prometheus.yml", `, "controller-3:9465"`, ""},
		{"compose REST on every interface", "docker-compose.yml", `"127.0.0.1:4000:4000/tcp"`, `"4000:4000/tcp"`},
		{"compose token URL port", "docker-compose.yml", "https://controller-1:4000", "https://controller-1:4001"},
		{"compose two controllers", "docker-compose.yml", "controller-3:\n    <<: *controller\n", "controller-3:\n    image: couchdb:3.4.3\n"},
		{"compose agent misses a controller", "docker-compose.yml", ",controller-3:4433", ""},
		{"compose no shared secrets key", "docker-compose.yml", "    WISP_SECRETS_KEY: ${WISP_SECRETS_KEY", "    WISP_SECRETS_KEYS: ${WISP_SECRETS_KEY"},
		{"compose a controller on another database", "docker-compose.yml", "  controller-3:\n    <<: *controller\n",
			"  controller-3:\n    <<: *controller\n    environment:\n      WISP_DATABASE_URL: postgres://wisp:wisp@postgres:5432/wisp?sslmode=disable&search_path=other\n      WISP_SECRETS_KEY: ${WISP_SECRETS_KEY}\n      WISP_DATA_DIR: /var/lib/wisp\n"},
		{"compose QUIC port published twice", "docker-compose.yml", `"4434:4433/udp"`, `"4433:4433/udp"`},
		{"compose unknown top-level key", "docker-compose.yml", "x-controller: &controller", "controller: &controller"},
		{"k8s REST on a LoadBalancer", "builds/k8s/controller.yaml", "  type: ClusterIP\n", "  type: LoadBalancer\n"},
		{"k8s admin token in the emptyDir", "builds/k8s/controller.yaml", "mountPath: /var/lib/wisp/admin.token", "mountPath: /var/lib/wisp/admin.tok"},
		{"k8s ingress without tls", "builds/k8s/controller.yaml", "  tls:\n    - hosts: [wisp.example.com]\n      secretName: wisp-rest-tls\n", ""},
		{"k8s ingress backend", "builds/k8s/controller.yaml", "                name: wisp-controller\n                port:\n                  name: http", "                name: wisp-controller\n                port:\n                  name: quic"},
		{"k8s metrics port", "builds/k8s/controller.yaml", `prometheus.io/port: "9465"`, `prometheus.io/port: "4433"`},
		{"prometheus QUIC as metrics", "builds/prometheus/prometheus.yml", "agent:9464", "agent:4080"},
		{"prometheus rule file name", "builds/prometheus/prometheus.yml", "  - wisp-alerts.yml", "  - wisp-alert.yml"},
		{"compose rule file not mounted", "docker-compose.yml", "      - ./builds/prometheus/wisp-alerts.yml:/etc/prometheus/wisp-alerts.yml:ro\n", ""},
		{"dockerfile env name", "builds/agent.Dockerfile", "WISP_METRICS_ADDR=0.0.0.0:9464", "WISP_METRICS=0.0.0.0:9464"},
		{"dockerfile expose", "builds/controller.Dockerfile", "EXPOSE 4000/tcp 4433/udp", "EXPOSE 4000/tcp 4433/tcp"},
		{"dockerfile builder tag", "builds/controller.Dockerfile", "golang:1.26 AS build", "golang AS build"},
		{"dockerfile go version", "builds/agent.Dockerfile", "golang:1.26 AS build", "golang:1.22 AS build"},
		{"dockerfile cmd", "builds/agent.Dockerfile", "go build -trimpath", "go build -trimpath ./cmd/wisp-edge"},
		{"dockerfile ldflags var", "builds/agent.Dockerfile", "version.Version=", "version.Release="},
		{"dockerfile root", "builds/agent.Dockerfile", "USER 10001:10001", "USER root"},
		{"dockerfile subcommand", "builds/agent.Dockerfile", `CMD ["run"]`, `CMD ["serve"]`},
		{"unit env file", "builds/systemd/wisp-agent.service", "EnvironmentFile=/etc/wisp/agent.env", "EnvironmentFile=/etc/wisp/wisp.env"},
		{"unit directive typo", "builds/systemd/wisp-agent.service", "\nProtectSystem=strict", "\nProtectSytem=strict"},
		{"unit env name", "builds/systemd/wisp-agent.service", "Environment=WISP_DATA_DIR", "Environment=WISP_DATADIR"},
		{"unit binary", "builds/systemd/wisp-agent.service", "ExecStart=/usr/local/bin/wisp-agent run", "ExecStart=/usr/bin/wisp-agent run"},
		{"unit restart", "builds/systemd/wisp-agent.service", "Restart=always", "Restart=on-failure"},
		{"install env name", "builds/install-agent.sh", `WISP_LABELS=$labels`, `WISP_LABEL=$labels`},
		{"k8s env name", "builds/k8s/agent.yaml", "name: WISP_LOCAL_API", "name: WISP_LOCALAPI"},
		{"k8s secret key", "builds/k8s/controller.yaml", "key: dsn", "key: url"},
		{"k8s service port", "builds/k8s/controller.yaml", "      targetPort: quic\n      protocol: UDP", "      targetPort: quic\n      protocol: TCP"},
		{"k8s controllers address", "builds/k8s/agent.yaml", "wisp-controller-peers.wisp.svc.cluster.local:4433", "wisp-ctl.wisp.svc.cluster.local:4433"},
		{"k8s one controller", "builds/k8s/controller.yaml", "replicas: 3", "replicas: 1"},
		{"k8s secrets key not shared", "builds/k8s/controller.yaml", "            - name: WISP_SECRETS_KEY\n              valueFrom:\n                secretKeyRef:\n                  name: wisp-secrets-key\n                  key: key\n", ""},
		{"k8s secrets key name", "builds/k8s/controller.yaml", "name: wisp-secrets-key\n                  key: key", "name: wisp-secrets-key\n                  key: secrets.key"},
		{"k8s agents through a balanced QUIC Service", "builds/k8s/controller.yaml", "  clusterIP: None\n", ""},
		{"k8s statefulset service", "builds/k8s/controller.yaml", "serviceName: wisp-controller-peers", "serviceName: wisp-controller"},
		{"k8s pod that does not exist", "builds/k8s/controller.yaml", "pod-name: wisp-controller-2", "pod-name: wisp-controller-3"},
		{"k8s embedded store for three", "builds/k8s/controller.yaml", "            - name: WISP_DATABASE_URL\n              valueFrom:\n                secretKeyRef:\n                  name: wisp-postgres\n                  key: dsn\n", ""},
		{"k8s identity file", "builds/k8s/controller.yaml", "mountPath: /var/lib/wisp/controller.key", "mountPath: /var/lib/wisp/tls.key"},
		{"k8s agent variable", "builds/k8s/agent.yaml", "- name: WISP_MQTT_BROKER", "- name: WISP_BROKER"},
		{"k8s agent command", "builds/k8s/agent.yaml", `args: ["run"]`, `args: ["start"]`},
		{"k8s untagged image", "builds/k8s/agent.yaml", "- name: agent\n          image: wisp-agent:0.1.0", "- name: agent\n          image: wisp-agent"},
		{"k8s container port", "builds/k8s/agent.yaml", "containerPort: 9464", "containerPort: 9465"},
		{"k8s readiness probe path", "builds/k8s/agent.yaml", "path: /readyz", "path: /metrics"},
		{"k8s liveness path not served", "builds/k8s/controller.yaml", "path: /healthz", "path: /health"},
		{"k8s probe on the REST port without a token", "builds/k8s/controller.yaml", "path: /readyz\n              port: http", "path: /metrics\n              port: http"},
		{"dockerfile healthcheck command", "builds/agent.Dockerfile", `wisp-agent", "healthcheck"`, `wisp-agent", "health"`},
		{"dockerfile healthcheck flag", "builds/controller.Dockerfile", `"healthcheck", "--wait"`, `"healthcheck", "--timeout"`},
		{"compose healthcheck with wget", "docker-compose.yml", `test: ["CMD", "wisp-agent", "healthcheck", "--wait", "2s"]`, `test: ["CMD", "wget", "-q", "http://127.0.0.1:9464/readyz"]`},
		{"compose healthcheck command", "docker-compose.yml", `"wisp-controller", "healthcheck"`, `"wisp-controller", "healthz"`},
		{"unit healthcheck command", "builds/systemd/wisp-agent.service", "wisp-agent healthcheck --live", "wisp-agent health --live"},
	}
	for _, m := range mutations {
		t.Run(m.name, func(t *testing.T) {
			orig, err := os.ReadFile(filepath.Join(repo, m.file))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(orig), m.old) {
				t.Fatalf("%s no longer contains %q: update the mutation", m.file, m.old)
			}
			c := &checker{names: n, live: live, overlay: map[string]string{m.file: strings.Replace(string(orig), m.old, m.new, 1)}}
			c.checkAll()
			if len(c.problems) == 0 {
				t.Fatalf("changing %q to %q in %s went unnoticed", m.old, m.new, m.file)
			}
			t.Logf("caught: %s", strings.Join(c.problems, "; "))
		})
	}
}
