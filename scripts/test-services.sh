#!/usr/bin/env bash
# Starts, idempotently, the local services Wisp's tests talk to. Safe to run
# again: a service already answering is left alone. Needs root for the system
# services (as on CI); on a laptop, start them your own way or let the tests
# skip what is missing.
set -uo pipefail

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # name port
	for _ in $(seq 1 50); do listening "$2" && return 0; sleep 0.2; done
	echo "test-services: $1 did not come up on 127.0.0.1:$2" >&2
	return 1
}

if ! listening 5432; then
	if command -v pg_ctlcluster >/dev/null; then
		echo "test-services: starting PostgreSQL"
		pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
		wait_port PostgreSQL 5432 || true
	else
		echo "test-services: PostgreSQL not installed; its tests will skip (or fail under WISP_REQUIRE_SERVICES=1)"
	fi
fi

if ! listening 1883; then
	if command -v mosquitto >/dev/null; then
		echo "test-services: starting Mosquitto"
		mosquitto -d -c /etc/mosquitto/mosquitto.conf || true
		wait_port Mosquitto 1883 || true
	else
		echo "test-services: Mosquitto not installed; MQTT tests will skip (or fail under WISP_REQUIRE_SERVICES=1)"
	fi
fi
exit 0
