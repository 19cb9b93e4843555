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


def lat_cells(lat: dict | None) -> list[str]:
    if not lat:
        return ["–"] * 4
    return [ms(lat["p50"]), ms(lat["p99"]), ms(lat["max"]), f"{lat['samples']:,}"]


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
        "The first push and sync of the whole database ran before any measurement.",
        f"- Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']:.0f} GiB, load average "
        f"{m['loadavg_before'][0]:.2f} before / {m['loadavg_after'][0]:.2f} after",
        "- Versions: " + " · ".join(f"{k} `{val}`" for k, val in v.items()),
        "",
        "## Stall per action",
        "",
        "A transaction *overlaps* a window if it started before the window ended and ended after it "
        "started (window = the sidecar's record: gate closed at its start, drain, action, resume). "
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
    quiet = load["between_windows_latency_ms"]
    per_window = [w["overlapping"]["transactions"] for w in results["windows"]]
    typical = sorted(per_window)[len(per_window) // 2] if per_window else 0
    lines += [
        "",
        f"A window overlaps few transactions (median {typical} here: about two per client, the one "
        "running when the gate closed and the one held at it), so the p99 in windows is close to "
        "the worst latency in them.",
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
        "| # | action | at s | result | drain ms | stall ms | duration ms | txns overlapping | worst latency ms | worst / steady p99 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for w in results["windows"]:
        r, o = w["record"], w["overlapping"]
        lat = o["latency_ms"] or {}
        lines.append(
            f"| {r.get('id', '–')} | {w['action']} | {w['span']['offset_s']:.1f} | {r.get('result', w['http_status'])} "
            f"| {r.get('drain_ms', '–')} | {r.get('stall_ms', '–')} | {r.get('duration_ms', '–')} "
            f"| {o['transactions']} | {ms(lat.get('max'))} | {x(o['max_over_steady_p99'])} |"
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
