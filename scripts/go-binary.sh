#!/usr/bin/env bash
# Builds one command of a Go module at a pinned version from the Go module proxy into a cache
# outside the repository and prints the binary's path; rebuilds only when it is missing. Safe to
# run concurrently (a lock file serialises builders).
#
#   go-binary.sh NAME MODULE VERSION PACKAGE
#
# `go install module@version` needs the module's version list, which the proxy does not serve for
# every module, so the package is built from a throw-away module that requires the pinned version.
set -euo pipefail

name="$1" module="$2" version="$3" package="$4"
cache="${DOLTGRES_SIDECAR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/doltgres-sidecar}"
dir="$cache/$name-$version"
bin="$dir/bin/$name"

if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi
command -v go >/dev/null || { echo "go-binary: 'go' is not on PATH" >&2; exit 1; }
mkdir -p "$dir/bin"
exec 9>"$dir/.lock"
flock 9
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi
work="$dir/build"
rm -rf "$work"
mkdir -p "$work"
cat >"$work/go.mod" <<MOD
module $name-build

go 1.26

require $module $version
MOD
cat >"$work/tools.go" <<GO
//go:build tools

package tools

import _ "$package"
GO
echo "go-binary: building $name $version (first run only)" >&2
start=$(date +%s)
(
  cd "$work"
  GOFLAGS=-mod=mod go mod tidy >&2
  CGO_ENABLED="${CGO_ENABLED:-1}" go build -o "$bin.tmp" "$package" >&2
)
mv "$bin.tmp" "$bin"
echo "go-binary: built $name in $(( $(date +%s) - start ))s" >&2
echo "$bin"
