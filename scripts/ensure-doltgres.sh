#!/usr/bin/env bash
# Prints the path of the pinned Doltgres server, built from the Go module proxy into a cache
# outside the repository on first use (several minutes; then reused).
set -euo pipefail

# cgo dependencies of Doltgres (ICU for collations).
if ! dpkg -s libicu-dev >/dev/null 2>&1; then
  echo "ensure-doltgres: installing libicu-dev" >&2
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libicu-dev >&2
fi
exec bash "$(dirname "$0")/go-binary.sh" doltgres github.com/dolthub/doltgresql \
  "${DOLTGRES_VERSION:-v1.2.0}" github.com/dolthub/doltgresql/cmd/doltgres
