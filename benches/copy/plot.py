"""Plots benches/results/copy.json: stall by change size per database size, and where it goes.

    python plot.py copy.json copy-stall.png

Run by run.py with an interpreter that has matplotlib (the bench venv if need be).
"""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PARTS = ("inventory", "detach", "stop", "copy", "start")


def label(size_mb: float) -> str:
    return f"{size_mb / 1000:g} GB" if size_mb >= 1000 else f"{size_mb:g} MB"


def main(src: str, dst: str) -> None:
    data = json.load(open(src))
    summary = data["summary"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))

    sizes = sorted({r["size_mb"] for r in summary})
    for size in sizes:
        rows = [r for r in summary if r["size_mb"] == size and r["change_mb"] != "full"]
        rows.sort(key=lambda r: r["change_mb"])
        if not rows:
            continue
        x = [r["change_mb"] for r in rows]
        y = [r["stall_ms"]["median"] for r in rows]
        lo = [r["stall_ms"]["median"] - r["stall_ms"]["min"] for r in rows]
        hi = [r["stall_ms"]["max"] - r["stall_ms"]["median"] for r in rows]
        left.errorbar(x, y, yerr=[lo, hi], marker="o", capsize=4, label=f"database {label(size)}")
    left.set_xlabel("MB changed since the previous copy (in the journal, no gc)")
    left.set_ylabel("stall_ms (median, min–max)")
    left.set_title("Copy window stall")
    tops = [r["stall_ms"]["max"] for r in summary if r["change_mb"] != "full"]
    left.set_ylim(0, max(tops, default=1) * 1.15)
    left.grid(alpha=0.3)
    left.legend()

    bars = [r for r in summary]
    names = [f"{label(r['size_mb'])}\n{r['change_mb']}{'' if r['change_mb'] == 'full' else ' MB'}" for r in bars]
    bottom = [0.0] * len(bars)
    for part in PARTS:
        vals = [(r["timings_ms"][part] or {}).get("median", 0.0) for r in bars]
        right.bar(range(len(bars)), vals, bottom=bottom, label=part)
        bottom = [b + v for b, v in zip(bottom, vals)]
    right.set_xticks(range(len(bars)))
    right.set_xticklabels(names, fontsize=7)
    right.set_ylabel("ms (median)")
    right.set_title("Where the stall goes (size / change)")
    right.legend(fontsize=8)
    right.grid(axis="y", alpha=0.3)

    fig.tight_layout()
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
