"""Transactions and windows on one clock, and what clients saw while a window was open.

pgbench's per-transaction log (`-l`, PostgreSQL 15 format) has one line per transaction:

    client_id transaction_no time script_no time_epoch time_us

`time` is the latency in µs, or a word (`serialization`, `deadlock`, `failed`) for a transaction
that failed; `time_epoch`.`time_us` is when it finished, in Unix time (pgbench shifts its
monotonic clock to the epoch once at start). So each transaction spans
[end - latency, end] on the same wall clock as the sidecar's window records and our own
`time.time()`.

A transaction *overlaps* a window when it started before the window ended and ended after the
window started: it may have waited at the gate, or run during the drain.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Load-phase transactions that end within this long after a window are not "between windows":
# clients released together at resume queue for the server for a moment.
SETTLE_SECONDS = 1.0


@dataclass(frozen=True)
class Txn:
    end: float  # Unix seconds
    latency_us: int | None  # None for a failed transaction (pgbench logs no latency then)
    failure: str | None  # pgbench's word for a failure, else None

    @property
    def start(self) -> float:
        return self.end - (self.latency_us or 0) / 1e6


@dataclass(frozen=True)
class Span:
    """A window on the wall clock."""

    start: float
    end: float

    def overlaps(self, txn: Txn, after: float = 0.0) -> bool:
        return txn.start < self.end + after and txn.end > self.start


def read_log(prefix: Path, delete: bool = True) -> list[Txn]:
    """Every transaction in pgbench's per-transaction logs (one file per thread)."""
    txns: list[Txn] = []
    for path in sorted(prefix.parent.glob(prefix.name + ".*")):
        with open(path) as log:
            for line in log:
                fields = line.split()
                if len(fields) < 6:
                    continue
                end = int(fields[4]) + int(fields[5]) / 1e6
                if fields[2].isdigit():
                    txns.append(Txn(end, int(fields[2]), None))
                elif fields[2] != "skipped":
                    txns.append(Txn(end, None, fields[2]))
        if delete:
            path.unlink()
    txns.sort(key=lambda t: t.end)
    return txns


def nearest_rank(sorted_values: list[float], q: float) -> float:
    """The q-quantile by nearest rank, as the pgbench harness computes it."""
    n = len(sorted_values)
    return sorted_values[min(n - 1, int(q * n))]


def latency_ms(txns: list[Txn]) -> dict | None:
    """avg / p50 / p95 / p99 / max of the successful transactions, in ms."""
    values = sorted(t.latency_us / 1000.0 for t in txns if t.latency_us is not None)
    if not values:
        return None
    return {
        "avg": sum(values) / len(values),
        "p50": nearest_rank(values, 0.50),
        "p95": nearest_rank(values, 0.95),
        "p99": nearest_rank(values, 0.99),
        "max": values[-1],
        "samples": len(values),
    }


def failures(txns: list[Txn]) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in txns:
        if t.failure:
            out[t.failure] = out.get(t.failure, 0) + 1
    return out


def overlapping(txns: list[Txn], span: Span) -> list[Txn]:
    return [t for t in txns if span.overlaps(t)]


def between_windows(txns: list[Txn], spans: list[Span], first: float, last: float) -> list[Txn]:
    """Transactions of the load phase that overlap no window (nor its settling second), limited
    to [first, last] so the stretch before the first and after the last window counts too."""
    return [
        t
        for t in txns
        if first <= t.start and t.end <= last and not any(s.overlaps(t, SETTLE_SECONDS) for s in spans)
    ]


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or not b:
        return None
    return a / b
