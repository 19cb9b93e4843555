"""The copy benchmark's summary, its markdown report and its plot."""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

from benches.copy.settings import HERE, MB


def spread(values: list[float]) -> dict | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def summarize(sizes: list[dict]) -> list[dict]:
    rows = []
    for size in sizes:
        if size.get("skipped"):
            continue
        groups: dict = {}
        for copy in size["copies"]:
            groups.setdefault(str(copy["change_mb"]), []).append(copy)
        for change, copies in groups.items():
            rows.append(
                {
                    "size_mb": size["size_mb"],
                    "disk_bytes": size.get("disk_bytes"),
                    "change_mb": copies[0]["change_mb"],
                    "n": len(copies),
                    "stall_ms": spread([c["stall_ms"] for c in copies]),
                    "duration_ms": spread([c["duration_ms"] for c in copies]),
                    "bytes_copied": spread([c["bytes_copied"] for c in copies]),
                    "bytes_linked": spread([c["bytes_linked"] for c in copies]),
                    "journal_bytes_at_copy": spread([c.get("journal_bytes_at_copy") for c in copies]),
                    "journal_growth_bytes": spread([c.get("journal_growth_bytes") for c in copies]),
                    "timings_ms": {
                        k: spread([c["timings"][k] * 1000 if c["timings"][k] is not None else None for c in copies])
                        for k in ("inventory", "detach", "stop", "copy", "start")
                    },
                    "doltgres_up_ms": spread([c.get("doltgres_up_ms") for c in copies]),
                    "verify_ok": all(c.get("verify_ok") for c in copies),
                }
            )
    return rows


def headline(summary: list[dict]) -> dict:
    """'A 1 GB database with 1 MB changed stalls within 2x a 10 MB database with 1 MB changed;
    the whole window for a small change is under 1 s.'"""

    def find(size, change):
        for row in summary:
            if row["size_mb"] == size and row["change_mb"] == change:
                return row
        return None

    out: dict = {"claim": "a 1 GB database with 1 MB changed stalls within 2x a 10 MB database with 1 MB changed; whole window for a small change under 1 s"}
    small = find(10, 1)
    sizes = sorted({row["size_mb"] for row in summary})
    largest = max(sizes) if sizes else None
    big = find(1000, 1) or (find(largest, 1) if largest and largest != 10 else None)
    if small and big:
        ratio = big["stall_ms"]["median"] / small["stall_ms"]["median"] if small["stall_ms"]["median"] else None
        out["stall_ratio"] = {
            "large_size_mb": big["size_mb"],
            "large_stall_ms_median": big["stall_ms"]["median"],
            "small_stall_ms_median": small["stall_ms"]["median"],
            "ratio": ratio,
            "held": ratio is not None and ratio <= 2.0,
            "exact_sizes": big["size_mb"] == 1000,
        }
    windows = [row for row in summary if row["change_mb"] == 1]
    if windows:
        worst = max(windows, key=lambda r: r["duration_ms"]["max"])
        out["small_change_window"] = {
            "per_size_median_ms": {str(r["size_mb"]): r["duration_ms"]["median"] for r in windows},
            "per_size_max_ms": {str(r["size_mb"]): r["duration_ms"]["max"] for r in windows},
            "worst_ms": worst["duration_ms"]["max"],
            "worst_size_mb": worst["size_mb"],
            "held_median": all(r["duration_ms"]["median"] < 1000 for r in windows),
            "held_every_copy": all(r["duration_ms"]["max"] < 1000 for r in windows),
        }
    return out


def fmt_mb(b) -> str:
    if b is None:
        return "–"
    v = b / MB
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 1 else f"{v:.2f}" if v >= 0.1 else f"{v:.3f}"


def fmt_spread(s: dict | None, unit=lambda v: f"{v:.0f}") -> str:
    if s is None:
        return "–"
    if s["n"] == 1 or s["min"] == s["max"]:
        return unit(s["median"])
    return f"{unit(s['median'])} ({unit(s['min'])}–{unit(s['max'])})"


def size_label(size_mb) -> str:
    return f"{size_mb / 1000:g} GB" if size_mb >= 1000 else f"{size_mb:g} MB"


def write_markdown(path: Path, data: dict) -> None:
    meta, sizes, summary, head = data["meta"], data["sizes"], data["summary"], data["headline"]
    m = meta["machine"]
    v = meta["versions"]
    L: list[str] = []
    L.append("# Stall of stop-and-copy windows by database size and change")
    L.append("")
    L.append(
        "> Figures are from a **shared 2-core machine** (other builds and tests ran beside the harness). "
        "Compare figures from one run only."
    )
    L.append("")
    L.append(f"- Run: {meta['started']} · `{meta['command']}` · {meta['total_s'] / 60:.1f} min")
    L.append(
        f"- Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, kernel {m['kernel']}, "
        f"load average {m['load_average']:.2f} before / {meta['load_average_after']:.2f} after"
    )
    L.append("- Versions: " + " · ".join(f"{k} `{val}`" for k, val in v.items()))
    gc_each = meta["args"].get("gc_each_change")
    L.append(
        "- Setup: the sidecar in managed mode (`run --control managed`, it runs Doltgres), `[backup.copy]` with the "
        "managed defaults (verified after each copy, last 10 kept), no automatic triggers. One table "
        "`t (id bigint primary key, payload text)`, 192 random hex characters a row, loaded 50,000 rows per "
        "`INSERT ... SELECT generate_series`, then `dolt_commit` + `dolt_gc()`. A change = that many MB of new "
        "rows"
        + (
            " (`INSERT`, then `dolt_commit` + `dolt_gc()` before the copy, outside the window: **--gc-each-change**)"
            if gc_each
            else " in Dolt's journal (`INSERT`, no commit, no gc)"
        )
        + ". Each copy: `doltgres-sidecar backup --action copy "
        "--json`; the harness waits for the copy's verification before going on."
    )
    L.append("")
    L.append("## Headline check")
    L.append("")
    L.append(f"Claim: *{head['claim']}*.")
    L.append("")
    sr = head.get("stall_ratio")
    if sr:
        verdict = "**held**" if sr["held"] else "**did not hold**"
        which = size_label(sr["large_size_mb"]) + ("" if sr["exact_sizes"] else " (largest size run; 1 GB was not)")
        L.append(
            f"- Stall, 1 MB changed: {which} {sr['large_stall_ms_median']:.0f} ms vs 10 MB "
            f"{sr['small_stall_ms_median']:.0f} ms (medians) = **{sr['ratio']:.2f}×** → {verdict} (limit 2×)."
        )
    else:
        L.append("- Stall ratio: not measured (needs sizes 10 and a larger one with change 1).")
    sw = head.get("small_change_window")
    if sw:
        per = ", ".join(
            f"{size_label(float(k))} {sw['per_size_median_ms'][k]:.0f} ms (max {sw['per_size_max_ms'][k]:.0f})"
            for k in sw["per_size_median_ms"]
        )
        verdict = (
            "**held** for every copy" if sw["held_every_copy"]
            else "**held** for the medians, not for every copy" if sw["held_median"]
            else "**did not hold**"
        )  # fmt: skip
        L.append(f"- Whole window (`duration_ms`), 1 MB changed: {per} → {verdict} (limit 1,000 ms).")
    L.append("")

    L.append("## Building each database")
    L.append("")
    L.append(
        "| size | rows | on disk after gc MB | journal before gc MB | load s | rows/s | commit s | gc s | build s | notes |"
    )
    L.append("|---|---|---|---|---|---|---|---|---|---|")
    for s in sizes:
        if s.get("skipped"):
            L.append(f"| {size_label(s['size_mb'])} | – | – | – | – | – | – | – | – | {s['skipped']} |")
            continue
        notes = "; ".join(s.get("notes", []))
        if s.get("journal_shrank_during_load"):
            notes = (notes + "; " if notes else "") + f"journal shrank {len(s['journal_shrank_during_load'])}× during the load (auto gc?)"
        L.append(
            f"| {size_label(s['size_mb'])} | {s['rows']:,} | {fmt_mb(s['disk_bytes'])} | {fmt_mb(s['journal_bytes_before_gc'])} | "
            f"{s['load_s']:.1f} | {s['load_rows_per_s']:,.0f} | {s['commit_s']:.1f} | {s['gc_s']:.1f} | **{s['build_s']:.1f}** | {notes} |"
        )
    L.append("")

    L.append("## Copy windows")
    L.append("")
    L.append(
        "Median (min–max) over the repeats; `full` is the first copy after the build (nothing to hard-link yet, one "
        "copy). *Journal at copy* is the size of Dolt's journal file when the window opened: changes accumulate "
        "there until the next `dolt_gc()`, and the journal is copied whole each time"
        + (" (here every change was collected into a table file before its copy)." if gc_each else ".")
    )
    L.append("")
    L.append(
        "| size | change MB | n | **stall ms** | window ms | copied MB | linked MB | journal at copy MB | "
        "inventory ms | detach ms | stop ms | copy ms | start ms | Doltgres up ms | verified |"
    )
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    ms = lambda v: f"{v:.0f}"  # noqa: E731
    ms1 = lambda v: f"{v:.1f}" if v < 10 else f"{v:.0f}"  # noqa: E731
    for r in summary:
        t = r["timings_ms"]
        L.append(
            f"| {size_label(r['size_mb'])} | {r['change_mb']} | {r['n']} | **{fmt_spread(r['stall_ms'], ms)}** | "
            f"{fmt_spread(r['duration_ms'], ms)} | {fmt_spread(r['bytes_copied'], fmt_mb)} | "
            f"{fmt_spread(r['bytes_linked'], fmt_mb)} | {fmt_spread(r['journal_bytes_at_copy'], fmt_mb)} | "
            f"{fmt_spread(t['inventory'], ms1)} | {fmt_spread(t['detach'], ms1)} | {fmt_spread(t['stop'], ms1)} | "
            f"{fmt_spread(t['copy'], ms1)} | {fmt_spread(t['start'], ms1)} | {fmt_spread(r.get('doltgres_up_ms'), ms)} | "
            f"{'yes' if r['verify_ok'] else 'NO'} |"
        )
    L.append("")
    L.append(
        "- *stall* = the sidecar's `stall_ms`: how long the gate was closed (the longest a client could be held). "
        "*window* = `duration_ms`, from the window's start to its end (drain included; the verification runs after "
        "it). inventory + detach + stop + copy + start are the cut's `timings`; inventory (HEAD and working-set "
        "hashes, `count(*)` of every table) runs with the gate closed, before the server stops."
    )
    L.append(
        "- *start* = from spawning Doltgres until the sidecar's login and `SELECT 1` succeed; the sidecar retries "
        "the login every 100 ms, so it comes in steps of about 100 ms. *Doltgres up* = from the sidecar logging "
        "the spawn to Doltgres logging `Server ready` (both in the sidecar's log): the server's own start-up time."
    )
    L.append(
        "- *copied* = bytes written into the new entry; *linked* = bytes hard-linked from the previous entry "
        "(unchanged table files)."
    )
    L.append("")
    if data.get("plot"):
        L.append(f"![stall by change and size]({data['plot']})")
        L.append("")
    elif data.get("plot_error"):
        L.append(f"No plot: {data['plot_error']}")
        L.append("")
    errors = data.get("errors") or []
    if errors:
        L.append("## Errors")
        L.append("")
        for e in errors:
            L.append(f"- {e}")
        L.append("")
    path.write_text("\n".join(L))


def make_plot(out_json: Path, out_png: Path) -> str | None:
    """Plots with matplotlib from this interpreter or the bench venv; returns an error or None."""
    script = HERE / "plot.py"
    python = None
    try:
        import matplotlib  # noqa: F401

        python = sys.executable
    except ImportError:
        try:
            from benches.pgbench import bench_venv  # ~/.cache/doltgres-sidecar/bench-venv with matplotlib

            python = str(bench_venv.ensure_venv())
        except Exception as e:
            return f"matplotlib is not importable and the bench venv could not be prepared: {e}"
    done = subprocess.run([python, str(script), str(out_json), str(out_png)], stderr=subprocess.PIPE, text=True, timeout=300)
    if done.returncode != 0:
        return f"plot.py failed: {done.stderr.strip()[-500:]}"
    return None
