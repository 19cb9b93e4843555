"""The processes a benchmark starts (the copy and off-site scale benchmarks): each in its own
session, stopped on exit."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from benches.copy.settings import STOP_TIMEOUT, log


class Proc:
    """A child process in its own session with its output in a log file; stopped on exit."""

    running: list["Proc"] = []

    def __init__(
        self,
        name: str,
        argv: list[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        stop_timeout: float = STOP_TIMEOUT,
    ):
        self.name = name
        self.log_path = log_path
        self.stop_timeout = stop_timeout
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
        """SIGTERM, wait up to `stop_timeout`, then SIGKILL; then any child it left behind."""
        if self in Proc.running:
            Proc.running.remove(self)
        kids = self.children()
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                log(f"{self.name} did not stop within {self.stop_timeout}s: killing it")
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


def on_signal(signum, _frame) -> None:
    raise SystemExit(f"stopped by signal {signum}")
