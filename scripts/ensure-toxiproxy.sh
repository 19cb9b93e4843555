#!/usr/bin/env bash
# Prints the path of the pinned toxiproxy server (a TCP fault proxy, used by the network-fault
# tests), built from the Go module proxy into the cache on first use.
set -euo pipefail
exec bash "$(dirname "$0")/go-binary.sh" toxiproxy-server github.com/Shopify/toxiproxy/v2 \
  "${TOXIPROXY_VERSION:-v2.12.0}" github.com/Shopify/toxiproxy/v2/cmd/server
