"""The pgbench tables at scale 1, on PostgreSQL and on Doltgres.

PostgreSQL gets them from `pgbench -i`. Doltgres rejects the `WITH (fillfactor=...)` that
`pgbench -i` puts on its CREATE TABLEs, so there the same four tables are created with plain
CREATE TABLE and filled with INSERT ... SELECT over generate_series. (Doltgres also treats a bare
`generate_series(...) g` alias as a composite, hence `AS s(g)`.)
"""

from __future__ import annotations

import subprocess

from benches.pgbench.servers import DATABASE, USER, Endpoint, client_env, psql
from benches.pgbench.tools import Tools

# Rows per unit of scale, as pgbench defines them.
BRANCHES, TELLERS, ACCOUNTS = 1, 10, 100_000

DOLTGRES_SCHEMA = [
    "CREATE TABLE pgbench_history (tid int, bid int, aid int, delta int, mtime timestamp, filler char(22))",
    "CREATE TABLE pgbench_tellers (tid int NOT NULL PRIMARY KEY, bid int, tbalance int, filler char(84))",
    "CREATE TABLE pgbench_accounts (aid int NOT NULL PRIMARY KEY, bid int, abalance int, filler char(84))",
    "CREATE TABLE pgbench_branches (bid int NOT NULL PRIMARY KEY, bbalance int, filler char(88))",
]


def doltgres_fill(scale: int) -> list[str]:
    return [
        "INSERT INTO pgbench_branches (bid, bbalance) "
        f"SELECT s.g, 0 FROM generate_series(1, {BRANCHES * scale}) AS s(g)",
        "INSERT INTO pgbench_tellers (tid, bid, tbalance) "
        f"SELECT s.g, (s.g - 1) / {TELLERS} + 1, 0 FROM generate_series(1, {TELLERS * scale}) AS s(g)",
        "INSERT INTO pgbench_accounts (aid, bid, abalance, filler) "
        f"SELECT s.g, (s.g - 1) / {ACCOUNTS} + 1, 0, '' FROM generate_series(1, {ACCOUNTS * scale}) AS s(g)",
    ]


def init_postgres(tools: Tools, endpoint: Endpoint, scale: int) -> None:
    subprocess.run(
        [
            str(tools.pgbench),
            "-i",
            "-q",
            "-s",
            str(scale),
            "-h",
            endpoint.host,
            "-p",
            str(endpoint.port),
            "-U",
            USER,
            DATABASE,
        ],
        env=client_env(),
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def init_doltgres(tools: Tools, endpoint: Endpoint, scale: int) -> None:
    for statement in DOLTGRES_SCHEMA + doltgres_fill(scale):
        psql(tools, endpoint, statement)
    count = int(psql(tools, endpoint, "SELECT count(*) FROM pgbench_accounts"))
    if count != ACCOUNTS * scale:
        raise RuntimeError(f"Doltgres pgbench_accounts has {count} rows, expected {ACCOUNTS * scale}")


def init(tools: Tools, upstream: str, endpoint: Endpoint, scale: int = 1) -> None:
    """Creates and fills the pgbench tables on `upstream` (connecting directly)."""
    if upstream == "postgres":
        init_postgres(tools, endpoint, scale)
    else:
        init_doltgres(tools, endpoint, scale)
