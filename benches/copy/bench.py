"""One database through the sidecar: psql, sizes on disk, copies and their verification."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from benches.pgbench.procs import free_port
from benches.copy.settings import COPY_TIMEOUT, DATABASE, JOURNAL_NAME, PASSWORD, PAYLOAD, PSQL_TIMEOUT, READY_RE, READY_TIMEOUT, STARTED_RE, USER, VERIFY_TIMEOUT, parse_ts
from benches.copy.procs import Proc


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
