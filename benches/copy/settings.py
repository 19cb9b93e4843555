"""The copy benchmark's constants (sizes, deadlines, credentials), the sidecar's log lines it
reads, and its logging."""

from __future__ import annotations

import datetime
import os
import re
import sys
import time
from pathlib import Path


HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

MB = 1_000_000
USER = "postgres"
PASSWORD = os.environ.get("DOLTGRES_PASSWORD", "password")
DATABASE = "postgres"

BATCH_ROWS = 50_000
# 192 random hex characters per row: compresses about 2:1 in Dolt's table files.
PAYLOAD = " || ".join(["md5(random()::text)"] * 6)
# On-disk bytes per row after dolt_gc() (measured: 50,000 rows -> 5.65 MB); only to size the load.
GC_BYTES_PER_ROW = 113
# Journal bytes per row, used until the first batch has measured it.
JOURNAL_BYTES_PER_ROW_GUESS = 218
# Dolt's journal file (one per database), named with 32 'v's.
JOURNAL_NAME = "v" * 32

# Deadlines (seconds).
READY_TIMEOUT = 120
PSQL_TIMEOUT = 900
GC_TIMEOUT = 3600
COPY_TIMEOUT = 3600
VERIFY_TIMEOUT = 1800
STOP_TIMEOUT = 180  # the sidecar stops Doltgres; a big one may take a while


# The sidecar's log lines for spawning the managed Doltgres and for that Doltgres being ready.
STARTED_RE = re.compile(r"^(\S+Z)\s+INFO .*doltgres started pid=\d+ addr=127\.0\.0\.1:(\d+)")
READY_RE = re.compile(r"^(\S+Z)\s+INFO doltgres\{pid=\d+ port=(\d+)\}: .*Server ready")


def parse_ts(text: str) -> float:
    """Seconds since the epoch of a tracing timestamp such as 2026-11-25T21:40:11.311789Z."""
    head, _, frac = text.rstrip("Z").partition(".")
    t = datetime.datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc).timestamp()
    return t + (float("0." + frac) if frac else 0.0)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def csv_numbers(text: str) -> list[float]:
    out = []
    for part in text.split(","):
        part = part.strip()
        if part:
            value = float(part)
            out.append(int(value) if value == int(value) else value)
    return out
