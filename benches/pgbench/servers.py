"""The servers and proxies under test, each on a free loopback port in its own directory.

Settings mirror the test bed (proxy-tests/src/server.rs): PostgreSQL on a fresh cluster with
scram-sha-256 and fsync off; Doltgres with telemetry disabled, started in an empty working
directory; the sidecar in passthrough mode; PgBouncer in session mode. All of them log in as
`postgres`/`password`.
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from benches.pgbench.procs import Managed, as_postgres_user, free_port, give_to_postgres, wait_until
from benches.pgbench.tools import Tools

USER = "postgres"
PASSWORD = "password"
DATABASE = "postgres"
# How long a server may take to accept its first login.
READY_TIMEOUT = 90.0


@dataclass(frozen=True)
class Endpoint:
    """Where a client connects, and as whom."""

    host: str
    port: int

    @property
    def addr(self) -> str:
        return f"{self.host}:{self.port}"

    def conninfo(self, connect_timeout: int = 10) -> str:
        return (
            f"host={self.host} port={self.port} user={USER} dbname={DATABASE} "
            f"connect_timeout={connect_timeout}"
        )


def client_env() -> dict[str, str]:
    """Environment for libpq clients (psql, pgbench): the password, no stray PG* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGPASSWORD"] = PASSWORD
    return env


@dataclass
class Server:
    """A running server or proxy."""

    name: str
    endpoint: Endpoint
    proc: Managed
    dir: Path

    @property
    def pid(self) -> int:
        return self.proc.pid


def psql(tools: Tools, endpoint: Endpoint, sql: str, timeout: float = 600.0) -> str:
    """Runs `sql` with psql (stop on the first error); returns its unaligned, tuples-only output."""
    out = subprocess.run(
        [
            str(tools.psql),
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            endpoint.conninfo(),
            "-c",
            sql,
        ],
        env=client_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout,
    )
    if out.returncode != 0:
        raise RuntimeError(f"psql on {endpoint.addr} failed: {sql[:80]!r}: {out.stderr.strip()}")
    return out.stdout.strip()


def can_log_in(tools: Tools, endpoint: Endpoint) -> bool:
    try:
        psql(tools, endpoint, "SELECT 1", timeout=10)
        return True
    except (RuntimeError, subprocess.TimeoutExpired):
        return False


def wait_ready(tools: Tools, server: Server) -> Server:
    wait_until(
        lambda: can_log_in(tools, server.endpoint),
        f"waiting for {server.name} to accept a login",
        READY_TIMEOUT,
        server.proc,
    )
    return server


def start_postgres(tools: Tools, base: Path, max_connections: int) -> Server:
    """Debian's PostgreSQL on a fresh cluster (initdb) with scram-sha-256 logins."""
    home = base / "postgres"
    home.mkdir()
    give_to_postgres(home)
    pwfile = home / "pwfile"
    pwfile.write_text(PASSWORD)
    give_to_postgres(pwfile, 0o600)
    data = home / "data"
    subprocess.run(
        as_postgres_user(
            [
                str(tools.pg_bindir / "initdb"),
                "--auth=scram-sha-256",
                "--username",
                USER,
                "--encoding=UTF8",
                "--no-sync",
                "--pwfile",
                str(pwfile),
                "-D",
                str(data),
            ]
        ),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    endpoint = Endpoint("127.0.0.1", free_port())
    argv = as_postgres_user(
        [
            str(tools.pg_bindir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(endpoint.port),
            "-k",
            str(home),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"max_connections={max_connections}",
            "-c",
            "fsync=off",
            "-c",
            "log_min_messages=info",
        ]
    )
    # SIGINT is PostgreSQL's fast shutdown: disconnect clients, no waiting for them.
    proc = Managed("postgres", argv, home / "server.log", stop_signal=signal.SIGINT)
    return wait_ready(tools, Server("postgres", endpoint, proc, home))


def start_doltgres(tools: Tools, base: Path) -> Server:
    """The pinned Doltgres, telemetry disabled, in an empty working directory."""
    home = base / "doltgres"
    root = home / "root"
    (root / ".dolt").mkdir(parents=True)
    (root / ".dolt" / "config_global.json").write_text('{"metrics.disabled":"true"}')
    work = home / "work"
    work.mkdir()
    endpoint = Endpoint("127.0.0.1", free_port())
    config = home / "config.yaml"
    config.write_text(
        "log_level: warning\n"
        "listener:\n"
        f"  host: {endpoint.host}\n"
        f"  port: {endpoint.port}\n"
        f"  socket: {home / f'.s.PGSQL.{endpoint.port}'}\n"
        f"data_dir: {home / 'data'}\n"
    )
    env = dict(
        os.environ,
        DOLT_ROOT_PATH=str(root),
        HOME=str(root),
        DOLTGRES_USER=USER,
        DOLTGRES_PASSWORD=PASSWORD,
    )
    proc = Managed(
        "doltgres",
        [str(tools.doltgres), "--config", str(config)],
        home / "server.log",
        cwd=work,
        env=env,
    )
    return wait_ready(tools, Server("doltgres", endpoint, proc, home))


def start_sidecar(tools: Tools, base: Path, name: str, upstream: Endpoint, max_clients: int) -> Server:
    """The sidecar in front of `upstream`, logging at `warn` so the log does not cost time."""
    home = base / name
    home.mkdir()
    config = home / "sidecar.toml"
    config.write_text(f"max_client_connections = {max_clients}\n")
    endpoint = Endpoint("127.0.0.1", free_port())
    argv = [
        str(tools.sidecar),
        "run",
        "--config",
        str(config),
        "--listen",
        endpoint.addr,
        "--upstream",
        upstream.addr,
        "--admin-listen",
        f"127.0.0.1:{free_port()}",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOLTGRES_SIDECAR_")}
    env["RUST_LOG"] = "warn"
    proc = Managed(name, argv, home / "sidecar.log", env=env)
    return wait_ready(tools, Server(name, endpoint, proc, home))


def start_pgbouncer(tools: Tools, base: Path, name: str, upstream: Endpoint, max_clients: int) -> Server:
    """Debian's PgBouncer in session mode in front of `upstream`, one pool big enough for every
    client, so that it never queues a client for a server connection."""
    home = base / name
    home.mkdir()
    give_to_postgres(home)
    endpoint = Endpoint("127.0.0.1", free_port())
    auth_file = home / "userlist.txt"
    auth_file.write_text(f'"{USER}" "{PASSWORD}"\n')
    ini = home / "pgbouncer.ini"
    ini.write_text(
        "[databases]\n"
        f"{DATABASE} = host={upstream.host} port={upstream.port} dbname={DATABASE}\n"
        "[pgbouncer]\n"
        f"listen_addr = {endpoint.host}\n"
        f"listen_port = {endpoint.port}\n"
        "unix_socket_dir =\n"
        "auth_type = scram-sha-256\n"
        f"auth_file = {auth_file}\n"
        "pool_mode = session\n"
        f"max_client_conn = {max_clients}\n"
        f"default_pool_size = {max_clients}\n"
        "ignore_startup_parameters = extra_float_digits\n"
        "log_connections = 0\n"
        "log_disconnections = 0\n"
        f"logfile = {home / 'pgbouncer.log'}\n"
    )
    for path in (auth_file, ini):
        give_to_postgres(path, 0o600)
    argv = as_postgres_user([str(tools.pgbouncer), str(ini)])
    # SIGTERM is PgBouncer's immediate shutdown; SIGINT would wait for clients.
    proc = Managed(name, argv, home / "stdout.log")
    return wait_ready(tools, Server(name, endpoint, proc, home))
