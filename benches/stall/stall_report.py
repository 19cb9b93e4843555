"""benches/results/stall.md from the results of one run (benches/stall/run.py)."""

from __future__ import annotations

from pathlib import Path


def ms(value: float | None) -> str:
    if value is None:
        return "–"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def x(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}×"


def failures(counts: dict[str, int]) -> str:
    if not counts:
        return "0"
    return ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))


def slowest(overlapping: dict) -> str:
    txns = overlapping.get("slowest") or []
    if not txns:
        return "–"
    t = txns[0]
    return f"{t['start_ms']:.0f} → {t['end_ms']:.0f}"


def lat_cells(lat: dict | None) -> list[str]:
    if not lat:
        return ["–"] * 4
    return [ms(lat["p50"]), ms(lat["p99"]), ms(lat["max"]), f"{lat['samples']:,}"]


def steps_text(steps: list[dict]) -> str:
    """`presync 40.2 · [drain 11.0 · sync 31.5 · gate_closed 44.0] · push 120.3` (ms): the steps
    in order, the gate's closed period in brackets."""
    out = []
    phase = "before"
    for s in steps:
        if s["phase"] != phase:
            if phase == "held":
                out.append("]")
            if s["phase"] == "held":
                out.append("[")
            phase = s["phase"]
        out.append(f"{s['step']} {s['ms']:.1f}")
    if phase == "held":
        out.append("]")
    text = " · ".join(out)
    return text.replace("[ · ", "[").replace(" · ]", "]")


def write(results: dict, path: Path) -> None:
    s = results["settings"]
    m = results["machine"]
    v = results["versions"]
    steady, load = results["steady"], results["load"]
    p99 = steady["latency_ms"]["p99"]
    flag = "-N" if s["script"] == "simple-update" else "-S"
    lines = [
        "# Client-visible stall of push and sync windows under load",
        "",
        "> Figures are from a **shared 2-core machine**: pgbench, Doltgres and the sidecar run on the same "
        "two cores, and other work ran beside them. Compare figures from one run only; absolute "
        "latencies and ratios will differ on a dedicated or bigger machine.",
        "",
        f"- Run: {results['started']} · `{results['command']}` · {results['elapsed_seconds'] / 60:.1f} min",
        f"- Load: pgbench `{flag} -M {s['mode']} -c {s['clients']} -j {s['threads']}`, scale {s['scale']}, through the "
        f"sidecar to Doltgres; steady state {s['steady_seconds']} s with no window, then {s['load_seconds']} s "
        f"with a window every {s['every_seconds']:g} s via `POST /backups?action=…` ({', '.join(s['actions'])} in turn).",
        "- push: `commit_working_set = true` (a Dolt commit of the working set inside the window), then "
        "`dolt_push` of `main` to a `file://` remote; sync: `dolt_backup('sync')` to a `file://` backup. "
        "The first push and sync of the whole database ran before any measurement."
        + (
            " Doltgres ran with " + ", ".join(f"`{e}`" for e in s["doltgres_env"]) + " in its environment."
            if s.get("doltgres_env")
            else ""
        ),
        f"- Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']:.0f} GiB, load average "
        f"{m['loadavg_before'][0]:.2f} before / {m['loadavg_after'][0]:.2f} after",
        "- Versions: " + " · ".join(f"{k} `{val}`" for k, val in v.items()),
        "",
        "## Stall per action",
        "",
        "A transaction *overlaps* a window if it started before the window ended and ended after it "
        "started (window = the sidecar's record, from its start to its end: the steps before the gate "
        "closes, the drain, the steps while it is closed, and what runs after it reopens). "
        "Latencies are pgbench's per-transaction figures (client-visible, connection time excluded). "
        f"Steady-state p99 = **{ms(p99)} ms**.",
        "",
        "| action | windows (ok) | window duration ms, median (max) | sidecar `stall_ms`, median (max) "
        "| txns overlapping | worst latency ms | p99 in windows ms | worst / steady p99 | p99 in windows / steady p99 "
        "| median per-window worst / steady p99 | failed in windows |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for action, a in results["by_action"].items():
        lat = a["latency_ms"] or {}
        lines.append(
            f"| {action} | {a['windows']} ({a['ok']}) "
            f"| {ms(a['duration_ms']['median'])} ({ms(a['duration_ms']['max'])}) "
            f"| {ms(a['stall_ms']['median'])} ({ms(a['stall_ms']['max'])}) "
            f"| {a['transactions']:,} | {ms(lat.get('max'))} | {ms(lat.get('p99'))} "
            f"| **{x(a['max_over_steady_p99'])}** | **{x(a['p99_over_steady_p99'])}** "
            f"| {x(a['median_window_max_over_steady_p99'])} | {failures(a['failures'])} |"
        )
    lines += [
        "",
        "The window above runs from its start to its end: for a push, the log-in before the gate "
        "closes, the cut while it is closed, and the `dolt_push` after it reopens; for a sync, the "
        "log-in and pre-syncs before it closes and the sync while it is closed. Counting only the "
        "transactions that overlap the gate's closed period (the `gate_closed` step):",
        "",
        "| action | gate closed ms, median (max) | txns overlapping the gate | worst latency ms | worst / steady p99 |",
        "|---|---|---|---|---|",
    ]
    for action, a in results["by_action"].items():
        g = a.get("gate_latency_ms") or {}
        lines.append(
            f"| {action} | {ms(a['stall_ms']['median'])} ({ms(a['stall_ms']['max'])}) | {g.get('samples', 0):,} "
            f"| {ms(g.get('max'))} | **{x(a.get('gate_max_over_steady_p99'))}** |"
        )
    quiet = load["between_windows_latency_ms"]
    per_window = [w["overlapping"]["transactions"] for w in results["windows"]]
    typical = sorted(per_window)[len(per_window) // 2] if per_window else 0
    lines += [
        "",
        f"A window overlaps few transactions (median {typical} here, with 8 clients), so the p99 in "
        "windows is close to the worst latency in them.",
        "",
        "Against the baseline taken during the same run (transactions between windows, "
        f"p99 **{ms(quiet['p99'] if quiet else None)} ms**, see below):",
        "",
        "| action | worst / between-windows p99 | p99 in windows / between-windows p99 |",
        "|---|---|---|",
    ]
    for action, a in results["by_action"].items():
        lines.append(f"| {action} | {x(a['max_over_between_windows_p99'])} | {x(a['p99_over_between_windows_p99'])} |")
    lines += [
        "",
        "## Latency by phase, ms",
        "",
        "| phase | tps | p50 | p99 | max | transactions | failed |",
        "|---|---|---|---|---|---|---|",
        f"| steady state (no window) | {steady['tps']:,.0f} | " + " | ".join(lat_cells(steady["latency_ms"]))
        + f" | {failures(steady['failures'])} |",
        f"| with windows, all transactions | {load['tps']:,.0f} | " + " | ".join(lat_cells(load["latency_ms"]))
        + f" | {failures(load['failures'])} |",
        "| with windows, between windows¹ | – | " + " | ".join(lat_cells(quiet))
        + f" | {failures(load['between_windows_failures'])} |",
        "",
        "¹ Transactions of the run with windows that overlap no window nor the second after one: "
        "a baseline taken at the same time as the windows.",
        "",
    ]
    hist = results["sidecar_stall_histogram"]
    lines += [
        "## The sidecar's view",
        "",
        f"`doltgres_sidecar_window_stall_seconds` over the run with windows: {hist['held_requests']:,} requests "
        f"were held at the gate, {ms(hist['mean_ms'])} ms on average, none longer than the "
        f"{hist['longest_at_most_s']} s bucket. pgbench printed {load['notices']} hold notice(s) "
        f"and {len(load['errors'])} distinct error message(s)"
        + (": " + "; ".join(f"`{e}`" for e in load["errors"]) if load["errors"] else "")
        + ".",
        "",
        "## Every window",
        "",
        "Steps are the sidecar's (`steps` in the record), in ms, the gate's closed period in brackets; "
        "the slowest overlapping transaction's start and end are in ms from the window's start.",
        "",
        "| # | action | at s | result | drain ms | stall ms | duration ms | txns overlapping | worst latency ms "
        "| worst / steady p99 | slowest txn (start → end) | steps |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for w in results["windows"]:
        r, o = w["record"], w["overlapping"]
        lat = o["latency_ms"] or {}
        lines.append(
            f"| {r.get('id', '–')} | {w['action']} | {w['span']['offset_s']:.1f} | {r.get('result', w['http_status'])} "
            f"| {r.get('drain_ms', '–')} | {r.get('stall_ms', '–')} | {r.get('duration_ms', '–')} "
            f"| {o['transactions']} | {ms(lat.get('max'))} | {x(o['max_over_steady_p99'])} "
            f"| {slowest(o)} | {steps_text(r.get('steps') or [])} |"
        )
    prime = results["priming"]
    lines += [
        "",
        "First windows, before measurement (whole database): "
        + ", ".join(
            f"{w['action']} stall {w['record'].get('stall_ms')} ms / duration {w['record'].get('duration_ms')} ms"
            for w in prime
        )
        + ".",
        "",
        "Raw figures (every window's record and overlap, latency summaries, the metrics delta): "
        "[`stall.json`](stall.json).",
        "",
    ]
    path.write_text("\n".join(lines))
