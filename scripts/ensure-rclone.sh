#!/usr/bin/env bash
# Prints the path of the pinned rclone (a general-purpose file sync tool with an S3 backend; the
# off-site benchmark's point of comparison), built from the Go module proxy into the cache on
# first use (several minutes; then reused).
set -euo pipefail
# rclone needs no cgo for its S3 backend and `copy`: a static build is quicker and runs anywhere.
CGO_ENABLED="${CGO_ENABLED:-0}" \
GO_BINARY_ESTIMATE="about 10 minutes on 2 cores" \
  exec bash "$(dirname "$0")/go-binary.sh" rclone github.com/rclone/rclone \
  "${RCLONE_VERSION:-v1.76.0}" github.com/rclone/rclone
