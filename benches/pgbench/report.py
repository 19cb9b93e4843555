"""The markdown report of one harness run: TPS and ratios, latencies, proxy CPU and memory, runs
that failed, and links to the plots."""

from __future__ import annotations

from pathlib import Path

from summary import (
    SCRIPT_FLAGS,
    TARGET_NAMES,
    TARGETS,
    UPSTREAM_NAMES,
    by_case,
    paired_ratio,
    problems,
    target_figures,
)

# Issue 5's goal, on pgbench -S against PostgreSQL.
GOAL_CLIENTS = (1, 32)
GOAL_VS_DIRECT = 0.90
GOAL_VS_PGBOUNCER = 1.0


def fmt_tps(figures: dict) -> str:
    if figures["tps"] is None:
        return "failed"
    text = f"{figures['tps']:,.0f}"
    return text if figures["ok"] == figures["runs"] else f"{text} ({figures['ok']}/{figures['runs']} ok)"


def fmt_ratio(ratio: dict | None) -> str:
    if ratio is None:
        return "–"
    if ratio["n"] == 1:
        return f"{ratio['median']:.2f}"
    return f"{ratio['median']:.2f} ({ratio['min']:.2f}–{ratio['max']:.2f})"


def fmt_latency(figures: dict) -> str:
    lat = figures["latency_ms"]
    if not lat:
        return "–"
    return " / ".join(fmt_ms(lat[k]) for k in ("avg", "p50", "p95", "p99"))


def fmt_ms(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def fmt_us(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def fmt_mib(value: float | None) -> str:
    return "–" if value is None else f"{value / 2**20:.1f} MiB"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def case_label(case: tuple) -> list[str]:
    _, script, mode, clients = case
    return [SCRIPT_FLAGS[script], mode, str(clients)]


def header_section(results: dict) -> list[str]:
    s, m = results["settings"], results["machine"]
    lines = ["# pgbench: sidecar against a direct connection and PgBouncer", ""]
    if s["quick"]:
        lines += [
            "> **Quick run** (smoke test): one short repeat, fewer client counts. Not for comparison.",
            "",
        ]
    if results.get("interrupted"):
        lines += [
            f"> **Incomplete** ({results['interrupted']}): the tables hold only the runs that finished.",
            "",
        ]
    lines += [
        f"- Run: {results['started']} · `{results['command']}` · {results['elapsed_seconds'] / 60:.1f} min",
        f"- Each run: pgbench `-T {s['duration']}` (connection time excluded), scale 1, `-j` = min(clients, {s['threads']});"
        f" {s['repeat']} interleaved repeat(s); target order rotates each repeat.",
        f"- Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']:.0f} GiB, {m['kernel']}",
        "- Versions: " + " · ".join(f"{k} `{v}`" for k, v in results["versions"].items()),
        "- Figures are medians over repeats; ratios are per-repeat TPS ratios (runs of one case ran back to back),"
        " shown as median (min–max).",
        "",
    ]
    return lines


def goal_section(cases: dict) -> list[str]:
    rows = []
    for case, runs in cases.items():
        upstream, script, mode, clients = case
        if upstream != "postgres" or script != "select-only" or clients not in GOAL_CLIENTS:
            continue
        vs_direct = paired_ratio(runs, "sidecar", "direct")
        vs_bouncer = paired_ratio(runs, "sidecar", "pgbouncer")
        rows.append(
            [
                mode,
                str(clients),
                fmt_ratio(vs_direct),
                verdict(vs_direct, GOAL_VS_DIRECT),
                fmt_ratio(vs_bouncer),
                verdict(vs_bouncer, GOAL_VS_PGBOUNCER),
            ]
        )
    if not rows:
        return []
    header = [
        "mode",
        "clients",
        "sidecar/direct",
        f"≥ {GOAL_VS_DIRECT:.2f}",
        "sidecar/PgBouncer",
        f"≥ {GOAL_VS_PGBOUNCER:.1f}",
    ]
    return ["## Goal (issue 5): pgbench -S, PostgreSQL upstream", ""] + table(header, rows) + [""]


def verdict(ratio: dict | None, goal: float) -> str:
    if ratio is None:
        return "–"
    return "yes" if ratio["median"] >= goal else "**no**"


def tps_section(upstream: str, cases: dict) -> list[str]:
    targets = TARGETS[upstream]
    pairs = [("sidecar", "direct"), ("sidecar", "pgbouncer"), ("pgbouncer", "direct")]
    pairs = [p for p in pairs if p[0] in targets and p[1] in targets]
    header = ["script", "mode", "clients"] + [TARGET_NAMES[t] for t in targets]
    header += [f"{TARGET_NAMES[a]}/{TARGET_NAMES[b]}" for a, b in pairs]
    rows = []
    for case, runs in cases.items():
        if case[0] != upstream:
            continue
        row = case_label(case) + [fmt_tps(target_figures(runs.get(t, []))) for t in targets]
        row += [fmt_ratio(paired_ratio(runs, a, b)) for a, b in pairs]
        rows.append(row)
    if not rows:
        return []
    title = f"## {UPSTREAM_NAMES[upstream]}: transactions per second"
    return [title, ""] + table(header, rows) + [""]


def latency_section(upstream: str, cases: dict) -> list[str]:
    targets = TARGETS[upstream]
    header = ["script", "mode", "clients"] + [TARGET_NAMES[t] for t in targets]
    rows = [
        case_label(case) + [fmt_latency(target_figures(runs.get(t, []))) for t in targets]
        for case, runs in cases.items()
        if case[0] == upstream
    ]
    if not rows:
        return []
    title = f"## {UPSTREAM_NAMES[upstream]}: latency per transaction, ms (avg / p50 / p95 / p99)"
    return [title, ""] + table(header, rows) + [""]


def cpu_section(cases: dict) -> list[str]:
    header = [
        "upstream",
        "script",
        "mode",
        "clients",
        "sidecar µs/txn",
        "sidecar µs/statement",
        "PgBouncer µs/txn",
        "PgBouncer µs/statement",
    ]
    rows = []
    for case, runs in cases.items():
        sidecar = target_figures(runs.get("sidecar", []))
        bouncer = target_figures(runs.get("pgbouncer", [])) if "pgbouncer" in runs else None
        rows.append(
            [UPSTREAM_NAMES[case[0]]]
            + case_label(case)
            + [
                fmt_us(sidecar["cpu_us_per_txn"]),
                fmt_us(sidecar["cpu_us_per_statement"]),
                fmt_us(bouncer["cpu_us_per_txn"]) if bouncer else "–",
                fmt_us(bouncer["cpu_us_per_statement"]) if bouncer else "–",
            ]
        )
    if not rows:
        return []
    return (
        [
            "## Proxy CPU time per relayed transaction",
            "",
            "utime + stime of the proxy process over a run (from /proc/PID/stat, 10 ms ticks) divided by the"
            " transactions pgbench completed; connection setup is included. A `-N` transaction is 5 statements"
            " (BEGIN, UPDATE, SELECT, INSERT, END), a `-S` transaction one.",
            "",
        ]
        + table(header, rows)
        + [""]
    )


def memory_section(memory: list[dict]) -> list[str]:
    if not memory:
        return []
    header = ["proxy", "sessions", "RSS idle", "RSS with sessions", "bytes per session", "time to open"]
    rows = [
        [
            TARGET_NAMES.get(m["proxy"].split("-")[0], m["proxy"]),
            f"{m['sessions_opened']}/{m['sessions_wanted']}",
            fmt_mib(m["rss_idle_bytes"]),
            fmt_mib(m["rss_loaded_bytes"]),
            "–" if m["bytes_per_session"] is None else f"{m['bytes_per_session']:,.0f}",
            f"{m['open_seconds']:.1f} s",
        ]
        for m in memory
    ]
    return (
        [
            "## Memory per idle session (PostgreSQL upstream)",
            "",
            "VmRSS of a freshly started proxy, before and with the sessions open (each logged in with SCRAM and"
            " ran `SELECT 1` once, so PgBouncer bound a server connection to it); median of 5 samples.",
            "",
        ]
        + table(header, rows)
        + [""]
    )


def problems_section(runs: list[dict]) -> list[str]:
    """Runs that failed or lost transactions, one row per case and target."""
    lines = ["## Runs that failed or had failed transactions", ""]
    grouped: dict[tuple, list[dict]] = {}
    for run in problems(runs):
        key = (run["upstream"], run["target"], run["script"], run["mode"], run["clients"])
        grouped.setdefault(key, []).append(run)
    if not grouped:
        return lines + ["None: every run completed, with no failed transactions.", ""]
    header = [
        "upstream",
        "target",
        "script",
        "mode",
        "clients",
        "runs affected",
        "failed / txns",
        "first error",
    ]
    rows = []
    for (upstream, target, script, mode, clients), bad in grouped.items():
        total = sum(
            1
            for r in runs
            if (r["upstream"], r["target"], r["script"], r["mode"], r["clients"])
            == (upstream, target, script, mode, clients)
        )
        broken = sum(1 for r in bad if not r["ok"])
        affected = f"{len(bad)}/{total}" + (f" ({broken} aborted)" if broken else "")
        failed = f"{sum(r['failed'] or 0 for r in bad)} / {sum(r['transactions'] or 0 for r in bad)}"
        errors = next((r["errors"][0] for r in bad if r["errors"]), "–")
        errors = errors.removeprefix("pgbench: ").replace("|", "\\|")
        rows.append(
            [
                UPSTREAM_NAMES[upstream],
                TARGET_NAMES[target],
                SCRIPT_FLAGS[script],
                mode,
                str(clients),
                affected,
                failed,
                errors,
            ]
        )
    note = (
        "A failed transaction is one pgbench counted as failed (serialization or deadlock error; pgbench runs"
        " with the default `--max-tries=1`, so none is retried); an aborted run is one where a client hit any"
        " other error."
    )
    return lines + [note, ""] + table(header, rows) + [""]


def plots_section(plots: list[str]) -> list[str]:
    if not plots:
        return ["## Plots", "", "Not drawn (matplotlib unavailable).", ""]
    lines = ["## Plots", ""]
    for name in plots:
        lines += [f"![{Path(name).stem}]({name})", ""]
    return lines


def write(results: dict, plots: list[str], path: Path) -> None:
    cases = by_case(results["runs"])
    lines = header_section(results) + goal_section(cases)
    for upstream in ("postgres", "doltgres"):
        lines += tps_section(upstream, cases)
    for upstream in ("postgres", "doltgres"):
        lines += latency_section(upstream, cases)
    lines += cpu_section(cases) + memory_section(results["memory"]) + problems_section(results["runs"])
    lines += plots_section(plots)
    path.write_text("\n".join(lines))
