#!/usr/bin/env bash
# The long soak: the soak test (proxy-tests/tests/soak.rs) for SOAK_SECONDS (default 1200, 20
# minutes), at low CPU priority, writing every sample to benches/results/soak.json; then
# benches/soak/plot.py (python3 -m benches.soak.plot) writes benches/results/soak.md and soak.png from it. The test's pass
# criteria apply as in CI; the figures are written even when a criterion fails.
#
#   benches/soak/run.sh                           # 20 minutes
#   SOAK_SECONDS=300 SOAK_OUT=/tmp/soak benches/soak/run.sh   # 5 minutes, elsewhere
set -uo pipefail
cd "$(dirname "$0")/../.."

seconds="${SOAK_SECONDS:-1200}"
out="${SOAK_OUT:-benches/results}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

rm -f "$out/soak.json"  # never plot an older run's figures
status=0
SOAK_SECONDS="$seconds" SOAK_REPORT="$out/soak.json" \
  nice cargo test -p proxy-tests --test soak -- --nocapture || status=$?

if [ -f "$out/soak.json" ]; then
  # matplotlib from this python3, or the bench venv (benches/pgbench/bench_venv.py).
  if python3 -c 'import matplotlib' 2>/dev/null; then
    py=python3
  else
    py="$(python3 -c 'from benches.pgbench import bench_venv; print(bench_venv.ensure_venv())')" || py=python3
  fi
  "$py" -m benches.soak.plot "$out/soak.json" "$out" || status=1
else
  echo "soak: no report written" >&2
  status=1
fi
exit "$status"
