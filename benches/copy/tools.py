"""The binaries the copy benchmark runs (the sidecar, built if needed; Doltgres), their versions
and the machine."""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path

from benches.copy.settings import REPO, log


def sidecar_binary(args: argparse.Namespace, tmp: Path) -> Path:
    """The sidecar, built if need be, copied into the temp dir so a rebuild cannot swap it mid-run."""
    if args.sidecar_bin is not None:
        src = args.sidecar_bin
    else:
        log("cargo build --release --bin doltgres-sidecar")
        built = subprocess.run(["cargo", "build", "--release", "--bin", "doltgres-sidecar"], cwd=REPO)
        if built.returncode != 0:
            raise RuntimeError("cargo build --release failed (or pass --sidecar-bin PATH)")
        src = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "release" / "doltgres-sidecar"
    if not src.exists():
        raise RuntimeError(f"sidecar binary not found: {src}")
    dst = tmp / "doltgres-sidecar"
    shutil.copy2(src, dst)
    return dst


def doltgres_binary() -> Path:
    out = subprocess.run(
        ["bash", str(REPO / "scripts" / "ensure-doltgres.sh")], check=True, stdout=subprocess.PIPE, text=True
    )
    return Path(out.stdout.strip())


def first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30)
        return out.stdout.strip().splitlines()[0] if out.stdout.strip() else ""
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unknown ({e})"


def versions(sidecar: Path, doltgres: Path) -> dict[str, str]:
    commit = first_line(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no", "src"],
        stdout=subprocess.PIPE,
        text=True,
    ).stdout.strip()
    return {
        "sidecar_commit": commit + ("+dirty" if dirty else ""),
        "sidecar_built": time.strftime("%Y-%m-%d %H:%M", time.localtime(sidecar.stat().st_mtime)),
        "doltgres": first_line([str(doltgres), "--version"]),
        "psql": first_line(["psql", "--version"]),
    }


def machine() -> dict:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kib / 2**20, 1),
        "kernel": platform.release(),
        "load_average": os.getloadavg()[0],
    }
