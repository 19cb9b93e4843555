#!/usr/bin/env bash
# Makes sure Debian's PostgreSQL server (initdb, postgres, pgbench) and psql are installed, and
# prints the directory holding the server binaries.
set -euo pipefail

find_bindir() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

bindir=$(find_bindir || true)
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ] || [ ! -x "$bindir/pgbench" ] || ! command -v psql >/dev/null; then
  echo "ensure-postgres: installing postgresql from Debian" >&2
  if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-postgres: PostgreSQL is missing and this user cannot install it (run as root or apt-get install postgresql)" >&2
    exit 1
  fi
  # Only the binaries are wanted: no cluster is created and no service started.
  mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/no-main-cluster.conf
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql postgresql-client >&2
  bindir=$(find_bindir)
fi
echo "$bindir"
