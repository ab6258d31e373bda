// Package deploytest checks what Wisp ships rather than what it runs: the
// release binaries on other architectures and the deployment files in
// builds/ and docker-compose.yml.
//
//   - TestAgentsUnderQEMU builds the linux/arm64 and linux/arm (GOARM=7)
//     agents, runs them under qemu-user against a native controller on
//     loopback, invokes a function on each and logs the latency beside a
//     native agent's.
//   - TestDeploymentFiles parses every Dockerfile, the systemd unit, the
//     install script, the Kubernetes manifests, docker-compose.yml and the
//     Prometheus config, and checks that each image has a tag and that each
//     flag, environment variable, port and file they name exists, taking the
//     names from the built binaries' help output; and that the controller's
//     REST and metrics ports stay private (compose publishes them on
//     127.0.0.1 only; Kubernetes keeps them off LoadBalancer/NodePort
//     Services and reaches REST through an Ingress with TLS) and that an
//     emptyDir data dir gets admin.token from a Secret. Both run a cluster
//     (docs/cluster.md): three controllers on one database with one secrets
//     key and one identity (a Secret, a shared volume, or the store once it
//     keeps the identity), every agent linked to every controller (compose
//     names all three; Kubernetes agents dial a headless Service, and no
//     balanced Service carries the QUIC port of several controllers), and
//     no host port published twice. The health checks
//     are checked against running binaries: every Kubernetes probe is
//     liveness on /healthz and readiness on /readyz and gets 200 from the
//     listener it names (a native controller and agent run on loopback),
//     and the Dockerfiles, docker-compose.yml and the systemd unit run the
//     binaries' healthcheck command (no curl or wget in the images).
//     No Docker engine is needed.
//   - TestHealthcheckCommands runs both healthcheck commands against those
//     live servers (exit 0) and against nothing (exit 1).
//   - TestInstallAgentScript runs builds/install-agent.sh against a fake root.
//   - TestAlertRules runs `promtool check rules` and `promtool test rules`
//     on builds/prometheus/wisp-alerts.yml (promtool: Debian's prometheus
//     package, scripts/install-toolchains.sh), and wants promtool to refuse
//     broken copies.
//   - TestDashboardAndAlertMetricsExist runs the controller and an agent,
//     invokes a function, scrapes both /metrics and checks that every
//     metric builds/grafana/wisp.json and the alert rules query exists.
//
// It has no non-test code and must never be imported.
package deploytest
