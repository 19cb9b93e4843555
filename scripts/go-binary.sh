#!/usr/bin/env bash
# Builds one command of a Go module at a pinned version from the Go module proxy into a cache
# outside the repository and prints the binary's path; rebuilds only when it is missing. Safe to
# run concurrently: a lock file serialises builders, and one that waits says so.
#
#   go-binary.sh NAME MODULE VERSION PACKAGE     build if missing; print the path
#   go-binary.sh --path NAME MODULE VERSION ...  print where the binary is (or would be); build nothing
#
# It is never silent for long: it says when it starts building (with GO_BINARY_ESTIMATE, how long
# that takes) and when it waits for another process's build, and then repeats a line every
# DOLTGRES_SIDECAR_PROGRESS_INTERVAL seconds (30) until that is done. It waits at most
# DOLTGRES_SIDECAR_BUILD_WAIT seconds (3600) for another build.
#
# GO_BINARY_REPLACE holds `replace` directives the module's own go.mod has (a dependency's module
# path moved, say), separated by ';': Go ignores a dependency's replaces, so the throw-away
# module repeats them.
#
# `go install module@version` needs the module's version list, which the proxy does not serve for
# every module, so the package is built from a throw-away module that requires the pinned version.
set -euo pipefail

path_only=false
if [ "${1:-}" = --path ]; then
  path_only=true
  shift
fi
name="$1" module="$2" version="$3" package="$4"
cache="${DOLTGRES_SIDECAR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/doltgres-sidecar}"
dir="$cache/$name-$version"
bin="$dir/bin/$name"
interval="${DOLTGRES_SIDECAR_PROGRESS_INTERVAL:-30}"
max_wait="${DOLTGRES_SIDECAR_BUILD_WAIT:-3600}"

if $path_only || [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi
command -v go >/dev/null || { echo "go-binary: 'go' is not on PATH: install Go to build $name" >&2; exit 1; }
mkdir -p "$dir/bin"

# Minutes and seconds since $1 (seconds since the epoch).
since() {
  local s=$(( $(date +%s) - $1 ))
  printf '%dm%02ds' $(( s / 60 )) $(( s % 60 ))
}

# The lock: opened without truncating, so that whoever waits can read who builds (.builder).
exec 9<>"$dir/.lock"
if ! flock -n 9; then
  waited=$(date +%s)
  while ! flock -w "$interval" 9; do
    builder=$(cat "$dir/.builder" 2>/dev/null || true)
    who=""
    if [ -n "$builder" ]; then
      who=" (process ${builder%% *}, building for $(since "${builder##* }"))"
    fi
    echo "go-binary: waiting for another build of $name $version$who: $(since "$waited") so far" >&2
    if [ $(( $(date +%s) - waited )) -ge "$max_wait" ]; then
      echo "go-binary: gave up waiting for the build of $name after ${max_wait}s (DOLTGRES_SIDECAR_BUILD_WAIT)" >&2
      exit 1
    fi
  done
  echo "go-binary: the other build of $name finished after $(since "$waited")" >&2
fi
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi
start=$(date +%s)
echo "$$ $start" >"$dir/.builder"
echo "go-binary: building $name $version from the Go module proxy (first run only${GO_BINARY_ESTIMATE:+; $GO_BINARY_ESTIMATE}); a line every ${interval}s until it is done" >&2
# The ticker holds neither the lock nor the terminal's attention: it stops with this script.
(
  exec 9>&-
  while sleep "$interval" && kill -0 "$$" 2>/dev/null; do
    echo "go-binary: still building $name $version: $(since "$start") so far" >&2
  done
) &
ticker=$!
trap 'kill "$ticker" 2>/dev/null || true; rm -f "$dir/.builder"' EXIT
work="$dir/build"
rm -rf "$work"
mkdir -p "$work"
cat >"$work/go.mod" <<MOD
module $name-build

go 1.26

require $module $version
MOD
if [ -n "${GO_BINARY_REPLACE:-}" ]; then
  IFS=';' read -ra replaces <<<"$GO_BINARY_REPLACE"
  for r in "${replaces[@]}"; do
    echo "replace $r" >>"$work/go.mod"
  done
fi
cat >"$work/tools.go" <<GO
//go:build tools

package tools

import _ "$package"
GO
(
  cd "$work"
  GOFLAGS=-mod=mod go mod tidy >&2
  CGO_ENABLED="${CGO_ENABLED:-1}" go build -o "$bin.tmp" "$package" >&2
)
mv "$bin.tmp" "$bin"
echo "go-binary: built $name $version in $(since "$start")" >&2
echo "$bin"
