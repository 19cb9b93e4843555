#!/usr/bin/env bash
# Installs the pinned kubernetes-validate (validates manifests against the Kubernetes JSON schemas
# it ships, offline) from PyPI into a virtualenv in the cache and prints the path of its command.
set -euo pipefail
version="${KUBERNETES_VALIDATE_VERSION:-1.37.0}"
cache="${DOLTGRES_SIDECAR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/doltgres-sidecar}"
venv="$cache/kubernetes-validate-$version"
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  mkdir -p "$cache"
  exec 9>"$cache/.kubernetes-validate.lock"
  flock 9
  if [ ! -x "$venv/bin/kubernetes-validate" ]; then
    echo "ensure-kubernetes-validate: installing kubernetes-validate $version" >&2
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$version" >&2
  fi
fi
echo "$venv/bin/kubernetes-validate"
