"""Child processes of the harness: start with a log file, read /proc figures, stop with a deadline.

Every server, proxy and client the harness starts goes through `Managed`, so that one `stop_all`
in a `finally` ends all of them whatever went wrong. Processes that must not run as root
(PostgreSQL, PgBouncer) are started through `setpriv` as the `postgres` user; `setpriv` execs the
program, so the pid we hold is the server's own and /proc figures are the server's.
"""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import time
from pathlib import Path

# Clock ticks per second, for utime/stime in /proc/PID/stat.
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# How long a process may take to exit after its stop signal before it is killed.
STOP_TIMEOUT = 15.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def running_as_root() -> bool:
    return os.geteuid() == 0


def as_postgres_user(argv: list[str]) -> list[str]:
    """`argv` run as the `postgres` user when we are root (PostgreSQL and PgBouncer refuse root)."""
    if not running_as_root():
        return argv
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--", *argv]


def give_to_postgres(path: Path, mode: int = 0o700) -> None:
    """Makes `path` owned by the `postgres` user (when we are root) and private to it."""
    if running_as_root():
        user = pwd.getpwnam("postgres")
        os.chown(path, user.pw_uid, user.pw_gid)
    path.chmod(mode)


def cpu_times(pid: int) -> tuple[float, float]:
    """(utime, stime) of `pid`, in seconds, from /proc/PID/stat: user and system time apart."""
    text = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may contain spaces; fields after its closing ')' are fixed.
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    """Resident set size of `pid` (VmRSS in /proc/PID/status), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class Managed:
    """One long-running child process with its output in a log file."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        log_path: Path,
        *,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
    ) -> None:
        self.name = name
        self.log_path = log_path
        self.stop_signal = stop_signal
        log = open(log_path, "ab")
        try:
            self.popen = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        finally:
            log.close()
        _RUNNING.append(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Sends the stop signal, waits up to STOP_TIMEOUT, then kills."""
        if self in _RUNNING:
            _RUNNING.remove(self)
        if not self.alive():
            return
        self.popen.send_signal(self.stop_signal)
        try:
            self.popen.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


# Every process started and not yet stopped, oldest first.
_RUNNING: list[Managed] = []


def stop_all() -> None:
    """Stops every process still running, newest first (proxies before their servers)."""
    for proc in reversed(list(_RUNNING)):
        proc.stop()


def wait_until(check, what: str, timeout: float, proc: Managed | None = None) -> None:
    """Polls `check()` until it is true; fails after `timeout` or when `proc` exits."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited while {what}:\n{proc.log_tail()}")
        if check():
            return
        if time.monotonic() > deadline:
            tail = f":\n{proc.log_tail()}" if proc is not None else ""
            raise RuntimeError(f"timed out after {timeout:.0f}s {what}{tail}")
        time.sleep(0.1)
