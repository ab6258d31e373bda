#!/bin/sh
# Installs the Wisp agent on a Linux box (a Raspberry Pi or any systemd host)
# from a release tarball, as root:
#
#   wisp-controller token create | sudo sh install-agent.sh [--name NAME] [--labels k=v,...] RELEASE CONTROLLER
#   sudo sh install-agent.sh ... RELEASE CONTROLLER < join-token.txt
#
#   RELEASE     a wisp-<version>-linux-<arch>.tar.gz file, a folder holding the
#               tarballs (builds/dist/), or an http(s) URL of the tarball (the
#               URL may contain {arch}, replaced by this box's arch)
#   CONTROLLER  host:port of the controller's QUIC port (udp 4433), or several
#               comma-separated
#   The join token (from `wisp-controller token create`) is read from standard
#   input, never from the command line, where every local user could read it
#   (ps). It is used on the first start only; the agent then keeps its own
#   credential in /var/lib/wisp. Upgrading an agent that has joined needs no
#   token: give empty input (< /dev/null).
#
# It detects the arch with uname -m (aarch64 -> arm64, armv7l -> armv7,
# x86_64 -> amd64), checks the tarball against SHA256SUMS when one lies beside
# it, installs wisp-agent to /usr/local/bin, creates the wisp system user and
# /var/lib/wisp, writes /etc/wisp/agent.env (0640 root:wisp), installs and
# enables builds/systemd/wisp-agent.service. Running it again upgrades the
# binary and rewrites agent.env (the old one is kept as agent.env.bak).
#
# For tests: WISP_INSTALL_ROOT=<dir> installs under that folder instead of /,
# without root, without creating the user and without calling systemctl;
# WISP_INSTALL_ARCH overrides the detected arch.
set -eu

prog=install-agent.sh
die() { echo "$prog: $*" >&2; exit 1; }
usage() {
	echo "usage: $prog [--name NAME] [--labels k=v,...] RELEASE CONTROLLER < JOIN_TOKEN" >&2
	echo "  RELEASE: a wisp-<version>-linux-<arch>.tar.gz, a folder of them, or an http(s) URL ({arch} is replaced)" >&2
	echo "  CONTROLLER: host:port of the controller's QUIC port (udp 4433), comma-separated for several" >&2
	echo "  JOIN_TOKEN on standard input: from wisp-controller token create (empty to upgrade a joined agent)" >&2
	exit 2
}

name="" labels=""
while [ $# -gt 0 ]; do
	case "$1" in
	--name) [ $# -ge 2 ] || usage; name="$2"; shift 2 ;;
	--name=*) name="${1#*=}"; shift ;;
	--labels) [ $# -ge 2 ] || usage; labels="$2"; shift 2 ;;
	--labels=*) labels="${1#*=}"; shift ;;
	-h | --help) usage ;;
	--) shift; break ;;
	-*) echo "$prog: unknown option $1" >&2; usage ;;
	*) break ;;
	esac
done
if [ $# -eq 3 ]; then
	die "the join token goes on standard input, not on the command line (every local user can read command lines): ... | $prog RELEASE CONTROLLER"
fi
[ $# -eq 2 ] || usage
release="$1" controllers="$2"
[ -n "$controllers" ] || die "controller address is empty"
if [ -t 0 ]; then
	printf '%s: paste the join token and press Enter: ' "$prog" >&2
	stty -echo 2>/dev/null || true
	IFS= read -r token || token=""
	stty echo 2>/dev/null || true
	echo >&2
else
	IFS= read -r token || true
fi
token="$(printf '%s' "${token:-}" | tr -d '[:space:]')"
root="${WISP_INSTALL_ROOT:-}"
if [ -z "$token" ]; then
	[ -f "$root/etc/wisp/agent.env" ] || die "no join token on standard input (make one with: wisp-controller token create)"
	echo "$prog: no join token given: upgrading an agent that has joined"
else
	case "$token" in wispjoin1.*) ;; *) die "join token does not start with wispjoin1. (make one with: wisp-controller token create)" ;; esac
fi
for v in "$controllers" "$token" "$name" "$labels"; do
	case "$v" in *[[:space:]\"\'\\]*) die "arguments must not contain spaces, quotes or backslashes: $v" ;; esac
done

if [ -z "$root" ] && [ "$(id -u)" -ne 0 ]; then
	die "run as root (sudo sh $0 ...): it writes /usr/local/bin, /etc/wisp and /etc/systemd/system"
fi

arch="${WISP_INSTALL_ARCH:-}"
if [ -z "$arch" ]; then
	m="$(uname -m)"
	case "$m" in
	x86_64 | amd64) arch=amd64 ;;
	aarch64 | arm64) arch=arm64 ;;
	armv7l | armv7 | armv8l) arch=armv7 ;;
	armv6l) die "ARMv6 (Pi Zero/1) is not supported: releases are built for ARMv7 and later" ;;
	*) die "unsupported machine $m: releases exist for x86_64, aarch64 and armv7l" ;;
	esac
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Resolve RELEASE to a local tarball.
case "$release" in
http://* | https://*)
	url="$(printf '%s' "$release" | sed "s/{arch}/$arch/g")"
	tarball="$work/$(basename "$url")"
	echo "$prog: downloading $url"
	if command -v curl >/dev/null 2>&1; then
		curl -fsSL -o "$tarball" "$url" || die "download failed: $url"
	elif command -v wget >/dev/null 2>&1; then
		wget -q -O "$tarball" "$url" || die "download failed: $url"
	else
		die "neither curl nor wget is installed to download $url"
	fi
	;;
*)
	if [ -d "$release" ]; then
		set -- "$release"/wisp-*-linux-"$arch".tar.gz
		[ -f "$1" ] || die "no wisp-*-linux-$arch.tar.gz in $release"
		[ $# -eq 1 ] || die "several tarballs for $arch in $release: name one"
		release="$1"
	fi
	[ -f "$release" ] || die "no such file: $release"
	tarball="$release"
	sums="$(dirname "$release")/SHA256SUMS"
	if [ -f "$sums" ] && command -v sha256sum >/dev/null 2>&1; then
		base="$(basename "$release")"
		want="$(awk -v f="$base" '$2 == f || $2 == "*" f { print $1 }' "$sums")"
		if [ -n "$want" ]; then
			got="$(sha256sum "$release" | cut -d' ' -f1)"
			[ "$got" = "$want" ] || die "$base does not match $sums"
			echo "$prog: checksum of $base ok"
		fi
	fi
	;;
esac
case "$(basename "$tarball")" in
*-linux-"$arch".tar.gz) ;;
*-linux-*.tar.gz) die "$(basename "$tarball") is not for this machine ($arch)" ;;
esac

tar -xzf "$tarball" -C "$work" || die "cannot unpack $tarball"
bin="$(find "$work" -type f -name wisp-agent | head -n 1)"
[ -n "$bin" ] || die "$tarball holds no wisp-agent"
unit="$(find "$work" -type f -name wisp-agent.service | head -n 1)"
if [ -z "$unit" ]; then
	unit="$(dirname "$0")/systemd/wisp-agent.service"
	[ -f "$unit" ] || die "$tarball holds no wisp-agent.service"
fi
chmod 0755 "$bin"
if [ -z "$root" ]; then
	"$bin" version >/dev/null 2>&1 || die "the wisp-agent in $tarball does not run on this machine ($arch)"
fi

# Install.
mkdir -p "$root/usr/local/bin" "$root/etc/wisp" "$root/etc/systemd/system" "$root/var/lib/wisp"
cp "$bin" "$root/usr/local/bin/wisp-agent.new"
chmod 0755 "$root/usr/local/bin/wisp-agent.new"
mv -f "$root/usr/local/bin/wisp-agent.new" "$root/usr/local/bin/wisp-agent"
cp "$unit" "$root/etc/systemd/system/wisp-agent.service"
chmod 0644 "$root/etc/systemd/system/wisp-agent.service"

if [ -z "$root" ] && ! id wisp >/dev/null 2>&1; then
	nologin=/usr/sbin/nologin
	[ -x "$nologin" ] || nologin=/bin/false
	useradd --system --home-dir /var/lib/wisp --no-create-home --shell "$nologin" wisp
	echo "$prog: created user wisp"
fi

env="$root/etc/wisp/agent.env"
if [ -f "$env" ]; then cp -p "$env" "$env.bak"; fi
umask 027
{
	echo "# Wisp agent settings, read by wisp-agent.service (EnvironmentFile=)."
	echo "# Written by $prog on $(date -u +%Y-%m-%dT%H:%M:%SZ); names: wisp-agent run --help."
	echo "WISP_CONTROLLERS=$controllers"
	if [ -n "$token" ]; then echo "WISP_JOIN_TOKEN=$token"; fi
	echo "WISP_DATA_DIR=/var/lib/wisp"
	if [ -n "$name" ]; then echo "WISP_AGENT_NAME=$name"; fi
	if [ -n "$labels" ]; then echo "WISP_LABELS=$labels"; fi
	echo "# Prometheus metrics and the local invoke API listen on loopback by default:"
	echo "#WISP_METRICS_ADDR=0.0.0.0:9464"
	echo "#WISP_LOCAL_API=127.0.0.1:4080"
	echo "#WISP_MQTT_BROKER=tcp://127.0.0.1:1883"
	echo "# Answer local API calls before the outbox fsync (survives a crash, not a power cut):"
	echo "#WISP_LOCAL_API_SYNC=false"
} >"$env.new"
mv -f "$env.new" "$env"
chmod 0640 "$env"
if [ -z "$root" ]; then
	chown root:wisp "$env"
	chown wisp:wisp /var/lib/wisp
	chmod 0700 /var/lib/wisp
fi

if [ -n "$root" ]; then
	echo "$prog: installed under $root (test mode: no user, no systemctl)"
	exit 0
fi
if ! command -v systemctl >/dev/null 2>&1; then
	echo "$prog: installed; systemd is not running here: start the agent with"
	echo "  sudo -u wisp sh -c 'set -a; . /etc/wisp/agent.env; exec /usr/local/bin/wisp-agent run'"
	exit 0
fi
systemctl daemon-reload
systemctl enable wisp-agent.service
systemctl restart wisp-agent.service
echo "$prog: $("$root/usr/local/bin/wisp-agent" version) installed and started; logs: journalctl -u wisp-agent -f"
