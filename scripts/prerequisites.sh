#!/usr/bin/env bash
# Checks, before anything long starts, what scripts/demo needs, and says everything missing at
# once with how to get it (exit 1):
# - Rust: cargo and rustc at least the package's rust-version (Cargo.toml);
# - for Doltgres, only while it is not built yet: Go, a C compiler, flock and libicu-dev (root or
#   sudo to install it) — scripts/ensure-doltgres.sh --check says which.
#
#   prerequisites.sh [--no-rust]     --no-rust: the sidecar is built already
set -euo pipefail
cd "$(dirname "$0")/.."

problems=0
if [ "${1:-}" != --no-rust ]; then
  rust_needed=$(sed -n 's/^rust-version *= *"\(.*\)"/\1/p' Cargo.toml)
  if ! command -v cargo >/dev/null || ! command -v rustc >/dev/null; then
    echo "prerequisites: Rust $rust_needed or newer is needed (cargo and rustc; rustup installs them)" >&2
    problems=1
  else
    found=$(rustc --version | awk '{print $2}')
    if [ "$(printf '%s\n%s\n' "$rust_needed" "${found%%-*}" | sort -V | head -n1)" != "$rust_needed" ]; then
      echo "prerequisites: Rust $rust_needed or newer is needed (found rustc $found: rustup update)" >&2
      problems=1
    fi
  fi
fi
bash scripts/ensure-doltgres.sh --check || problems=1
if [ "$problems" != 0 ]; then
  echo "prerequisites: missing (above); the README's \"Start here\" lists what the demo needs" >&2
  exit 1
fi
