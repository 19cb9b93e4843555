#!/usr/bin/env python3
"""The off-site repository end to end, next to rclone: upload, restore, recovery, dedup.

    python3 -m benches.offsite.run            # 10 MB, 100 MB, 1 GB databases
    python3 -m benches.offsite.run --quick    # 10 MB only, shorter load: a smoke run of ~1 minute after the builds

One SeaweedFS (`weed mini`, from scripts/ensure-seaweedfs.sh) on free loopback ports serves a
bucket. Every S3 client reaches it through a byte-counting TCP relay in this process (one relay
per client: the sidecar's uploads, the sidecar's restores, rclone), so the bytes each tool sent
and received are counted the same way, on the wire, HTTP headers and all. One 4 MB write warms
the bucket up first (SeaweedFS allocates its volumes at the first write).

For each database size (MB on disk after `dolt_gc()`), in a fresh temp dir:

1. Starts the sidecar in managed mode with `[backup.copy]` (no automatic triggers, no copy on
   shutdown, no verification by default) and `[backup.copy.offsite] url = "s3://BUCKET/sidecar/SIZE"`,
   endpoint and credentials from the AWS variables. Builds the database through psql as
   benches/copy/run.py does (one table of random-hex rows, `dolt_commit`, `dolt_gc()`).
2. Upload: takes a copy (`doltgres-sidecar backup --action copy --json`) and waits for the
   background upload to write `offsite.json` beside the entry; then `rclone copy ENTRY_DIR
   :s3:BUCKET/rclone/SIZE/first` of the same directory. Inserts ~1 MB of rows (Dolt's journal),
   takes a second copy and waits for its upload; then rclone copies the second entry's directory
   in full to a new prefix, and once more onto the first one's prefix (rclone's own incremental
   case: it skips files whose size and modification time match).
3. Restore, --repeat rounds (3), the two tools back to back in each: `doltgres-sidecar restore --from s3://BUCKET/sidecar/SIZE/latest --to DIR` against
   `rclone copy :s3:BUCKET/rclone/SIZE/second DIR` (and, to compare like with like, that copy
   turned into a server directory by `restore --catalog`). Recovery time: from the start of the
   sidecar's restore to the first answered query (`SELECT count(*) FROM t`, checked against the
   rows copied) through a fresh sidecar started in managed mode on the restored directory.
4. Dedup: creates two small tables and runs a pgbench script of small write transactions
   (an UPDATE of a random row, an INSERT of a new one) through the sidecar, takes --dedup-copies
   copies --dedup-every seconds apart under it, waits for every upload, and compares the entries'
   raw bytes (the sum of their manifests' file sizes) with what was sent; then rclone copies the
   same entries' directories one after another onto one prefix (its incremental use) for the
   bytes that costs.

Writes <out>/offsite.md and <out>/offsite.json (--quick: benches/results/offsite-quick/). Needs python3
(standard library), psql and pgbench on PATH (scripts/ensure-postgres.sh), cargo (unless
--sidecar-bin), Go for the first builds of Doltgres, SeaweedFS and rclone (cached in
~/.cache/doltgres-sidecar). Every process it starts is stopped and every temp dir removed on exit
(--keep-tmp keeps the dirs).
"""

from __future__ import annotations

import sys

sys.dont_write_bytecode = True

import argparse  # noqa: E402
import datetime  # noqa: E402
import atexit  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


# The copy benchmark's process handling, psql helpers and build constants.
from benches.copy.bench import Bench  # noqa: E402
from benches.copy.procs import Proc, on_signal  # noqa: E402
from benches.copy.report import fmt_spread, spread  # noqa: E402
from benches.copy.settings import BATCH_ROWS, DATABASE, GC_BYTES_PER_ROW, GC_TIMEOUT, JOURNAL_BYTES_PER_ROW_GUESS, MB, PASSWORD, USER, csv_numbers, log  # noqa: E402
from benches.copy.tools import doltgres_binary, machine, sidecar_binary  # noqa: E402
from benches.pgbench.procs import free_port  # noqa: E402


BUCKET = "backups"
REGION = "us-east-1"
ACCESS_KEY = f"bench{os.getpid()}"
SECRET_KEY = f"secret-{os.getpid():x}-offsite"

# Disk a size may need at its peak, per MB of database: the store holds the sidecar's copy and
# rclone's two full ones, the temp dir the server's files, the catalog, and during a restore its
# download and its copy in place (~8x), with a margin.
DISK_PER_MB = 10

READY_TIMEOUT = 120
UPLOAD_TIMEOUT = 3600
TOOL_TIMEOUT = 3600

# Fields of the sidecar's log line for a finished upload ("copy entry uploaded off-site").
MS_RE = re.compile(r"\bms=(\d+)")
ENTRY_RE = re.compile(r"\bentry=([^\s,}]+)")

# The write load of the dedup phase: one UPDATE of a random row of `w`, one INSERT into `h`.
LOAD_ROWS = 10_000
LOAD_SCRIPT = """\\set id random(1, {rows})
\\set hid random(1, 9000000000000000000)
UPDATE w SET n = n + 1, payload = md5(random()::text) WHERE id = :id;
INSERT INTO h (id, wid, payload) VALUES (:hid, :id, md5(random()::text));
"""


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="10 MB only, 5 dedup copies 2 s apart, results in results/offsite-quick/")
    p.add_argument("--sizes", type=csv_numbers, help="database sizes, MB on disk (default 10,100,1000)")
    p.add_argument("--change-mb", type=float, default=1.0, help="MB of new rows before the second copy (default 1)")
    p.add_argument("--dedup-copies", type=int, help="copies under load in the dedup phase (default 10; --quick 5)")
    p.add_argument("--dedup-every", type=float, help="seconds between them (default 3; --quick 2)")
    p.add_argument("--load-clients", type=int, default=4, help="pgbench clients of the write load (default 4)")
    p.add_argument("--load-rate", type=float, default=100, help="pgbench -R: transactions/s of the write load (default 100; 0: unthrottled)")
    p.add_argument("--repeat", type=int, help="rounds of restore / rclone copy back, alternating (default 3; --quick 1)")
    p.add_argument("--build-budget", type=float, default=900, help="seconds one database's load may take (default 900)")
    p.add_argument("--verify-after", action="store_true", help="backup.copy.verify_after = true (a scratch Doltgres beside each upload)")
    p.add_argument("--out", type=Path, help="where offsite.md/.json go (default benches/results, --quick benches/results/offsite-quick)")
    p.add_argument("--sidecar-bin", type=Path, help="use this sidecar binary instead of cargo build --release")
    p.add_argument("--sidecar-commit", help="the commit a --sidecar-bin was built from, for the report")
    p.add_argument("--rclone-bin", type=Path, help="use this rclone instead of scripts/ensure-rclone.sh")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dirs (server files, entries, logs)")
    args = p.parse_args(argv)
    if args.sizes is None:
        args.sizes = [10] if args.quick else [10, 100, 1000]
    if args.dedup_copies is None:
        args.dedup_copies = 5 if args.quick else 10
    if args.dedup_every is None:
        args.dedup_every = 2.0 if args.quick else 3.0
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.out is None:
        args.out = REPO / "benches" / "results" / ("offsite-quick" if args.quick else "")
    if not args.sizes or any(s <= 0 for s in args.sizes) or args.dedup_copies < 0 or args.change_mb <= 0 or args.repeat < 1:
        p.error("--sizes must be positive, --change-mb > 0, --dedup-copies >= 0, --repeat >= 1")
    return args


# ----------------------------------------------------------------------------------------------
# Tools


def script_path(name: str) -> Path:
    out = subprocess.run(["bash", str(REPO / "scripts" / name)], check=True, stdout=subprocess.PIPE, text=True)
    return Path(out.stdout.strip())


def first_line(argv: list[str], env: dict | None = None) -> str:
    try:
        out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30, env=env)
        return out.stdout.strip().splitlines()[0] if out.stdout.strip() else ""
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unknown ({e})"


def versions_head() -> str:
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0")
    return first_line(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], env=env)


def versions(sidecar: Path, doltgres: Path, weed: Path, rclone: Path, given: str | None) -> dict[str, str]:
    """The tools' versions. `given`: what --sidecar-commit says a --sidecar-bin was built from."""
    # Read-only git, without the optional index refresh (someone else may be using the work tree).
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0")
    commit = first_line(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], env=env)
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no", "src"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    ).stdout.strip()
    here = commit + ("+dirty" if dirty else "")
    return {
        "sidecar_commit": given or here,
        "sidecar_built": time.strftime("%Y-%m-%d %H:%M", time.localtime(sidecar.stat().st_mtime)),
        "doltgres": first_line([str(doltgres), "--version"]),
        "seaweedfs": first_line([str(weed), "version"]),
        "rclone": first_line([str(rclone), "version"]),
        "psql": first_line(["psql", "--version"]),
    }


# ----------------------------------------------------------------------------------------------
# The byte-counting relay


class Relay:
    """A TCP relay on a free loopback port to `upstream_port`, counting the bytes each way.

    One thread accepts; each connection gets two pumping threads. The counters are read between
    operations, when no request is in flight."""

    def __init__(self, name: str, upstream_port: int) -> None:
        self.name = name
        self.upstream_port = upstream_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.lock = threading.Lock()
        self.up = 0  # client -> server
        self.down = 0  # server -> client
        self.connections = 0
        self.closed = False
        threading.Thread(target=self._accept, name=f"relay-{name}", daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.connections += 1
            done = [0]
            for src, dst, up in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pump, args=(src, dst, up, done, (client, upstream)), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, up: bool, done: list, pair) -> None:
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        try:
            while True:
                n = src.recv_into(buf)
                if n == 0:
                    break
                dst.sendall(view[:n])
                with self.lock:
                    if up:
                        self.up += n
                    else:
                        self.down += n
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        with self.lock:
            done[0] += 1
            last = done[0] == 2
        if last:
            for s in pair:
                s.close()

    def snapshot(self) -> dict:
        with self.lock:
            return {"up": self.up, "down": self.down, "connections": self.connections}

    @staticmethod
    def delta(before: dict, after: dict) -> dict:
        return {k: after[k] - before[k] for k in before}

    def close(self) -> None:
        self.closed = True
        self.server.close()


# ----------------------------------------------------------------------------------------------
# SeaweedFS


class SeaweedFs:
    """`weed mini` in `root` with every port a free loopback one, the bucket made at start."""

    def __init__(self, root: Path, weed: Path) -> None:
        data = root / "data"
        data.mkdir(parents=True)
        self.s3_port = free_port()
        flags = [f"-s3.port={self.s3_port}"]
        for flag in (
            "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
            "filer.port.grpc", "s3.port.grpc", "admin.port", "admin.port.grpc",
        ):  # fmt: skip
            flags.append(f"-{flag}={free_port()}")
        argv = [
            str(weed), "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", *flags,
            "-admin.port.legacy=0", "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false",
            "-admin.ui=false", "-master.telemetry=false", f"-bucket={BUCKET}",
            f"-filer.localSocket={root / 'filer.sock'}", f"-s3.localSocket={root / 's3.sock'}",
        ]  # fmt: skip
        env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
        self.proc = Proc("seaweedfs", argv, root / "weed.log", env=env)
        self.root = root

    def data_bytes(self) -> int:
        return du_bytes(self.root / "data")


def s3_env(port: int) -> dict[str, str]:
    """The AWS variables the sidecar reads, pointing at a relay's port."""
    return dict(
        os.environ,
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_ALLOW_HTTP="true",
        AWS_REGION=REGION,
    )


def wait_store(sidecar: Path, weed: SeaweedFs, cwd: Path) -> None:
    """Until the S3 gateway answers a listing of the bucket (`backups list --repo`)."""
    deadline = time.monotonic() + READY_TIMEOUT
    env = s3_env(weed.s3_port)
    last = ""
    while time.monotonic() < deadline:
        if not weed.proc.alive():
            raise RuntimeError(f"SeaweedFS exited at start:\n{weed.proc.log_tail()}")
        out = subprocess.run(
            [str(sidecar), "backups", "list", "--repo", f"s3://{BUCKET}/probe"],
            env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60,
        )  # fmt: skip
        if out.returncode == 0:
            return
        last = out.stdout.strip()[-300:]
        time.sleep(0.5)
    raise RuntimeError(f"SeaweedFS did not serve bucket {BUCKET} within {READY_TIMEOUT}s: {last}\n{weed.proc.log_tail()}")


# ----------------------------------------------------------------------------------------------
# rclone


class Rclone:
    """rclone configured for the store by environment only (an `:s3:` remote, RCLONE_S3_*)."""

    def __init__(self, binary: Path, relay: Relay, root: Path) -> None:
        self.binary = binary
        self.relay = relay
        conf = root / "rclone.conf"
        conf.write_text("")
        (root / "rclone-cache").mkdir(exist_ok=True)
        self.env = dict(
            os.environ,
            RCLONE_CONFIG=str(conf),
            RCLONE_CACHE_DIR=str(root / "rclone-cache"),
            RCLONE_S3_PROVIDER="Other",
            RCLONE_S3_ENV_AUTH="false",
            RCLONE_S3_ENDPOINT=f"http://127.0.0.1:{relay.port}",
            RCLONE_S3_ACCESS_KEY_ID=ACCESS_KEY,
            RCLONE_S3_SECRET_ACCESS_KEY=SECRET_KEY,
            RCLONE_S3_REGION=REGION,
            RCLONE_S3_NO_CHECK_BUCKET="true",
        )

    def copy(self, src: str, dst: str) -> dict:
        """`rclone copy SRC DST` with rclone's defaults (4 transfers, 8 checkers); its own final
        stats (JSON log; with an interval longer than any run it prints them once, at the end) and the
        relay's byte counts."""
        argv = [str(self.binary), "copy", src, dst, "--use-json-log", "-v", "--stats", "1h"]
        before = self.relay.snapshot()
        cpu0 = children_cpu_s()
        started = time.monotonic()
        out = subprocess.run(argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=TOOL_TIMEOUT)
        wall = time.monotonic() - started
        cpu = children_cpu_s() - cpu0
        wire = Relay.delta(before, self.relay.snapshot())
        if out.returncode != 0:
            raise RuntimeError(f"rclone copy {src} {dst}: exit {out.returncode}: {out.stderr.strip()[-600:]}")
        stats = None
        for line in (out.stderr + out.stdout).splitlines():
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict) and isinstance(obj.get("stats"), dict):
                stats = obj["stats"]
        return {
            "wall_s": wall,
            "cpu_s": cpu,
            "wire_up": wire["up"],
            "wire_down": wire["down"],
            "connections": wire["connections"],
            "rclone_bytes": stats.get("bytes") if stats else None,
            "rclone_transfers": stats.get("transfers") if stats else None,
            "rclone_checks": stats.get("checks") if stats else None,
        }


# ----------------------------------------------------------------------------------------------
# The sidecar with an off-site repository


class OffsiteSidecar(Bench):
    """benches/copy/run.py's Bench (psql, copies, sizes on disk) with its own config: an off-site
    repository through a relay, a larger catalog, verification optional."""

    def __init__(self, root: Path, sidecar: Path, doltgres: Path, url: str | None, env: dict, verify_after: bool,
                 server_dir: Path | None = None) -> None:  # fmt: skip
        self.root = root
        self.sidecar_bin = sidecar
        self.server_dir = server_dir or root / "doltgres"
        self.catalog = root / "backups"
        self.url = url
        self.port = free_port()
        self.admin_port = free_port()
        self.admin_url = f"http://127.0.0.1:{self.admin_port}"
        config = root / "sidecar.toml"
        text = (
            "# Copies only when the harness asks; each one uploaded to the off-site repository.\n"
            "[backup]\n"
            "on_shutdown = false\n"
            'action_timeout = "60m"\n'
            "[backup.copy]\n"
            f"catalog = {json.dumps(str(self.catalog))}\n"
            "keep_last = 50\n"
            f"verify_after = {'true' if verify_after else 'false'}\n"
        )
        if url:
            text += f"[backup.copy.offsite]\nurl = {json.dumps(url)}\n"
        config.write_text(text)
        argv = [
            str(sidecar), "run", "--config", str(config), "--control", "managed",
            "--doltgres", str(doltgres), "--server-dir", str(self.server_dir),
            "--listen", f"127.0.0.1:{self.port}", "--admin-listen", f"127.0.0.1:{self.admin_port}",
        ]  # fmt: skip
        env = dict(env, DOLTGRES_PASSWORD=PASSWORD, RUST_LOG=os.environ.get("RUST_LOG", "info"))
        self.proc = Proc(f"sidecar {root.name}", argv, root / "sidecar.log", env=env)
        self.doltgres_port = None

    def entry_dir(self, entry: str) -> Path:
        return self.catalog / entry

    def wait_uploaded(self, entry: str) -> dict:
        path = self.entry_dir(entry) / "offsite.json"
        started = time.monotonic()
        while not path.exists():
            if not self.proc.alive():
                raise RuntimeError(f"the sidecar exited:\n{self.proc.log_tail()}")
            if time.monotonic() - started > UPLOAD_TIMEOUT:
                raise RuntimeError(f"no offsite.json for {entry} after {UPLOAD_TIMEOUT}s:\n{self.proc.log_tail()}")
            time.sleep(0.05)
        for _ in range(50):
            try:
                return json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                time.sleep(0.02)
        raise RuntimeError(f"unreadable {path}")

    def upload_log(self, entry: str) -> dict:
        """The sidecar's "copy entry uploaded off-site" line for `entry`: its ms and counts."""
        try:
            text = self.proc.log_path.read_text(errors="replace")
        except OSError:
            return {}
        for line in text.splitlines():
            if "copy entry uploaded off-site" not in line:
                continue
            m = ENTRY_RE.search(line)
            if not m or m.group(1).strip('"') != entry:
                continue
            ms = MS_RE.search(line)
            return {"ms": int(ms.group(1)) if ms else None, "line": line.strip()[-400:]}
        return {}

    def warnings(self) -> list[str]:
        try:
            text = self.proc.log_path.read_text(errors="replace")
        except OSError:
            return []
        return [line.strip()[-300:] for line in text.splitlines() if " WARN " in line or " ERROR " in line]


CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float | None:
    """utime + stime of a process, seconds (its threads included, its children not)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        fields = text[text.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, ValueError, IndexError):
        return None


def children_cpu_s() -> float:
    """CPU seconds of this process's reaped children so far."""
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def du_bytes(path: Path) -> int:
    """Apparent size of the files under `path`, each inode once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def manifest_bytes(entry_dir: Path) -> tuple[int, int]:
    """(sum of the manifest's file sizes, files) of a catalog entry."""
    manifest = json.loads((entry_dir / "manifest.json").read_text())
    files = manifest.get("files", [])
    return sum(int(f.get("size", 0)) for f in files), len(files)


# ----------------------------------------------------------------------------------------------
# Steps


def copy_and_upload(side: OffsiteSidecar, relay: Relay, label: str) -> dict:
    """One copy window, then its background upload to the end; what both did."""
    before = relay.snapshot()
    record = side.copy()
    ended = time.time()  # the `backup` command returned: the window is over
    cpu0 = proc_cpu_s(side.proc.pid)
    cut = record.get("cut") or {}
    entry = cut["entry"]
    uploaded = side.wait_uploaded(entry)
    seen = time.time()
    cpu1 = proc_cpu_s(side.proc.pid)
    wire = Relay.delta(before, relay.snapshot())
    raw, files = manifest_bytes(side.entry_dir(entry))
    logged = side.upload_log(entry)
    row = {
        "label": label,
        "entry": entry,
        "stall_ms": record.get("stall_ms"),
        "window_ms": record.get("duration_ms"),
        "bytes_copied": cut.get("bytes_copied"),
        "bytes_linked": cut.get("bytes_linked"),
        "files": files,
        "entry_raw_bytes": raw,
        "entry_dir_bytes": du_bytes(side.entry_dir(entry)),
        "journal_bytes": side.journal_bytes(),
        "upload_ms_logged": logged.get("ms"),
        # From the copy command's return to the upload's completion (offsite.json's at_unix).
        "upload_after_window_s": uploaded.get("at_unix", seen) - ended,
        # The sidecar process's CPU from the copy command's return to the upload's end.
        "upload_cpu_s": cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None,
        "offsite": uploaded,
        "wire_up": wire["up"],
        "wire_down": wire["down"],
        "connections": wire["connections"],
    }
    log(
        f"  {label}: entry {entry} {raw / MB:.1f} MB raw; upload {row['upload_ms_logged']} ms (log), "
        f"{row['upload_after_window_s']:.2f} s after the window; sent {uploaded.get('sent')}/{uploaded.get('objects')} "
        f"objects, {uploaded.get('bytes_sent', 0) / MB:.2f} MB compressed, wire {wire['up'] / MB:.2f} MB up"
    )
    return row


def build(side: OffsiteSidecar, size_mb: float, budget: float, previous_rate: float | None) -> dict:
    """The copy benchmark's database: random-hex rows to ~size_mb on disk, committed and collected."""
    target_rows = max(BATCH_ROWS // 10, int(size_mb * MB / GC_BYTES_PER_ROW))
    result: dict = {"target_rows": target_rows, "notes": []}
    log(f"{size_mb} MB: loading {target_rows:,} rows")
    t0 = time.monotonic()
    side.psql("CREATE TABLE t (id bigint PRIMARY KEY, payload text)")
    next_id = 1
    journal_per_row = None
    while next_id <= target_rows:
        if time.monotonic() - t0 > budget:
            note = f"load stopped at the --build-budget ({budget:.0f} s) after {next_id - 1:,} of {target_rows:,} rows"
            log(f"{size_mb} MB: {note}")
            result["notes"].append(note)
            break
        rows = min(BATCH_ROWS, target_rows - next_id + 1)
        before = side.journal_bytes()
        side.insert(next_id, rows)
        next_id += rows
        after = side.journal_bytes()
        if journal_per_row is None and after > before:
            journal_per_row = (after - before) / rows
    load_s = time.monotonic() - t0
    side.psql("SELECT dolt_commit('-Am', 'load')")
    t1 = time.monotonic()
    side.psql("SELECT dolt_gc()", timeout=GC_TIMEOUT)
    gc_s = time.monotonic() - t1
    result.update(
        rows=next_id - 1,
        next_id=next_id,
        load_s=load_s,
        gc_s=gc_s,
        build_s=time.monotonic() - t0,
        disk_bytes=side.disk_bytes(),
        journal_bytes_per_row=journal_per_row,
    )
    log(f"{size_mb} MB: built {result['rows']:,} rows in {result['build_s']:.1f} s, {result['disk_bytes'] / MB:.1f} MB on disk")
    return result


def wait_query(port: int, sql: str, deadline_s: float, proc: Proc) -> tuple[str, float]:
    """Polls `sql` through a sidecar until it answers; (answer, seconds waited)."""
    started = time.monotonic()
    argv = ["psql", "-X", "-q", "-A", "-t", "-h", "127.0.0.1", "-p", str(port), "-U", USER, "-d", DATABASE, "-c", sql]
    env = dict(os.environ, PGPASSWORD=PASSWORD, PGCONNECT_TIMEOUT="5")
    while True:
        out = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
        if out.returncode == 0:
            return out.stdout.strip(), time.monotonic() - started
        if not proc.alive():
            raise RuntimeError(f"the recovered sidecar exited:\n{proc.log_tail()}")
        if time.monotonic() - started > deadline_s:
            raise RuntimeError(f"no answer after {deadline_s:.0f}s: {out.stderr.strip()[-300:]}")
        time.sleep(0.02)


def sidecar_restore(sidecar: Path, relay: Relay, url: str, target: Path, cwd: Path) -> dict:
    """`doltgres-sidecar restore --from URL --to TARGET`, timed and counted."""
    before = relay.snapshot()
    cpu0 = children_cpu_s()
    t0 = time.monotonic()
    done = subprocess.run(
        [str(sidecar), "restore", "--from", url, "--to", str(target)],
        env=s3_env(relay.port), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=TOOL_TIMEOUT,
    )  # fmt: skip
    wall = time.monotonic() - t0
    cpu = children_cpu_s() - cpu0
    wire = Relay.delta(before, relay.snapshot())
    if done.returncode != 0:
        raise RuntimeError(f"restore from {url} failed: {done.stderr.strip()[-600:]}")
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "wire_down": wire["down"],
        "wire_up": wire["up"],
        "connections": wire["connections"],
        "message": done.stdout.strip()[-300:] or done.stderr.strip()[-300:],
        "restored_bytes": du_bytes(target),
    }


def restore_phase(root: Path, sidecar: Path, doltgres: Path, relays: dict, rclone: Rclone, repo_url: str,
                  rclone_second: str, entry_id: str, expect_rows: int, repeat: int) -> dict:  # fmt: skip
    """`repeat` rounds of: the sidecar's restore, then rclone's copy back and its local restore.
    The first round's restored directory is started for the recovery time."""
    out: dict = {"sidecar_restore": [], "rclone_copy_back": [], "rclone_local_restore": []}
    for i in range(repeat):
        target = root / f"restored-{i}"
        ours = sidecar_restore(sidecar, relays["restore"], f"{repo_url}/latest", target, root)
        out["sidecar_restore"].append(ours)
        log(f"  restore #{i + 1} from {repo_url}/latest: {ours['wall_s']:.2f} s, {ours['wire_down'] / MB:.2f} MB down")
        if i == 0:
            # Recovery: a fresh sidecar (managed, no off-site) on the restored directory.
            rec_root = root / "recovered"
            rec_root.mkdir()
            t1 = time.monotonic()
            fresh = OffsiteSidecar(rec_root, sidecar, doltgres, None, dict(os.environ), False, server_dir=target)
            try:
                answer, _ = wait_query(fresh.port, "SELECT count(*) FROM t", READY_TIMEOUT, fresh.proc)
                start_s = time.monotonic() - t1
            finally:
                fresh.stop()
            out["recovery"] = {
                "restore_s": ours["wall_s"],
                "start_to_query_s": start_s,
                "total_s": ours["wall_s"] + start_s,
                "rows": int(answer) if answer.isdigit() else answer,
                "rows_expected": expect_rows,
                "rows_match": answer.isdigit() and int(answer) == expect_rows,
            }
            log(
                f"  recovery: restore {ours['wall_s']:.2f} s + start to first answer {start_s:.2f} s; "
                f"rows {answer} (expected {expect_rows})"
            )
            shutil.rmtree(rec_root, ignore_errors=True)
        shutil.rmtree(target, ignore_errors=True)

        # rclone back: the full copy of the second entry, into a catalog laid out as the sidecar's.
        rcat = root / f"rclone-catalog-{i}"
        rcat.mkdir(mode=0o700)
        back = rcat / entry_id
        rc = rclone.copy(rclone_second, str(back))
        rc["restored_bytes"] = du_bytes(back)
        out["rclone_copy_back"].append(rc)
        log(f"  rclone copy back #{i + 1}: {rc['wall_s']:.2f} s, {rc['wire_down'] / MB:.2f} MB down")
        # ... turned into a server directory by the sidecar's local restore (checksums checked).
        t2 = time.monotonic()
        local = subprocess.run(
            [str(sidecar), "restore", "--catalog", str(rcat), "--doltgres", str(doltgres), "--from", entry_id,
             "--to", str(root / "rclone-restored")],
            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=TOOL_TIMEOUT,
        )  # fmt: skip
        local_s = time.monotonic() - t2
        out["rclone_local_restore"].append(
            {"wall_s": local_s, "ok": local.returncode == 0, "message": (local.stdout.strip() or local.stderr.strip())[-400:]}
        )
        log(f"  local restore of rclone's copy #{i + 1}: {local_s:.2f} s, exit {local.returncode}")
        for d in (rcat, root / "rclone-restored"):
            shutil.rmtree(d, ignore_errors=True)
    med = lambda rows: spread([r["wall_s"] for r in rows])  # noqa: E731
    out["summary"] = {
        "sidecar_restore_s": med(out["sidecar_restore"]),
        "rclone_copy_back_s": med(out["rclone_copy_back"]),
        "rclone_local_restore_s": med([r for r in out["rclone_local_restore"] if r["ok"]]),
        "ratio_per_round": [a["wall_s"] / b["wall_s"] for a, b in zip(out["sidecar_restore"], out["rclone_copy_back"]) if b["wall_s"]],
    }
    return out


def dedup_phase(root: Path, side: OffsiteSidecar, relay: Relay, args: argparse.Namespace, rclone: Rclone,
                rclone_prefix: str) -> dict:  # fmt: skip
    out: dict = {"copies": [], "load": {}}
    side.psql("CREATE TABLE w (id bigint PRIMARY KEY, n bigint, payload text)")
    side.psql(f"INSERT INTO w SELECT g.i, 0, md5(random()::text) FROM generate_series(1, {LOAD_ROWS}) AS g(i)")
    side.psql("CREATE TABLE h (id bigint PRIMARY KEY, wid bigint, payload text)")
    script = root / "load.sql"
    script.write_text(LOAD_SCRIPT.format(rows=LOAD_ROWS))
    warmup = 3.0
    duration = int(warmup + args.dedup_copies * args.dedup_every + 3)
    argv = [
        "pgbench", "-n", "--failures-detailed", "-M", "simple", "-c", str(args.load_clients), "-j", str(min(2, args.load_clients)),
        "-T", str(duration), "-f", str(script), "-h", "127.0.0.1", "-p", str(side.port), "-U", USER, DATABASE,
    ]  # fmt: skip
    if args.load_rate > 0:
        argv[1:1] = ["-R", str(args.load_rate)]
    env = dict(os.environ, PGPASSWORD=PASSWORD)
    load = Proc("pgbench", argv, root / "pgbench.log", env=env)
    journal_start = side.journal_bytes()
    log(f"  dedup: write load ({args.load_clients} clients, {'unthrottled' if args.load_rate <= 0 else f'{args.load_rate:g} tps'}), "
        f"{args.dedup_copies} copies {args.dedup_every:g} s apart")  # fmt: skip
    time.sleep(warmup)
    before = relay.snapshot()
    entries = []
    for i in range(args.dedup_copies):
        t = time.monotonic()
        record = side.copy()
        returned = time.time()
        cut = record.get("cut") or {}
        entries.append(
            {
                "entry": cut["entry"],
                "copy_returned_unix": returned,
                "stall_ms": record.get("stall_ms"),
                "bytes_copied": cut.get("bytes_copied"),
                "bytes_linked": cut.get("bytes_linked"),
                "journal_bytes": side.journal_bytes(),
            }
        )
        rest = args.dedup_every - (time.monotonic() - t)
        if rest > 0 and i + 1 < args.dedup_copies:
            time.sleep(rest)
    # The load runs to its -T; uploads go on meanwhile.
    try:
        load.popen.wait(timeout=duration + 120)
    except subprocess.TimeoutExpired:
        load.stop()
    load_text = load.log_path.read_text(errors="replace")
    out["load"] = {
        "exit": load.popen.returncode,
        "duration_s": duration,
        "transactions": _pgbench_number(load_text, r"number of transactions actually processed: (\d+)"),
        "failed": _pgbench_number(load_text, r"number of failed transactions: (\d+)"),
        "serialization_failures": _pgbench_number(load_text, r"number of serialization failures: (\d+)"),
        "deadlock_failures": _pgbench_number(load_text, r"number of deadlock failures: (\d+)"),
        "tps": _pgbench_number(load_text, r"tps = ([\d.]+)", float),
        "errors": [line for line in load_text.splitlines() if "error" in line.lower() or "abort" in line.lower()][:5],
    }
    if load in Proc.running:
        Proc.running.remove(load)
    for e in entries:
        uploaded = side.wait_uploaded(e["entry"])
        raw, files = manifest_bytes(side.entry_dir(e["entry"]))
        e.update(
            files=files,
            entry_raw_bytes=raw,
            offsite=uploaded,
            upload_ms_logged=side.upload_log(e["entry"]).get("ms"),
        )
    wire = Relay.delta(before, relay.snapshot())
    # From the last copy command's return to the end of the last upload (its `at_unix`).
    out["last_upload_after_last_copy_s"] = max(e["offsite"].get("at_unix", 0) for e in entries) - entries[-1]["copy_returned_unix"]
    # rclone's incremental use on the same series, after the load: each entry's directory copied
    # in turn onto the prefix that holds the first two entries (files whose size and
    # modification time match are skipped; unchanged table files and journal segments are hard
    # links in the catalog, so they match). The prefix ends up a mirror of the last entry plus
    # every file of the ones before, not a set of entries to choose from.
    series = []
    for e in entries:
        rc = rclone.copy(str(side.entry_dir(e["entry"])), rclone_prefix)
        series.append({k: rc[k] for k in ("wall_s", "cpu_s", "wire_up", "rclone_bytes", "rclone_transfers")})
        e["rclone_onto_prefix"] = series[-1]
    out["rclone_series"] = {
        "prefix": rclone_prefix,
        "wire_up": sum(r["wire_up"] for r in series),
        "wall_s": sum(r["wall_s"] for r in series),
        "bytes": sum(r["rclone_bytes"] or 0 for r in series),
    }
    log(
        f"  rclone, the same entries one after another onto {rclone_prefix}: "
        f"{out['rclone_series']['wire_up'] / MB:.2f} MB up in {out['rclone_series']['wall_s']:.1f} s"
    )
    out["copies"] = entries
    out["journal_growth_bytes"] = side.journal_bytes() - journal_start
    raw_total = sum(e["entry_raw_bytes"] for e in entries)
    sent_raw = sum(e["offsite"].get("bytes_sent_raw", 0) for e in entries)
    sent = sum(e["offsite"].get("bytes_sent", 0) for e in entries)
    out["totals"] = {
        "entries": len(entries),
        "raw_bytes": raw_total,
        "sent_raw_bytes": sent_raw,
        "sent_bytes": sent,
        "deduplicated_bytes": sum(e["offsite"].get("bytes_deduplicated", 0) for e in entries),
        "wire_up": wire["up"],
        "wire_down": wire["down"],
        "connections": wire["connections"],
        "ratio_raw_to_sent_raw": raw_total / sent_raw if sent_raw else None,
        "ratio_raw_to_sent": raw_total / sent if sent else None,
        "ratio_raw_to_wire": raw_total / wire["up"] if wire["up"] else None,
    }
    t = out["totals"]
    log(
        f"  dedup: {len(entries)} entries, {raw_total / MB:.1f} MB raw, sent {sent_raw / MB:.2f} MB raw / {sent / MB:.2f} MB "
        f"compressed, wire {wire['up'] / MB:.2f} MB up: {t['ratio_raw_to_wire'] or 0:.1f}x; load {out['load']}"
    )
    return out


def list_repository(sidecar: Path, relay: Relay, repo_url: str, cwd: Path) -> dict:
    """`backups list --repo`: how many entries the repository lists, and how long listing took."""
    t = time.monotonic()
    out = subprocess.run(
        [str(sidecar), "backups", "list", "--repo", repo_url],
        env=s3_env(relay.port), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600,
    )  # fmt: skip
    wall = time.monotonic() - t
    first = out.stdout.strip().splitlines()[0] if out.stdout.strip() else out.stderr.strip()[-300:]
    m = re.match(r"(\d+) entries in", first)
    listed = {"wall_s": wall, "exit": out.returncode, "entries": int(m.group(1)) if m else None, "first_line": first}
    log(f"  backups list --repo {repo_url}: {listed['entries']} entries in {wall:.2f} s")
    return listed


def _pgbench_number(text: str, pattern: str, kind=int):
    m = re.search(pattern, text)
    return kind(m.group(1)) if m else None


# ----------------------------------------------------------------------------------------------
# One size


def run_size(size_mb: float, args: argparse.Namespace, tmp: Path, tools: dict, relays: dict, rclone: Rclone,
             previous_rate: float | None) -> dict:  # fmt: skip
    label = f"{size_mb:g}mb"
    result: dict = {"size_mb": size_mb, "notes": []}
    target_rows = max(BATCH_ROWS // 10, int(size_mb * MB / GC_BYTES_PER_ROW))
    if previous_rate is not None and target_rows * previous_rate > 2 * args.build_budget:
        note = (
            f"skipped: at the previous size's rate the build would take ~{target_rows * previous_rate / 60:.0f} min, "
            f"over twice the --build-budget of {args.build_budget / 60:.0f} min"
        )
        log(f"{size_mb} MB: {note}")
        result["skipped"] = note
        return result
    # Disk: the journal before gc (~1.9x the size), the store (the sidecar's copy and rclone's
    # three), the catalog, and a restore's download and its copy in place, all in the temp dir.
    need = int(DISK_PER_MB * size_mb * MB)
    free = shutil.disk_usage(tmp).free
    if free < need:
        note = f"skipped: needs ~{need / 1e9:.1f} GB free in {tmp.parent}, {free / 1e9:.1f} GB free"
        log(f"{size_mb} MB: {note}")
        result["skipped"] = note
        return result
    root = Path(tempfile.mkdtemp(prefix=f"size-{label}-", dir=tmp))
    repo_url = f"s3://{BUCKET}/sidecar/{label}"
    side = OffsiteSidecar(root, tools["sidecar"], tools["doltgres"], repo_url, s3_env(relays["sidecar"].port), args.verify_after)
    try:
        side.wait_ready()
        result["build"] = build(side, size_mb, args.build_budget, previous_rate)
        next_id = result["build"]["next_id"]
        # 1. Upload: first entry, then after ~1 MB of change the second, each against rclone.
        first = copy_and_upload(side, relays["sidecar"], "first")
        rc_first = rclone.copy(str(side.entry_dir(first["entry"])), f":s3:{BUCKET}/rclone/{label}/first")
        log(f"  rclone first: {rc_first['wall_s']:.2f} s, wire {rc_first['wire_up'] / MB:.2f} MB up")
        per_row = result["build"].get("journal_bytes_per_row") or JOURNAL_BYTES_PER_ROW_GUESS
        change_rows = max(1, int(round(args.change_mb * MB / per_row)))
        journal_before = side.journal_bytes()
        side.insert(next_id, change_rows)
        next_id += change_rows
        result["change"] = {"rows": change_rows, "journal_growth_bytes": side.journal_bytes() - journal_before}
        second = copy_and_upload(side, relays["sidecar"], "second")
        rc_second = rclone.copy(str(side.entry_dir(second["entry"])), f":s3:{BUCKET}/rclone/{label}/second")
        log(f"  rclone second (full): {rc_second['wall_s']:.2f} s, wire {rc_second['wire_up'] / MB:.2f} MB up")
        rc_incr = rclone.copy(str(side.entry_dir(second["entry"])), f":s3:{BUCKET}/rclone/{label}/first")
        log(f"  rclone second onto first: {rc_incr['wall_s']:.2f} s, wire {rc_incr['wire_up'] / MB:.2f} MB up")
        result["upload"] = {
            "first": first,
            "second": second,
            "rclone_first": rc_first,
            "rclone_second_full": rc_second,
            "rclone_second_onto_first": rc_incr,
        }
        # 2. Restore and recovery.
        result["restore"] = restore_phase(
            root, tools["sidecar"], tools["doltgres"], relays, rclone, repo_url,
            f":s3:{BUCKET}/rclone/{label}/second", second["entry"], next_id - 1, args.repeat,
        )  # fmt: skip
        # 3. Dedup under a write load.
        if args.dedup_copies > 0:
            result["dedup"] = dedup_phase(root, side, relays["sidecar"], args, rclone, f":s3:{BUCKET}/rclone/{label}/first")
        result["listing"] = list_repository(tools["sidecar"], relays["restore"], repo_url, root)
        result["warnings"] = side.warnings()[-20:]
    finally:
        side.stop()
        if args.keep_tmp:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return result


# ----------------------------------------------------------------------------------------------
# Report


def fmt_mb(b) -> str:
    if b is None:
        return "–"
    v = b / MB
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}" if v >= 1 else f"{v:.2f}" if v >= 0.1 else f"{v:.3f}"


def fmt_s(s) -> str:
    if s is None:
        return "–"
    return f"{s:.2f}" if s < 10 else f"{s:.1f}"


def ratio(a, b, digits=2) -> str:
    if a is None or b is None or b == 0:
        return "–"
    r = a / b
    if 0 < r < 0.1:
        return f"{r:.2g}×"
    return f"{r:.{digits}f}×"


def size_label(size_mb) -> str:
    return f"{size_mb / 1000:g} GB" if size_mb >= 1000 else f"{size_mb:g} MB"


def goals(sizes: list[dict]) -> list[dict]:
    out = []
    for s in sizes:
        up = s.get("upload")
        if up:
            ours = up["first"]["upload_ms_logged"]
            theirs = up["rclone_first"]["wall_s"]
            out.append({
                "size_mb": s["size_mb"], "goal": "first entry: upload never slower than rclone copy",
                "value": (ours / 1000) / theirs if ours is not None and theirs else None, "limit": 1.0, "kind": "max",
            })  # fmt: skip
            out.append({
                "size_mb": s["size_mb"], "goal": "second entry: rclone's full copy sends >= 10x our bytes (wire)",
                "value": up["rclone_second_full"]["wire_up"] / up["second"]["wire_up"] if up["second"]["wire_up"] else None,
                "limit": 10.0, "kind": "min",
            })  # fmt: skip
        rs = s.get("restore")
        if rs:
            per_round = rs["summary"]["ratio_per_round"]
            out.append({
                "size_mb": s["size_mb"], "goal": "restore within 1.2x rclone's copy back (median of rounds)",
                "value": statistics.median(per_round) if per_round else None, "limit": 1.2, "kind": "max",
            })  # fmt: skip
    for g in out:
        v = g["value"]
        g["met"] = v is not None and (v <= g["limit"] if g["kind"] == "max" else v >= g["limit"])
    return out


def write_markdown(path: Path, data: dict) -> None:
    meta, sizes = data["meta"], data["sizes"]
    m, v = meta["machine"], meta["versions"]
    L: list[str] = []
    L.append("# Off-site repository against rclone: upload, restore, recovery, dedup")
    L.append("")
    L.append(
        "> Figures are from a **shared, busy 2-core machine**: another engineer built and tested the project "
        "beside this run, and SeaweedFS, the relay, the sidecar, Doltgres and the tool under test all share the "
        "two cores. Compare figures from one run only."
    )
    L.append("")
    L.append(f"- Run: {meta['started']} · `{meta['command']}` · {meta['total_s'] / 60:.1f} min")
    L.append(
        f"- Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, kernel {m['kernel']}, "
        f"load average {m['load_average']:.2f} before / {meta['load_average_after']:.2f} after"
    )
    L.append("- Versions: " + " · ".join(f"{k} `{val}`" for k, val in v.items()))
    L.append(
        "- Setup: SeaweedFS `weed mini` on loopback; every S3 client reaches it through a byte-counting TCP relay "
        "in the harness (one per client), so *wire* bytes are counted the same way for both tools, HTTP included "
        "(up = client to store). The sidecar runs in managed mode with `[backup.copy]` (no triggers, "
        f"verify_after = {str(meta['args']['verify_after']).lower()}) and `[backup.copy.offsite]`; rclone "
        "runs with its defaults (4 transfers, 8 checkers) on an `:s3:` remote configured by `RCLONE_S3_*` "
        "variables. Database as in benches/copy: one table of random-hex rows, `dolt_commit` + `dolt_gc()`; "
        f"the change before the second entry is ~{meta['args']['change_mb']:g} MB of new rows in Dolt's journal."
    )
    L.append("")

    L.append("## Goals")
    L.append("")
    L.append("| size | goal | measured | limit | met |")
    L.append("|---|---|---|---|---|")
    for g in data["goals"]:
        val = f"{g['value']:.2f}×" if g["value"] is not None else "–"
        L.append(f"| {size_label(g['size_mb'])} | {g['goal']} | {val} | {'≤' if g['kind'] == 'max' else '≥'} {g['limit']:g}× | {'yes' if g['met'] else '**no**'} |")
    L.append("")

    L.append("## Building each database")
    L.append("")
    L.append("| size | rows | on disk MB | build s | notes |")
    L.append("|---|---|---|---|---|")
    for s in sizes:
        b = s.get("build")
        if not b:
            L.append(f"| {size_label(s['size_mb'])} | – | – | – | {s.get('skipped', '')} |")
            continue
        L.append(f"| {size_label(s['size_mb'])} | {b['rows']:,} | {fmt_mb(b['disk_bytes'])} | {b['build_s']:.1f} | {'; '.join(b['notes'] + s.get('notes', []))} |")
    L.append("")

    L.append("## 1. Upload: the sidecar against `rclone copy` of the same entry directory")
    L.append("")
    L.append(
        "*Sidecar s* = the upload's own time (`ms=` of \"copy entry uploaded off-site\"); *after window s* = from "
        "the copy command's return to the upload's end (`offsite.json`'s `at_unix`). *rclone s* = the wall time "
        "of `rclone copy`. *CPU s* = utime + stime: the sidecar process's from the copy command's return to the "
        "upload's end, rclone's whole run. MB are 10⁶ bytes; *wire* = bytes client→store through the relay. "
        "Each upload is measured once (an entry is first in a repository only once); the rows of one size ran "
        "minutes apart at most."
    )
    L.append("")
    L.append(
        "| size | entry | entry MB (raw) | objects sent/total | sent MB (zstd) | **sidecar s** | after window s | "
        "sidecar CPU s | **sidecar wire MB** | rclone | **rclone s** | rclone CPU s | **rclone wire MB** | "
        "wire rclone/sidecar | time sidecar/rclone |"
    )
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for s in sizes:
        up = s.get("upload")
        if not up:
            continue
        rows = [
            ("first", up["first"], "full copy", up["rclone_first"]),
            ("second", up["second"], "full copy, new prefix", up["rclone_second_full"]),
            ("second", up["second"], "onto the first's prefix", up["rclone_second_onto_first"]),
        ]
        for name, ours, how, rc in rows:
            off = ours["offsite"]
            ours_s = ours["upload_ms_logged"] / 1000 if ours["upload_ms_logged"] is not None else None
            L.append(
                f"| {size_label(s['size_mb'])} | {name} | {fmt_mb(ours['entry_raw_bytes'])} | {off.get('sent')}/{off.get('objects')} | "
                f"{fmt_mb(off.get('bytes_sent'))} | **{fmt_s(ours_s)}** | {fmt_s(ours['upload_after_window_s'])} | "
                f"{fmt_s(ours.get('upload_cpu_s'))} | **{fmt_mb(ours['wire_up'])}** | {how} | **{fmt_s(rc['wall_s'])}** | "
                f"{fmt_s(rc.get('cpu_s'))} | **{fmt_mb(rc['wire_up'])}** | "
                f"{ratio(rc['wire_up'], ours['wire_up'], 1)} | {ratio(ours_s, rc['wall_s'])} |"
            )
    L.append("")

    L.append("## 2. Restore and recovery")
    L.append("")
    L.append(
        "*Sidecar restore* = `doltgres-sidecar restore --from s3://…/latest --to DIR` (download, checksums, server "
        "files laid out). *rclone back* = `rclone copy` of the second entry's full copy into a local directory; "
        "*+ local restore* = that directory then turned into server files by `restore --catalog` (what rclone alone "
        "leaves to do). *Recovery* = from the start of the sidecar's restore to the first answered "
        "`SELECT count(*) FROM t` through a fresh managed sidecar on the restored directory (restore + start)."
    )
    L.append("")
    L.append(
        "| size | rounds | **sidecar restore s** | CPU s | wire down MB | **rclone back s** | CPU s | wire down MB | "
        "sidecar/rclone | + local restore s | **recovery s** (restore + start) | rows match |"
    )
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    sec = lambda v: fmt_s(v)  # noqa: E731
    for s in sizes:
        rs = s.get("restore")
        if not rs:
            continue
        sm, rec = rs["summary"], rs["recovery"]
        ours, rc = rs["sidecar_restore"], rs["rclone_copy_back"]
        cpu = lambda rows: fmt_s(statistics.median(r["cpu_s"] for r in rows))  # noqa: E731
        rows_ok = "yes" if rec["rows_match"] else f"**no** ({rec['rows']} vs {rec['rows_expected']})"
        ratios = sorted(sm["ratio_per_round"])
        ratio_txt = f"{statistics.median(ratios):.2f}×" + (f" ({ratios[0]:.2f}–{ratios[-1]:.2f})" if len(ratios) > 1 else "")
        local_ok = all(r["ok"] for r in rs["rclone_local_restore"])
        L.append(
            f"| {size_label(s['size_mb'])} | {len(ours)} | **{fmt_spread(sm['sidecar_restore_s'], sec)}** | {cpu(ours)} | "
            f"{fmt_mb(ours[0]['wire_down'])} | **{fmt_spread(sm['rclone_copy_back_s'], sec)}** | {cpu(rc)} | "
            f"{fmt_mb(rc[0]['wire_down'])} | {ratio_txt} | "
            f"{fmt_spread(sm['rclone_local_restore_s'], sec) if local_ok else 'failed'} | **{fmt_s(rec['total_s'])}** "
            f"({fmt_s(rec['restore_s'])} + {fmt_s(rec['start_to_query_s'])}) | {rows_ok} |"
        )
    L.append("")
    L.append(
        "Times are median (min–max) over the rounds; *sidecar/rclone* is the median of the per-round ratios "
        "(each round runs the two back to back). CPU s = utime + stime of the command, median."
    )
    L.append("")
    for s in sizes:
        li = s.get("listing")
        if li:
            L.append(
                f"- {size_label(s['size_mb'])}: `backups list --repo` listed {li['entries']} entries in "
                f"{fmt_s(li['wall_s'])} s (exit {li['exit']})."
            )
    L.append("")

    L.append("## 3. Dedup over entries taken under a write load")
    L.append("")
    L.append(
        "Copies taken a few seconds apart while pgbench runs small write transactions through the sidecar (an "
        "`UPDATE` of a random row of a 10,000-row table and an `INSERT`). *Raw* = the sum over the entries of "
        "their manifests' file sizes (what a full copy of each entry would move); *sent raw* / *sent* = the "
        "uncompressed / zstd bytes of the objects the uploads sent (`offsite.json`); *wire* as above. *rclone onto "
        "one prefix* = after the load, `rclone copy` of each of the same entries' directories in turn onto the prefix "
        "that holds the first two entries (rclone skips files whose size and modification time match; the catalog "
        "hard-links unchanged table files and journal segments, so they match): rclone's incremental use, which "
        "keeps a mirror of the newest entry (plus every file of the earlier ones), not entries to choose from."
    )
    L.append("")
    lag = any("last_upload_after_last_copy_s" in (s.get("dedup") or {}) for s in sizes)
    L.append(
        "| size | entries | raw MB | sent raw MB | sent MB | wire MB | **raw/wire** | raw/sent raw | rclone onto one prefix, wire MB | "
        "rclone/sidecar wire | journal growth MB | load tps | failed txns |" + (" last upload done after last copy s |" if lag else "")
    )
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if lag else ""))
    for s in sizes:
        d = s.get("dedup")
        if not d:
            continue
        t, ld = d["totals"], d["load"]
        tps = f"{ld['tps']:.0f}" if ld["tps"] is not None else "–"
        rs_wire = (d.get("rclone_series") or {}).get("wire_up")
        failed = ld["failed"] if ld["failed"] is not None else "–"
        if ld.get("serialization_failures"):
            failed = f"{failed} ({ld['serialization_failures']} serialization)"
        L.append(
            f"| {size_label(s['size_mb'])} | {t['entries']} | {fmt_mb(t['raw_bytes'])} | {fmt_mb(t['sent_raw_bytes'])} | "
            f"{fmt_mb(t['sent_bytes'])} | {fmt_mb(t['wire_up'])} | **{ratio(t['raw_bytes'], t['wire_up'], 1)}** | "
            f"{ratio(t['raw_bytes'], t['sent_raw_bytes'], 1)} | {fmt_mb(rs_wire)} | {ratio(rs_wire, t['wire_up'], 1)} | "
            f"{fmt_mb(d['journal_growth_bytes'])} | "
            f"{tps} | {failed} |" + (f" {fmt_s(d.get('last_upload_after_last_copy_s'))} |" if lag else "")
        )
    L.append("")
    for s in sizes:
        d = s.get("dedup")
        if not d:
            continue
        L.append(f"<details><summary>{size_label(s['size_mb'])}: each entry</summary>")
        L.append("")
        L.append(
            "| entry | stall ms | raw MB | copied MB | journal MB | objects sent/total | sent raw MB | sent MB | upload ms | "
            "rclone onto prefix MB (wire) |"
        )
        L.append("|---|---|---|---|---|---|---|---|---|---|")
        for e in d["copies"]:
            off = e["offsite"]
            L.append(
                f"| {e['entry']} | {e['stall_ms']} | {fmt_mb(e['entry_raw_bytes'])} | {fmt_mb(e['bytes_copied'])} | "
                f"{fmt_mb(e['journal_bytes'])} | {off.get('sent')}/{off.get('objects')} | {fmt_mb(off.get('bytes_sent_raw'))} | "
                f"{fmt_mb(off.get('bytes_sent'))} | {e['upload_ms_logged']} | {fmt_mb((e.get('rclone_onto_prefix') or {}).get('wire_up'))} |"
            )
        L.append("")
        L.append("</details>")
        L.append("")
        if d["load"].get("errors"):
            L.append(f"pgbench ({size_label(s['size_mb'])}): exit {d['load']['exit']}; " + "; ".join(f"`{x}`" for x in d["load"]["errors"]))
            L.append("")

    notes = []
    for s in sizes:
        for w in s.get("warnings") or []:
            notes.append(f"{size_label(s['size_mb'])}: sidecar log: `{w}`")
        for loc in (s.get("restore") or {}).get("rclone_local_restore") or []:
            if not loc["ok"]:
                notes.append(f"{size_label(s['size_mb'])}: local restore of rclone's copy failed: `{loc['message']}`")
    if notes or data.get("errors"):
        L.append("## Errors and warnings")
        L.append("")
        for e in data.get("errors") or []:
            L.append(f"- {e}")
        for n in notes[:40]:
            L.append(f"- {n}")
        L.append("")
    path.write_text("\n".join(L))


# ----------------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    started_wall = time.time()
    started = time.monotonic()
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, on_signal)
    atexit.register(Proc.stop_all)
    for tool in ("psql", "pgbench"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not on PATH (bash scripts/ensure-postgres.sh)")
    tmp = Path(tempfile.mkdtemp(prefix="doltgres-sidecar-offsite-bench-"))
    # The sidecar compresses objects into the temp dir: keep that inside ours.
    os.environ["TMPDIR"] = str(tmp)
    errors: list[str] = []
    sizes: list[dict] = []
    meta: dict = {"machine": machine()}
    relays: dict[str, Relay] = {}
    try:
        tools = {
            "doltgres": doltgres_binary(),
            "weed": script_path("ensure-seaweedfs.sh"),
            "rclone": args.rclone_bin or script_path("ensure-rclone.sh"),
        }
        tools["sidecar"] = sidecar_binary(args, tmp)
        given = args.sidecar_commit or (f"unknown: --sidecar-bin (work tree {versions_head()})" if args.sidecar_bin else None)
        meta["versions"] = versions(tools["sidecar"], tools["doltgres"], tools["weed"], tools["rclone"], given)
        log("versions: " + ", ".join(f"{k} {val}" for k, val in meta["versions"].items()))
        store_root = tmp / "seaweedfs"
        store_root.mkdir()
        weed = SeaweedFs(store_root, tools["weed"])
        wait_store(tools["sidecar"], weed, tmp)
        for name in ("sidecar", "restore", "rclone"):
            relays[name] = Relay(name, weed.s3_port)
        rclone = Rclone(tools["rclone"], relays["rclone"], tmp)
        # SeaweedFS allocates the bucket's volumes at its first write (~200 ms here): do that
        # before anything is measured, so it is not charged to whichever tool writes first.
        warm = tmp / "warmup"
        warm.mkdir()
        (warm / "blob").write_bytes(os.urandom(4 * MB))
        meta["warmup"] = rclone.copy(str(warm), f":s3:{BUCKET}/warmup")
        shutil.rmtree(warm)
        log(f"SeaweedFS S3 on 127.0.0.1:{weed.s3_port}; relays " + ", ".join(f"{n} :{r.port}" for n, r in relays.items()))
        rate = None
        for size_mb in args.sizes:
            try:
                result = run_size(size_mb, args, tmp, tools, relays, rclone, rate)
            except Exception as e:
                log(f"{size_mb} MB failed: {e}")
                traceback.print_exc()
                errors.append(f"{size_label(size_mb)}: {e}")
                result = {"size_mb": size_mb, "skipped": f"failed: {e}"}
            sizes.append(result)
            b = result.get("build") or {}
            if b.get("rows") and b.get("build_s"):
                rate = b["build_s"] / b["rows"]
        meta["store_bytes_at_end"] = weed.data_bytes()
    finally:
        Proc.stop_all()
        for r in relays.values():
            r.close()
        if args.keep_tmp:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    meta.update(
        started=datetime.datetime.fromtimestamp(started_wall, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        command="python3 -m benches.offsite.run" + ("" if not argv else " " + shlex.join(argv)),
        total_s=time.monotonic() - started,
        load_average_after=os.getloadavg()[0],
        args={
            "sizes": args.sizes,
            "change_mb": args.change_mb,
            "dedup_copies": args.dedup_copies,
            "dedup_every": args.dedup_every,
            "load_clients": args.load_clients,
            "load_rate": args.load_rate,
            "build_budget": args.build_budget,
            "repeat": args.repeat,
            "verify_after": args.verify_after,
            "quick": args.quick,
        },
        load_script=LOAD_SCRIPT.format(rows=LOAD_ROWS),
    )
    data = {"meta": meta, "sizes": sizes, "errors": errors}
    data["goals"] = goals(sizes)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "offsite.json").write_text(json.dumps(data, indent=1))
    write_markdown(args.out / "offsite.md", data)
    log(f"wrote {args.out / 'offsite.md'} and offsite.json in {meta['total_s'] / 60:.1f} min")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
