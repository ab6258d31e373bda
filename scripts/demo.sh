#!/usr/bin/env bash
# make demo: from a fresh clone to a running `wisp dev` with the sample hello
# function uploaded and invoked. Everything lives in ./wisp-dev; the CLI
# config written is ./wisp-dev/cli.yaml (WISP_CLI_CONFIG), so your own
# ~/.config/wisp is left alone. Ctrl-C stops the platform.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bin wisp-dev
go build -o bin/wisp ./cmd/wisp
export WISP_CLI_CONFIG="$PWD/wisp-dev/cli.yaml"
bin/wisp dev --dir wisp-dev &
dev=$!
trap 'kill $dev 2>/dev/null; wait $dev 2>/dev/null' EXIT INT TERM
for _ in $(seq 1 100); do
	[ -s "$WISP_CLI_CONFIG" ] && bin/wisp agent list >/dev/null 2>&1 && break
	sleep 0.2
done
bin/wisp fn upload hello testdata/wasm/hello_c.wasm --wait 2>/dev/null || bin/wisp fn update hello testdata/wasm/hello_c.wasm --wait
echo '$ wisp fn invoke hello -a name=Ada'
bin/wisp fn invoke hello -a name=Ada
echo
echo "Try more with: WISP_CLI_CONFIG=$WISP_CLI_CONFIG bin/wisp --help   (Ctrl-C here stops Wisp)"
wait $dev
