"""Plots benches/results/copy.json: stall by change size per database size, stall by bytes
actually copied, and where the stall goes.

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
MB = 1_000_000


def label(size_mb: float) -> str:
    return f"{size_mb / 1000:g} GB" if size_mb >= 1000 else f"{size_mb:g} MB"


def main(src: str, dst: str) -> None:
    data = json.load(open(src))
    summary = data["summary"]
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(18, 5.5))
    sizes = sorted({r["size_mb"] for r in summary})
    colors = {size: f"C{i}" for i, size in enumerate(sizes)}

    # Stall by change size (median, min-max).
    tops = [1.0]
    for size in sizes:
        rows = sorted(
            (r for r in summary if r["size_mb"] == size and r["change_mb"] != "full"), key=lambda r: r["change_mb"]
        )
        if not rows:
            continue
        x = [r["change_mb"] for r in rows]
        y = [r["stall_ms"]["median"] for r in rows]
        lo = [r["stall_ms"]["median"] - r["stall_ms"]["min"] for r in rows]
        hi = [r["stall_ms"]["max"] - r["stall_ms"]["median"] for r in rows]
        tops += [r["stall_ms"]["max"] for r in rows]
        left.errorbar(x, y, yerr=[lo, hi], marker="o", capsize=4, color=colors[size], label=f"database {label(size)}")
    left.set_xlabel("MB changed before each copy")
    left.set_ylabel("stall_ms (median, min–max)")
    left.set_title("Copy window stall by change")
    left.set_ylim(0, max(tops) * 1.15)
    left.grid(alpha=0.3)
    left.legend()

    # Every copy but the full ones: stall against the bytes it copied (the journal, mostly).
    tops = [1.0]
    for size in data["sizes"]:
        copies = [c for c in size.get("copies", []) if c["change_mb"] != "full"]
        if not copies:
            continue
        middle.scatter(
            [c["bytes_copied"] / MB for c in copies],
            [c["stall_ms"] for c in copies],
            color=colors.get(size["size_mb"]),
            label=f"database {label(size['size_mb'])}",
        )
        tops += [c["stall_ms"] for c in copies]
    middle.set_xlabel("MB copied (not hard-linked) by the window")
    middle.set_ylabel("stall_ms")
    middle.set_title("Every copy: stall by bytes copied")
    middle.set_ylim(0, max(tops) * 1.15)
    middle.grid(alpha=0.3)
    middle.legend()

    # Where the stall goes, full copies excluded (their copy step dwarfs the rest; see the table).
    bars = [r for r in summary if r["change_mb"] != "full"]
    names = [f"{label(r['size_mb'])}\n{r['change_mb']} MB" for r in bars]
    bottom = [0.0] * len(bars)
    for part in PARTS:
        vals = [(r["timings_ms"][part] or {}).get("median", 0.0) for r in bars]
        right.bar(range(len(bars)), vals, bottom=bottom, label=part)
        bottom = [b + v for b, v in zip(bottom, vals)]
    right.set_xticks(range(len(bars)))
    right.set_xticklabels(names, fontsize=7)
    right.set_ylabel("ms (median)")
    right.set_title("Where the stall goes (size / change; full copies in the table)")
    right.legend(fontsize=8)
    right.grid(axis="y", alpha=0.3)

    fig.tight_layout()
    fig.savefig(dst, dpi=100)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
