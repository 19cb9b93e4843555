"""The performance goals, checked cell by cell against one harness run (standard library only).

A cell is one case (upstream, script, mode, clients). The CPU and TPS goals compare the sidecar
with another target through paired ratios (summary.paired_ratio: per repeat, then the median), so
a cell meets a goal when the median ratio is on the right side of the bound. Every cell is
checked and shown, misses included.
"""

from __future__ import annotations

from dataclasses import dataclass

from benches.pgbench.summary import paired_ratio

# The goals of this round apply from this many clients up (fewer clients leave a proxy mostly
# waiting, and its CPU per transaction is then its wake-ups').
MIN_CLIENTS = 8


@dataclass(frozen=True)
class Goal:
    key: str
    text: str
    bound: float
    at_most: bool  # True: the figure must be ≤ bound; False: ≥ bound

    def met(self, figure: float | None) -> bool | None:
        if figure is None:
            return None
        return figure <= self.bound if self.at_most else figure >= self.bound

    @property
    def condition(self) -> str:
        return f"{'≤' if self.at_most else '≥'} {self.bound:g}"


CPU_VS_PGBOUNCER = Goal(
    "cpu_vs_pgbouncer", f"sidecar CPU per transaction ≤ 0.95 × PgBouncer's ({MIN_CLIENTS}+ clients)", 0.95, True
)
CPU_VS_HAPROXY = Goal(
    "cpu_vs_haproxy", f"sidecar CPU per transaction ≤ 1.0 × HAProxy's ({MIN_CLIENTS}+ clients)", 1.0, True
)
USER_VS_PGBOUNCER = Goal(
    "user_vs_pgbouncer", f"sidecar user time per transaction ≤ PgBouncer's ({MIN_CLIENTS}+ clients)", 1.0, True
)
DOLTGRES_VS_DIRECT = Goal(
    "doltgres_vs_direct", f"Doltgres: sidecar TPS ≥ 0.95 × direct ({MIN_CLIENTS}+ clients)", 0.95, False
)
DOLTGRES_VS_PGBOUNCER = Goal(
    "doltgres_vs_pgbouncer", f"Doltgres: sidecar TPS ≥ PgBouncer's ({MIN_CLIENTS}+ clients)", 1.0, False
)
IDLE_MEMORY = Goal(
    "idle_memory", "sidecar memory per idle session ≤ 2.5 KB (2,500 bytes; PostgreSQL)", 2500, True
)
GOALS = (CPU_VS_PGBOUNCER, CPU_VS_HAPROXY, USER_VS_PGBOUNCER, DOLTGRES_VS_DIRECT, DOLTGRES_VS_PGBOUNCER, IDLE_MEMORY)
# The goals judged in every cell of both upstreams; the Doltgres ones only there.
BOTH_UPSTREAMS = (CPU_VS_PGBOUNCER, CPU_VS_HAPROXY, USER_VS_PGBOUNCER)

# The paired ratio behind each per-cell goal: (numerator, denominator, run field).
RATIOS = {
    CPU_VS_PGBOUNCER.key: ("sidecar", "pgbouncer", "proxy_cpu_us_per_txn"),
    CPU_VS_HAPROXY.key: ("sidecar", "haproxy", "proxy_cpu_us_per_txn"),
    USER_VS_PGBOUNCER.key: ("sidecar", "pgbouncer", "proxy_user_us_per_txn"),
    DOLTGRES_VS_DIRECT.key: ("sidecar", "direct", "tps"),
    DOLTGRES_VS_PGBOUNCER.key: ("sidecar", "pgbouncer", "tps"),
}


@dataclass(frozen=True)
class Check:
    """One goal in one cell: the figure (a paired ratio, or bytes per session) and the verdict."""

    goal: Goal
    cell: tuple | None  # (upstream, script, mode, clients); None for the memory goal
    ratio: dict | None  # paired_ratio's median/min/max/n, for the ratio goals
    figure: float | None
    met: bool | None


def applies(goal: Goal, cell: tuple) -> bool:
    upstream, _, _, clients = cell
    if clients < MIN_CLIENTS:
        return False
    return goal in BOTH_UPSTREAMS or upstream == "doltgres"


def check(cases: dict, memory: list[dict]) -> list[Check]:
    """Every goal in every cell it applies to, in the order of GOALS, then of the cases."""
    out = []
    for goal in GOALS:
        if goal is IDLE_MEMORY:
            for m in memory:
                if m["proxy"].split("-")[0] == "sidecar":
                    figure = m["bytes_per_session"]
                    out.append(Check(goal, None, None, figure, goal.met(figure)))
            continue
        num, den, key = RATIOS[goal.key]
        for cell, runs in cases.items():
            if not applies(goal, cell):
                continue
            ratio = paired_ratio(runs, num, den, key)
            figure = ratio["median"] if ratio else None
            out.append(Check(goal, cell, ratio, figure, goal.met(figure)))
    return out
