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

# CouchDB-compatible server for the sink tests: pouchdb-server from npm, pinned
# in scripts/couch/package.json and installed into scripts/couch/node_modules
# (not committed). It runs in memory (-m, PouchDB's memory adapter, so nothing
# is written but its config and log files, which live in a temp directory),
# bound to loopback only.
couch_dir="$(cd "$(dirname "$0")" && pwd)/couch"
if ! listening 5984; then
	if command -v npm >/dev/null && command -v node >/dev/null; then
		if [ ! -x "$couch_dir/node_modules/.bin/pouchdb-server" ]; then
			echo "test-services: installing pouchdb-server into $couch_dir/node_modules"
			(cd "$couch_dir" && npm ci --no-audit --no-fund --loglevel=error) # exact versions of package-lock.json || true
		fi
		if [ -x "$couch_dir/node_modules/.bin/pouchdb-server" ]; then
			run_dir="${TMPDIR:-/tmp}/wisp-pouchdb-server"
			mkdir -p "$run_dir"
			echo "test-services: starting pouchdb-server (in memory) on 127.0.0.1:5984; log in $run_dir"
			# Only the server goes to the background (no shell waits on it
			# holding this script's stdout).
			(
				cd "$run_dir" || exit 1
				nohup setsid "$couch_dir/node_modules/.bin/pouchdb-server" \
					--in-memory --host 127.0.0.1 --port 5984 --config "$run_dir/config.json" \
					--no-stdout-logs >"$run_dir/server.log" 2>&1 </dev/null &
			)
			wait_port pouchdb-server 5984 || true
		else
			echo "test-services: pouchdb-server could not be installed; CouchDB sink tests will skip (or fail under WISP_REQUIRE_SERVICES=1)"
		fi
	else
		echo "test-services: node/npm not installed; CouchDB sink tests will skip (or fail under WISP_REQUIRE_SERVICES=1)"
	fi
fi
exit 0
