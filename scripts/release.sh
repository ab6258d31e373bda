#!/usr/bin/env bash
# Builds a Wisp release into builds/dist/ (make release VERSION=x calls it):
#
#   builds/dist/<os>-<arch>/<binary>            static binaries, version stamped in
#   builds/dist/wisp-<version>-<os>-<arch>.tar.gz  one tarball per OS/arch
#   builds/dist/SHA256SUMS                       sha256sum format, check with
#                                                (cd builds/dist && sha256sum -c SHA256SUMS)
#
# Linux amd64, arm64 and armv7 (GOARM=7, Raspberry Pi 2 and later in 32-bit
# mode) get wisp-controller, wisp-agent and the wisp CLI; darwin amd64/arm64
# get the CLI only. The CLI (./cmd/wisp) is included as soon as it has Go
# files; until then it is skipped with a message. Tarballs hold a top-level
# wisp-<version>-<os>-<arch>/ folder with the binaries, README.md and, for
# Linux, the agent's systemd unit and its install script. They are
# reproducible: sorted names, fixed owner and mtime, gzip without a timestamp.
#
# Usage: scripts/release.sh VERSION   (or VERSION=x scripts/release.sh)
set -euo pipefail

cd "$(dirname "$0")/.."

VERSION="${1:-${VERSION:-}}"
if [[ -z "$VERSION" ]]; then
	echo "release: no version: make release VERSION=x (or scripts/release.sh x)" >&2
	exit 2
fi
if [[ ! "$VERSION" =~ ^[A-Za-z0-9][A-Za-z0-9._+-]*$ ]]; then
	echo "release: version $VERSION: want letters, digits and . _ + - only (it goes into file names)" >&2
	exit 2
fi

GO="${GO:-go}"
DIST=builds/dist
MODULE=github.com/wispfn/wisp
LDFLAGS="-s -w -X $MODULE/internal/version.Version=$VERSION"
UNIT=builds/systemd/wisp-agent.service
INSTALLER=builds/install-agent.sh

for f in README.md "$UNIT" "$INSTALLER"; do
	[[ -f "$f" ]] || { echo "release: $f is missing" >&2; exit 1; }
done

# The CLI is another engineer's work in progress: include it once it has Go files.
with_cli=false
if compgen -G "cmd/wisp/*.go" >/dev/null; then
	with_cli=true
else
	echo "release: cmd/wisp has no Go files yet: skipping the wisp CLI (and the darwin tarballs, which hold only it)"
fi

# platform -> binaries. "arm" means GOARM=7 and is named armv7 in file names.
platforms=(linux/amd64 linux/arm64 linux/arm)
$with_cli && platforms+=(darwin/amd64 darwin/arm64)

rm -rf "$DIST"
mkdir -p "$DIST"

# Reproducible tarballs: the commit time when there is one, else a fixed date.
epoch="$(git log -1 --format=%ct 2>/dev/null || echo 1700000000)"

for p in "${platforms[@]}"; do
	goos="${p%/*}" goarch="${p#*/}"
	name="$goarch"
	goarm=""
	if [[ "$goarch" == arm ]]; then name=armv7 goarm=7; fi
	cmds=()
	[[ "$goos" == linux ]] && cmds+=(wisp-controller wisp-agent)
	$with_cli && cmds+=(wisp)
	out="$DIST/$goos-$name"
	mkdir -p "$out"
	for c in "${cmds[@]}"; do
		echo "release: $goos/$name $c"
		CGO_ENABLED=0 GOOS="$goos" GOARCH="$goarch" GOARM="$goarm" \
			"$GO" build -trimpath -ldflags "$LDFLAGS" -o "$out/$c" "./cmd/$c"
	done

	pkg="wisp-$VERSION-$goos-$name"
	stage="$(mktemp -d)"
	mkdir "$stage/$pkg"
	cp "${cmds[@]/#/$out/}" README.md "$stage/$pkg/"
	if [[ "$goos" == linux ]]; then
		cp "$UNIT" "$INSTALLER" "$stage/$pkg/"
	fi
	tar --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner \
		-C "$stage" -cf - "$pkg" | gzip -n -9 >"$DIST/$pkg.tar.gz"
	rm -rf "$stage"
done

(
	cd "$DIST"
	sha256sum -- *.tar.gz */* >SHA256SUMS
)

echo
echo "release $VERSION in $DIST:"
(cd "$DIST" && stat -c '%s %n' -- */* *.tar.gz | awk '{ printf "  %-44s %6.1f MiB\n", $2, $1 / 1048576 }')
