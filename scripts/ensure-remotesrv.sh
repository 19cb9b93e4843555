#!/usr/bin/env bash
# Prints the path of Dolt's remote server (remotesrv: the gRPC + HTTP service `dolt_push`,
# `dolt_clone` and `dolt_backup` speak for http:// remotes), built from the Go module proxy into
# the cache on first use. The version is the Dolt module the pinned Doltgres requires, so the
# remote speaks exactly the protocol the server does.
set -euo pipefail
exec bash "$(dirname "$0")/go-binary.sh" remotesrv github.com/dolthub/dolt/go \
  "${REMOTESRV_VERSION:-v0.40.5-0.20260818190141-0c8421b85560}" \
  github.com/dolthub/dolt/go/utils/remotesrv
