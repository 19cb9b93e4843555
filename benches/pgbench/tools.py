"""Finds (or installs, or builds) the programs the harness runs.

PostgreSQL and Doltgres come from the repository's own installers (`scripts/ensure-*.sh`), the
same ones the test bed uses; the sidecar and the relay floor (benches/relay_floor.rs) are built in
release mode; PgBouncer and HAProxy (and strace and perf for `--profile`) are Debian's packages,
installed with apt-get when they are missing and we are root.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Tools:
    pg_bindir: Path
    doltgres: Path
    sidecar: Path
    pgbouncer: Path
    # The floors in front of PostgreSQL (floor.py); None where a caller does not run them.
    haproxy: Path | None = None
    relay: Path | None = None

    @property
    def psql(self) -> Path:
        return self.pg_bindir / "psql"

    @property
    def pgbench(self) -> Path:
        return self.pg_bindir / "pgbench"


def script_output(name: str) -> Path:
    out = subprocess.run(
        ["bash", str(REPO / "scripts" / name)],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    return Path(out.stdout.strip())


def build_sidecar() -> Path:
    """`cargo build --release --bin doltgres-sidecar`; returns the binary's path."""
    built = subprocess.run(["cargo", "build", "--release", "--bin", "doltgres-sidecar"], cwd=REPO)
    if built.returncode != 0:
        raise RuntimeError("cargo build --release failed (or pass --sidecar-bin PATH to use a built binary)")
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target / "release" / "doltgres-sidecar"


def ensure_debian_program(program: str, package: str, path: str) -> Path:
    """`program` from PATH or at `path`; when missing, Debian's `package` is installed with apt-get."""
    found = shutil.which(program) or (path if Path(path).exists() else None)
    if found:
        return Path(found)
    if os.geteuid() != 0:
        raise RuntimeError(f"{program} is missing and only root can install it (apt-get install {package})")
    print(f"bench: installing {package} (apt-get)", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", package], check=True, env=env)
    if not Path(path).exists():
        raise RuntimeError(f"apt-get installed {package} but {path} is missing")
    return Path(path)


def ensure_pgbouncer() -> Path:
    """Debian's pgbouncer, installed with apt-get if missing."""
    return ensure_debian_program("pgbouncer", "pgbouncer", "/usr/sbin/pgbouncer")


def ensure_haproxy() -> Path:
    """Debian's haproxy, installed with apt-get if missing."""
    return ensure_debian_program("haproxy", "haproxy", "/usr/sbin/haproxy")


def build_relay() -> Path:
    """`cargo build --release --example relay_floor`; returns the binary's path."""
    built = subprocess.run(["cargo", "build", "--release", "--example", "relay_floor"], cwd=REPO)
    if built.returncode != 0:
        raise RuntimeError("cargo build --release --example relay_floor failed")
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target / "release" / "examples" / "relay_floor"


def find_tools(sidecar_bin: Path | None, relay_bin: Path | None = None) -> Tools:
    """Everything the harness needs, built or installed on first use."""
    sidecar = sidecar_bin if sidecar_bin is not None else build_sidecar()
    if not sidecar.exists():
        raise RuntimeError(f"sidecar binary not found: {sidecar}")
    relay = relay_bin if relay_bin is not None else build_relay()
    if not relay.exists():
        raise RuntimeError(f"relay_floor binary not found: {relay}")
    return Tools(
        pg_bindir=script_output("ensure-postgres.sh"),
        doltgres=script_output("ensure-doltgres.sh"),
        sidecar=sidecar.resolve(),
        pgbouncer=ensure_pgbouncer(),
        haproxy=ensure_haproxy(),
        relay=relay.resolve(),
    )


def versions(tools: Tools) -> dict[str, str]:
    """One-line version strings of every program, for the raw results."""

    def first_line(argv: list[str]) -> str:
        try:
            out = subprocess.run(
                argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30
            )
            return out.stdout.strip().splitlines()[0] if out.stdout.strip() else ""
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"unknown ({e})"

    commit = first_line(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no", "src"],
        stdout=subprocess.PIPE,
        text=True,
    ).stdout.strip()
    built = time.strftime("%Y-%m-%d %H:%M", time.localtime(tools.sidecar.stat().st_mtime))
    found = {
        "sidecar_commit": commit + ("+dirty" if dirty else ""),
        "sidecar_built": built,
        "postgres": first_line([str(tools.pg_bindir / "postgres"), "--version"]),
        "pgbench": first_line([str(tools.pgbench), "--version"]),
        "doltgres": first_line([str(tools.doltgres), "--version"]),
        "pgbouncer": first_line([str(tools.pgbouncer), "--version"]),
    }
    if tools.haproxy is not None:
        found["haproxy"] = first_line([str(tools.haproxy), "-v"])
    return found


def machine() -> dict:
    """What the figures were measured on: cores, CPU model, memory, kernel."""
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return {"cores": os.cpu_count(), "cpu": cpu, "memory_gib": mem_kib / 2**20, "kernel": platform.release()}
