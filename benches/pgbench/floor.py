"""The floors: proxies that relay bytes without reading the protocol, in front of PostgreSQL.

- HAProxy in TCP mode (Debian's package): one frontend, one backend server, no health checks, no
  logging, long timeouts, in the foreground (`-db`: no daemon, no master process), so the pid we
  hold is the one process that relays and /proc figures are its own.
- relay_floor (benches/relay_floor.rs): a tokio multi-thread runtime, one upstream connection per
  client, `copy_bidirectional` with TCP_NODELAY on both sockets.

Both show what relaying costs with nothing parsed: HAProxy is the classic event loop in C, the relay
the same runtime as the sidecar. Neither authenticates, so clients log in with PostgreSQL itself.
"""

from __future__ import annotations

import os
from pathlib import Path

from benches.pgbench.procs import Managed, free_port
from benches.pgbench.servers import Endpoint, Server, wait_ready
from benches.pgbench.tools import Tools

# HAProxy's nbthread. On the 2-core benchmark machine 2 threads gave 5-25% more TPS than 1 (pgbench
# -S, simple and prepared, 8 and 32 clients), at ~15% more CPU per transaction; see benches/README.md,
# "The floors". `--haproxy-threads` overrides.
HAPROXY_THREADS = 2


def haproxy_config(endpoint: Endpoint, upstream: Endpoint, max_clients: int, threads: int) -> str:
    return (
        "global\n"
        f"    maxconn {max_clients}\n"
        f"    nbthread {threads}\n"
        "defaults\n"
        "    mode tcp\n"
        "    timeout connect 10s\n"
        "    timeout client 1h\n"
        "    timeout server 1h\n"
        "frontend clients\n"
        f"    bind {endpoint.addr}\n"
        f"    maxconn {max_clients}\n"
        "    default_backend postgres\n"
        "backend postgres\n"
        f"    server postgres {upstream.addr} maxconn {max_clients}\n"
    )


def start_haproxy(
    tools: Tools, base: Path, name: str, upstream: Endpoint, max_clients: int, threads: int = HAPROXY_THREADS
) -> Server:
    """HAProxy in TCP mode in front of `upstream`, accepting up to `max_clients` connections."""
    if tools.haproxy is None:
        raise RuntimeError("HAProxy was not found (tools.ensure_haproxy)")
    home = base / name
    home.mkdir()
    endpoint = Endpoint("127.0.0.1", free_port())
    config = home / "haproxy.cfg"
    config.write_text(haproxy_config(endpoint, upstream, max_clients, threads))
    # SIGTERM is HAProxy's hard stop: close everything and exit.
    proc = Managed(name, [str(tools.haproxy), "-db", "-f", str(config)], home / "haproxy.log")
    return wait_ready(tools, Server(name, endpoint, proc, home))


def start_relay(tools: Tools, base: Path, name: str, upstream: Endpoint, threads: int | None = None) -> Server:
    """relay_floor in front of `upstream`; `threads` workers (tokio's default, one per core, if None)."""
    if tools.relay is None:
        raise RuntimeError("relay_floor was not built (tools.build_relay)")
    home = base / name
    home.mkdir()
    endpoint = Endpoint("127.0.0.1", free_port())
    argv = [str(tools.relay), endpoint.addr, upstream.addr]
    if threads is not None:
        argv += ["--threads", str(threads)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKIO_")}
    proc = Managed(name, argv, home / "relay.log", env=env)
    return wait_ready(tools, Server(name, endpoint, proc, home))
