#!/usr/bin/env bash
# Installs the client-driver check programs of proxy-tests/drivers/ into a cache outside the
# repository and prints, one line per driver, the driver's name and the command that runs its
# program, tab-separated (`name<TAB>program<TAB>args...`). The command takes
# `HOST PORT USER PASSWORD DBNAME [--skip=STEP,...]`.
#
# - go: pgx v5, built into a binary (Go module proxy).
# - python: psycopg 3 in a virtualenv (PyPI).
# - node: node-postgres `pg`, `npm ci` into a copy of the program's directory (npm registry).
#
# Each artifact is keyed by a hash of the files it is built from, so an edit rebuilds it and an
# unchanged tree costs a few hash sums. Safe to run concurrently: a lock file serialises installers.
set -euo pipefail

psycopg_version="3.3.6"

repo="$(cd "$(dirname "$0")/.." && pwd)"
src="$repo/proxy-tests/drivers"
cache="${DOLTGRES_SIDECAR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/doltgres-sidecar}/drivers"
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9

say() { echo "ensure-drivers: $*" >&2; }
need() { command -v "$1" >/dev/null || { say "'$1' is not on PATH"; exit 1; }; }
# A short digest of the named files' contents.
digest() { cat "$@" | sha256sum | cut -c1-16; }
# Removes the cached builds of $1 other than the current one ($2).
prune() { find "$cache" -maxdepth 1 -name "$1-*" ! -name "$(basename "$2")" -exec rm -rf {} +; }

ensure_go() {
  need go
  local dir
  dir="$cache/go-$(digest "$src/go/go.mod" "$src/go/go.sum" "$src/go/main.go")"
  if [ ! -x "$dir/check" ]; then
    say "building the pgx check program"
    mkdir -p "$dir"
    (cd "$src/go" && go build -o "$dir/check.tmp" .) >&2
    mv "$dir/check.tmp" "$dir/check"
    prune go "$dir"
  fi
  printf 'go\t%s\n' "$dir/check"
}

ensure_python() {
  need python3
  local venv="$cache/python-venv"
  local py="$venv/bin/python"
  if [ "$(cat "$venv/.version" 2>/dev/null)" != "$psycopg_version" ] \
    || ! "$py" -c 'import psycopg' 2>/dev/null; then
    say "creating a virtualenv with psycopg $psycopg_version"
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    # The binary extra bundles libpq; where no wheel fits, psycopg uses the system's libpq5.
    "$py" -m pip install --quiet --disable-pip-version-check "psycopg[binary]==$psycopg_version" >&2 \
      || "$py" -m pip install --quiet --disable-pip-version-check "psycopg==$psycopg_version" >&2
    echo "$psycopg_version" >"$venv/.version"
  fi
  printf 'python\t%s\t%s\n' "$py" "$src/python/check.py"
}

ensure_node() {
  need node
  need npm
  local dir
  dir="$cache/node-$(digest "$src/node/package.json" "$src/node/package-lock.json")"
  if [ ! -f "$dir/node_modules/.package-lock.json" ]; then
    say "installing node-postgres"
    rm -rf "$dir"
    mkdir -p "$dir"
    cp "$src/node/package.json" "$src/node/package-lock.json" "$dir/"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) >&2
    prune node "$dir"
  fi
  # The programs run from the copy so that `require('pg')` finds its node_modules.
  local program
  for program in "$src"/node/*.js; do
    cmp -s "$program" "$dir/$(basename "$program")" || cp "$program" "$dir/"
  done
  printf 'node\t%s\t%s\n' "$(command -v node)" "$dir/check.js"
}

ensure_go
ensure_python
ensure_node
