"""Plot and summary of a soak run: reads the JSON the soak test writes (SOAK_REPORT) and writes
soak.png and soak.md beside it (or into OUT_DIR).

    python plot.py benches/results/soak.json [OUT_DIR]

run.sh runs it with an interpreter that has matplotlib (the bench venv if need be); without
matplotlib only soak.md is written, with a note.
"""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path

MB = 1_000_000
ACTIONS = ("push", "sync", "snapshot", "copy")



def heap_row(proc, bounds):
    """The table row of the heap in use (reports written before it was sampled have none)."""
    heap = proc.get("heap_bytes")
    if not heap:
        return []
    return [
        f"| heap in use (MB) | {heap['start'] / MB:.1f} | {heap['end'] / MB:.1f} | {heap['min'] / MB:.1f} | "
        f"{heap['max'] / MB:.1f} | {heap['after_warmup_start'] / MB:.1f} | "
        f"{proc['heap_slope_bytes_per_min'] / 1024:+.0f} KB/min | growth after warm-up "
        f"{proc['heap_growth_after_warmup_bytes'] / 1024:.0f} KB <= {bounds['heap_growth_bytes'] / 1024:.0f} KB |"
    ]

def fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares line (intercept, slope per second)."""
    n = len(points)
    if n < 2:
        return (points[0][1] if points else 0.0), 0.0
    mt = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    var = sum((p[0] - mt) ** 2 for p in points)
    slope = sum((p[0] - mt) * (p[1] - my) for p in points) / var if var else 0.0
    return my - slope * mt, slope


def warm_samples(data: dict) -> list[dict]:
    meta = data["meta"]
    start = meta["warmup_fraction"] * meta["load_seconds"]
    return [s for s in data["samples"] if start <= s["t"] <= meta["load_seconds"]]


def plot(data: dict, dst: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    meta = data["meta"]
    samples = data["samples"]
    t = [s["t"] / 60 for s in samples]
    warm = warm_samples(data)
    warm_from = meta["warmup_fraction"] * meta["load_seconds"] / 60
    load_end = meta["load_seconds"] / 60
    fig, axes = plt.subplots(5, 1, figsize=(11, 15), sharex=True)
    rss, fds, threads, tps, stalls = axes

    def shade(ax):
        ax.axvspan(0, warm_from, color="0.9", label="warm-up (not in the slope)")
        ax.axvline(load_end, color="0.5", linestyle=":", linewidth=1)
        ax.grid(alpha=0.3)

    shade(rss)
    rss.plot(t, [s["rss_bytes"] / MB for s in samples], color="C0", label="RSS")
    a, b = fit([(s["t"], s["rss_bytes"]) for s in warm])
    if warm:
        xs = [warm[0]["t"], warm[-1]["t"]]
        rss.plot(
            [x / 60 for x in xs],
            [(a + b * x) / MB for x in xs],
            color="C3",
            linestyle="--",
            label=f"least squares: {b * 60 / 1024:+.0f} KB/min",
        )
    rss.set_ylabel("MB")
    rss.set_ylim(bottom=0)
    rss.set_title("Sidecar RSS (VmRSS)")
    rss.legend(loc="lower right", fontsize=8)

    shade(fds)
    fds.plot(t, [s["fds"] for s in samples], color="C1", label="open fds")
    fds.plot(t, [s["sessions"] for s in samples], color="C2", label="sessions (gauge)")
    a, b = fit([(s["t"], s["fds"]) for s in warm])
    if warm:
        xs = [warm[0]["t"], warm[-1]["t"]]
        fds.plot(
            [x / 60 for x in xs],
            [a + b * x for x in xs],
            color="C3",
            linestyle="--",
            label=f"least squares: {b * 60:+.2f} fds/min",
        )
    fds.set_ylim(bottom=0)
    fds.set_title("Open file descriptors (/proc/PID/fd) and sessions")
    fds.legend(loc="lower right", fontsize=8)

    shade(threads)
    threads.plot(t, [s["threads"] for s in samples], color="C4", drawstyle="steps-post")
    threads.set_ylim(bottom=0, top=max(s["threads"] for s in samples) + 2)
    threads.set_title("Threads (/proc/PID/status)")

    shade(tps)
    rate_t, rate = [], []
    for prev, cur in zip(samples, samples[1:]):
        dt = cur["t"] - prev["t"]
        if dt > 0 and cur["t"] <= meta["load_seconds"] + 1:
            rate_t.append(cur["t"] / 60)
            rate.append((cur["commits"] - prev["commits"]) / dt)
    tps.plot(rate_t, rate, color="C5", linewidth=0.5, alpha=0.5, label="commits/s (sidecar counter)")
    span = max(1, round(30 / max(meta["sample_every_s"], 1)))
    smooth = [sum(rate[max(0, i - span + 1) : i + 1]) / len(rate[max(0, i - span + 1) : i + 1]) for i in range(len(rate))]
    tps.plot(rate_t, smooth, color="C5", linewidth=1.5, label="30 s mean")
    tps.set_ylim(bottom=0)
    tps.set_title("Throughput through the sidecar")
    tps.legend(loc="lower right", fontsize=8)

    shade(stalls)
    start = meta["started_unix"]
    for i, action in enumerate(ACTIONS):
        ws = [w for w in data["windows_log"] if w["action"] == action]
        stalls.scatter(
            [(w["started_unix"] - start) / 60 for w in ws],
            [w["stall_ms"] for w in ws],
            s=6,
            color=f"C{i}",
            label=f"{action} ({len(ws)})",
        )
    stalls.set_ylim(bottom=0)
    stalls.set_ylabel("stall_ms")
    stalls.set_title("Each window's stall (clients held)")
    stalls.legend(loc="upper left", fontsize=8)
    stalls.set_xlabel("minutes")

    fig.suptitle(
        f"Soak: {meta['load_seconds'] / 60:.0f} min, {data['load']['transactions']:,} transactions, "
        f"{data['windows']['rounds']} rounds of push/sync/snapshot/copy windows",
        fontsize=12,
    )
    fig.tight_layout()
    fig.savefig(dst, dpi=90)


def ms(summary: dict) -> str:
    if not summary.get("n"):
        return "–"
    return f"{summary['median']} / {summary['p90']} / {summary['max']}"


def markdown(data: dict, png: str | None, plot_error: str | None) -> str:
    meta, load, counters = data["meta"], data["load"], data["counters"]
    windows, proc, errors = data["windows"], data["process"], data["errors"]
    bounds = meta["bounds"]
    started = datetime.datetime.fromtimestamp(meta["started_unix"], datetime.timezone.utc)
    minutes = meta["load_seconds"] / 60
    rss, fds, threads = proc["rss_bytes"], proc["fds"], proc["threads"]
    doc = errors["documented_57p01"]
    seen = doc["ledger"] + doc["reader"] + doc["pgbench"]
    checks = data.get("checks", [])
    passed = sum(1 for c in checks if c["ok"])
    failed = [c["check"] for c in checks if not c["ok"]]
    failed_note = f" (failed: {'; '.join(failed)})" if failed else ""
    restores = [c for c in checks if c["check"].startswith("restored ")]
    lines = [
        "# Soak run",
        "",
        f"`SOAK_SECONDS={meta['seconds_requested']} benches/soak/run.sh` — started "
        f"{started:%Y-%m-%d %H:%M} UTC at commit `{meta['commit']}`"
        + (" (with uncommitted changes to the sources)" if meta.get("sources_modified") else "")
        + (f", `auth = \"{meta['auth']}\"`" if meta.get("auth") else "")
        + f", {meta['cores']} cores shared with "
        "other work; the sidecar is the debug build the tests use "
        f"(`{Path(meta['sidecar_binary']).parent.name}`), in managed mode with its own Doltgres.",
        "",
        f"**{minutes:.1f} minutes of load, {load['transactions']:,} transactions "
        f"({load['tps']:.0f}/s), {windows['rounds']} rounds of push, sync, snapshot and copy windows "
        f"(every {meta['every_write_commits']} write commits); {passed} of {len(checks)} pass criteria "
        f"met{failed_note}. RSS {rss['start'] / MB:.1f} → {rss['end'] / MB:.1f} MB, slope after "
        f"warm-up {proc['rss_slope_bytes_per_min'] / 1024:+.0f} KB/min; open fds {fds['start']} → "
        f"{fds['end']}, slope {proc['fd_slope_per_min']:+.2f}/min; threads {threads['start']} → "
        f"{threads['end']} (max {threads['max']}).**",
        "",
        "## Load",
        "",
        "| client | what | transactions |",
        "|---|---|---|",
        f"| {meta['ledger_writers']} ledger writers | new connection per `BEGIN; INSERT … max(seq)+1; COMMIT` | "
        f"{load['ledger_appends']:,} appends, {load['ledger_conflicts']:,} write conflicts rolled back and retried |",
        f"| pgbench `-C -c {meta['pgbench_clients']}` | connection per transaction; `UPDATE` own row ×2, `SELECT` ×1 | "
        f"{load['pgbench_processed']:,} ({load['pgbench_writes']:,} writes, {load['pgbench_reads']:,} reads, "
        f"{load['pgbench_failed']} failed) in {load['pgbench_runs']} runs |",
        f"| 1 reader | persistent connection, a `SELECT` every 50 ms | {load['reader_queries']:,} |",
        "",
        "## Exact counts",
        "",
        "| check | expected | found |",
        "|---|---|---|",
        f"| ledger rows, max(seq) | {load['ledger_appends']:,} acknowledged appends | "
        f"{counters['ledger_rows']:,}, {counters['ledger_max_seq']:,} |",
        f"| pgb sum | {load['pgbench_writes']:,} pgbench writes | {counters['pgb_sum']:,} |",
        f"| commits_total | {load['transactions']:,} | {counters['commits']:,} |",
        f"| write_commits_total | {load['ledger_appends'] + load['pgbench_writes']:,} | {counters['write_commits']:,} |",
        f"| rollbacks_total | {load['ledger_conflicts']:,} conflicts | {counters['rollbacks']:,} |",
        "",
        "After the load, fresh push, sync and copy windows, restored with `doltgres-sidecar restore` "
        "onto a scratch Doltgres: "
        + (
            "; ".join(f"{c['check'][len('restored ') :].split(' ')[0]} {'ok' if c['ok'] else 'FAILED'}" for c in restores)
            if restores
            else "not reached"
        )
        + " (ledger rows, max seq and pgb sum equal to the load's).",
        "",
        "## Windows",
        "",
        "| action | ok | failed | aborted | drain ms | stall ms | duration ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for action in ACTIONS:
        w = windows["by_action"][action]
        drains = sorted(x["drain_ms"] for x in data["windows_log"] if x["action"] == action and x["result"] == "ok")
        drain = {"n": len(drains)}
        if drains:
            drain.update(median=drains[len(drains) // 2], p90=drains[len(drains) * 9 // 10], max=drains[-1])
        lines.append(
            f"| {action} | {w['ok']} | {w['failed']} | {w['aborted']} | {ms(drain)} | {ms(w['stall_ms'])} | "
            f"{ms(w['duration_ms'])} |"
        )
    lines += ["", "Drain, stall and duration: median / p90 / max over the windows `GET /backups` listed."]
    copies = sorted(
        (w for w in data["windows_log"] if w["action"] == "copy" and w["result"] == "ok"),
        key=lambda w: w["started_unix"],
    )
    tenth = max(1, len(copies) // 10)
    if len(copies) >= 10:
        stalls = sorted(w["stall_ms"] for w in copies)
        first = sorted(w["stall_ms"] for w in copies[:tenth])[tenth // 2]
        last = sorted(w["stall_ms"] for w in copies[-tenth:])[tenth // 2]
        t0 = copies[0]["started_unix"]
        _, slope = fit([(w["started_unix"] - t0, w["stall_ms"]) for w in copies])
        lines += [
            "",
            f"Copy stalls: median {stalls[len(stalls) // 2]} ms over all {len(copies)} copies; "
            f"{first} ms over the first tenth, {last} ms over the last tenth; least-squares slope "
            f"{slope * 60:+.1f} ms per minute of load. The load runs no `dolt_gc()`: Dolt's journal "
            "grows with every write, and each copy takes only what was appended since the last one "
            "inside its window.",
        ]
    disk = data.get("disk")
    if disk:
        lines += [
            "",
            f"On disk at the end, each file counted once: the catalog ({disk['catalog_keep_last']} "
            f"entries kept, sharing journal segments and table files) {disk['catalog_bytes'] / MB:.1f} MB; "
            f"the server's data directory {disk['server_data_bytes'] / MB:.1f} MB.",
        ]
    lines += [
        "",
        f"Snapshot commands run: {windows['snapshots_run']}. Copies verified on a scratch Doltgres "
        f"(`verify_after`): {windows['verify_ok']} ok, {windows['verify_failed']} failed. Write commits "
        f"owed a window at the end: {windows['write_commits_since_backup']} (< {meta['every_write_commits']}).",
        "",
        "## Sidecar process",
        "",
        f"Sampled every {meta['sample_every_s']} s; slopes are least squares over the samples after the "
        f"first {meta['warmup_fraction']:.0%} of the load.",
        "",
        "| figure | start | end | min | max | after warm-up: first sample | slope | bound |",
        "|---|---|---|---|---|---|---|---|",
        f"| RSS (MB) | {rss['start'] / MB:.1f} | {rss['end'] / MB:.1f} | {rss['min'] / MB:.1f} | {rss['max'] / MB:.1f} | "
        f"{rss['after_warmup_start'] / MB:.1f} | {proc['rss_slope_bytes_per_min'] / 1024:+.0f} KB/min "
        f"({proc['rss_slope_bytes_per_txn']:+.1f} B/transaction) | "
        + (
            f"growth after warm-up {proc['rss_growth_after_warmup_bytes'] / 1024:.0f} KB "
            f"<= {bounds['rss_growth_bytes'] / 1024:.0f} KB |"
            if "rss_growth_bytes" in bounds
            else "reported |"
        ),
    ] + heap_row(proc, bounds) + [
        f"| open fds | {fds['start']} | {fds['end']} | {fds['min']} | {fds['max']} | {fds['after_warmup_start']} | "
        f"{proc['fd_slope_per_min']:+.2f}/min | {bounds['fds_per_min']:g}/min |",
        f"| threads | {threads['start']} | {threads['end']} | {threads['min']} | {threads['max']} | "
        f"{threads['after_warmup_start']} | {proc['thread_slope_per_min']:+.2f}/min | – |",
        f"| sessions | {proc['sessions']['start']} | {proc['sessions']['end']} | {proc['sessions']['min']} | "
        f"{proc['sessions']['max']} | {proc['sessions']['after_warmup_start']} | – | – |",
        "",
        "## Client errors",
        "",
        f"Other than documented: **{len(errors['other'])}**.",
        "",
        f"Documented `57P01` (\"the server restarted for a backup\"; nothing of the request ran, the client "
        f"reconnects): {seen} seen by clients — reader {doc['reader']}, ledger writers {doc['ledger']}, "
        f"pgbench {doc['pgbench']}; the sidecar counted {doc['sessions_ended_restart_without_replay']} in "
        "`sessions_ended_total{reason=\"restart_without_replay\"}`."
        + (
            " With passthrough authentication a session attached when a copy window restarts the server "
            "is ended (the reader's, once per copy window); with proxy authentication it is logged in again."
            if doc["reader"]
            else ""
        )
        + (
            " The ledger writers and pgbench connect per transaction; theirs are sessions whose first "
            "request was held through the round's push, sync or snapshot window and then not let through "
            "by the copy window that followed (see `proxy-tests/tests/soak.rs`)."
            if doc["ledger"] + doc["pgbench"]
            else ""
        ),
    ]
    for e in errors["other"][:20]:
        lines.append(f"- `{e[:300]}`")
    lines += ["", "## Pass criteria", "", "| criterion | met | found |", "|---|---|---|"]
    for c in checks:
        found = c["found"].replace("|", "\\|")
        lines.append(f"| {c['check']} | {'yes' if c['ok'] else '**no**'} | {found} |")
    lines.append("")
    if png:
        lines += [f"![Soak: RSS, fds, threads, throughput, window stalls]({png})", ""]
    if plot_error:
        lines += [f"No plot: {plot_error}", ""]
    return "\n".join(lines)


def main(src: str, out_dir: str | None) -> None:
    path = Path(src)
    out = Path(out_dir) if out_dir else path.parent
    out.mkdir(parents=True, exist_ok=True)
    data = json.loads(path.read_text())
    stem = path.stem
    png = out / f"{stem}.png"
    error = None
    try:
        plot(data, png)
    except ImportError as e:
        error = f"matplotlib is not importable ({e})"
    (out / f"{stem}.md").write_text(markdown(data, None if error else png.name, error))
    print(f"wrote {out / (stem + '.md')}" + ("" if error else f" and {png}"), file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2] if len(sys.argv) == 3 else None)
