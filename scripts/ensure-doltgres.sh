#!/usr/bin/env bash
# Builds the pinned Doltgres server from the Go module proxy into a cache outside the repository and
# prints the binary's path. Rebuilds only when the cached binary for this version is missing.
# Safe to run concurrently: a lock file serialises builders.
set -euo pipefail

version="${DOLTGRES_VERSION:-v1.2.0}"
cache="${DOLTGRES_SIDECAR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/doltgres-sidecar}"
dir="$cache/doltgres-$version"
bin="$dir/bin/doltgres"

if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi

command -v go >/dev/null || { echo "ensure-doltgres: 'go' is not on PATH" >&2; exit 1; }
mkdir -p "$dir"
exec 9>"$dir/.lock"
flock 9
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi

# cgo dependencies of Doltgres (ICU for collations).
if ! dpkg -s libicu-dev >/dev/null 2>&1; then
  echo "ensure-doltgres: installing libicu-dev" >&2
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libicu-dev >&2
fi

# `go install module@version` needs the module's version list, which the proxy does not serve for
# this module, so build it from a throw-away module that requires the pinned version.
work="$dir/build"
rm -rf "$work"
mkdir -p "$work"
cat >"$work/go.mod" <<MOD
module doltgres-build

go 1.26

require github.com/dolthub/doltgresql $version
MOD
cat >"$work/tools.go" <<'GO'
//go:build tools

package tools

import _ "github.com/dolthub/doltgresql/cmd/doltgres"
GO
echo "ensure-doltgres: building Doltgres $version (first run only; several minutes)" >&2
start=$(date +%s)
(
  cd "$work"
  GOFLAGS=-mod=mod go mod tidy >&2
  CGO_ENABLED=1 go build -o "$bin.tmp" github.com/dolthub/doltgresql/cmd/doltgres >&2
)
mv "$bin.tmp" "$bin"
echo "ensure-doltgres: built in $(( $(date +%s) - start ))s" >&2
echo "$bin"
