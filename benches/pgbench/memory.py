"""Memory per idle session: a proxy's RSS with N idle sessions open through it, minus its RSS with
none, divided by N.

Each proxy is started fresh for this (so the baseline is not inflated by memory kept from the
benchmark runs) and stopped afterwards (so that PgBouncer's pooled server connections do not stay
in PostgreSQL). The sessions are held by idle_sessions.py, running with the bench venv.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from pathlib import Path

from benches.pgbench.procs import rss_bytes, wait_until
from benches.pgbench.servers import DATABASE, USER, Server, client_env, psql
from benches.pgbench.tools import Tools

HERE = Path(__file__).resolve().parent
# RSS samples taken at each level, half a second apart; their median is used.
SAMPLES = 5
# Time allowed to open all sessions.
OPEN_TIMEOUT = 300.0


def median_rss(pid: int) -> int:
    values = []
    for _ in range(SAMPLES):
        time.sleep(0.5)
        values.append(rss_bytes(pid))
    return int(statistics.median(values))


def wait_for_backends_to_leave(tools: Tools, postgres: Server, at_most: int = 10) -> None:
    """Waits until PostgreSQL has at most `at_most` client backends, so the next proxy starts
    from the same state."""

    def few() -> bool:
        count = psql(
            tools,
            postgres.endpoint,
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'",
        )
        return int(count) <= at_most

    wait_until(few, "waiting for PostgreSQL client backends to exit", 120.0)


def measure(venv_python: Path, proxy: Server, sessions: int) -> dict:
    """Opens `sessions` idle sessions through `proxy` and returns RSS before and with them."""
    rss_idle = median_rss(proxy.pid)
    holder = subprocess.Popen(
        [
            str(venv_python),
            "-B",
            str(HERE / "idle_sessions.py"),
            proxy.endpoint.host,
            str(proxy.endpoint.port),
            USER,
            DATABASE,
            str(sessions),
        ],
        env=client_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready = holder.stdout.readline().split()
        if len(ready) != 3 or ready[0] != "ready":
            raise RuntimeError(f"idle_sessions.py failed: {holder.stderr.read()[-2000:]}")
        opened, open_seconds = int(ready[1]), float(ready[2])
        rss_loaded = median_rss(proxy.pid)
        holder.stdin.write("close\n")
        holder.stdin.flush()
        holder.wait(timeout=OPEN_TIMEOUT)
        errors = holder.stderr.read().strip()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    return {
        "proxy": proxy.name,
        "sessions_wanted": sessions,
        "sessions_opened": opened,
        "open_seconds": open_seconds,
        "rss_idle_bytes": rss_idle,
        "rss_loaded_bytes": rss_loaded,
        "bytes_per_session": (rss_loaded - rss_idle) / opened if opened else None,
        "errors": errors.splitlines()[:3],
    }
