"""Holds N idle, authenticated sessions open through one endpoint (run with the bench venv).

Each session logs in (SCRAM), runs `SELECT 1` once so that a pooler has really bound a server
connection to it, then stays idle. When all are open it prints `ready OPENED SECONDS` and waits for
a line (or end of file) on stdin, then closes them all and exits.

usage: PGPASSWORD=... idle_sessions.py HOST PORT USER DATABASE COUNT [CONCURRENCY]
"""

import asyncio
import os
import sys
import time

import asyncpg


async def open_one(gate: asyncio.Semaphore, dsn: dict) -> asyncpg.Connection:
    async with gate:
        conn = await asyncpg.connect(**dsn, timeout=60, statement_cache_size=0)
        await conn.execute("SELECT 1")
        return conn


async def main(host: str, port: int, user: str, database: str, count: int, concurrency: int) -> None:
    password = os.environ["PGPASSWORD"]
    dsn = {"host": host, "port": port, "user": user, "password": password, "database": database, "ssl": False}
    gate = asyncio.Semaphore(concurrency)
    started = time.monotonic()
    results = await asyncio.gather(*(open_one(gate, dsn) for _ in range(count)), return_exceptions=True)
    conns = [r for r in results if isinstance(r, asyncpg.Connection)]
    errors = [r for r in results if not isinstance(r, asyncpg.Connection)]
    for error in errors[:3]:
        print(f"error: {error!r}", file=sys.stderr, flush=True)
    print(f"ready {len(conns)} {time.monotonic() - started:.3f}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await asyncio.gather(*(c.close(timeout=10) for c in conns), return_exceptions=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    asyncio.run(
        main(args[0], int(args[1]), args[2], args[3], int(args[4]), int(args[5]) if len(args) > 5 else 50)
    )
