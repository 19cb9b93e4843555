"""The markdown report of one harness run: proxy CPU per transaction first (the headline), the
sidecar's ratios to a direct connection, PgBouncer and the floors (HAProxy, the tokio relay), the
goals cell by cell, then TPS, latencies, memory, runs that failed, and links to the plots."""

from __future__ import annotations

from pathlib import Path

from benches.pgbench import goals
from benches.pgbench.formatting import fmt_latency, fmt_mib, fmt_ratio, fmt_tps, fmt_us, table
from benches.pgbench.summary import (
    PROXIES,
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
# The proxies the sidecar is compared with, in the ratio tables.
OTHERS = ("pgbouncer", "haproxy", "relay")


def case_label(case: tuple) -> list[str]:
    _, script, mode, clients = case
    return [SCRIPT_FLAGS[script], mode, str(clients)]


def header_section(results: dict) -> list[str]:
    s, m = results["settings"], results["machine"]
    lines = ["# pgbench: the sidecar against a direct connection, PgBouncer and the floors", ""]
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
        "- Figures are medians over repeats; ratios are taken per repeat (the runs of one case ran back to back)"
        " and shown as median (min–max).",
        "- Targets on PostgreSQL: direct, the sidecar, PgBouncer (session pooling, SCRAM), and two floors that"
        f" relay bytes without reading them: HAProxy in TCP mode (nbthread {s.get('haproxy_threads', '?')}) and"
        f" a bare tokio relay (`benches/relay_floor.rs`, {relay_threads(s)}). On Doltgres: direct, the sidecar,"
        " PgBouncer and HAProxy, set up the same way.",
        "",
    ]
    return lines


def relay_threads(settings: dict) -> str:
    threads = settings.get("relay_threads")
    return "tokio's default worker threads" if threads is None else f"{threads} worker thread(s)"


def cpu_headline_section(cases: dict) -> list[str]:
    """Proxy CPU per transaction for every proxy, PostgreSQL first: the figure this round is about."""
    lines = [
        "## Proxy CPU per transaction, µs (headline)",
        "",
        "utime + stime of the proxy process over a run (from /proc/PID/stat, 10 ms ticks) divided by the"
        " transactions pgbench completed; connection setup is included. Median over repeats. The ratios"
        " are paired per repeat like the TPS ratios. A `-N` transaction is 5 statements"
        " (BEGIN, UPDATE, SELECT, INSERT, END), a `-S` transaction one.",
        "",
    ]
    found = False
    for upstream in ("postgres", "doltgres"):
        proxies = PROXIES[upstream]
        others = [t for t in OTHERS if t in proxies]
        header = ["script", "mode", "clients"] + [TARGET_NAMES[t] for t in proxies]
        header += [f"sidecar/{TARGET_NAMES[t]}" for t in others]
        rows = []
        for case, runs in cases.items():
            if case[0] != upstream:
                continue
            row = case_label(case)
            row += [fmt_us(target_figures(runs.get(t, []))["cpu_us_per_txn"]) for t in proxies]
            row += [fmt_ratio(paired_ratio(runs, "sidecar", t, "proxy_cpu_us_per_txn")) for t in others]
            rows.append(row)
        if rows:
            found = True
            lines += [f"### {UPSTREAM_NAMES[upstream]}", ""] + table(header, rows) + [""]
    return lines if found else []


def user_time_section(cases: dict) -> list[str]:
    """Each proxy's CPU per transaction split into user and system time: the user time is what a
    proxy's own code costs, the system time mostly the kernel's socket work every proxy pays."""
    lines = [
        "## Proxy user and system time per transaction, µs",
        "",
        "utime / stime of the proxy process (/proc/PID/stat) over a run, per transaction; median over repeats."
        " The last column is the sidecar's user time over PgBouncer's, paired per repeat.",
        "",
    ]
    found = False
    for upstream in ("postgres", "doltgres"):
        proxies = PROXIES[upstream]
        header = ["script", "mode", "clients"] + [f"{TARGET_NAMES[t]} user / sys" for t in proxies]
        header += ["user sidecar/PgBouncer"]
        rows = []
        for case, runs in cases.items():
            if case[0] != upstream:
                continue
            row = case_label(case)
            for t in proxies:
                figures = target_figures(runs.get(t, []))
                row.append(f"{fmt_us(figures['user_us_per_txn'])} / {fmt_us(figures['system_us_per_txn'])}")
            row.append(fmt_ratio(paired_ratio(runs, "sidecar", "pgbouncer", "proxy_user_us_per_txn")))
            rows.append(row)
        if rows:
            found = True
            lines += [f"### {UPSTREAM_NAMES[upstream]}", ""] + table(header, rows) + [""]
    return lines if found else []


def ratio_section(cases: dict) -> list[str]:
    """The sidecar against every other target of each upstream: TPS ratios, then CPU-per-txn ratios."""
    lines = []
    for upstream in ("postgres", "doltgres"):
        others = [t for t in OTHERS if t in PROXIES[upstream]]
        header = ["script", "mode", "clients", "TPS sidecar/direct"]
        header += [f"TPS sidecar/{TARGET_NAMES[t]}" for t in others]
        header += [f"CPU sidecar/{TARGET_NAMES[t]}" for t in others]
        rows = []
        for case, runs in cases.items():
            if case[0] != upstream:
                continue
            row = case_label(case) + [fmt_ratio(paired_ratio(runs, "sidecar", "direct"))]
            row += [fmt_ratio(paired_ratio(runs, "sidecar", t)) for t in others]
            row += [fmt_ratio(paired_ratio(runs, "sidecar", t, "proxy_cpu_us_per_txn")) for t in others]
            rows.append(row)
        if rows:
            name = UPSTREAM_NAMES[upstream]
            lines += [f"## {name}: the sidecar's ratios to direct and the other proxies", ""]
            lines += ["TPS above 1 and CPU below 1 favour the sidecar.", ""] + table(header, rows) + [""]
    return lines


def fmt_check(check: goals.Check) -> str:
    if check.figure is None:
        return "–"
    if check.ratio is not None:
        return fmt_ratio(check.ratio)
    return f"{check.figure:,.0f} bytes"


def fmt_verdict(met: bool | None) -> str:
    return "–" if met is None else ("met" if met else "**missed**")


def worst_cell(goal: goals.Goal, judged: list[goals.Check]) -> str:
    """The figure furthest on the wrong side of the goal, and where."""
    if not judged:
        return "–"
    worst = max(judged, key=lambda c: c.figure if goal.at_most else -c.figure)
    where = "" if worst.cell is None else " ({} {} c={})".format(*case_label(worst.cell))
    if worst.ratio is not None:
        return f"{worst.figure:.2f}{where}"
    return f"{fmt_check(worst)}{where}"


def goals_section(cases: dict, memory: list[dict]) -> list[str]:
    """Every goal in every cell: a summary line per goal, then the cells with figure and verdict."""
    checks = goals.check(cases, memory)
    if not checks:
        return []
    lines = [
        "## Goals",
        "",
        "Each cell is one case; the figure is the median over repeats of the per-repeat ratio (min–max"
        " beside it), or bytes per idle session. Every cell is listed, misses included.",
        "",
    ]
    summary = []
    for goal in goals.GOALS:
        mine = [c for c in checks if c.goal is goal]
        judged = [c for c in mine if c.met is not None]
        if not mine:
            summary.append([goal.text, "not measured", "–"])
            continue
        met = sum(1 for c in judged if c.met)
        verdict = f"{met}/{len(judged)} cells met" + ("" if met == len(judged) else " (**missed**)")
        summary.append([goal.text, verdict, worst_cell(goal, judged)])
    lines += table(["goal", "verdict", "worst cell"], summary) + [""]
    what = {
        goals.CPU_VS_PGBOUNCER: "CPU sidecar/PgBouncer",
        goals.CPU_VS_HAPROXY: "CPU sidecar/HAProxy",
        goals.USER_VS_PGBOUNCER: "user time sidecar/PgBouncer",
        goals.DOLTGRES_VS_DIRECT: "TPS sidecar/direct",
        goals.DOLTGRES_VS_PGBOUNCER: "TPS sidecar/PgBouncer",
    }
    for upstream in ("postgres", "doltgres"):
        per_cell = [g for g in goals.GOALS if g in what and (g in goals.BOTH_UPSTREAMS or upstream == "doltgres")]
        rows = []
        for case in cases:
            if case[0] != upstream or not any(goals.applies(g, case) for g in per_cell):
                continue
            row = case_label(case)
            for goal in per_cell:
                check = next((c for c in checks if c.goal is goal and c.cell == case), None)
                row += [fmt_check(check), fmt_verdict(check.met)] if check else ["–", "–"]
            rows.append(row)
        if rows:
            header = ["script", "mode", "clients"]
            for goal in per_cell:
                header += [what[goal], goal.condition]
            lines += [f"### {UPSTREAM_NAMES[upstream]}", ""] + table(header, rows) + [""]
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
    return ["## Earlier goal (issue 5): pgbench -S, PostgreSQL upstream", ""] + table(header, rows) + [""]


def verdict(ratio: dict | None, goal: float) -> str:
    if ratio is None:
        return "–"
    return "yes" if ratio["median"] >= goal else "**no**"


def tps_section(upstream: str, cases: dict) -> list[str]:
    targets = TARGETS[upstream]
    pairs = [("sidecar", "direct"), ("pgbouncer", "direct"), ("haproxy", "direct"), ("relay", "direct")]
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


def cpu_statement_section(cases: dict) -> list[str]:
    """CPU per statement (a fifth of a -N transaction's), every proxy, every upstream."""
    header = ["upstream", "script", "mode", "clients"] + [TARGET_NAMES[t] for t in PROXIES["postgres"]]
    rows = []
    for case, runs in cases.items():
        proxies = PROXIES[case[0]]
        rows.append(
            [UPSTREAM_NAMES[case[0]]]
            + case_label(case)
            + [
                fmt_us(target_figures(runs.get(t, []))["cpu_us_per_statement"]) if t in proxies else "–"
                for t in PROXIES["postgres"]
            ]
        )
    if not rows:
        return []
    return ["## Proxy CPU per statement, µs", ""] + table(header, rows) + [""]


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
            " ran `SELECT 1` once, so PgBouncer bound a server connection to it); median of 5 samples. HAProxy"
            " and the relay do not authenticate: PostgreSQL runs SCRAM with the client through them.",
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
    lines = header_section(results) + cpu_headline_section(cases) + user_time_section(cases) + ratio_section(cases)
    lines += goals_section(cases, results["memory"]) + goal_section(cases)
    for upstream in ("postgres", "doltgres"):
        lines += tps_section(upstream, cases)
    for upstream in ("postgres", "doltgres"):
        lines += latency_section(upstream, cases)
    lines += cpu_statement_section(cases) + memory_section(results["memory"]) + problems_section(results["runs"])
    lines += plots_section(plots)
    path.write_text("\n".join(lines))
