#!/usr/bin/env bash
# Builds the pinned toxiproxy server (a TCP fault proxy, used by the network-fault tests) from the
# Go module proxy into a cache outside the repository and prints the binary's path. Rebuilds only
# when the cached binary for this version is missing. Safe to run concurrently.
set -euo pipefail

version="${TOXIPROXY_VERSION:-v2.12.0}"
cache="${DOLTGRES_SIDECAR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/doltgres-sidecar}"
dir="$cache/toxiproxy-$version"
bin="$dir/bin/toxiproxy-server"

if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi
command -v go >/dev/null || { echo "ensure-toxiproxy: 'go' is not on PATH" >&2; exit 1; }
mkdir -p "$dir/bin"
exec 9>"$dir/.lock"
flock 9
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi
# Built from a throw-away module that requires the pinned version (as for Doltgres).
work="$dir/build"
rm -rf "$work"
mkdir -p "$work"
cat >"$work/go.mod" <<MOD
module toxiproxy-build

go 1.26

require github.com/Shopify/toxiproxy/v2 $version
MOD
cat >"$work/tools.go" <<'GO'
//go:build tools

package tools

import _ "github.com/Shopify/toxiproxy/v2/cmd/server"
GO
echo "ensure-toxiproxy: building toxiproxy $version" >&2
(
  cd "$work"
  GOFLAGS=-mod=mod go mod tidy >&2
  go build -o "$bin.tmp" github.com/Shopify/toxiproxy/v2/cmd/server >&2
)
mv "$bin.tmp" "$bin"
echo "$bin"
