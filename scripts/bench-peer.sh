#!/usr/bin/env bash
# bench-peer.sh — Wisp's runtime against wasmtime on the FunLess-ABI fixtures
# (bench/wasmtime, a module of its own). Skips with a message, and exit 0,
# where it cannot run: no cgo or C compiler, a platform wasmtime-go ships no
# library for, or the module cannot be downloaded.
#
# Usage: scripts/bench-peer.sh [benchtime]    (default 2s)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GO=${GO:-go}
BENCHTIME=${1:-2s}

skip() { echo "bench-peer: skipped: $*"; exit 0; }

[ "$($GO env CGO_ENABLED)" = 1 ] || skip "cgo is disabled (CGO_ENABLED=0)"
cc=$($GO env CC)
command -v "${cc%% *}" >/dev/null 2>&1 || skip "no C compiler ($cc)"
case "$($GO env GOOS)/$($GO env GOARCH)" in
  linux/amd64|linux/arm64|darwin/amd64|darwin/arm64|windows/amd64) ;;
  *) skip "wasmtime-go ships no library for $($GO env GOOS)/$($GO env GOARCH)" ;;
esac
cd "$ROOT/bench/wasmtime"
$GO mod download github.com/bytecodealliance/wasmtime-go/v39 >/dev/null 2>&1 ||
  skip "github.com/bytecodealliance/wasmtime-go/v39 cannot be downloaded"
$GO test -run '^$' -bench . -benchtime "$BENCHTIME" .
