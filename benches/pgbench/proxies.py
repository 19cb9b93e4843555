"""Starting any of the proxies in front of PostgreSQL by kind, with the run's settings, so that the
benchmark runs, the memory test and the profile start them the same way."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benches.pgbench import floor
from benches.pgbench import servers
from benches.pgbench.servers import Endpoint, Server
from benches.pgbench.tools import Tools

# Every proxy measured in front of PostgreSQL, in the order the report shows them.
KINDS = ("sidecar", "pgbouncer", "haproxy", "relay")
# Those measured in front of Doltgres too: the sidecar and the peers its users would run instead.
DOLTGRES_KINDS = ("sidecar", "pgbouncer", "haproxy")


@dataclass(frozen=True)
class FloorSettings:
    haproxy_threads: int = floor.HAPROXY_THREADS
    relay_threads: int | None = None  # None: tokio's default (one worker per core)


def start(
    kind: str, tools: Tools, base: Path, name: str, upstream: Endpoint, max_clients: int, settings: FloorSettings
) -> Server:
    """Starts proxy `kind` (one of KINDS) as `name` in front of `upstream`, for up to `max_clients`."""
    if kind == "sidecar":
        return servers.start_sidecar(tools, base, name, upstream, max_clients)
    if kind == "pgbouncer":
        return servers.start_pgbouncer(tools, base, name, upstream, max_clients)
    if kind == "haproxy":
        return floor.start_haproxy(tools, base, name, upstream, max_clients, settings.haproxy_threads)
    if kind == "relay":
        return floor.start_relay(tools, base, name, upstream, settings.relay_threads)
    raise ValueError(f"unknown proxy kind {kind!r}")
