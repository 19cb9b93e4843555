#!/usr/bin/env bash
# Prints the path of the pinned promtool (Prometheus' rule checker and rule unit tester), built
# from the Go module proxy into a cache outside the repository on first use (a few minutes).
set -euo pipefail
# Prometheus 3.x is published as Go module versions v0.3XX.Y (Prometheus 3.XX.Y).
CGO_ENABLED=0 exec bash "$(dirname "$0")/go-binary.sh" promtool github.com/prometheus/prometheus \
  "${PROMTOOL_VERSION:-v0.316.0}" github.com/prometheus/prometheus/cmd/promtool
