"""benches/results/upgrade.md from the results of one run (benches/upgrade/run.py)."""

from __future__ import annotations

import re
from pathlib import Path

from benches.pgbench.formatting import table
from benches.stall.stall_report import ms

NAMES = {"doltgres": "Doltgres", "postgres": "PostgreSQL"}


def rate(value: float) -> str:
    return f" -R {value:g}" if value > 0 else ""


def secs(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def lat3(lat: dict | None) -> str:
    if not lat:
        return "–"
    return f"{ms(lat['p50'])} / {ms(lat['p99'])} / {ms(lat['max'])}"


def failed(figures: dict) -> str:
    n = figures["failed"] or 0
    text = f"{n:,}"
    return f"**{text}**" if n else text


def connection_errors(phase: dict) -> str:
    lines = phase["all"]["connection_error_lines"]
    probes = phase["probe"]["errors"]
    text = f"{lines} / {probes}"
    return f"**{text}**" if lines or probes else text


def near_cell(phase: dict) -> str:
    near = phase["all"]["near"]
    lat = near["latency_ms"]
    if not lat:
        return "–"
    return f"{lat['samples']:,} · {ms(lat['p99'])} / {ms(lat['max'])}"


def columns(results: dict) -> list[tuple[str, dict]]:
    out = []
    for server, r in results["servers"].items():
        out.append((f"{NAMES[server]} steady", r["steady"]))
        out.append((f"{NAMES[server]} upgrade", r["upgrade"]))
    return out


def console(result: dict) -> list[str]:
    """A few lines for the terminal once one server is done."""
    lines = []
    for name in ("steady", "upgrade"):
        a = result[name]["all"]
        lines.append(
            f"{name:7}: {a['transactions']:,} txns, {a['failed']} failed, {a['tps']:,.0f} tps, "
            f"p50/p99/max {lat3(a['latency_ms'])} ms, near the hand-over moment {near_cell(result[name])} ms, "
            f"connection errors {result[name]['all']['connection_error_lines']}, probe errors {result[name]['probe']['errors']}"
        )
    h = result["handover"]
    lines.append(
        f"hand-over {ms(h['took_over_after_ms'])} ms after `run --upgrade` started; {h['sessions_left_on_old']} session(s) "
        f"left on the old process, which exited {secs(h['old_exited_after_s'])} s after the hand-over "
        f"({secs(h['old_exited_after_last_persistent_txn_s'])} s after the persistent run's last transaction), code {h['old_exit_code']}"
    )
    return lines


def write(results: dict, path: Path) -> None:
    s, m, v = results["settings"], results["machine"], results["versions"]
    flag = "-N" if s["script"] == "simple-update" else "-S"
    cols = columns(results)
    servers = results["servers"]
    lines = [
        "# Upgrade under load: what clients see while `run --upgrade` takes over",
        "",
        "> Figures are from a **shared 2-core machine**: pgbench, the server and both sidecar processes run "
        "on the same two cores. Compare figures from one run only; absolute latencies will differ on a "
        "dedicated or bigger machine.",
        "",
        f"- Run: {results['started']} · `{results['command']}` · {results['elapsed_seconds'] / 60:.1f} min",
        f"- Load, per phase: two pgbench runs at once through the sidecar, `{flag} -M {s['mode']}`, scale {s['scale']}, "
        f"`-T {s['duration_seconds']}`: `-C -c {s['per_txn_clients']}{rate(s['per_txn_rate'])}` (a new connection per "
        f"transaction) and `-c {s['persistent_clients']}{rate(s['persistent_rate'])}` (persistent connections). First a "
        f"steady phase, then the same load with `doltgres-sidecar run --upgrade --config F` (the same binary) started "
        f"{s['upgrade_at_seconds']:g} s in. `shutdown_timeout = \"{s['shutdown_timeout_seconds']}s\"`, so the old "
        f"process's persistent sessions run to pgbench's end. {s['warmup_seconds']} s of unrecorded warm-up first.",
        "- Latency is pgbench's per-transaction figure from its `-l` log. "
        + (
            "Under `-R` pgbench measures it from the transaction's scheduled start, so it includes any lag behind the "
            "schedule and, for `-C`, the connection and log-in (an accept that waits shows there). "
            if s["per_txn_rate"] > 0 and s["persistent_rate"] > 0
            else "Without `-R` it excludes connection time; the probe below covers the accept path. "
        )
        + "The rates are the same for both servers and leave the two cores room, so latency reflects the path, not a saturated machine.",
        f"- Beside pgbench, a probe opens a TCP connection to the listen address every {s['probe_every_seconds'] * 1000:.0f} ms "
        "and times the sidecar's answer to an SSLRequest (the accept path alone), and `GET /status` is read every "
        f"{s['status_every_seconds'] * 1000:.0f} ms for the pid that answers. "
        "Doltgres and PostgreSQL are measured one after the other, each with the machine to itself.",
        f"- Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']:.0f} GiB, load average "
        f"{m['loadavg_before'][0]:.2f} before / {m['loadavg_after'][0]:.2f} after",
        "- Versions: " + " · ".join(f"{k} `{val}`" for k, val in v.items()),
        "",
    ]
    problems = results["problems"]
    if problems:
        lines += ["## PROBLEMS", "", *[f"- **{p}**" for p in problems], ""]
    else:
        lines += [
            "**No connection refused or failed, no failed transaction, every pgbench run exited 0, "
            "on either server.**",
            "",
        ]
    header = ["", *[name for name, _ in cols]]
    rows = [
        ["transactions (`-C` + persistent)", *[f"{p['all']['transactions']:,}" for _, p in cols]],
        ["failed transactions", *[failed(p["all"]) for _, p in cols]],
        ["connection errors (pgbench lines / failed probes)", *[connection_errors(p) for _, p in cols]],
        ["pgbench exit codes (`-C`, persistent)", *[", ".join(str(r["exit_code"]) for r in p["runs"].values()) for _, p in cols]],
        ["TPS `-C` / persistent (pgbench's)", *[" / ".join(f"{r['tps'] or 0:,.0f}" for r in p["runs"].values()) for _, p in cols]],
        ["latency p50 / p99 / max ms, all", *[lat3(p["all"]["latency_ms"]) for _, p in cols]],
        ["… `-C` run", *[lat3(p["runs"]["per_txn"]["latency_ms"]) for _, p in cols]],
        ["… persistent run", *[lat3(p["runs"]["persistent"]["latency_ms"]) for _, p in cols]],
        ["started within ±1 s of the hand-over¹: txns · p99 / max ms", *[near_cell(p) for _, p in cols]],
        ["… `-C` run, max ms", *[ms((p["runs"]["per_txn"]["near"]["latency_ms"] or {}).get("max")) for _, p in cols]],
        ["… persistent run, max ms", *[ms((p["runs"]["persistent"]["near"]["latency_ms"] or {}).get("max")) for _, p in cols]],
        ["longest time with no transaction ending, ±1 s¹ / whole phase², ms",
         *[f"{ms(p['all']['near']['longest_pause_ms'])} / {ms(p['all']['longest_pause_ms'])}" for _, p in cols]],
        ["pgbench's max schedule lag `-C` / persistent, ms",
         *[" / ".join(ms(r.get("schedule_lag_ms")) for r in p["runs"].values()) for _, p in cols]],
        ["`-C` average connection time (pgbench), ms", *[ms(p["runs"]["per_txn"]["average_connection_time_ms"]) for _, p in cols]],
        ["connect probe p50 / p99 / max ms", *[lat3(p["probe"]["connect_ms"]) for _, p in cols]],
        ["connect probe within ±1 s¹: probes · max ms",
         *[f"{p['probe']['near']['probes']} · {ms(p['probe']['near']['max_ms'])}" for _, p in cols]],
    ]
    lines += [
        "## Steady against upgrade, side by side",
        "",
        *table(header, rows),
        "",
        "¹ In the upgrade phase, transactions (and probes) that *started* within 1 s either side of the hand-over "
        "(the successor's log line \"took over the running sidecar's listeners\", after which it accepts and the old "
        "process stops accepting); in the steady phase, the same offset into the run, as a baseline.  "
        "² From 1 s after the start to 0.5 s before the end.",
        "",
        "## The hand-over",
        "",
    ]
    hrows = []
    for label, key, fmt in [
        ("`run --upgrade` started, s into the phase", "upgrade_offset_s", secs),
        ("successor received the listeners, ms after the start", "received_after_ms", ms),
        ("old process confirmed, stopped accepting, ms after the start", "predecessor_confirmed_after_ms", ms),
        ("**successor took over (accepting), ms after the start**", "took_over_after_ms", ms),
        ("`GET /status` first answered by the new pid, ms after the start", "status_new_pid_after_ms", ms),
        ("sessions left on the old process", "sessions_left_on_old", str),
        ("old process: `proxy stopped`, s after the hand-over", "old_proxy_stopped_after_s", secs),
        ("**old process exited, s after the hand-over**", "old_exited_after_s", secs),
        ("… s after the persistent run's last transaction ended", "old_exited_after_last_persistent_txn_s", secs),
        ("… s after the harness saw pgbench exit (negative: before)", "old_exited_after_pgbench_s", secs),
        ("old process exit code", "old_exit_code", str),
        ("old process reached `shutdown_timeout`", "shutdown_timeout_reached", lambda b: "yes" if b else "no"),
        ("successor got the final counters", "successor_saw_final_counters", lambda b: "yes" if b else "no"),
        ("successor still running afterwards", "successor_running", lambda b: "yes" if b else "**no**"),
    ]:
        hrows.append([label, *[fmt(r["handover"][key]) if r["handover"][key] is not None else "–" for r in servers.values()]])
    lines += table(["", *[NAMES[k] for k in servers]], hrows)
    lines += [
        "",
        "The old process keeps its persistent sessions until pgbench ends them at `-T`, so it exits when "
        "the run ends, not when the hand-over is done; the time from the persistent run's last transaction to "
        "its exit is what closing those sessions and its own shutdown take.",
        "",
    ]
    warned = [(k, w) for k, r in servers.items() for w in r["handover"]["warnings"]]
    if warned:
        lines += ["Warnings and errors the two processes logged:", ""]
        lines += [f"- {NAMES[k]}: {w['level']} {w['message']} {w['fields'] or ''}" for k, w in warned]
    else:
        lines.append("Neither process logged a warning or an error.")
    lines += ["", "## pgbench", ""]
    prow = []
    for server, r in servers.items():
        for phase in ("steady", "upgrade"):
            for kind, run in r[phase]["runs"].items():
                prow.append([
                    NAMES[server], phase, "`-C`" if kind == "per_txn" else "persistent",
                    str(run["exit_code"]), f"{run['transactions'] or 0:,}", str(run["failed"]),
                    f"{run['tps'] or 0:,.0f}", lat3(run["latency_ms"]), ms(run["longest_pause_ms"]),
                    "; ".join(f"`{e}`" for e in run["errors"]) or "–",
                ])
    lines += table(["server", "phase", "run", "exit", "txns", "failed", "tps", "p50 / p99 / max ms",
                    "longest pause ms", "errors"], prow)
    first = next(iter(servers.values()))
    lines += ["", "Commands (the first server's): " + "; ".join(
        f"`{re.sub(r'--log-prefix=[^ ]+', '--log-prefix=…', run['argv'])}`" for run in first["steady"]["runs"].values()), ""]
    path.write_text("\n".join(lines) + "\n")

