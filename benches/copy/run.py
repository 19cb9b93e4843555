#!/usr/bin/env python3
"""Stall of stop-and-copy windows by database size and by bytes changed since the previous copy.

    python3 benches/copy/run.py                                   # 10 MB, 100 MB, 1 GB; 0/1/10 MB changes
    python3 benches/copy/run.py --sizes 10 --changes 0,1 --repeat 1   # smoke run, ~1 minute

For each database size (MB on disk, after `dolt_gc()`), in a fresh temp dir:

1. Starts the sidecar in managed mode (`run --control managed`): it runs Doltgres itself. A small
   config file gives it `[backup.copy]` into `<tmp>/backups` with the managed defaults (verify
   after each copy, keep the last ten) but with no automatic trigger and no copy on shutdown, so
   only the harness opens windows.
2. Builds the database through the sidecar with psql: one table `t (id bigint primary key,
   payload text)`, rows of 192 random hex characters (`md5(random()::text)` six times; random
   hex compresses about 2:1, not to nothing like `repeat()`), inserted 50,000 rows per
   statement; then `dolt_commit('-Am', 'load')` and `dolt_gc()`, which moves everything out of
   Dolt's journal into immutable table files. Build time = load + commit + gc.
3. Takes a first copy (full: nothing to hard-link yet), then for each change size (MB of new
   journal data) and each repeat: inserts that much (no commit, no gc; 0 = no change), takes a
   copy with `doltgres-sidecar backup --action copy --json` and records the window's `stall_ms`,
   `duration_ms`, the cut's `bytes_copied` / `bytes_linked` and its timings (inventory, detach,
   stop, copy, start). Before the next step it waits until the sidecar has verified the new
   entry (`verify.json`), so the verification never overlaps a measurement.

Rows per MB of change come from the journal's growth per row while loading (about 218 bytes a
row); rows per MB of database from a constant (~113 bytes a row after gc), so sizes are
approximate: the table reports what was measured (`du -b` of the server's data dir).

A size whose load does not finish within --build-budget seconds (default 900) is loaded only
that far, then committed, collected and measured as it is; a size predicted (from the previous
size's rate) to take more than twice the budget is skipped. Both are reported.

Writes <out>/copy.md, <out>/copy.json and, if matplotlib is available (in this interpreter or in
the bench venv ~/.cache/doltgres-sidecar/bench-venv, see benches/pgbench/bench_venv.py),
<out>/copy-stall.png. Needs python3 (standard library), psql on PATH, cargo (unless
--sidecar-bin) and Doltgres from scripts/ensure-doltgres.sh. Every process it starts is stopped
and every temp dir removed on exit (--keep-tmp keeps the dirs).
"""

from __future__ import annotations

import sys

sys.dont_write_bytecode = True

import argparse  # noqa: E402
import atexit  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import urllib.request  # noqa: E402
from pathlib import Path  # noqa: E402

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


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=csv_numbers, default=[10, 100, 1000], help="database sizes, MB on disk (default 10,100,1000)")
    p.add_argument("--changes", type=csv_numbers, default=[0, 1, 10], help="MB changed before each copy (default 0,1,10)")
    p.add_argument("--repeat", type=int, default=3, help="copies per change size, a new change before each (default 3)")
    p.add_argument("--out", type=Path, default=REPO / "benches" / "results", help="where copy.md/.json/.png go")
    p.add_argument("--build-budget", type=float, default=900, help="seconds one database's load may take (default 900)")
    p.add_argument("--sidecar-bin", type=Path, help="use this sidecar binary instead of cargo build --release")
    p.add_argument(
        "--gc-each-change",
        action="store_true",
        help="dolt_commit + dolt_gc() after each change, before its copy (outside the window), so the copy "
        "finds the change in a new table file instead of in the journal",
    )
    p.add_argument(
        "--no-gc",
        action="store_true",
        help="no dolt_gc() after the load: the database stays in Dolt's chunk journal, so the sizes are "
        "journal sizes (the journal axis: a copy's stall and its entry's bytes must follow the change, not "
        "the journal)",
    )
    p.add_argument("--name", default="copy", help="base name of the report files (default copy: copy.md, copy.json, copy-stall.png)")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dirs (server files, copies, logs)")
    args = p.parse_args(argv)
    if args.repeat < 1 or not args.sizes or any(s <= 0 for s in args.sizes) or any(c < 0 for c in args.changes):
        p.error("--repeat must be >= 1, --sizes positive, --changes >= 0")
    return args


# ----------------------------------------------------------------------------------------------
# Processes


class Proc:
    """A child process in its own session with its output in a log file; stopped on exit."""

    running: list["Proc"] = []

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None):
        self.name = name
        self.log_path = log_path
        with open(log_path, "ab") as out:
            self.popen = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        Proc.running.append(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def children(self) -> list[int]:
        """Direct children's pids (the managed Doltgres), from /proc."""
        pids: list[int] = []
        try:
            for task in Path(f"/proc/{self.pid}/task").iterdir():
                try:
                    pids += [int(p) for p in (task / "children").read_text().split()]
                except OSError:
                    pass
        except OSError:
            pass
        return pids

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM, wait up to STOP_TIMEOUT, then SIGKILL; then any child it left behind."""
        if self in Proc.running:
            Proc.running.remove(self)
        kids = self.children()
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log(f"{self.name} did not stop within {STOP_TIMEOUT}s: killing it")
                self.popen.kill()
                self.popen.wait()
        for pid in kids:
            kill_pid(pid)

    @classmethod
    def stop_all(cls) -> None:
        for proc in reversed(list(cls.running)):
            try:
                proc.stop()
            except Exception as e:  # keep stopping the others
                log(f"stopping {proc.name}: {e}")


def kill_pid(pid: int) -> None:
    """Stops a process we started (a managed Doltgres whose sidecar died), by pid."""
    for sig, wait in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not Path(f"/proc/{pid}").exists() or _zombie(pid):
                return
            time.sleep(0.1)


def _zombie(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        return text[text.rindex(")") + 2] == "Z"
    except (OSError, ValueError, IndexError):
        return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def on_signal(signum, _frame) -> None:
    raise SystemExit(f"stopped by signal {signum}")


# ----------------------------------------------------------------------------------------------
# Tools


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


# ----------------------------------------------------------------------------------------------
# One database: the sidecar, psql, sizes on disk, copies


class Bench:
    def __init__(self, root: Path, sidecar: Path, doltgres: Path) -> None:
        self.root = root
        self.sidecar_bin = sidecar
        self.server_dir = root / "doltgres"
        self.catalog = root / "backups"
        self.port = free_port()
        self.admin_port = free_port()
        self.admin_url = f"http://127.0.0.1:{self.admin_port}"
        config = root / "sidecar.toml"
        config.write_text(
            "# Managed mode's default copy settings, minus the automatic triggers and the copy on shutdown.\n"
            "[backup]\n"
            "on_shutdown = false\n"
            'action_timeout = "60m"\n'
            "[backup.copy]\n"
            f"catalog = {json.dumps(str(self.catalog))}\n"
            "keep_last = 10\n"
            "verify_after = true\n"
        )
        argv = [
            str(sidecar), "run", "--config", str(config), "--control", "managed",
            "--doltgres", str(doltgres), "--server-dir", str(self.server_dir),
            "--listen", f"127.0.0.1:{self.port}", "--admin-listen", f"127.0.0.1:{self.admin_port}",
        ]  # fmt: skip
        env = dict(os.environ, DOLTGRES_PASSWORD=PASSWORD, RUST_LOG=os.environ.get("RUST_LOG", "info"))
        self.proc = Proc("sidecar", argv, root / "sidecar.log", env=env)
        self.doltgres_port: int | None = None
        self.wait_ready()
        self.doltgres_up_ms(0)  # learns the main server's port from its first start

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if not self.proc.alive():
                raise RuntimeError(f"the sidecar exited while starting:\n{self.proc.log_tail()}")
            try:
                self.psql("SELECT 1", timeout=10)
                return
            except RuntimeError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"no login through the sidecar after {READY_TIMEOUT}s:\n{self.proc.log_tail()}")
            time.sleep(0.3)

    def psql(self, sql: str, timeout: float = PSQL_TIMEOUT) -> str:
        argv = [
            "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
            "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, "-d", DATABASE, "-c", sql,
        ]  # fmt: skip
        env = dict(os.environ, PGPASSWORD=PASSWORD, PGCONNECT_TIMEOUT="10")
        try:
            out = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"psql timed out after {timeout:.0f}s: {sql[:80]}") from None
        if out.returncode != 0:
            raise RuntimeError(f"psql failed ({out.returncode}): {sql[:80]}: {out.stderr.strip()}")
        return out.stdout.strip()

    def insert(self, first_id: int, rows: int) -> None:
        self.psql(
            f"INSERT INTO t SELECT g.i, {PAYLOAD} FROM generate_series({first_id}, {first_id + rows - 1}) AS g(i)"
        )

    # Sizes on disk.

    def data_dir(self) -> Path:
        return self.server_dir / "data"

    def disk_bytes(self) -> int:
        """Apparent size of the server's data dir, each inode once (as `du -sb`)."""
        seen: set[tuple[int, int]] = set()
        total = 0
        for dirpath, _dirs, files in os.walk(self.data_dir()):
            for name in files:
                try:
                    st = os.lstat(os.path.join(dirpath, name))
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_size
        return total

    def journal_bytes(self) -> int:
        total = 0
        for dirpath, _dirs, files in os.walk(self.data_dir()):
            if JOURNAL_NAME in files:
                try:
                    total += os.path.getsize(os.path.join(dirpath, JOURNAL_NAME))
                except OSError:
                    pass
        return total

    # Doltgres's own start-up time, from the sidecar's log.

    def log_offset(self) -> int:
        try:
            return self.proc.log_path.stat().st_size
        except OSError:
            return 0

    def doltgres_up_ms(self, since: int) -> float | None:
        """Milliseconds from the sidecar spawning the main Doltgres (after `since` in its log) to that
        Doltgres logging "Server ready"; the scratch servers of verifications run on other ports."""
        try:
            with open(self.proc.log_path, "rb") as f:
                f.seek(since)
                text = f.read().decode(errors="replace")
        except OSError:
            return None
        spawned = None
        for line in text.splitlines():
            m = STARTED_RE.match(line)
            if m and (self.doltgres_port is None or int(m.group(2)) == self.doltgres_port):
                self.doltgres_port = int(m.group(2))
                spawned = parse_ts(m.group(1))
                continue
            m = READY_RE.match(line)
            if m and spawned is not None and int(m.group(2)) == self.doltgres_port:
                return (parse_ts(m.group(1)) - spawned) * 1000
        return None

    # Copies.

    def copy(self) -> dict:
        argv = [str(self.sidecar_bin), "backup", "--action", "copy", "--admin-url", self.admin_url, "--json"]
        offset = self.log_offset()
        started = time.monotonic()
        try:
            out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=COPY_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"copy did not answer within {COPY_TIMEOUT}s") from None
        wall = time.monotonic() - started
        try:
            record = json.loads(out.stdout)
        except json.JSONDecodeError:
            raise RuntimeError(
                f"copy: exit {out.returncode}, no JSON: {out.stdout.strip()[:300]} {out.stderr.strip()[:300]}"
            ) from None
        record["client_wall_s"] = wall
        record["doltgres_up_ms"] = self.doltgres_up_ms(offset)
        if record.get("result") != "ok":
            raise RuntimeError(f"copy window did not succeed: {record.get('result')}: {record.get('error')}")
        return record

    def wait_verified(self, entry: str) -> dict:
        """Waits for the sidecar's verification of `entry` (run after the window, in the background)."""
        path = self.catalog / entry / "verify.json"
        started = time.monotonic()
        while not path.exists():
            if not self.proc.alive():
                raise RuntimeError(f"the sidecar exited:\n{self.proc.log_tail()}")
            if time.monotonic() - started > VERIFY_TIMEOUT:
                return {"ok": None, "detail": f"no verify.json after {VERIFY_TIMEOUT}s"}
            time.sleep(0.2)
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            record = {"ok": None, "detail": f"unreadable verify.json: {e}"}
        record["waited_s"] = time.monotonic() - started
        return record

    def stop(self) -> None:
        self.proc.stop()


def copy_row(bench: Bench, record: dict, verify: dict, **extra) -> dict:
    cut = record.get("cut") or {}
    timings = cut.get("timings") or {}
    return {
        **extra,
        "stall_ms": record.get("stall_ms"),
        "duration_ms": record.get("duration_ms"),
        "drain_ms": record.get("drain_ms"),
        "client_wall_s": record.get("client_wall_s"),
        "doltgres_up_ms": record.get("doltgres_up_ms"),
        "bytes_copied": cut.get("bytes_copied"),
        "bytes_linked": cut.get("bytes_linked"),
        "files": cut.get("files"),
        "entry": cut.get("entry"),
        "timings": {k: timings.get(k) for k in ("inventory", "detach", "stop", "copy", "start")},
        "verify_ok": verify.get("ok"),
        "verify_detail": verify.get("detail"),
        "verify_waited_s": verify.get("waited_s"),
        "disk_bytes_after": bench.disk_bytes(),
    }


# ----------------------------------------------------------------------------------------------
# One size


def run_size(size_mb: float, args: argparse.Namespace, tmp: Path, sidecar: Path, doltgres: Path, previous_rate: float | None) -> dict:
    result: dict = {"size_mb": size_mb, "target_bytes": int(size_mb * MB), "copies": [], "notes": []}
    target_rows = max(BATCH_ROWS // 10, int(size_mb * MB / GC_BYTES_PER_ROW))
    result["target_rows"] = target_rows
    if previous_rate is not None:
        predicted = target_rows * previous_rate
        result["predicted_load_s"] = predicted
        if predicted > 2 * args.build_budget:
            note = (
                f"skipped: the previous size loaded at {1 / previous_rate:,.0f} rows/s, so {target_rows:,} rows "
                f"would take ~{predicted / 60:.0f} min, over twice the --build-budget of {args.build_budget / 60:.0f} min"
            )
            log(f"{size_mb} MB: {note}")
            result["skipped"] = note
            return result

    root = Path(tempfile.mkdtemp(prefix=f"size-{size_mb}-", dir=tmp))
    bench = Bench(root, sidecar, doltgres)
    try:
        result["empty_disk_bytes"] = bench.disk_bytes()
        # Build.
        log(f"{size_mb} MB: loading {target_rows:,} rows in batches of {BATCH_ROWS:,}")
        t0 = time.monotonic()
        bench.psql("CREATE TABLE t (id bigint PRIMARY KEY, payload text)")
        next_id = 1
        journal_per_row = None
        journal_max = 0
        journal_shrank = []
        batches = 0
        last_journal = bench.journal_bytes()
        while next_id <= target_rows:
            elapsed = time.monotonic() - t0
            if elapsed > args.build_budget:
                note = (
                    f"load stopped at the --build-budget ({args.build_budget:.0f} s) after {next_id - 1:,} of "
                    f"{target_rows:,} rows"
                )
                log(f"{size_mb} MB: {note}")
                result["notes"].append(note)
                result["truncated"] = True
                break
            rows = min(BATCH_ROWS, target_rows - next_id + 1)
            before = bench.journal_bytes()
            bench.insert(next_id, rows)
            next_id += rows
            batches += 1
            after = bench.journal_bytes()
            if journal_per_row is None and after > before:
                journal_per_row = (after - before) / rows
            if after < last_journal:
                journal_shrank.append({"after_rows": next_id - 1, "from": last_journal, "to": after})
            last_journal = after
            journal_max = max(journal_max, after)
            if batches % 20 == 0:
                rate = (next_id - 1) / (time.monotonic() - t0)
                log(
                    f"{size_mb} MB: {next_id - 1:,}/{target_rows:,} rows, {rate:,.0f} rows/s, "
                    f"journal {after / MB:.0f} MB, data dir {bench.disk_bytes() / MB:.0f} MB"
                )
        loaded_rows = next_id - 1
        load_s = time.monotonic() - t0
        result["journal_bytes_before_gc"] = bench.journal_bytes()
        result["disk_bytes_before_gc"] = bench.disk_bytes()
        result["journal_max_bytes_during_load"] = journal_max
        result["journal_shrank_during_load"] = journal_shrank
        t1 = time.monotonic()
        bench.psql("SELECT dolt_commit('-Am', 'load')")
        commit_s = time.monotonic() - t1
        t2 = time.monotonic()
        if not args.no_gc:
            bench.psql("SELECT dolt_gc()", timeout=GC_TIMEOUT)
        gc_s = time.monotonic() - t2
        result.update(
            rows=loaded_rows,
            batches=batches,
            load_s=load_s,
            commit_s=commit_s,
            gc_s=gc_s,
            build_s=time.monotonic() - t0,
            load_rows_per_s=loaded_rows / load_s if load_s > 0 else None,
            disk_bytes=bench.disk_bytes(),
            journal_bytes_after_gc=bench.journal_bytes(),
            journal_bytes_per_row=journal_per_row,
        )
        log(
            f"{size_mb} MB: built {loaded_rows:,} rows in {result['build_s']:.1f}s "
            f"(load {load_s:.1f}s, commit {commit_s:.1f}s, gc {gc_s:.1f}s): "
            f"{result['disk_bytes'] / MB:.1f} MB on disk (journal before gc {result['journal_bytes_before_gc'] / MB:.1f} MB)"
        )

        # First copy: full.
        journal = bench.journal_bytes()
        record = bench.copy()
        verify = bench.wait_verified(record["cut"]["entry"])
        row = copy_row(bench, record, verify, change_mb="full", repeat=1, change_rows=0, journal_bytes_at_copy=journal)
        result["copies"].append(row)
        log(
            f"{size_mb} MB: full copy stall {row['stall_ms']} ms, window {row['duration_ms']} ms, "
            f"copied {row['bytes_copied'] / MB:.1f} MB, verify {verify.get('detail')}"
        )

        # Changes.
        per_row = journal_per_row or JOURNAL_BYTES_PER_ROW_GUESS
        for change_mb in args.changes:
            change_rows = int(round(change_mb * MB / per_row))
            for rep in range(1, args.repeat + 1):
                journal_before = bench.journal_bytes()
                t = time.monotonic()
                done = 0
                while done < change_rows:  # bounded: change_rows / BATCH_ROWS statements
                    rows = min(BATCH_ROWS, change_rows - done)
                    bench.insert(next_id, rows)
                    next_id += rows
                    done += rows
                change_s = time.monotonic() - t
                gc_s = None
                if args.gc_each_change and change_rows > 0:
                    t = time.monotonic()
                    bench.psql(f"SELECT dolt_commit('-Am', 'change {next_id - 1}')")
                    bench.psql("SELECT dolt_gc()", timeout=GC_TIMEOUT)
                    gc_s = time.monotonic() - t
                journal = bench.journal_bytes()
                record = bench.copy()
                verify = bench.wait_verified(record["cut"]["entry"])
                row = copy_row(
                    bench,
                    record,
                    verify,
                    change_mb=change_mb,
                    repeat=rep,
                    change_rows=change_rows,
                    change_s=change_s,
                    gc_s=gc_s,
                    journal_growth_bytes=journal - journal_before,
                    journal_bytes_at_copy=journal,
                )
                result["copies"].append(row)
                if verify.get("ok") is False:
                    result["notes"].append(f"copy {row['entry']} failed verification: {verify.get('detail')}")
                log(
                    f"{size_mb} MB, change {change_mb} MB #{rep}: stall {row['stall_ms']} ms, window {row['duration_ms']} ms, "
                    f"copied {row['bytes_copied'] / MB:.2f} MB, linked {row['bytes_linked'] / MB:.1f} MB, "
                    f"journal {journal / MB:.1f} MB"
                )
        result["journal_bytes_at_end"] = bench.journal_bytes()
        result["disk_bytes_at_end"] = bench.disk_bytes()
    finally:
        bench.stop()
        if args.keep_tmp:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return result


# ----------------------------------------------------------------------------------------------
# Summary and report


def spread(values: list[float]) -> dict | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def summarize(sizes: list[dict]) -> list[dict]:
    rows = []
    for size in sizes:
        if size.get("skipped"):
            continue
        groups: dict = {}
        for copy in size["copies"]:
            groups.setdefault(str(copy["change_mb"]), []).append(copy)
        for change, copies in groups.items():
            rows.append(
                {
                    "size_mb": size["size_mb"],
                    "disk_bytes": size.get("disk_bytes"),
                    "change_mb": copies[0]["change_mb"],
                    "n": len(copies),
                    "stall_ms": spread([c["stall_ms"] for c in copies]),
                    "duration_ms": spread([c["duration_ms"] for c in copies]),
                    "bytes_copied": spread([c["bytes_copied"] for c in copies]),
                    "bytes_linked": spread([c["bytes_linked"] for c in copies]),
                    "journal_bytes_at_copy": spread([c.get("journal_bytes_at_copy") for c in copies]),
                    "journal_growth_bytes": spread([c.get("journal_growth_bytes") for c in copies]),
                    "timings_ms": {
                        k: spread([c["timings"][k] * 1000 if c["timings"][k] is not None else None for c in copies])
                        for k in ("inventory", "detach", "stop", "copy", "start")
                    },
                    "doltgres_up_ms": spread([c.get("doltgres_up_ms") for c in copies]),
                    "verify_ok": all(c.get("verify_ok") for c in copies),
                }
            )
    return rows


def headline(summary: list[dict]) -> dict:
    """'A 1 GB database with 1 MB changed stalls within 2x a 10 MB database with 1 MB changed;
    the whole window for a small change is under 1 s.'"""

    def find(size, change):
        for row in summary:
            if row["size_mb"] == size and row["change_mb"] == change:
                return row
        return None

    out: dict = {"claim": "a 1 GB database with 1 MB changed stalls within 2x a 10 MB database with 1 MB changed; whole window for a small change under 1 s"}
    small = find(10, 1)
    sizes = sorted({row["size_mb"] for row in summary})
    largest = max(sizes) if sizes else None
    big = find(1000, 1) or (find(largest, 1) if largest and largest != 10 else None)
    if small and big:
        ratio = big["stall_ms"]["median"] / small["stall_ms"]["median"] if small["stall_ms"]["median"] else None
        out["stall_ratio"] = {
            "large_size_mb": big["size_mb"],
            "large_stall_ms_median": big["stall_ms"]["median"],
            "small_stall_ms_median": small["stall_ms"]["median"],
            "ratio": ratio,
            "held": ratio is not None and ratio <= 2.0,
            "exact_sizes": big["size_mb"] == 1000,
        }
    windows = [row for row in summary if row["change_mb"] == 1]
    if windows:
        worst = max(windows, key=lambda r: r["duration_ms"]["max"])
        out["small_change_window"] = {
            "per_size_median_ms": {str(r["size_mb"]): r["duration_ms"]["median"] for r in windows},
            "per_size_max_ms": {str(r["size_mb"]): r["duration_ms"]["max"] for r in windows},
            "worst_ms": worst["duration_ms"]["max"],
            "worst_size_mb": worst["size_mb"],
            "held_median": all(r["duration_ms"]["median"] < 1000 for r in windows),
            "held_every_copy": all(r["duration_ms"]["max"] < 1000 for r in windows),
        }
    return out


def fmt_mb(b) -> str:
    if b is None:
        return "–"
    v = b / MB
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 1 else f"{v:.2f}" if v >= 0.1 else f"{v:.3f}"


def fmt_spread(s: dict | None, unit=lambda v: f"{v:.0f}") -> str:
    if s is None:
        return "–"
    if s["n"] == 1 or s["min"] == s["max"]:
        return unit(s["median"])
    return f"{unit(s['median'])} ({unit(s['min'])}–{unit(s['max'])})"


def size_label(size_mb) -> str:
    return f"{size_mb / 1000:g} GB" if size_mb >= 1000 else f"{size_mb:g} MB"


def write_markdown(path: Path, data: dict) -> None:
    meta, sizes, summary, head = data["meta"], data["sizes"], data["summary"], data["headline"]
    m = meta["machine"]
    v = meta["versions"]
    L: list[str] = []
    L.append("# Stall of stop-and-copy windows by database size and change")
    L.append("")
    L.append(
        "> Figures are from a **shared 2-core machine** (other builds and tests ran beside the harness). "
        "Compare figures from one run only."
    )
    L.append("")
    L.append(f"- Run: {meta['started']} · `{meta['command']}` · {meta['total_s'] / 60:.1f} min")
    L.append(
        f"- Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, kernel {m['kernel']}, "
        f"load average {m['load_average']:.2f} before / {meta['load_average_after']:.2f} after"
    )
    L.append("- Versions: " + " · ".join(f"{k} `{val}`" for k, val in v.items()))
    gc_each = meta["args"].get("gc_each_change")
    L.append(
        "- Setup: the sidecar in managed mode (`run --control managed`, it runs Doltgres), `[backup.copy]` with the "
        "managed defaults (verified after each copy, last 10 kept), no automatic triggers. One table "
        "`t (id bigint primary key, payload text)`, 192 random hex characters a row, loaded 50,000 rows per "
        "`INSERT ... SELECT generate_series`, then `dolt_commit` + `dolt_gc()`. A change = that many MB of new "
        "rows"
        + (
            " (`INSERT`, then `dolt_commit` + `dolt_gc()` before the copy, outside the window: **--gc-each-change**)"
            if gc_each
            else " in Dolt's journal (`INSERT`, no commit, no gc)"
        )
        + ". Each copy: `doltgres-sidecar backup --action copy "
        "--json`; the harness waits for the copy's verification before going on."
    )
    L.append("")
    L.append("## Headline check")
    L.append("")
    L.append(f"Claim: *{head['claim']}*.")
    L.append("")
    sr = head.get("stall_ratio")
    if sr:
        verdict = "**held**" if sr["held"] else "**did not hold**"
        which = size_label(sr["large_size_mb"]) + ("" if sr["exact_sizes"] else " (largest size run; 1 GB was not)")
        L.append(
            f"- Stall, 1 MB changed: {which} {sr['large_stall_ms_median']:.0f} ms vs 10 MB "
            f"{sr['small_stall_ms_median']:.0f} ms (medians) = **{sr['ratio']:.2f}×** → {verdict} (limit 2×)."
        )
    else:
        L.append("- Stall ratio: not measured (needs sizes 10 and a larger one with change 1).")
    sw = head.get("small_change_window")
    if sw:
        per = ", ".join(
            f"{size_label(float(k))} {sw['per_size_median_ms'][k]:.0f} ms (max {sw['per_size_max_ms'][k]:.0f})"
            for k in sw["per_size_median_ms"]
        )
        verdict = (
            "**held** for every copy" if sw["held_every_copy"]
            else "**held** for the medians, not for every copy" if sw["held_median"]
            else "**did not hold**"
        )  # fmt: skip
        L.append(f"- Whole window (`duration_ms`), 1 MB changed: {per} → {verdict} (limit 1,000 ms).")
    L.append("")

    L.append("## Building each database")
    L.append("")
    L.append(
        "| size | rows | on disk after gc MB | journal before gc MB | load s | rows/s | commit s | gc s | build s | notes |"
    )
    L.append("|---|---|---|---|---|---|---|---|---|---|")
    for s in sizes:
        if s.get("skipped"):
            L.append(f"| {size_label(s['size_mb'])} | – | – | – | – | – | – | – | – | {s['skipped']} |")
            continue
        notes = "; ".join(s.get("notes", []))
        if s.get("journal_shrank_during_load"):
            notes = (notes + "; " if notes else "") + f"journal shrank {len(s['journal_shrank_during_load'])}× during the load (auto gc?)"
        L.append(
            f"| {size_label(s['size_mb'])} | {s['rows']:,} | {fmt_mb(s['disk_bytes'])} | {fmt_mb(s['journal_bytes_before_gc'])} | "
            f"{s['load_s']:.1f} | {s['load_rows_per_s']:,.0f} | {s['commit_s']:.1f} | {s['gc_s']:.1f} | **{s['build_s']:.1f}** | {notes} |"
        )
    L.append("")

    L.append("## Copy windows")
    L.append("")
    L.append(
        "Median (min–max) over the repeats; `full` is the first copy after the build (nothing to hard-link yet, one "
        "copy). *Journal at copy* is the size of Dolt's journal file when the window opened: changes accumulate "
        "there until the next `dolt_gc()`, and the journal is copied whole each time"
        + (" (here every change was collected into a table file before its copy)." if gc_each else ".")
    )
    L.append("")
    L.append(
        "| size | change MB | n | **stall ms** | window ms | copied MB | linked MB | journal at copy MB | "
        "inventory ms | detach ms | stop ms | copy ms | start ms | Doltgres up ms | verified |"
    )
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    ms = lambda v: f"{v:.0f}"  # noqa: E731
    ms1 = lambda v: f"{v:.1f}" if v < 10 else f"{v:.0f}"  # noqa: E731
    for r in summary:
        t = r["timings_ms"]
        L.append(
            f"| {size_label(r['size_mb'])} | {r['change_mb']} | {r['n']} | **{fmt_spread(r['stall_ms'], ms)}** | "
            f"{fmt_spread(r['duration_ms'], ms)} | {fmt_spread(r['bytes_copied'], fmt_mb)} | "
            f"{fmt_spread(r['bytes_linked'], fmt_mb)} | {fmt_spread(r['journal_bytes_at_copy'], fmt_mb)} | "
            f"{fmt_spread(t['inventory'], ms1)} | {fmt_spread(t['detach'], ms1)} | {fmt_spread(t['stop'], ms1)} | "
            f"{fmt_spread(t['copy'], ms1)} | {fmt_spread(t['start'], ms1)} | {fmt_spread(r.get('doltgres_up_ms'), ms)} | "
            f"{'yes' if r['verify_ok'] else 'NO'} |"
        )
    L.append("")
    L.append(
        "- *stall* = the sidecar's `stall_ms`: how long the gate was closed (the longest a client could be held). "
        "*window* = `duration_ms`, from the window's start to its end (drain included; the verification runs after "
        "it). inventory + detach + stop + copy + start are the cut's `timings`; inventory (HEAD and working-set "
        "hashes, `count(*)` of every table) runs with the gate closed, before the server stops."
    )
    L.append(
        "- *start* = from spawning Doltgres until the sidecar's login and `SELECT 1` succeed; the sidecar retries "
        "the login every 100 ms, so it comes in steps of about 100 ms. *Doltgres up* = from the sidecar logging "
        "the spawn to Doltgres logging `Server ready` (both in the sidecar's log): the server's own start-up time."
    )
    L.append(
        "- *copied* = bytes written into the new entry; *linked* = bytes hard-linked from the previous entry "
        "(unchanged table files)."
    )
    L.append("")
    if data.get("plot"):
        L.append(f"![stall by change and size]({data['plot']})")
        L.append("")
    elif data.get("plot_error"):
        L.append(f"No plot: {data['plot_error']}")
        L.append("")
    errors = data.get("errors") or []
    if errors:
        L.append("## Errors")
        L.append("")
        for e in errors:
            L.append(f"- {e}")
        L.append("")
    path.write_text("\n".join(L))


def make_plot(out_json: Path, out_png: Path) -> str | None:
    """Plots with matplotlib from this interpreter or the bench venv; returns an error or None."""
    script = HERE / "plot.py"
    python = None
    try:
        import matplotlib  # noqa: F401

        python = sys.executable
    except ImportError:
        try:
            sys.path.insert(0, str(REPO / "benches" / "pgbench"))
            import bench_venv  # benches/pgbench: ~/.cache/doltgres-sidecar/bench-venv with matplotlib

            python = str(bench_venv.ensure_venv())
        except Exception as e:
            return f"matplotlib is not importable and the bench venv could not be prepared: {e}"
    done = subprocess.run([python, str(script), str(out_json), str(out_png)], stderr=subprocess.PIPE, text=True, timeout=300)
    if done.returncode != 0:
        return f"plot.py failed: {done.stderr.strip()[-500:]}"
    return None


# ----------------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    started_wall = time.time()
    started = time.monotonic()
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, on_signal)
    atexit.register(Proc.stop_all)
    if shutil.which("psql") is None:
        raise SystemExit("psql is not on PATH")
    tmp = Path(tempfile.mkdtemp(prefix="doltgres-sidecar-copy-bench-"))
    errors: list[str] = []
    sizes: list[dict] = []
    meta: dict = {}
    try:
        meta["machine"] = machine()
        doltgres = doltgres_binary()
        sidecar = sidecar_binary(args, tmp)
        meta["versions"] = versions(sidecar, doltgres)
        log(f"sidecar {sidecar} ({meta['versions']['sidecar_commit']}), {meta['versions']['doltgres']}")
        rate = None  # load seconds per row of the previous size
        for size_mb in args.sizes:
            try:
                result = run_size(size_mb, args, tmp, sidecar, doltgres, rate)
            except Exception as e:
                log(f"{size_mb} MB failed: {e}")
                traceback.print_exc()
                errors.append(f"{size_label(size_mb)}: {e}")
                result = {"size_mb": size_mb, "skipped": f"failed: {e}", "copies": []}
            sizes.append(result)
            if result.get("rows") and result.get("build_s"):
                rate = result["build_s"] / result["rows"]
    finally:
        Proc.stop_all()
        if args.keep_tmp:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    summary = summarize(sizes)
    meta.update(
        started=datetime.datetime.fromtimestamp(started_wall, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        command="python3 benches/copy/run.py" + ("" if not argv else " " + shlex.join(argv)),
        total_s=time.monotonic() - started,
        load_average_after=os.getloadavg()[0],
        args={
            "sizes": args.sizes,
            "changes": args.changes,
            "repeat": args.repeat,
            "build_budget": args.build_budget,
            "gc_each_change": args.gc_each_change,
        },
        constants={
            "batch_rows": BATCH_ROWS,
            "payload": PAYLOAD,
            "gc_bytes_per_row": GC_BYTES_PER_ROW,
            "mb": MB,
        },
    )
    data = {"meta": meta, "sizes": sizes, "summary": summary, "headline": headline(summary), "errors": errors}
    args.out.mkdir(parents=True, exist_ok=True)
    out_json = args.out / f"{args.name}.json"
    out_png = args.out / f"{args.name}-stall.png"
    out_json.write_text(json.dumps(data, indent=1))
    if summary:
        err = make_plot(out_json, out_png)
        if err is None:
            data["plot"] = out_png.name
        else:
            data["plot_error"] = err
            log(f"no plot: {err}")
        out_json.write_text(json.dumps(data, indent=1))
    write_markdown(args.out / f"{args.name}.md", data)
    log(f"wrote {args.out / (args.name + '.md')} and {args.name}.json in {meta['total_s'] / 60:.1f} min")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
