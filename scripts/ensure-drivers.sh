#!/usr/bin/env bash
# Installs the client-driver check programs of proxy-tests/drivers/ into a cache outside the
# repository and prints, one line per driver, the driver's name and the command that runs its
# program, tab-separated (`name<TAB>program<TAB>args...`). The command takes
# `HOST PORT USER PASSWORD DBNAME [--restart]`.
#
# - go: pgx v5, built into a binary (Go module proxy).
# - python: psycopg 3 in a virtualenv (PyPI).
# - node: node-postgres `pg`, `npm ci` into a copy of the program's directory (npm registry).
# - java: PostgreSQL's JDBC driver (pgjdbc), its jar fetched by `mvn` (Maven Central) and checked
#   against a pinned SHA-256; the program compiled with `javac`.
#
# Each artifact is keyed by a hash of the files it is built from, so an edit rebuilds it and an
# unchanged tree costs a few hash sums. Safe to run concurrently: a lock file serialises installers.
set -euo pipefail

psycopg_version="3.3.6"
pgjdbc_version="42.7.14"
pgjdbc_sha256="73914527305a40cce504b0d3d90b23caf565136912d607ae8ae7c5895512332c"
# The plugin that copies an artifact out of Maven's local repository, pinned too.
mvn_dependency_plugin="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

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

ensure_java() {
  need java
  need javac
  local dir jar
  dir="$cache/java-$(echo "$pgjdbc_version $pgjdbc_sha256" | cat - "$src/java/Check.java" | sha256sum | cut -c1-16)"
  jar="$dir/postgresql-$pgjdbc_version.jar"
  if [ ! -f "$dir/classes/Check.class" ]; then
    need mvn
    say "fetching pgjdbc $pgjdbc_version and compiling the JDBC check program"
    rm -rf "$dir"
    mkdir -p "$dir/fetch"
    # Through Maven's own local repository (~/.m2), as any Maven build would fetch it.
    mvn -B -q -Dstyle.color=never "$mvn_dependency_plugin:copy" \
      -Dartifact="org.postgresql:postgresql:$pgjdbc_version:jar" \
      -DoutputDirectory="$dir/fetch" >&2
    local got
    got="$(sha256sum "$dir/fetch/postgresql-$pgjdbc_version.jar" | cut -d' ' -f1)"
    if [ "$got" != "$pgjdbc_sha256" ]; then
      say "postgresql-$pgjdbc_version.jar has SHA-256 $got, want $pgjdbc_sha256"
      exit 1
    fi
    mv "$dir/fetch/postgresql-$pgjdbc_version.jar" "$jar"
    rmdir "$dir/fetch"
    javac -nowarn -d "$dir/classes.tmp" -cp "$jar" "$src/java/Check.java" >&2
    mv "$dir/classes.tmp" "$dir/classes"
    prune java "$dir"
  fi
  # A small JVM starts faster on two cores: no JIT beyond C1, one GC thread.
  printf 'java\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(command -v java)" \
    -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -cp "$dir/classes:$jar" Check
}

ensure_go
ensure_python
ensure_node
ensure_java
