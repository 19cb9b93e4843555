"""The markdown report of `run.py --profile`: the proxies side by side, per transaction."""

from __future__ import annotations

from pathlib import Path

from benches.pgbench.formatting import fmt_count, fmt_us, table
from benches.pgbench.profiling import HARDWARE_EVENTS, SOFTWARE_EVENTS
from benches.pgbench.summary import SCRIPT_FLAGS, TARGET_NAMES

# Syscalls shown: the union of each proxy's top few by calls per transaction, if at least MIN_SHOWN.
TOP_SYSCALLS_PER_PROXY = 6
MIN_SHOWN = 0.01


def fmt_tps(run: dict) -> str:
    if not run.get("ok"):
        return "failed"
    return f"{run['tps']:,.0f}"


def fmt_switches(plain: dict) -> str:
    total, vol, invol = (
        fmt_count(plain[k], 2)
        for k in ("context_switches_per_txn", "voluntary_switches_per_txn", "nonvoluntary_switches_per_txn")
    )
    return f"{total} ({vol} + {invol})"


def header(results: dict) -> list[str]:
    s, m = results["settings"], results["machine"]
    versions = {**results["versions"], **results["profile"].get("versions", {})}
    flag = SCRIPT_FLAGS[s["script"]]
    lines = ["# Profile: the proxies per transaction", ""]
    if results.get("interrupted"):
        lines += [f"> **Incomplete** ({results['interrupted']}).", ""]
    lines += [
        f"- Run: {results['started']} · `{results['command']}` · {results['elapsed_seconds'] / 60:.1f} min",
        f"- Case: pgbench `{flag} -M {s['mode']} -c {s['clients']} -T {s['duration']}` against PostgreSQL,"
        f" through each proxy; every proxy ran the case once per instrument (plain, perf stat, strace).",
        f"- HAProxy nbthread {s['haproxy_threads']}; relay worker threads:"
        f" {s['relay_threads'] if s['relay_threads'] is not None else 'tokio default'}.",
        f"- Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']:.0f} GiB, {m['kernel']}",
        "- Versions: " + " · ".join(f"{k} `{v}`" for k, v in versions.items()),
        "- One run per figure on a shared machine: read differences of 10–20% as noise.",
        "",
    ]
    return lines


def overview(profile: dict) -> list[str]:
    direct = profile["direct"]
    rows = [["direct", fmt_tps(direct)] + ["–"] * 8] if direct else []
    for target, f in profile["proxies"].items():
        plain, stat, trace = f["plain"], f.get("perf_stat", {}), f.get("strace", {})
        per = stat.get("per_txn", {})
        rows.append(
            [
                TARGET_NAMES[target],
                fmt_tps(plain),
                fmt_us(plain["proxy_cpu_us_per_txn"]),
                fmt_count(per.get("task-clock")),
                fmt_switches(plain),
                fmt_count(per.get("context-switches"), 2),
                fmt_count(per.get("cpu-migrations"), 3),
                fmt_count(per.get("page-faults"), 3),
                fmt_count(trace.get("syscalls_per_txn"), 2),
                str(plain["threads"]),
            ]
        )
    head = [
        "target",
        "TPS",
        "CPU µs/txn (/proc)",
        "task-clock µs/txn (perf)",
        "ctx switches/txn, /proc (vol + invol)",
        "context-switches/txn (perf)",
        "cpu-migrations/txn",
        "page-faults/txn",
        "syscalls/txn (strace)",
        "threads",
    ]
    rows = [row[: len(head)] + [""] * (len(head) - len(row)) for row in rows]
    return (
        [
            "## Per transaction",
            "",
            "CPU µs/txn and context switches come from the plain run (/proc/PID/stat, and"
            " /proc/PID/task/*/status summed over threads); task-clock, context-switches, cpu-migrations and"
            " page-faults from the run under `perf stat -p PID`; syscalls from the run under `strace -c -f -p"
            " PID` (total calls over the transactions pgbench completed). strace slows the proxy down, which"
            " changes how many events one `epoll_wait` returns but hardly the reads and writes a transaction"
            " needs. TPS is the plain run's.",
            "",
        ]
        + table(head, rows)
        + [""]
    )


def syscalls(profile: dict) -> list[str]:
    proxies = profile["proxies"]
    names: list[str] = []
    for f in proxies.values():
        per = f.get("strace", {}).get("per_txn", {})
        for name in sorted(per, key=lambda n: -(per[n] or 0))[:TOP_SYSCALLS_PER_PROXY]:
            if name not in names and (per[name] or 0) >= MIN_SHOWN:
                names.append(name)
    if not names:
        return ["## Syscalls per transaction", "", "strace gave no figures:", ""] + [
            f"- {t}: {f.get('strace', {}).get('error', 'not run')}" for t, f in proxies.items()
        ] + [""]
    traces = [f.get("strace", {}) for f in proxies.values()]
    rows = [[name] + [fmt_count(t.get("per_txn", {}).get(name), 2) for t in traces] for name in names]
    rows.append(["**total**"] + [fmt_count(t.get("syscalls_per_txn"), 2) for t in traces])
    rows.append(["TPS under strace"] + [fmt_tps(t) for t in traces])
    head = ["syscall"] + [TARGET_NAMES[t] for t in proxies]
    return (
        [
            "## Syscalls per transaction (strace -c -f)",
            "",
            f"Each proxy's most frequent syscalls (up to {TOP_SYSCALLS_PER_PROXY}, at least {MIN_SHOWN} per"
            " transaction); the total counts every syscall.",
            "",
        ]
        + table(head, rows)
        + [""]
    )


def counters(profile: dict) -> list[str]:
    lines = ["## perf stat counters", ""]
    statuses = []
    for target, f in profile["proxies"].items():
        events = f.get("perf_stat", {}).get("events", {})
        if not events:
            error = f.get("perf_stat", {}).get("error", "not run")
            statuses.append(f"- {TARGET_NAMES[target]}: perf stat gave nothing: {error}")
            continue
        soft = ", ".join(f"{e} {events[e]['status']}" for e in SOFTWARE_EVENTS if e in events)
        hard = ", ".join(f"{e} `{events[e]['status']}`" for e in HARDWARE_EVENTS if e in events)
        statuses.append(f"- {TARGET_NAMES[target]}: {soft}; hardware: {hard or 'not reported'}")
    unsupported = {
        e
        for f in profile["proxies"].values()
        for e, v in f.get("perf_stat", {}).get("events", {}).items()
        if e in HARDWARE_EVENTS and v["value"] is None
    }
    if unsupported:
        lines += [
            f"Hardware counters ({', '.join(sorted(unsupported))}) read `<not supported>` on this machine (a VM"
            " without a virtual PMU), so there are no cycles or instructions per transaction; only software"
            " events are counted.",
            "",
        ]
    return lines + statuses + [""]


def perf_record(profile: dict) -> list[str]:
    record = profile["proxies"].get("sidecar", {}).get("perf_record")
    if record is None:
        return []
    lines = ["## perf record of the sidecar (cpu-clock, 999 Hz, call graphs)", ""]
    if not record["worked"]:
        return lines + ["It did not work here:", "", "```", record.get("error", "").strip(), "```", ""]
    lines += [
        f"It worked ({record['samples'] or 'samples'}; TPS during the recording {fmt_tps(record['run'])})."
        " With no hardware PMU the sampling clock is a software timer, whose interrupt is taken only"
        " where the kernel re-enables interrupts: kernel time shows up at `finish_task_switch` and"
        " `_raw_spin_unlock_irqrestore` rather than where it was spent. Read the kernel's share as a whole"
        " (by object, first) and the user-space symbols relative to each other.",
        "",
        "By object (`perf report --stdio --no-children --sort dso`):",
        "",
        "```",
        *record.get("by_dso", []),
        "```",
        "",
        "Top symbols, self time (`perf report --stdio --no-children -g none --percent-limit 0.5`):",
        "",
        "```",
        *record["top_symbols"],
        "```",
        "",
    ]
    return lines


def write(results: dict, path: Path) -> None:
    profile = results["profile"]
    lines = header(results)
    if profile:
        lines += overview(profile) + syscalls(profile) + counters(profile) + perf_record(profile)
    path.write_text("\n".join(lines))
