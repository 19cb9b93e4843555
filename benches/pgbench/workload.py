"""One pgbench run against one endpoint, and what it measured.

TPS, transaction and failure counts come from pgbench's summary; latencies from its
per-transaction log (`-l`), so percentiles are exact rather than estimated from aggregates. While
pgbench runs, the CPU time of the proxy in the path (if any) is read from /proc before and after,
giving CPU seconds per relayed transaction.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from benches.pgbench.procs import cpu_times, rss_bytes
from benches.pgbench.servers import DATABASE, USER, Endpoint, client_env
from benches.pgbench.summary import BUCKETS_PER_DECADE
from benches.pgbench.tools import Tools

# pgbench's built-in scripts: flag, and statements sent per transaction.
SCRIPTS = {
    "select-only": ("-S", 1),  # SELECT abalance ... WHERE aid = :aid
    "simple-update": ("-N", 5),  # BEGIN; UPDATE accounts; SELECT; INSERT history; END
}
MODES = ("simple", "extended", "prepared")
# Distinct error messages kept per run.
MAX_ERRORS = 5
# Slack on top of -T before a pgbench run is considered hung.
RUN_TIMEOUT_SLACK = 120.0


@dataclass(frozen=True)
class RunSpec:
    """What one pgbench run measures."""

    upstream: str  # "postgres" | "doltgres"
    target: str  # "direct" | "sidecar" | "pgbouncer" | "haproxy" | "relay"
    script: str  # a key of SCRIPTS
    mode: str  # one of MODES
    clients: int
    duration: int  # seconds (-T)
    repeat: int

    def label(self) -> str:
        flag = SCRIPTS[self.script][0]
        return f"{self.upstream:8} {self.target:9} {flag} {self.mode:8} c={self.clients:<3} r={self.repeat}"


def pgbench_argv(
    tools: Tools, endpoint: Endpoint, spec: RunSpec, log_prefix: Path, threads: int
) -> list[str]:
    flag = SCRIPTS[spec.script][0]
    return [
        str(tools.pgbench),
        "-h",
        endpoint.host,
        "-p",
        str(endpoint.port),
        "-U",
        USER,
        "-n",  # no VACUUM before the run (Doltgres has none; same for every target)
        flag,
        "-M",
        spec.mode,
        "-c",
        str(spec.clients),
        "-j",
        str(max(1, min(spec.clients, threads))),
        "-T",
        str(spec.duration),
        "-l",
        f"--log-prefix={log_prefix}",
        "--failures-detailed",
        "--verbose-errors",
        DATABASE,
    ]


def _number(pattern: str, text: str, kind=float):
    match = re.search(pattern, text)
    return kind(match.group(1)) if match else None


def parse_summary(stdout: str) -> dict:
    """The figures of pgbench's closing summary (None where a line is missing)."""
    return {
        "transactions": _number(r"number of transactions actually processed: (\d+)", stdout, int),
        "failed": _number(r"number of failed transactions: (\d+)", stdout, int),
        "serialization_failures": _number(r"number of serialization failures: (\d+)", stdout, int),
        "deadlock_failures": _number(r"number of deadlock failures: (\d+)", stdout, int),
        "pgbench_latency_avg_ms": _number(r"latency average = ([\d.]+) ms", stdout),
        "connection_time_ms": _number(r"initial connection time = ([\d.]+) ms", stdout),
        "tps": _number(r"tps = ([\d.]+) \(without initial connection time\)", stdout),
        "aborted": "Run was aborted" in stdout,
    }


def error_lines(stderr: str) -> list[str]:
    """The first few distinct error messages pgbench printed."""
    seen: list[str] = []
    for line in stderr.splitlines():
        if "error" not in line.lower() and "abort" not in line.lower():
            continue
        # Drop the per-client prefix so the same error from many clients counts once.
        message = re.sub(r"client \d+ (script \d+ )?", "client N ", line.strip())
        message = re.sub(r"\(try \d+/\d+\)", "", message)
        if message not in seen:
            seen.append(message)
        if len(seen) >= MAX_ERRORS:
            break
    return seen


def read_latencies(log_prefix: Path) -> list[int]:
    """Latencies in µs of every successful transaction in pgbench's per-transaction logs
    (one file per thread), then deletes the logs."""
    values: list[int] = []
    for path in sorted(log_prefix.parent.glob(log_prefix.name + ".*")):
        with open(path) as log:
            for line in log:
                fields = line.split(maxsplit=3)
                # client_id transaction_no time script_no ...; time is a word for failures.
                if len(fields) >= 3 and fields[2].isdigit():
                    values.append(int(fields[2]))
        path.unlink()
    return values


def latency_stats(values: list[int]) -> dict:
    """Average, percentiles (nearest rank) and a log-scale histogram, in milliseconds."""
    if not values:
        return {"latency_ms": None, "histogram": []}
    values.sort()
    n = len(values)

    def pct(q: float) -> float:
        return values[min(n - 1, int(q * n))] / 1000.0

    buckets = Counter(int(BUCKETS_PER_DECADE * math.log10(max(v, 1))) for v in values)
    return {
        "latency_ms": {
            "avg": sum(values) / n / 1000.0,
            "p50": pct(0.50),
            "p95": pct(0.95),
            "p99": pct(0.99),
            "max": values[-1] / 1000.0,
            "samples": n,
        },
        # [bucket, count]: bucket b holds latencies in [10^(b/20), 10^((b+1)/20)) µs.
        "histogram": sorted(buckets.items()),
    }


def run(tools: Tools, endpoint: Endpoint, spec: RunSpec, log_dir: Path, proxy_pid: int | None) -> dict:
    """Runs pgbench once; returns the spec and everything measured, including failures."""
    log_prefix = log_dir / f"txn-{os.getpid()}-{time.monotonic_ns()}"
    argv = pgbench_argv(tools, endpoint, spec, log_prefix, os.cpu_count() or 1)
    cpu_before = cpu_times(proxy_pid) if proxy_pid else None
    started = time.time()
    try:
        out = subprocess.run(
            argv,
            env=client_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            timeout=spec.duration + RUN_TIMEOUT_SLACK,
        )
        stdout, stderr, code = out.stdout, out.stderr, out.returncode
    except subprocess.TimeoutExpired as e:
        stdout = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        stderr = f"pgbench timed out after {spec.duration + RUN_TIMEOUT_SLACK:.0f}s"
        code = -1
    result = {**asdict(spec), "started_at": started, "wall_seconds": time.time() - started, "exit_code": code}
    result.update(parse_summary(stdout))
    result.update(latency_stats(read_latencies(log_prefix)))
    result["errors"] = error_lines(stderr)
    result["ok"] = code == 0 and not result["aborted"] and bool(result["transactions"])
    if proxy_pid:
        user, system = (after - before for after, before in zip(cpu_times(proxy_pid), cpu_before))
        result["proxy_cpu_seconds"] = user + system
        result["proxy_rss_bytes"] = rss_bytes(proxy_pid)
        txns = result["transactions"] or 0
        statements = SCRIPTS[spec.script][1]
        result["proxy_cpu_us_per_txn"] = result["proxy_cpu_seconds"] * 1e6 / txns if txns else None
        result["proxy_user_us_per_txn"] = user * 1e6 / txns if txns else None
        result["proxy_system_us_per_txn"] = system * 1e6 / txns if txns else None
        result["proxy_cpu_us_per_statement"] = result["proxy_cpu_us_per_txn"] / statements if txns else None
    return result
