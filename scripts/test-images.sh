#!/usr/bin/env bash
# The deployment test: builds the images in docker/ with rootful podman exactly as a user would
# build them (the base images they name are made locally by scripts/base-images.sh), runs them with
# host networking on free loopback ports, and drives them from the host with psql and curl:
#
#   images      both Dockerfiles build; sizes reported, the sidecar image adds under 40 MB; each
#               image's --version names the commit it was built from
#   sidecar     psql through the sidecar container to a Doltgres container; health, readiness,
#               metrics; non-root, read-only root filesystem
#   managed     the managed-mode container: psql, a copy window and a push over the admin API, the
#               backup volume holds them; `podman stop` (SIGTERM through tini) runs the final backup
#               and exits 0
#   kubernetes  the manifests validate against the Kubernetes schemas (offline), and the exact
#               commands of the StatefulSet's containers run: the restore init container brings a
#               lost data volume back from the newest copy, and with both volumes lost, from the
#               off-site repository (a SeaweedFS bucket on the host)
#   compose     docker/compose.yaml with docker-compose against podman's API service: up, psql,
#               backup, down, the data volume lost, up again, restored; both volumes lost, up
#               again, restored from the bucket
#   operations  alert rules pass promtool check and unit tests; the dashboard names only metrics
#               the running sidecar exports
#
# Fails with the reason if the container engine cannot be set up. Prints a cargo-style result line.
set -euo pipefail
cd "$(dirname "$0")/.."
t_start=$(date +%s)
cache="${DOLTGRES_SIDECAR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/doltgres-sidecar}"

passed=0
containers=()
cleanups=()
ok() { passed=$((passed + 1)); echo "images: ok - $*" >&2; }
fail() {
  echo "images: FAILED - $*" >&2
  for c in "${containers[@]}"; do
    if podman container exists "$c" 2>/dev/null; then
      echo "---- last log lines of container $c ----" >&2
      podman logs --tail 40 "$c" >&2 2>&1 || true
    fi
  done
  echo "test result: FAILED. $passed passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in $(( $(date +%s) - t_start )).00s"
  exit 1
}
cleanup() {
  set +e
  for c in "${containers[@]}"; do podman rm -f -v -t 0 "$c" >/dev/null 2>&1; done
  for ((i = ${#cleanups[@]} - 1; i >= 0; i--)); do eval "${cleanups[$i]}" >/dev/null 2>&1; done
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# wait_for SECONDS DESCRIPTION COMMAND...: retries COMMAND until it succeeds.
wait_for() {
  local limit=$1 what=$2
  shift 2
  local deadline=$(( $(date +%s) + limit ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "$what: not within ${limit}s"
    sleep 0.5
  done
}
http_ok() { curl -fsS --max-time 5 "$1" >/dev/null; }
psql_at() { # PORT SQL: one psql call as postgres, unaligned output
  PGPASSWORD=$password PGCONNECT_TIMEOUT=10 psql -X -h 127.0.0.1 -p "$1" -U postgres -d postgres \
    -v ON_ERROR_STOP=1 -Atqc "$2"
}
expect_eq() { # WHAT ACTUAL EXPECTED
  [ "$2" = "$3" ] || fail "$1: got [$2], expected [$3]"
}
running_user_and_rootfs() { # CONTAINER: checks it runs as uid 10001 on a read-only root
  local c=$1
  expect_eq "$c: uid" "$(podman exec "$c" id -u)" 10001
  expect_eq "$c: read-only root" "$(podman inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$c")" true
  if podman exec "$c" sh -c 'touch /usr/local/bin/x' 2>/dev/null; then
    fail "$c: the root filesystem is writable"
  fi
}
admin_post() { # PORT TOKEN PATH: POST to the admin API, prints the body
  curl -fsS --max-time 600 -X POST -H "Authorization: Bearer $2" "http://127.0.0.1:$1$3"
}
json_field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

# --- the engine --------------------------------------------------------------------------------
conf=$(bash scripts/ensure-podman.sh) \
  || fail "the container engine cannot be set up on this machine (scripts/ensure-podman.sh, above)"
export CONTAINERS_CONF=$conf
# One run at a time on a machine: runs share the image tags and the build cache.
exec 7>"$cache/.test-images.lock"
flock 7
bash scripts/ensure-postgres.sh >/dev/null || fail "psql is missing (scripts/ensure-postgres.sh)"
t0=$(date +%s)
bash scripts/base-images.sh >/dev/null || fail "the local base images cannot be made (scripts/base-images.sh, above)"
t_base=$(( $(date +%s) - t0 ))

run_id="dgs-img-$$"
work=$(mktemp -d "/tmp/$run_id.XXXXXX")
cleanups+=("rm -rf '$work'")
chmod 755 "$work"
# promtool (built from the Go module proxy on a fresh machine) builds meanwhile.
bash scripts/ensure-promtool.sh >"$work/promtool.path" 2>"$work/promtool.log" &
promtool_pid=$!
cleanups+=("kill $promtool_pid")
password="pw-$RANDOM$RANDOM"
token="admin-token-$RANDOM$RANDOM$RANDOM$RANDOM"
sidecar_image=localhost/doltgres-sidecar:test
managed_image=localhost/doltgres-sidecar-managed:test

# --- images ------------------------------------------------------------------------------------
build() { # TAG DOCKERFILE [podman build options]
  local tag=$1 file=$2
  shift 2
  podman build --network host --pull=never --ignorefile "$file.dockerignore" -f "$file" -t "$tag" \
    --build-arg "DOLTGRES_SIDECAR_COMMIT=$(git rev-parse HEAD)" "$@" . \
    >"$work/build-$(basename "$file").log" 2>&1 \
    || { tail -n 40 "$work/build-$(basename "$file").log" >&2; fail "podman build -f $file"; }
}
t0=$(date +%s)
build "$sidecar_image" docker/Dockerfile
t_sidecar=$(( $(date +%s) - t0 ))
t0=$(date +%s)
# Doltgres' build stage uses this machine's Go module and build caches, mounted where the local
# golang image (scripts/base-images.sh) keeps them: the test bed's own Doltgres build
# (scripts/ensure-doltgres.sh) has filled them, so neither the download nor the compilation of
# Doltgres' packages is repeated, only the link.
gomodcache=$(go env GOMODCACHE)
gocache=$(go env GOCACHE)
build "$managed_image" docker/Dockerfile.managed -v "$gomodcache:$gomodcache" -v "$gocache:$gocache"
t_managed=$(( $(date +%s) - t0 ))
# The build stages keep tags, so their layers (compiled dependencies) stay cached while the
# stages of earlier sources, now untagged, are pruned instead of filling the disk.
build localhost/doltgres-sidecar-build:cache docker/Dockerfile --target build
build localhost/doltgres-sidecar-doltgres-build:cache docker/Dockerfile.managed --target doltgres \
  -v "$gomodcache:$gomodcache" -v "$gocache:$gocache"
podman image prune -f >/dev/null || true
size() { podman image inspect --format '{{.Size}}' "$1"; }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1000000 }'; }
base_size=$(size docker.io/library/debian:bookworm-slim)
sidecar_size=$(size "$sidecar_image")
managed_size=$(size "$managed_image")
sidecar_added=$(( sidecar_size - base_size ))
echo "images: sidecar $(mb "$sidecar_size") ($(mb "$sidecar_added") over debian:bookworm-slim), managed $(mb "$managed_size") ($(mb $(( managed_size - base_size ))) over it); built in ${t_sidecar}s and ${t_managed}s, base images ${t_base}s" >&2
[ "$sidecar_added" -lt 40000000 ] || fail "the sidecar image adds $(mb "$sidecar_added") (over 40 MB)"
ok "both images build; the sidecar image adds $(mb "$sidecar_added")"
commit=$(git rev-parse --short=12 HEAD)
for image in "$sidecar_image" "$managed_image"; do
  version=$(podman run --rm "$image" --version) || fail "$image --version"
  case "$version" in
    *"commit $commit"*) ;;
    *) fail "$image --version: got [$version], expected commit $commit" ;;
  esac
done
ok "both images' --version names commit $commit"
if [ -x "$cache/lint-venv/bin/hadolint" ]; then
  "$cache/lint-venv/bin/hadolint" docker/Dockerfile docker/Dockerfile.managed || fail "hadolint"
  ok "hadolint: both Dockerfiles clean"
fi

# --- sidecar: psql through the sidecar container to a Doltgres container ------------------------
dg_port=$(free_port)
sc_port=$(free_port)
sc_admin=$(free_port)
dg="$work/doltgres"
mkdir -p "$dg/data" "$dg/work" "$dg/root/.dolt"
echo '{"metrics.disabled":"true"}' >"$dg/root/.dolt/config_global.json"
printf 'log_level: info\nlistener:\n  host: 127.0.0.1\n  port: %s\n  socket: /var/lib/doltgres/.s.PGSQL.%s\ndata_dir: /var/lib/doltgres/data\n' \
  "$dg_port" "$dg_port" >"$dg/config.yaml"
chown -R 10001:10001 "$dg"
containers+=("$run_id-doltgres")
podman run -d --name "$run_id-doltgres" --network host --read-only --user 10001:10001 \
  -v "$dg:/var/lib/doltgres" -w /var/lib/doltgres/work \
  -e DOLT_ROOT_PATH=/var/lib/doltgres/root -e HOME=/var/lib/doltgres/root \
  -e DOLTGRES_USER=postgres -e "DOLTGRES_PASSWORD=$password" \
  --entrypoint /usr/local/bin/doltgres "$managed_image" --config /var/lib/doltgres/config.yaml >/dev/null \
  || fail "podman run doltgres"
containers+=("$run_id-sidecar")
podman run -d --name "$run_id-sidecar" --network host --read-only \
  -e "DOLTGRES_SIDECAR_LISTEN=127.0.0.1:$sc_port" \
  -e "DOLTGRES_SIDECAR_UPSTREAM=127.0.0.1:$dg_port" \
  -e "DOLTGRES_SIDECAR_ADMIN_LISTEN=127.0.0.1:$sc_admin" \
  "$sidecar_image" >/dev/null || fail "podman run sidecar"
wait_for 60 "sidecar /readyz (Doltgres up behind it)" http_ok "http://127.0.0.1:$sc_admin/readyz"
http_ok "http://127.0.0.1:$sc_admin/healthz" || fail "sidecar /healthz"
psql_at "$sc_port" "CREATE TABLE t (id int primary key, v text); INSERT INTO t VALUES (1, 'one'), (2, 'two')" \
  || fail "psql through the sidecar container"
expect_eq "rows through the sidecar" "$(psql_at "$sc_port" "SELECT string_agg(v, ',' ORDER BY id) FROM t")" "one,two"
expect_eq "the same rows directly" "$(psql_at "$dg_port" "SELECT count(*) FROM t")" 2
metrics=$(curl -fsS "http://127.0.0.1:$sc_admin/metrics") || fail "sidecar /metrics"
grep -Eq '^doltgres_sidecar_commits_total [1-9]' <<<"$metrics" || fail "commits_total not counted: $metrics"
ok "psql through the sidecar container to the Doltgres container; /healthz, /readyz, /metrics answer"
running_user_and_rootfs "$run_id-sidecar"
running_user_and_rootfs "$run_id-doltgres"
ok "both containers run as uid 10001 on a read-only root filesystem"
podman stop -t 60 "$run_id-sidecar" >/dev/null
expect_eq "sidecar exit code after podman stop" "$(podman inspect --format '{{.State.ExitCode}}' "$run_id-sidecar")" 0
podman stop -t 60 "$run_id-doltgres" >/dev/null
ok "the sidecar container stops on SIGTERM with exit code 0"

# --- managed: Doltgres inside, copy and push windows, the final backup on stop ------------------
m_port=$(free_port)
m_admin=$(free_port)
m="$work/managed"
mkdir -p "$m/data" "$m/backups" "$m/remote" "$m/etc"
cat >"$m/etc/sidecar.toml" <<TOML
# A session still inside a transaction 2 s into a window is ended (57P01), and counted.
drain_policy = "terminate"
drain_timeout = "2s"

[backup]
databases = ["postgres"]

[backup.copy]
catalog = "/data/backups"
keep_last = 5
verify_after = true

[backup.push]
remote = "backup"
url = "file:///data/remote/{database}"
commit_working_set = true
TOML
chown -R 10001:10001 "$m"
run_managed() { # NAME: the managed container on the test's volumes
  containers+=("$1")
  podman run -d --name "$1" --network host --read-only \
    -v "$m/data:/data/doltgres" -v "$m/backups:/data/backups" -v "$m/remote:/data/remote" \
    -v "$m/etc:/etc/doltgres-sidecar:ro" \
    -e DOLTGRES_SIDECAR_CONFIG=/etc/doltgres-sidecar/sidecar.toml \
    -e "DOLTGRES_PASSWORD=$password" -e "DOLTGRES_SIDECAR_ADMIN_TOKEN=$token" \
    -e "DOLTGRES_SIDECAR_LISTEN=127.0.0.1:$m_port" \
    -e "DOLTGRES_SIDECAR_ADMIN_LISTEN=127.0.0.1:$m_admin" \
    "$managed_image" >/dev/null || fail "podman run $1"
  wait_for 120 "$1 /readyz" http_ok "http://127.0.0.1:$m_admin/readyz"
}
entries() { find "$m/backups" -mindepth 2 -maxdepth 2 -name manifest.json | wc -l; }
run_managed "$run_id-managed"
http_ok "http://127.0.0.1:$m_admin/healthz" || fail "managed /healthz"
psql_at "$m_port" "CREATE TABLE ledger (id int primary key, note text); INSERT INTO ledger VALUES (1, 'before the copy')" \
  || fail "psql through the managed container"
# A client inside a transaction when the copy window opens: ended at drain_timeout, its insert
# rolled back.
coproc TXN { PGPASSWORD=$password psql -X -h 127.0.0.1 -p "$m_port" -U postgres -d postgres -At 2>&1; }
echo "BEGIN; INSERT INTO ledger VALUES (9, 'never committed');" >&"${TXN[1]}"
read -r -t 30 line <&"${TXN[0]}" && read -r -t 30 line <&"${TXN[0]}" || fail "the open transaction did not start"
expect_eq "the open transaction's insert" "$line" "INSERT 0 1"
record=$(admin_post "$m_admin" "$token" "/backups?action=copy") || fail "POST /backups?action=copy"
expect_eq "copy window result" "$(json_field result <<<"$record")" ok
eval "exec ${TXN[1]}>&-"
wait "$TXN_PID" 2>/dev/null || true
expect_eq "copy entries after the copy window" "$(entries)" 1
expect_eq "rows after the copy" "$(psql_at "$m_port" "SELECT count(*) FROM ledger")" 1
grep -q '^doltgres_sidecar_sessions_ended_total{reason="window_terminate"} 1' <<<"$(curl -fsS "http://127.0.0.1:$m_admin/metrics")" \
  || fail "the session ended by the window is not counted"
psql_at "$m_port" "INSERT INTO ledger VALUES (2, 'before the push')"
record=$(admin_post "$m_admin" "$token" "/backups?action=push") || fail "POST /backups?action=push"
expect_eq "push window result" "$(json_field result <<<"$record")" ok
[ -d "$m/remote/postgres" ] || fail "the push left nothing in the remote directory"
ok "managed container: psql, a copy window and a push through the admin API"
http_ok "http://127.0.0.1:$m_admin/healthz" || fail "managed /healthz"
# verify_after checks each copy on a scratch Doltgres after its window.
verified() { grep -q '^doltgres_sidecar_verify_total{result="ok"} 1' <<<"$(curl -fsS "http://127.0.0.1:$m_admin/metrics")"; }
wait_for 120 "the copy's verification (verify_total)" verified
curl -fsS "http://127.0.0.1:$m_admin/metrics" >"$work/metrics.txt" || fail "managed /metrics"
grep -q '^doltgres_sidecar_windows_total{action="copy",result="ok"} 1' "$work/metrics.txt" \
  || fail "windows_total for the copy missing from /metrics"
ok "managed container: /healthz, /readyz, /metrics answer"
running_user_and_rootfs "$run_id-managed"
ok "managed container runs as uid 10001 on a read-only root filesystem"
psql_at "$m_port" "INSERT INTO ledger VALUES (3, 'before the stop')"
podman stop -t 120 "$run_id-managed" >/dev/null || fail "podman stop"
expect_eq "managed exit code after podman stop" "$(podman inspect --format '{{.State.ExitCode}}' "$run_id-managed")" 0
expect_eq "copy entries after the stop (the final backup)" "$(entries)" 2
grep -q 'shutdown: final backup window' <<<"$(podman logs "$run_id-managed" 2>&1)" || fail "no shutdown window in the log"
ok "podman stop: SIGTERM through tini runs the final backup and exits 0"

# --- the off-site bucket: SeaweedFS on the host (what the compose and StatefulSet variants use) ---
weed=$(bash scripts/ensure-seaweedfs.sh) || fail "SeaweedFS cannot be built (scripts/ensure-seaweedfs.sh)"
s3_port=$(free_port)
s3_key="images$$"
s3_secret="secret-$RANDOM$RANDOM$RANDOM"
mkdir -p "$work/weed"
weed_args=(mini "-dir=$work/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 "-s3.port=$s3_port" -bucket=backups
  -admin.port.legacy=0 -s3.port.iceberg=0 -s3.port.lance=0 -webdav=false -admin.ui=false -master.telemetry=false
  "-filer.localSocket=$work/weed/filer.sock" "-s3.localSocket=$work/weed/s3.sock")
for flag in master.port master.port.grpc volume.port volume.port.grpc filer.port filer.port.grpc s3.port.grpc admin.port admin.port.grpc; do
  weed_args+=("-$flag=$(free_port)")
done
AWS_ACCESS_KEY_ID=$s3_key AWS_SECRET_ACCESS_KEY=$s3_secret "$weed" "${weed_args[@]}" >"$work/weed.log" 2>&1 &
weed_pid=$!
cleanups+=("kill $weed_pid")
bucket() { # METHOD PATH: a signed request to the bucket, prints the body
  curl -fsS --max-time 30 -X "$1" --aws-sigv4 "aws:amz:us-east-1:s3" --user "$s3_key:$s3_secret" \
    "http://127.0.0.1:$s3_port/backups$2"
}
wait_for 90 "SeaweedFS's bucket" bucket HEAD ""
entries_in() { # PREFIX: complete entries in the bucket under PREFIX
  bucket GET "?list-type=2&prefix=$1%2Fentries%2F" | grep -o '<Key>[^<]*</Key>' | wc -l
}
offsite_env=(DOLTGRES_SIDECAR_OFFSITE_URL=s3://backups/compose AWS_ENDPOINT_URL="http://127.0.0.1:$s3_port"
  AWS_ACCESS_KEY_ID="$s3_key" AWS_SECRET_ACCESS_KEY="$s3_secret" AWS_ALLOW_HTTP=true)

# --- kubernetes: the manifests validate, and their containers' exact commands run ---------------
validator=$(bash scripts/ensure-kubernetes-validate.sh) || fail "kubernetes-validate cannot be installed"
"$validator" --strict --quiet docker/kubernetes/*.yaml || fail "the Kubernetes manifests do not validate"
ok "docker/kubernetes/*.yaml validate against the Kubernetes $("$validator" --version 2>/dev/null | awk '{print $NF}') schemas (strict, offline)"
kpy="$(dirname "$validator")/python"
k="$work/k8s"
mkdir -p "$k/data" "$k/backups" "$k/config"
"$kpy" -c 'import sys, yaml
cm = next(d for d in yaml.safe_load_all(open(sys.argv[1])) if d["kind"] == "ConfigMap")
for name, text in cm["data"].items():
    open(sys.argv[2] + "/" + name, "w").write(text)' docker/kubernetes/configmap.yaml "$k/config"
chown -R 10001:10001 "$k"
k_port=$(free_port)
k_admin=$(free_port)
k8s_run() { # NAME CONTAINER [detach]: runs the StatefulSet's container CONTAINER
  local args=()
  mapfile -d '' args < <("$kpy" scripts/k8s-podman-args.py docker/kubernetes "$2" "$managed_image" \
    "data=$k/data" "backups=$k/backups" "config=$k/config" \
    --secret "doltgres-password=$password" --secret "admin-token=$token" \
    --secret "aws-access-key-id=$s3_key" --secret "aws-secret-access-key=$s3_secret" \
    --env "DOLTGRES_SIDECAR_BACKUP_COPY_OFFSITE_URL=s3://backups/k8s" --env "AWS_ENDPOINT_URL=http://127.0.0.1:$s3_port" \
    --env "AWS_ALLOW_HTTP=true" \
    --env "DOLTGRES_SIDECAR_LISTEN=127.0.0.1:$k_port" --env "DOLTGRES_SIDECAR_ADMIN_LISTEN=127.0.0.1:$k_admin") \
    || fail "cannot read container $2 from the StatefulSet"
  containers+=("$1")
  if [ "${3:-}" = detach ]; then
    podman run -d --name "$1" "${args[@]}" >/dev/null || fail "podman run $2 ($1)"
  else
    podman run --name "$1" "${args[@]}" >"$work/$1.out" 2>&1 || { cat "$work/$1.out" >&2; fail "$2 ($1) exited non-zero"; }
  fi
}
k8s_run "$run_id-k8s-init-1" restore
grep -q 'nothing to restore' "$work/$run_id-k8s-init-1.out" || fail "first pod's restore: $(cat "$work/$run_id-k8s-init-1.out")"
k8s_run "$run_id-k8s-1" doltgres detach
wait_for 120 "StatefulSet container /readyz" http_ok "http://127.0.0.1:$k_admin/readyz"
http_ok "http://127.0.0.1:$k_admin/healthz" || fail "StatefulSet container /healthz"
psql_at "$k_port" "CREATE TABLE orders (id int primary key); INSERT INTO orders VALUES (1), (2)"
record=$(admin_post "$k_admin" "$token" "/backups?action=copy") || fail "copy in the StatefulSet container"
expect_eq "StatefulSet copy window" "$(json_field result <<<"$record")" ok
psql_at "$k_port" "INSERT INTO orders VALUES (3)"
podman stop -t 120 "$run_id-k8s-1" >/dev/null
expect_eq "StatefulSet container exit code" "$(podman inspect --format '{{.State.ExitCode}}' "$run_id-k8s-1")" 0
ok "StatefulSet: the first pod's restore does nothing; the container serves, copies, and backs up on SIGTERM"
k8s_run "$run_id-k8s-init-2" restore
grep -q 'nothing restored' "$work/$run_id-k8s-init-2.out" || fail "restore over kept data: $(cat "$work/$run_id-k8s-init-2.out")"
rm -rf "$k/data/server"
k8s_run "$run_id-k8s-init-3" restore
grep -q 'restored copy' "$work/$run_id-k8s-init-3.out" || fail "restore into the lost volume: $(cat "$work/$run_id-k8s-init-3.out")"
k8s_run "$run_id-k8s-2" doltgres detach
wait_for 120 "restored StatefulSet container /readyz" http_ok "http://127.0.0.1:$k_admin/readyz"
expect_eq "rows after the restore" "$(psql_at "$k_port" "SELECT string_agg(id::text, ',' ORDER BY id) FROM orders")" "1,2,3"
podman stop -t 120 "$run_id-k8s-2" >/dev/null
ok "StatefulSet: with the data volume lost, the restore init container brings back every row from the newest copy"
[ "$(entries_in k8s)" -ge 2 ] || fail "the StatefulSet's copies are not in the bucket ($(entries_in k8s) entries)"
rm -rf "$k/data/server" "$k/backups/catalog"
k8s_run "$run_id-k8s-init-4" restore
grep -q 'restored off-site entry' "$work/$run_id-k8s-init-4.out" || fail "restore from the bucket: $(cat "$work/$run_id-k8s-init-4.out")"
k8s_run "$run_id-k8s-3" doltgres detach
wait_for 120 "StatefulSet container /readyz after the restore from the bucket" http_ok "http://127.0.0.1:$k_admin/readyz"
expect_eq "rows after the restore from the bucket" "$(psql_at "$k_port" "SELECT string_agg(id::text, ',' ORDER BY id) FROM orders")" "1,2,3"
podman stop -t 120 "$run_id-k8s-3" >/dev/null
ok "StatefulSet: with both volumes lost, the restore init container brings back every row from the bucket"

# --- compose: docker-compose against podman's Docker API ---------------------------------------
sock="$work/podman.sock"
podman system service --time=0 "unix://$sock" >"$work/podman-service.log" 2>&1 &
service_pid=$!
cleanups+=("kill $service_pid")
wait_for 30 "podman system service" test -S "$sock"
export DOCKER_HOST="unix://$sock"
project="dgsimg$$"
c_port=$(free_port)
c_admin=$(free_port)
compose() {
  env "${offsite_env[@]}" DOLTGRES_SIDECAR_IMAGE=$managed_image DOLTGRES_PASSWORD=$password DOLTGRES_SIDECAR_ADMIN_TOKEN=$token \
    DOLTGRES_SIDECAR_BIND=127.0.0.1 DOLTGRES_SIDECAR_PORT=$c_port DOLTGRES_SIDECAR_ADMIN_PORT=$c_admin \
    docker-compose --ansi never -p "$project" -f docker/compose.yaml "$@"
}
cleanups+=("compose down -v -t 5")
compose config -q || fail "docker-compose rejects docker/compose.yaml"
compose up -d --no-build >"$work/compose-up.log" 2>&1 || { cat "$work/compose-up.log" >&2; fail "docker-compose up"; }
wait_for 120 "compose /readyz" http_ok "http://127.0.0.1:$c_admin/readyz"
server=$(compose ps -q doltgres)
[ -n "$server" ] || fail "no doltgres container in the compose project"
podman healthcheck run "$server" >/dev/null || fail "the compose health check fails on a ready container"
psql_at "$c_port" "CREATE TABLE visits (id int primary key); INSERT INTO visits VALUES (1), (2)"
compose exec -T doltgres doltgres-sidecar backup --action copy --admin-url "http://127.0.0.1:$c_admin" --token "$token" \
  >"$work/compose-backup.log" 2>&1 || { cat "$work/compose-backup.log" >&2; fail "doltgres-sidecar backup --action copy in the compose service"; }
psql_at "$c_port" "INSERT INTO visits VALUES (3)"
compose down >"$work/compose-down.log" 2>&1 || { cat "$work/compose-down.log" >&2; fail "docker-compose down"; }
ok "compose: up, psql, a copy through the CLI in the container, down (final backup)"
podman volume rm "${project}_data" >/dev/null || fail "cannot remove the compose data volume"
compose up -d --no-build >"$work/compose-up2.log" 2>&1 || { cat "$work/compose-up2.log" >&2; fail "docker-compose up (again)"; }
wait_for 120 "compose /readyz after the restore" http_ok "http://127.0.0.1:$c_admin/readyz"
restore_log=$(compose logs restore 2>&1)
grep -q 'restored copy' <<<"$restore_log" || fail "the restore service did not restore: $(tail -n 5 <<<"$restore_log")"
expect_eq "rows after compose restored the lost volume" "$(psql_at "$c_port" "SELECT string_agg(id::text, ',' ORDER BY id) FROM visits")" "1,2,3"
ok "compose: the data volume lost, up again restores every row from the newest copy"
compose down >/dev/null 2>&1 || fail "docker-compose down (before losing both volumes)"
[ "$(entries_in compose)" -ge 2 ] || fail "the compose copies are not in the bucket ($(entries_in compose) entries)"
podman volume rm "${project}_data" "${project}_backups" >/dev/null || fail "cannot remove the compose volumes"
compose up -d --no-build >"$work/compose-up3.log" 2>&1 || { cat "$work/compose-up3.log" >&2; fail "docker-compose up (both volumes lost)"; }
wait_for 120 "compose /readyz after the restore from the bucket" http_ok "http://127.0.0.1:$c_admin/readyz"
restore_log=$(compose logs restore 2>&1)
grep -q 'restored off-site entry' <<<"$restore_log" || fail "the restore service did not restore from the bucket: $(tail -n 5 <<<"$restore_log")"
expect_eq "rows after compose restored both lost volumes from the bucket" "$(psql_at "$c_port" "SELECT string_agg(id::text, ',' ORDER BY id) FROM visits")" "1,2,3"
compose down -v >/dev/null 2>&1 || fail "docker-compose down -v"
ok "compose: both volumes lost, up again restores every row from the bucket"

# --- operations: alert rules and the dashboard ---------------------------------------------------
wait "$promtool_pid" || { cat "$work/promtool.log" >&2; fail "promtool cannot be built"; }
promtool=$(cat "$work/promtool.path")
"$promtool" check rules docker/prometheus/alerts.yaml >&2 || fail "promtool check rules"
(cd docker/prometheus && "$promtool" test rules alerts.test.yaml) >&2 || fail "promtool test rules"
ok "alert rules: promtool check rules and test rules pass"
python3 scripts/check-metric-names.py "$work/metrics.txt" docker/grafana/doltgres-sidecar.json \
  docker/prometheus/alerts.yaml >&2 || fail "the dashboard or the rules name metrics the sidecar does not export"
ok "the dashboard and the alert rules name only metrics the managed container exported"

echo "images: finished in $(( $(date +%s) - t_start ))s" >&2
echo "test result: ok. $passed passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in $(( $(date +%s) - t_start )).00s"
