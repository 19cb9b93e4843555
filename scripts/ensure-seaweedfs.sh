#!/usr/bin/env bash
# Prints the path of the pinned SeaweedFS server (`weed`: an S3-compatible distributed object
# store; the test bed's off-site target), built from the Go module proxy into the cache on first
# use (several minutes; then reused).
set -euo pipefail
# The replace is SeaweedFS' own (its go.mod): the original go-bip39 repository is gone.
GO_BINARY_REPLACE="github.com/tyler-smith/go-bip39 => github.com/cosmos/go-bip39 v1.0.0" \
GO_BINARY_ESTIMATE="about 10 minutes on 2 cores" \
  exec bash "$(dirname "$0")/go-binary.sh" weed github.com/seaweedfs/seaweedfs \
  "${SEAWEEDFS_VERSION:-v0.0.0-20261109003541-7506e5f91cd6}" github.com/seaweedfs/seaweedfs/weed
