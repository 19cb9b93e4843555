"""The harness's Python environment for plotting (matplotlib) and idle sessions (asyncpg).

It lives in a cache outside the repository, next to the cached Doltgres build, and is rebuilt only
when requirements.txt changes. The harness itself needs nothing but the standard library; the two
helper scripts run with this venv's interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REQUIREMENTS = Path(__file__).resolve().parent / "requirements.txt"


def cache_dir() -> Path:
    if "DOLTGRES_SIDECAR_CACHE" in os.environ:
        return Path(os.environ["DOLTGRES_SIDECAR_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "doltgres-sidecar"


def ensure_venv() -> Path:
    """The venv's python, created and filled from requirements.txt when missing or stale."""
    venv = cache_dir() / "bench-venv"
    python = venv / "bin" / "python"
    stamp = venv / "requirements.installed"
    wanted = REQUIREMENTS.read_text()
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    print(f"bench: preparing {venv} (matplotlib, asyncpg)", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", str(REQUIREMENTS)],
        check=True,
    )
    stamp.write_text(wanted)
    return python
