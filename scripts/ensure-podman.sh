#!/usr/bin/env bash
# Makes sure rootful podman (Debian's packages) can build and run images on this machine, and
# prints the path of the containers.conf to use (export CONTAINERS_CONF=<that path>).
#
# Installs podman, runc, debootstrap and docker-compose when missing, and writes a containers.conf
# into the cache that works where the defaults do not: runc (crun refuses a hybrid cgroup layout),
# cgroupfs (no systemd), events in a file (no journald), and default ulimits no higher than this
# shell's hard limits (podman's defaults exceed them on some machines, and every RUN then fails).
# Ends with a smoke check of the engine; any failure says why and exits non-zero.
set -euo pipefail

fail() { echo "ensure-podman: $*" >&2; exit 1; }

cache="${DOLTGRES_SIDECAR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/doltgres-sidecar}"
mkdir -p "$cache"
exec 9>"$cache/.podman.lock"
flock 9

missing=()
for cmd in podman runc debootstrap docker-compose; do
  command -v "$cmd" >/dev/null || missing+=("$cmd")
done
if [ "${#missing[@]}" -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || fail "${missing[*]} missing and this user cannot install them (run as root or apt-get install podman runc debootstrap docker-compose)"
  echo "ensure-podman: installing podman runc debootstrap docker-compose from Debian" >&2
  apt-get update -qq >&2 || fail "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap docker-compose >&2 \
    || fail "apt-get install podman runc debootstrap docker-compose failed"
fi
[ "$(id -u)" -eq 0 ] || fail "the image tests use rootful podman: run as root"

nofile=$(ulimit -Hn)
[ "$nofile" = unlimited ] && nofile=1048576
nproc_limit=$(ulimit -Hu)
nproc=32768
if [ "$nproc_limit" != unlimited ] && [ "$nproc_limit" -lt "$nproc" ]; then
  nproc=$nproc_limit
fi
conf="$cache/podman/containers.conf"
mkdir -p "$(dirname "$conf")"
cat >"$conf.tmp" <<CONF
# Written by scripts/ensure-podman.sh for this machine.
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
mv "$conf.tmp" "$conf"
export CONTAINERS_CONF="$conf"

smoke=$(podman info --format '{{.Host.OCIRuntime.Name}} {{.Host.CgroupManager}} {{.Store.GraphDriverName}}' 2>&1) \
  || fail "podman cannot start with $conf: $smoke"
echo "ensure-podman: podman $(podman version --format '{{.Client.Version}}') ($smoke)" >&2
echo "$conf"
