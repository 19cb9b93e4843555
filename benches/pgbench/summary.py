"""Reduces the raw runs to what the report and the plots show (standard library only, so both the
harness and the plot script in the venv can use it).

A *case* is one (upstream, script, mode, clients); each case has one run per target and repeat.
Figures per target are medians over repeats. Ratios between targets are paired: within one repeat
the targets ran back to back, so the ratio is taken per repeat and then its median (and range) is
reported, which cancels most of the drift of a shared machine.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict

# Latency histogram resolution: buckets per decade of microseconds (log scale).
BUCKETS_PER_DECADE = 20

TARGETS = {
    "postgres": ("direct", "sidecar", "pgbouncer", "haproxy", "relay"),
    "doltgres": ("direct", "sidecar", "pgbouncer", "haproxy"),
}
# The targets whose process CPU is sampled, per upstream.
PROXIES = {upstream: tuple(t for t in targets if t != "direct") for upstream, targets in TARGETS.items()}
TARGET_NAMES = {
    "direct": "direct",
    "sidecar": "sidecar",
    "pgbouncer": "PgBouncer",
    "haproxy": "HAProxy",
    "relay": "relay",
}
UPSTREAM_NAMES = {"postgres": "PostgreSQL", "doltgres": "Doltgres"}
SCRIPT_FLAGS = {"select-only": "-S", "simple-update": "-N"}


def case_key(run: dict) -> tuple:
    return (run["upstream"], run["script"], run["mode"], run["clients"])


def by_case(runs: list[dict]) -> dict[tuple, dict[str, list[dict]]]:
    """case -> target -> runs (in repeat order), cases in the order they were first run."""
    cases: dict[tuple, dict[str, list[dict]]] = {}
    for run in runs:
        cases.setdefault(case_key(run), defaultdict(list))[run["target"]].append(run)
    return cases


def median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ok_runs(runs: list[dict]) -> list[dict]:
    return [r for r in runs if r["ok"]]


def target_figures(runs: list[dict]) -> dict:
    """Median TPS, latencies and proxy CPU over the successful repeats of one target in one case."""
    good = ok_runs(runs)
    tps = [r["tps"] for r in good]
    cpu = [r["proxy_cpu_us_per_txn"] for r in good if r.get("proxy_cpu_us_per_txn") is not None]
    figures = {
        "runs": len(runs),
        "ok": len(good),
        "tps": median(tps),
        "tps_min": min(tps) if tps else None,
        "tps_max": max(tps) if tps else None,
        "latency_ms": None,
        "cpu_us_per_txn": median(r.get("proxy_cpu_us_per_txn") for r in good),
        "cpu_us_per_txn_min": min(cpu) if cpu else None,
        "cpu_us_per_txn_max": max(cpu) if cpu else None,
        "cpu_us_per_statement": median(r.get("proxy_cpu_us_per_statement") for r in good),
        "user_us_per_txn": median(r.get("proxy_user_us_per_txn") for r in good),
        "system_us_per_txn": median(r.get("proxy_system_us_per_txn") for r in good),
        "failed_txns": sum(r["failed"] or 0 for r in runs),
    }
    latencies = [r["latency_ms"] for r in good if r["latency_ms"]]
    if latencies:
        figures["latency_ms"] = {
            k: median(lat[k] for lat in latencies) for k in ("avg", "p50", "p95", "p99", "max")
        }
    return figures


def paired_ratio(
    runs_by_target: dict[str, list[dict]], num: str, den: str, key: str = "tps"
) -> dict | None:
    """Median and range over repeats of `key`(num) / `key`(den), pairing runs of the same repeat.
    `key` is a field of a run: "tps", or "proxy_cpu_us_per_txn" between two proxies."""
    dens = {r["repeat"]: r.get(key) for r in ok_runs(runs_by_target.get(den, []))}
    ratios = [
        r[key] / dens[r["repeat"]]
        for r in ok_runs(runs_by_target.get(num, []))
        if dens.get(r["repeat"]) and r.get(key) is not None
    ]
    if not ratios:
        return None
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios), "n": len(ratios)}


def merged_histogram(runs: list[dict]) -> Counter:
    """Latency histogram buckets summed over the successful runs."""
    total: Counter = Counter()
    for run in ok_runs(runs):
        for bucket, count in run["histogram"]:
            total[bucket] += count
    return total


def problems(runs: list[dict]) -> list[dict]:
    """Runs that did not work, or had failed transactions."""
    return [r for r in runs if not r["ok"] or (r["failed"] or 0) > 0]
