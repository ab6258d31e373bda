#!/usr/bin/env bash
# build-fixtures.sh — rebuild every Wasm test fixture in testdata/wasm/ from
# the sources in testdata/src/. See testdata/README.md for what each one is.
#
# Usage:
#   scripts/build-fixtures.sh           rebuild and replace testdata/wasm/*.wasm
#   scripts/build-fixtures.sh --check   rebuild into a temporary directory and
#                                       compare with testdata/wasm/ (exit 1 on
#                                       any difference); nothing is replaced
#
# Environment overrides: CLANG (clang), WAT2WASM (wat2wasm), RUSTC
# (/usr/bin/rustc), GO (go).
#
# The outputs are byte-for-byte reproducible with the same toolchain versions
# (no debug info, symbols stripped, relative source paths, empty Go build id).
# Toolchains used for the committed files: Debian clang 14.0.6 + wasi-libc,
# wabt 1.0.32, Debian rustc 1.63.0, Go 1.26.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

CHECK=0
case "${1:-}" in
  "") ;;
  --check) CHECK=1 ;;
  -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

CLANG=${CLANG:-clang}
WAT2WASM=${WAT2WASM:-wat2wasm}
RUSTC=${RUSTC:-/usr/bin/rustc}
GO=${GO:-go}

SRC=testdata/src
DEST=testdata/wasm

missing=0
need() { # need <description> <install hint>
  echo "build-fixtures: missing $1 — install it with: $2" >&2
  missing=1
}

# --- toolchain checks --------------------------------------------------------
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

if ! command -v "$CLANG" >/dev/null 2>&1; then
  need "clang ($CLANG)" "apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32"
else
  if ! command -v wasm-ld >/dev/null 2>&1 && ! command -v wasm-ld-14 >/dev/null 2>&1; then
    need "the wasm linker wasm-ld" "apt-get install lld"
  fi
  printf 'int main(void){return 0;}\n' >"$TMP/probe.c"
  if ! "$CLANG" --target=wasm32-wasi -O2 -o "$TMP/probe.wasm" "$TMP/probe.c" 2>"$TMP/probe.err"; then
    sed 's/^/  /' "$TMP/probe.err" >&2
    need "a working wasm32-wasi C toolchain (sysroot/builtins)" \
      "apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32"
  fi
fi

if ! command -v "$WAT2WASM" >/dev/null 2>&1; then
  need "wat2wasm ($WAT2WASM)" "apt-get install wabt"
fi

if ! command -v "$RUSTC" >/dev/null 2>&1; then
  need "rustc ($RUSTC)" "apt-get install rustc libstd-rust-dev-wasm32"
else
  libdir=$("$RUSTC" --print target-libdir --target wasm32-wasi 2>/dev/null || true)
  if [ -z "$libdir" ] || ! ls "$libdir"/libstd-*.rlib >/dev/null 2>&1; then
    need "the Rust standard library for wasm32-wasi" "apt-get install libstd-rust-dev-wasm32"
  fi
fi

if ! command -v "$GO" >/dev/null 2>&1; then
  need "go ($GO)" "Go >= 1.26 from https://go.dev/dl/ (Debian's golang-go is too old for go:wasmexport)"
fi

if [ "$missing" -ne 0 ]; then
  echo "build-fixtures: cannot build the fixtures, see above" >&2
  exit 1
fi

OUT="$TMP/out"
mkdir -p "$OUT"

step() { printf '  %-24s %s\n' "$1" "$2"; }

# --- C -----------------------------------------------------------------------
# No -g, symbols and custom sections stripped by the linker.
CFLAGS=(--target=wasm32-wasi -O2 -Wall -Wextra -Werror -Wl,--strip-all)

step hello_c.wasm "$SRC/c/hello.c (FunLess ABI reactor)"
"$CLANG" "${CFLAGS[@]}" -mexec-model=reactor \
  -o "$OUT/hello_c.wasm" "$SRC/c/hello.c"

step env_c.wasm "$SRC/c/env.c (FunLess ABI reactor, getenv)"
"$CLANG" "${CFLAGS[@]}" -mexec-model=reactor \
  -o "$OUT/env_c.wasm" "$SRC/c/env.c"

step envcmd_c.wasm "$SRC/c/env.c -DWISP_COMMAND (WASI command, getenv)"
"$CLANG" "${CFLAGS[@]}" -DWISP_COMMAND -o "$OUT/envcmd_c.wasm" "$SRC/c/env.c"

step echo_c.wasm "$SRC/c/echo.c (WASI command)"
"$CLANG" "${CFLAGS[@]}" -o "$OUT/echo_c.wasm" "$SRC/c/echo.c"

step exit_c.wasm "$SRC/c/exit.c (WASI command)"
"$CLANG" "${CFLAGS[@]}" -o "$OUT/exit_c.wasm" "$SRC/c/exit.c"

step secret_echo.wasm "$SRC/c/secret_echo.c (WASI command reading API_KEY)"
"$CLANG" "${CFLAGS[@]}" -o "$OUT/secret_echo.wasm" "$SRC/c/secret_echo.c"

# --- Rust --------------------------------------------------------------------
RUSTFLAGS_FIX=(--edition 2021 --target wasm32-wasi -C opt-level=s -C strip=symbols
  -C panic=abort -C codegen-units=1 -C lto "--remap-path-prefix=$ROOT=.")

step echo_rust.wasm "$SRC/rust/echo.rs (WASI command)"
"$RUSTC" "${RUSTFLAGS_FIX[@]}" --crate-name echo_rust -o "$OUT/echo_rust.wasm" "$SRC/rust/echo.rs"

step hello_rust.wasm "$SRC/rust/hello.rs (WASI command)"
"$RUSTC" "${RUSTFLAGS_FIX[@]}" --crate-name hello_rust -o "$OUT/hello_rust.wasm" "$SRC/rust/hello.rs"

step hello_fl_rust.wasm "$SRC/rust/hello_fl.rs (FunLess ABI cdylib)"
"$RUSTC" "${RUSTFLAGS_FIX[@]}" --crate-type cdylib --crate-name hello_fl_rust -o "$OUT/hello_fl_rust.wasm" "$SRC/rust/hello_fl.rs"

step isolation_rust.wasm "$SRC/rust/isolation.rs (FunLess ABI cdylib)"
"$RUSTC" "${RUSTFLAGS_FIX[@]}" --crate-type cdylib --crate-name isolation_rust -o "$OUT/isolation_rust.wasm" "$SRC/rust/isolation.rs"

step isolation_rust_cmd.wasm "$SRC/rust/isolation.rs --cfg wisp_command (WASI command)"
"$RUSTC" "${RUSTFLAGS_FIX[@]}" --cfg wisp_command --crate-name isolation_rust_cmd -o "$OUT/isolation_rust_cmd.wasm" "$SRC/rust/isolation.rs"

# --- Go ----------------------------------------------------------------------
# Own module (testdata/src/go/hello/go.mod), so the main module never sees it.
step hello_go.wasm "$SRC/go/hello (FunLess ABI reactor, c-shared)"
(
  cd "$SRC/go/hello"
  env GOOS=wasip1 GOARCH=wasm CGO_ENABLED=0 GOFLAGS= GOWORK=off GOTOOLCHAIN=local \
    "$GO" build -buildmode=c-shared -trimpath -buildvcs=false \
    -ldflags="-s -w -buildid=" -o "$OUT/hello_go.wasm" .
)

# --- WAT ---------------------------------------------------------------------
# wat2wasm writes no name section unless --debug-names is given.
for wat in "$SRC"/wat/*.wat; do
  name=$(basename "$wat" .wat)
  step "$name.wasm" "$wat"
  "$WAT2WASM" "$wat" -o "$OUT/$name.wasm"
done

# --- generated, not built from source ------------------------------------------
step invalid.wasm "first 40 bytes of hello_c.wasm (truncated module)"
head -c 40 "$OUT/hello_c.wasm" >"$OUT/invalid.wasm"
step notwasm.wasm "the text 'this is not wasm'"
printf 'this is not wasm' >"$OUT/notwasm.wasm"

# --- install or compare --------------------------------------------------------
if [ "$CHECK" -eq 1 ]; then
  status=0
  for f in "$OUT"/*.wasm; do
    name=$(basename "$f")
    if ! cmp -s "$f" "$DEST/$name"; then
      echo "build-fixtures: $DEST/$name differs from a fresh build" >&2
      status=1
    fi
  done
  for f in "$DEST"/*.wasm; do
    [ -e "$f" ] || continue
    if [ ! -e "$OUT/$(basename "$f")" ]; then
      echo "build-fixtures: $f has no source (stale?)" >&2
      status=1
    fi
  done
  if [ "$status" -eq 0 ]; then
    echo "build-fixtures: $DEST is up to date"
  fi
  exit "$status"
fi

mkdir -p "$DEST"
for f in "$OUT"/*.wasm; do
  name=$(basename "$f")
  if ! cmp -s "$f" "$DEST/$name"; then
    cp "$f" "$DEST/$name.tmp"
    chmod 0644 "$DEST/$name.tmp"
    mv "$DEST/$name.tmp" "$DEST/$name"
  fi
done
echo "build-fixtures: $(ls "$OUT"/*.wasm | wc -l) fixtures in $DEST"
