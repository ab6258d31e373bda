#!/usr/bin/env bash
# Installs, idempotently, what Wisp's tests and fixture builds need beyond Go
# (Debian/Ubuntu, apt-get):
#
#   clang lld wasi-libc libclang-rt-14-dev-wasm32   C fixtures (wasm32-wasi)
#   wabt                                            .wat fixtures (wat2wasm)
#   rustc libstd-rust-dev-wasm32                    Rust fixtures (wasm32-wasi)
#   qemu-user-static                                the arm64/armv7 agent test
#   prometheus                                      promtool: the alert rules test
#
# A package whose files are already there is left alone; apt-get runs only
# when something is missing, with one `apt-get update` first. Safe to run
# again. Needs root for apt-get; as another user it lists what is missing.
set -euo pipefail

# package -> a file it provides (what the tests actually use).
declare -A probe=(
	[clang]=/usr/bin/clang
	[lld]=/usr/bin/wasm-ld
	[wasi-libc]=/usr/include/wasm32-wasi/stdio.h
	[libclang-rt-14-dev-wasm32]=/usr/lib/llvm-14/lib/clang/14.0.6/lib/wasi/libclang_rt.builtins-wasm32.a
	[wabt]=/usr/bin/wat2wasm
	[rustc]=/usr/bin/rustc
	[libstd-rust-dev-wasm32]=/usr/lib/rustlib/wasm32-wasi
	[qemu-user-static]=/usr/bin/qemu-aarch64-static
	[prometheus]=/usr/bin/promtool
)
order=(clang lld wasi-libc libclang-rt-14-dev-wasm32 wabt rustc libstd-rust-dev-wasm32 qemu-user-static prometheus)

installed() { # package
	local p="$1"
	if [[ -e "${probe[$p]}" ]]; then return 0; fi
	# The probe path can move between releases (clang's version dir): ask dpkg too.
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'
}

missing=()
for p in "${order[@]}"; do
	if installed "$p"; then
		echo "install-toolchains: $p: present"
	else
		missing+=("$p")
	fi
done
if ((${#missing[@]} == 0)); then
	echo "install-toolchains: everything is installed"
	exit 0
fi

echo "install-toolchains: missing: ${missing[*]}"
if [[ "$(id -u)" -ne 0 ]]; then
	echo "install-toolchains: not root: run it as root (sudo bash $0), or install them yourself:" >&2
	echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
	exit 1
fi
if ! command -v apt-get >/dev/null; then
	echo "install-toolchains: no apt-get here: install ${missing[*]} with this system's package manager" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"
echo "install-toolchains: installed ${missing[*]}"
