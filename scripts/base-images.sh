#!/usr/bin/env bash
# Provides, in this machine's podman storage, the public base images docker/*.Dockerfile name, made
# locally because no image registry is reachable here:
#   debian:bookworm-slim  debootstrap --variant=minbase bookworm from the Debian mirror apt uses,
#                         trimmed as the official slim image is (no docs, man pages or apt lists);
#   rust:1-bookworm       that base with a C toolchain and this machine's Rust toolchain;
#   golang:X.Y-bookworm   that base with a C toolchain and this machine's Go (X.Y is its version).
# This machine's extra CA certificates (/usr/local/share/ca-certificates) go into the base, as a
# site's own base image would carry them, so builds reach the package registries through its
# proxy. Each image is labelled with a hash of its recipe and rebuilt only when that changes or
# the image is missing. Needs CONTAINERS_CONF from scripts/ensure-podman.sh (set here if unset).
# Prints the golang tag it provided.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
fail() { echo "base-images: $*" >&2; exit 1; }

cache="${DOLTGRES_SIDECAR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/doltgres-sidecar}"
if [ -z "${CONTAINERS_CONF:-}" ]; then
  CONTAINERS_CONF=$(bash "$here/ensure-podman.sh")
  export CONTAINERS_CONF
fi
mkdir -p "$cache"
exec 8>"$cache/.base-images.lock"
flock 8

label=org.doltgres-sidecar.recipe
# Bump when the debootstrap recipe below changes; the other images hash their Containerfiles.
recipe_version=1
recipe_of() { printf '%s\n' "$recipe_version" "$@"; }
current() { podman image inspect --format "{{index .Labels \"$label\"}}" "$1" 2>/dev/null || true; }

# --- debian:bookworm-slim -------------------------------------------------------------------
mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\/*\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)
if [ -z "$mirror" ]; then
  mirror=$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}
cas=$(cat /usr/local/share/ca-certificates/*.crt 2>/dev/null | sha256sum | cut -c1-16)
base_recipe=$(recipe_of base "$mirror" "$cas" | sha256sum | cut -c1-16)
if [ "$(current debian:bookworm-slim)" != "$base_recipe" ]; then
  echo "base-images: debootstrap bookworm from $mirror (about a minute)" >&2
  t0=$(date +%s)
  root=$(mktemp -d "$cache/rootfs.XXXXXX")
  trap 'rm -rf "$root"' EXIT
  debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.log" 2>&1 \
    || { tail -n 20 "$root.log" >&2; rm -f "$root.log"; fail "debootstrap failed"; }
  rm -f "$root.log"
  # What the official slim image leaves out, now and for every later apt-get install.
  cat >"$root/etc/dpkg/dpkg.cfg.d/slim" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
DPKG
  cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
APT
  echo 'Acquire::Languages "none";' >"$root/etc/apt/apt.conf.d/docker-no-languages"
  find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
  rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
    "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
    "$root"/var/log/* "$root"/tmp/*
  printf 'deb %s bookworm main\ndeb %s bookworm-updates main\n' "$mirror" "$mirror" >"$root/etc/apt/sources.list"
  mkdir -p "$root/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/" 2>/dev/null || true
  tar -C "$root" -c . | podman import \
    --change "LABEL $label=$base_recipe" --change 'CMD ["bash"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    - docker.io/library/debian:bookworm-slim >/dev/null 2>"$root.log" \
    || { cat "$root.log" >&2; fail "podman import failed"; }
  rm -f "$root.log"
  rm -rf "$root"
  trap - EXIT
  echo "base-images: debian:bookworm-slim in $(( $(date +%s) - t0 ))s" >&2
fi

build() { # tag recipe context-dir [podman build args...]
  local tag="$1" recipe="$2" dir="$3"
  shift 3
  if [ "$(current "$tag")" != "$recipe" ]; then
    echo "base-images: building $tag" >&2
    local t0
    t0=$(date +%s)
    podman build --network host --pull=never --label "$label=$recipe" -t "$tag" "$@" "$dir" \
      >"$dir/build.log" 2>&1 || { tail -n 30 "$dir/build.log" >&2; fail "podman build of $tag failed"; }
    echo "base-images: $tag in $(( $(date +%s) - t0 ))s" >&2
  fi
}

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT

# --- the C toolchain both build images start from (what buildpack-deps gives the official ones)
cat >"$ctx/Containerfile.buildbase" <<'C'
FROM docker.io/library/debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl git gcc g++ libc6-dev make pkg-config \
 && rm -rf /var/lib/apt/lists/*
C
buildbase_recipe=$(recipe_of "$base_recipe" "$(cat "$ctx/Containerfile.buildbase")" | sha256sum | cut -c1-16)
build localhost/doltgres-sidecar-buildbase "$buildbase_recipe" "$ctx" -f "$ctx/Containerfile.buildbase"

# --- rust:1-bookworm: this machine's Rust toolchain (its rustc, cargo and standard library) ---
sysroot=$(rustc --print sysroot) || fail "no rustc on PATH"
rust_version=$(rustc --version | awk '{print $2}')
cat >"$ctx/Containerfile.rust" <<C
FROM localhost/doltgres-sidecar-buildbase
RUN mkdir -p /usr/local/rust /usr/local/cargo \
 && cp -a /toolchain/bin /toolchain/lib /usr/local/rust/ \
 && if [ -d /toolchain/libexec ]; then cp -a /toolchain/libexec /usr/local/rust/; fi
ENV CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    RUST_VERSION=$rust_version
RUN rustc --version && cargo --version
C
rust_recipe=$(recipe_of "$buildbase_recipe" "$(cat "$ctx/Containerfile.rust")" | sha256sum | cut -c1-16)
build docker.io/library/rust:1-bookworm "$rust_recipe" "$ctx" -f "$ctx/Containerfile.rust" \
  -v "$sysroot:/toolchain:ro"

# --- golang:X.Y-bookworm: this machine's Go ------------------------------------------------
goroot=$(go env GOROOT) || fail "no go on PATH"
go_version=$(go env GOVERSION | sed 's/^go//')
go_tag="golang:$(echo "$go_version" | cut -d. -f1,2)-bookworm"
gopath=$(go env GOPATH | cut -d: -f1)
cat >"$ctx/Containerfile.go" <<C
FROM localhost/doltgres-sidecar-buildbase
RUN cp -a /goroot /usr/local/go && rm -rf /usr/local/go/test /usr/local/go/api
# GOPATH where this machine keeps it (the official image uses /go; the Dockerfiles do not depend
# on it), so a build that mounts this machine's module and build caches at the same paths reuses
# what the host already compiled.
ENV GOLANG_VERSION=$go_version GOPATH=$gopath GOTOOLCHAIN=local \
    PATH=$gopath/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN mkdir -p $gopath/bin $gopath/src && go version
WORKDIR /go
C
go_recipe=$(recipe_of "$buildbase_recipe" "$(cat "$ctx/Containerfile.go")" | sha256sum | cut -c1-16)
build "docker.io/library/$go_tag" "$go_recipe" "$ctx" -f "$ctx/Containerfile.go" -v "$goroot:/goroot:ro"

echo "$go_tag"
