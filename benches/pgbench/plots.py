"""Draws the plots of one harness run (run with the bench venv's python, which has matplotlib).

usage: plots.py RESULTS.json OUT_DIR   — prints the names of the PNG files it wrote, one a line.

- tps-UPSTREAM.png: TPS by client count, one line per target, one panel per script and mode;
  the bars span the repeats' min–max.
- latency-UPSTREAM-S.png / -N.png: latency distribution (CDF over every transaction of every
  repeat), one panel per mode and client count, one line per target.
- cpu-per-txn-UPSTREAM.png: proxy CPU per transaction by client count, one line per proxy
  (sidecar, PgBouncer, HAProxy, and the relay on PostgreSQL), one panel per script and mode; bars
  span the repeats' min–max.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from benches.pgbench.summary import (
    BUCKETS_PER_DECADE,
    PROXIES,
    SCRIPT_FLAGS,
    TARGET_NAMES,
    TARGETS,
    UPSTREAM_NAMES,
    by_case,
    merged_histogram,
    target_figures,
)

COLORS = {
    "direct": "#4c72b0",
    "sidecar": "#dd8452",
    "pgbouncer": "#55a868",
    "haproxy": "#c44e52",
    "relay": "#8172b2",
}


def axes_grid(rows: int, cols: int, width: float, height: float):
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    return fig, axes


def by_clients_plot(
    upstream: str,
    cases: dict,
    scripts: list[str],
    modes: list[str],
    targets: tuple[str, ...],
    figure: str,
    ylabel: str,
    title: str,
    path: Path,
) -> bool:
    """One panel per script and mode: `figure` (a target_figures key with _min/_max beside it) by
    client count, one line per target."""
    fig, axes = axes_grid(len(scripts), len(modes), 4.2, 3.2)
    drawn = False
    for i, script in enumerate(scripts):
        for j, mode in enumerate(modes):
            ax = axes[i][j]
            keyed = sorted((c[3], runs) for c, runs in cases.items() if c[:3] == (upstream, script, mode))
            for target in targets:
                points = [(clients, target_figures(runs.get(target, []))) for clients, runs in keyed]
                points = [(c, f) for c, f in points if f[figure] is not None]
                if not points:
                    continue
                xs = [c for c, _ in points]
                ys = [f[figure] for _, f in points]
                err = [
                    [f[figure] - f[f"{figure}_min"] for _, f in points],
                    [f[f"{figure}_max"] - f[figure] for _, f in points],
                ]
                ax.errorbar(
                    xs, ys, yerr=err, marker="o", capsize=3, color=COLORS[target], label=TARGET_NAMES[target]
                )
                drawn = True
            ax.set_xscale("log", base=2)
            ax.set_xticks([c for c, _ in keyed], [str(c) for c, _ in keyed])
            ax.set_ylim(bottom=0)
            ax.set_title(f"{SCRIPT_FLAGS[script]} {mode}", fontsize=10)
            ax.set_xlabel("clients")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    if drawn:
        fig.savefig(path, dpi=90)
    plt.close(fig)
    return drawn


def cdf(histogram) -> tuple[list[float], list[float]]:
    """(latency ms at each bucket's upper edge, fraction of transactions at or below it)."""
    total = sum(histogram.values())
    xs, ys, seen = [], [], 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        xs.append(10 ** ((bucket + 1) / BUCKETS_PER_DECADE) / 1000.0)
        ys.append(seen / total)
    return xs, ys


def latency_plot(
    upstream: str, script: str, cases: dict, modes: list[str], clients: list[int], title: str, path: Path
) -> bool:
    fig, axes = axes_grid(len(modes), len(clients), 3.6, 2.8)
    drawn = False
    for i, mode in enumerate(modes):
        for j, count in enumerate(clients):
            ax = axes[i][j]
            runs = cases.get((upstream, script, mode, count), {})
            for target in TARGETS[upstream]:
                histogram = merged_histogram(runs.get(target, []))
                if not histogram:
                    continue
                xs, ys = cdf(histogram)
                ax.step(xs, ys, where="post", color=COLORS[target], label=TARGET_NAMES[target])
                drawn = True
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_ylim(0, 1.01)
            ax.set_title(f"{mode}, {count} clients", fontsize=10)
            ax.set_xlabel("latency, ms")
            ax.set_ylabel("fraction ≤ x")
            ax.grid(alpha=0.3, which="both")
    axes[0][0].legend(fontsize=8, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    if drawn:
        fig.savefig(path, dpi=90)
    plt.close(fig)
    return drawn


def main(results_path: Path, out: Path) -> None:
    results = json.loads(results_path.read_text())
    cases = by_case(results["runs"])
    for upstream in ("postgres", "doltgres"):
        present = [c for c in cases if c[0] == upstream]
        if not present:
            continue
        scripts = [s for s in SCRIPT_FLAGS if any(c[1] == s for c in present)]
        modes = [m for m in ("simple", "extended", "prepared") if any(c[2] == m for c in present)]
        clients = sorted({c[3] for c in present})
        name = UPSTREAM_NAMES[upstream]
        path = out / f"tps-{upstream}.png"
        title = f"{name}: TPS by clients (median, min–max bars)"
        if by_clients_plot(upstream, cases, scripts, modes, TARGETS[upstream], "tps", "TPS", title, path):
            print(path.name)
        if PROXIES[upstream]:
            path = out / f"cpu-per-txn-{upstream}.png"
            title = f"{name}: proxy CPU per transaction by clients (median, min–max bars)"
            drawn = by_clients_plot(
                upstream, cases, scripts, modes, PROXIES[upstream], "cpu_us_per_txn", "µs / txn", title, path
            )
            if drawn:
                print(path.name)
        for script in scripts:
            flag = SCRIPT_FLAGS[script]
            path = out / f"latency-{upstream}{flag}.png"
            title = f"{name} pgbench {flag}: latency distribution (CDF)"
            if latency_plot(upstream, script, cases, modes, clients, title, path):
                print(path.name)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
