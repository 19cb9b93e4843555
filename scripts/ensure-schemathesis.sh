#!/usr/bin/env bash
# Installs the pinned schemathesis (an OpenAPI-driven HTTP fuzzer, used against the admin API)
# from PyPI into a virtualenv in the cache and prints the path of its `st` command.
set -euo pipefail
version="${SCHEMATHESIS_VERSION:-4.32.5}"
cache="${DOLTGRES_SIDECAR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/doltgres-sidecar}"
venv="$cache/schemathesis-$version"
if [ ! -x "$venv/bin/st" ]; then
  mkdir -p "$cache"
  exec 9>"$cache/.schemathesis.lock"
  flock 9
  if [ ! -x "$venv/bin/st" ]; then
    echo "ensure-schemathesis: installing schemathesis $version" >&2
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version" >&2
  fi
fi
echo "$venv/bin/st"
