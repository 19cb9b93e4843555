#!/usr/bin/env bash
# Prints the path of the pinned Doltgres server, built from the Go module proxy into a cache
# outside the repository on first use (several minutes; then reused).
#
#   ensure-doltgres.sh            build if missing (installing libicu-dev first if needed); print the path
#   ensure-doltgres.sh --check    say what a build would lack, exit 1 if anything; build nothing
#
# A build needs Go (at least the version Doltgres' go.mod names), a C compiler (cgo), flock, and
# ICU's development files (libicu-dev, installed with apt-get: as root, or through sudo). Nothing
# of that is needed once the binary is in the cache.
set -euo pipefail

here="$(dirname "$0")"
version="${DOLTGRES_VERSION:-v1.2.0}"
go_needed=1.26.2 # the go directive of github.com/dolthub/doltgresql v1.2.0's go.mod
args=(doltgres github.com/dolthub/doltgresql "$version" github.com/dolthub/doltgresql/cmd/doltgres)
bin=$(bash "$here/go-binary.sh" --path "${args[@]}")
check=false
[ "${1:-}" = --check ] && check=true

if [ -x "$bin" ]; then
  $check || echo "$bin"
  exit 0
fi

# "1.26.2" >= "1.26.2": compares dotted versions.
at_least() {
  [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]
}

as_root=""
problems=()
if command -v go >/dev/null; then
  found=$(GOTOOLCHAIN=local go env GOVERSION 2>/dev/null || true)
  found=${found#go}
  if [ -z "$found" ] || ! at_least "$found" "$go_needed"; then
    problems+=("Go $go_needed or newer is needed to build Doltgres $version (found: ${found:-unknown})")
  fi
else
  problems+=("Go $go_needed or newer is needed to build Doltgres $version: 'go' is not on PATH")
fi
if ! command -v "${CC:-cc}" >/dev/null && ! command -v gcc >/dev/null; then
  problems+=("a C compiler is needed to build Doltgres (cgo): install gcc (apt-get install gcc)")
fi
command -v flock >/dev/null || problems+=("flock is needed (util-linux)")
icu=true
if command -v dpkg >/dev/null; then
  dpkg -s libicu-dev >/dev/null 2>&1 || icu=false
else
  pkg-config --exists icu-i18n 2>/dev/null || icu=false
fi
if ! $icu; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    :
  elif command -v sudo >/dev/null && command -v apt-get >/dev/null && sudo -n true 2>/dev/null; then
    as_root=sudo
  else
    problems+=("ICU's development files (libicu-dev) are needed to build Doltgres, and installing them needs root: run 'sudo apt-get install libicu-dev' (or this script as root)")
  fi
fi
if [ ${#problems[@]} -gt 0 ]; then
  for p in "${problems[@]}"; do echo "ensure-doltgres: $p" >&2; done
  exit 1
fi
$check && exit 0

if ! $icu; then
  echo "ensure-doltgres: installing libicu-dev${as_root:+ (through sudo)}" >&2
  $as_root apt-get update -qq >&2
  $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libicu-dev >&2
fi
GO_BINARY_ESTIMATE="about 5 to 20 minutes on 2 cores, more on a busy machine" \
  exec bash "$here/go-binary.sh" "${args[@]}"
