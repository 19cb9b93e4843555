"""Profile mode (`run.py --profile`): where each proxy's time per transaction goes.

For the sidecar, PgBouncer, HAProxy and the relay in front of PostgreSQL, one short pgbench case
(-S, prepared, 8 clients, -T 5 by default) is run several times per proxy, each time with one
instrument attached, so the instruments do not disturb each other's figures:

1. plain: CPU µs per transaction (/proc/PID/stat) and context switches per transaction
   (voluntary + nonvoluntary, summed over /proc/PID/task/*/status before and after);
2. `perf stat -e task-clock,context-switches,cpu-migrations,page-faults,cycles,instructions -p PID`
   (software events; on a VM without a PMU the hardware ones read `<not supported>`, which is
   recorded as such);
3. `strace -c -f -p PID`: syscalls per transaction, in total and by syscall. strace stops the
   process at every syscall, so TPS under strace is far lower; calls per transaction are what count;
4. for the sidecar only, `perf record -e cpu-clock -F 999 -g -p PID` and the top symbols of
   `perf report --stdio --no-children`, when that works here.

A direct run (no proxy) gives the reference TPS. strace and perf are Debian's packages, installed
when missing.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

from benches.pgbench import workload
from benches.pgbench.procs import Managed
from benches.pgbench.servers import Endpoint
from benches.pgbench.tools import Tools, ensure_debian_program

SOFTWARE_EVENTS = ("task-clock", "context-switches", "cpu-migrations", "page-faults")
HARDWARE_EVENTS = ("cycles", "instructions")
# How long an attaching tool gets before pgbench starts, and to write its summary after SIGINT.
ATTACH_SECONDS = 1.0
DETACH_TIMEOUT = 60.0
# Symbols kept from perf report.
TOP_SYMBOLS = 25


def ensure_profilers() -> dict[str, Path]:
    return {
        "strace": ensure_debian_program("strace", "strace", "/usr/bin/strace"),
        "perf": ensure_debian_program("perf", "linux-perf", "/usr/bin/perf"),
    }


def task_switches(pid: int) -> dict[str, int]:
    """Voluntary and nonvoluntary context switches summed over the threads of `pid`."""
    total = {"voluntary": 0, "nonvoluntary": 0, "threads": 0}
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            lines = status.read_text().splitlines()
        except OSError:  # the thread exited
            continue
        total["threads"] += 1
        for line in lines:
            if line.startswith("voluntary_ctxt_switches:"):
                total["voluntary"] += int(line.split()[1])
            elif line.startswith("nonvoluntary_ctxt_switches:"):
                total["nonvoluntary"] += int(line.split()[1])
    return total


def per_txn(value: float | None, txns: int | None) -> float | None:
    return value / txns if value is not None and txns else None


def run_figures(result: dict) -> dict:
    """The pgbench figures of one run that the profile keeps."""
    keys = ("ok", "tps", "transactions", "failed", "errors", "proxy_cpu_us_per_txn", "wall_seconds")
    out = {k: result.get(k) for k in keys}
    out["latency_ms"] = result.get("latency_ms")
    return out


def attached(argv: list[str], log: Path, what: str) -> Managed:
    """Starts a tool that attaches to a running process and gives it time to attach."""
    tool = Managed(what, argv, log, stop_signal=signal.SIGINT)
    time.sleep(ATTACH_SECONDS)
    if not tool.alive():
        raise RuntimeError(f"{what} exited at once:\n{tool.log_tail()}")
    return tool


def detach(tool: Managed) -> None:
    """SIGINT makes strace and perf detach and write their summary."""
    tool.popen.send_signal(signal.SIGINT)
    try:
        tool.popen.wait(timeout=DETACH_TIMEOUT)
    finally:
        tool.stop()


def plain_run(tools: Tools, endpoint: Endpoint, spec: workload.RunSpec, log_dir: Path, pid: int) -> dict:
    before = task_switches(pid)
    result = workload.run(tools, endpoint, spec, log_dir, pid)
    after = task_switches(pid)
    txns = result["transactions"]
    out = run_figures(result)
    out["voluntary_switches_per_txn"] = per_txn(after["voluntary"] - before["voluntary"], txns)
    out["nonvoluntary_switches_per_txn"] = per_txn(after["nonvoluntary"] - before["nonvoluntary"], txns)
    out["context_switches_per_txn"] = per_txn(
        after["voluntary"] + after["nonvoluntary"] - before["voluntary"] - before["nonvoluntary"], txns
    )
    out["threads"] = after["threads"]
    return out


def parse_perf_stat(text: str) -> dict[str, dict]:
    """perf stat -x, output: event -> {"value": float | None, "unit", "status"}."""
    events = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split(",")
        if len(fields) < 3:
            continue
        raw, unit, event = fields[0], fields[1], fields[2]
        try:
            value, status = float(raw), "counted"
        except ValueError:
            value, status = None, raw.strip()  # "<not supported>", "<not counted>"
        events[event] = {"value": value, "unit": unit, "status": status}
    return events


def perf_stat_run(
    tools: Tools, perf: Path, endpoint: Endpoint, spec: workload.RunSpec, log_dir: Path, pid: int, work: Path
) -> dict:
    out_file = work / f"perf-stat-{spec.target}.csv"
    events = ",".join(SOFTWARE_EVENTS + HARDWARE_EVENTS)
    argv = [str(perf), "stat", "-e", events, "-x", ",", "-o", str(out_file), "-p", str(pid)]
    tool = attached(argv, work / f"perf-stat-{spec.target}.log", "perf stat")
    try:
        result = workload.run(tools, endpoint, spec, log_dir, None)
    finally:
        detach(tool)
    events_read = parse_perf_stat(out_file.read_text()) if out_file.exists() else {}
    txns = result["transactions"]
    out = run_figures(result)
    out["events"] = events_read
    out["per_txn"] = {
        name: per_txn(e["value"] * (1000.0 if e["unit"] == "msec" else 1.0), txns)
        if e["value"] is not None
        else None
        for name, e in events_read.items()
    }
    if not events_read:
        out["error"] = tool.log_tail()
    return out


def parse_strace(text: str) -> dict[str, int]:
    """strace -c -U name,calls,errors output: syscall -> calls (and "total")."""
    calls = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 2 or fields[0].startswith("-") or fields[0] == "syscall":
            continue
        if fields[1].isdigit():
            calls[fields[0]] = int(fields[1])
    return calls


def strace_run(
    tools: Tools, strace: Path, endpoint: Endpoint, spec: workload.RunSpec, log_dir: Path, pid: int, work: Path
) -> dict:
    out_file = work / f"strace-{spec.target}.txt"
    argv = [str(strace), "-c", "-f", "-U", "name,calls,errors", "-S", "calls", "-o", str(out_file), "-p", str(pid)]
    tool = attached(argv, work / f"strace-{spec.target}.log", "strace")
    try:
        result = workload.run(tools, endpoint, spec, log_dir, None)
    finally:
        detach(tool)
    calls = parse_strace(out_file.read_text()) if out_file.exists() else {}
    txns = result["transactions"]
    out = run_figures(result)
    out["calls"] = calls
    out["syscalls_per_txn"] = per_txn(calls.get("total"), txns)
    out["per_txn"] = {name: per_txn(n, txns) for name, n in calls.items() if name != "total"}
    if not calls:
        out["error"] = tool.log_tail()
    return out


def perf_record_run(
    tools: Tools, perf: Path, endpoint: Endpoint, spec: workload.RunSpec, log_dir: Path, pid: int, work: Path
) -> dict:
    """perf record of one run; the top symbols of perf report, or why there are none."""
    data = work / f"perf-{spec.target}.data"
    argv = [str(perf), "record", "-e", "cpu-clock", "-F", "999", "-g", "-o", str(data), "-p", str(pid)]
    try:
        tool = attached(argv, work / f"perf-record-{spec.target}.log", "perf record")
    except RuntimeError as e:
        return {"worked": False, "error": str(e)}
    try:
        result = workload.run(tools, endpoint, spec, log_dir, None)
    finally:
        detach(tool)

    def perf_report(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(perf), "report", "--stdio", "--no-children", "-g", "none", *extra, "-i", str(data)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
        )

    def rows(text: str) -> list[str]:
        return [line.rstrip() for line in text.splitlines() if line.strip() and not line.startswith("#")]

    report = perf_report("--percent-limit", "0.5")
    lines = rows(report.stdout)
    samples = re.search(r"# Samples: (\S+) of event '([^']+)'", report.stdout)
    worked = report.returncode == 0 and bool(lines)
    out = {
        "worked": worked,
        "run": run_figures(result),
        "samples": f"{samples.group(1)} samples of {samples.group(2)}" if samples else "",
        "top_symbols": lines[:TOP_SYMBOLS],
        "by_dso": rows(perf_report("--sort", "dso").stdout)[:10] if worked else [],
    }
    if not worked:
        out["error"] = (report.stderr.strip() or tool.log_tail())[-2000:]
    return out


def profile(
    tools: Tools,
    endpoints: dict[str, Endpoint],
    pids: dict[str, int],
    base: workload.RunSpec,
    log_dir: Path,
    work: Path,
    out: dict,
) -> None:
    """Runs the case of `base` on every endpoint (`direct` and the proxies in `pids`) with each
    instrument in turn; fills `out` as figures come in (direct, then proxies by kind)."""
    profilers = ensure_profilers()
    out.update(direct={}, proxies={})
    out["versions"] = {
        "strace": first_line([str(profilers["strace"]), "-V"]),
        "perf": first_line([str(profilers["perf"]), "--version"]),
    }

    def spec(target: str) -> workload.RunSpec:
        return workload.RunSpec(
            base.upstream, target, base.script, base.mode, base.clients, base.duration, base.repeat
        )

    # Warm-up, unrecorded: connection paths, caches.
    for target, endpoint in endpoints.items():
        workload.run(tools, endpoint, spec(target), log_dir, None)
    out["direct"] = run_figures(workload.run(tools, endpoints["direct"], spec("direct"), log_dir, None))
    print(f"profile: direct: {out['direct']['tps'] or 0:,.0f} tps", flush=True)
    for target, pid in pids.items():
        endpoint = endpoints[target]
        figures: dict = {"plain": plain_run(tools, endpoint, spec(target), log_dir, pid)}
        out["proxies"][target] = figures
        plain = figures["plain"]
        print(
            f"profile: {target}: {plain['tps'] or 0:,.0f} tps, {plain['proxy_cpu_us_per_txn'] or 0:.1f} µs/txn, "
            f"{plain['context_switches_per_txn'] or 0:.2f} switches/txn",
            flush=True,
        )
        figures["perf_stat"] = perf_stat_run(tools, profilers["perf"], endpoint, spec(target), log_dir, pid, work)
        figures["strace"] = strace_run(tools, profilers["strace"], endpoint, spec(target), log_dir, pid, work)
        print(
            f"profile: {target}: {figures['strace']['syscalls_per_txn'] or 0:.2f} syscalls/txn under strace",
            flush=True,
        )
        if target == "sidecar":
            figures["perf_record"] = perf_record_run(
                tools, profilers["perf"], endpoint, spec(target), log_dir, pid, work
            )
            print(f"profile: sidecar: perf record worked: {figures['perf_record']['worked']}", flush=True)
        out["proxies"][target] = figures


def first_line(argv: list[str]) -> str:
    done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30)
    return done.stdout.strip().splitlines()[0] if done.stdout.strip() else ""
