#!/usr/bin/env python3
"""What clients see while the sidecar is upgraded under load (`run --upgrade`).

    python3 -m benches.upgrade.run      # ~3.5 minutes on 2 cores (+ the release build if stale)

Starts PostgreSQL and Doltgres on free loopback ports in a temp dir (the pgbench harness's
servers, with the pgbench tables at scale 1) and, for each, a sidecar whose config names a
`handover_socket` in the temp dir and a `shutdown_timeout` longer than a run. Then runs the same
load through it twice: once steady, once with `doltgres-sidecar run --upgrade` (the same binary)
started a few seconds in. Each load is two pgbench runs at once, one opening a connection per
transaction (`-C`), one on persistent connections, both with per-transaction logs. Beside them a
probe opens a TCP connection to the listen address every 20 ms and times the sidecar's answer to
an SSLRequest (pgbench's per-transaction latency leaves the connection time out), and a poller
reads `GET /status` every 50 ms for the pid that answers. The hand-over moment is the successor's
log line "took over the running sidecar's listeners". Writes benches/results/upgrade.md and
upgrade.json. See benches/README.md.

The servers, the pgbench tables and pgbench's invocation and log parsing are the pgbench
harness's own (benches/pgbench, benches/stall/timeline.py), imported, not copied.
"""

from __future__ import annotations

import sys

sys.dont_write_bytecode = True  # no __pycache__ in benches/pgbench or here

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import urllib.request  # noqa: E402
from datetime import datetime  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent

from benches.pgbench import dataset
from benches.pgbench import servers
from benches.stall import timeline
from benches.pgbench import tools as bench_tools
from benches.upgrade import upgrade_report
from benches.pgbench import workload
from benches.pgbench.procs import Managed, free_port, stop_all
from benches.pgbench.servers import Endpoint, Server
from benches.stall.timeline import Txn
from benches.pgbench.tools import REPO, Tools, machine

UPSTREAMS = ("doltgres", "postgres")
# Transactions that started this close to the hand-over count as "near" it.
NEAR_SECONDS = 1.0
# The connect probe's and the status poller's periods.
PROBE_EVERY = 0.02
STATUS_EVERY = 0.05
# How long the old process may take to exit after the last pgbench run ended.
EXIT_GRACE = 30.0
# Only what the hand-over and shutdown log, as JSON (one line per event, with a timestamp).
SIDECAR_LOG = "warn,doltgres_sidecar::handover=info,doltgres_sidecar::server=info"
TOOK_OVER = "took over the running sidecar's listeners"
SSL_REQUEST = struct.pack("!II", 8, 80877103)


def csv(text: str) -> list[str]:
    return [part for part in text.split(",") if part]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=int, default=30, help="seconds of each phase, steady and upgrade (default 30)")
    p.add_argument("--upgrade-at", type=float, default=10.0, help="seconds into the upgrade phase to start `run --upgrade` (default 10)")
    p.add_argument("--per-txn-clients", type=int, default=4, help="pgbench -C clients (default 4)")
    p.add_argument("--persistent-clients", type=int, default=2, help="pgbench clients on persistent connections (default 2)")
    p.add_argument("--per-txn-rate", type=float, default=100, help="pgbench -R of the -C run, transactions/s (default 100; 0: as fast as it goes)")
    p.add_argument("--persistent-rate", type=float, default=500, help="pgbench -R of the persistent run (default 500; 0: as fast as it goes)")
    p.add_argument("--mode", default="simple", choices=workload.MODES, help="pgbench -M (default simple)")
    p.add_argument(
        "--script", default="select-only", choices=list(workload.SCRIPTS), help="select-only (-S, default) or simple-update (-N)"
    )
    p.add_argument("--warmup", type=int, default=3, help="seconds of an unrecorded run of the same load first (default 3)")
    p.add_argument("--shutdown-timeout", type=int, default=60, help="the sidecar's shutdown_timeout in seconds (default 60)")
    p.add_argument("--upstreams", type=csv, default=list(UPSTREAMS), help="doltgres,postgres (default both)")
    p.add_argument("--sidecar-bin", type=Path, help="use this sidecar binary instead of building target/release")
    p.add_argument("--out", type=Path, default=REPO / "benches" / "results", help="where upgrade.md and upgrade.json go")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (server and sidecar logs)")
    args = p.parse_args(argv)
    if set(args.upstreams) - set(UPSTREAMS) or not args.upstreams:
        p.error(f"--upstreams: choose from {', '.join(UPSTREAMS)}")
    if not 2 <= args.upgrade_at <= args.duration - 4:
        p.error("--upgrade-at must leave at least 2 s before and 4 s after it")
    if args.shutdown_timeout <= args.duration:
        p.error("--shutdown-timeout must be longer than --duration, so the old process's sessions finish by themselves")
    return args


def find_tools(sidecar_bin: Path | None) -> Tools:
    """PostgreSQL's tools and Doltgres from the repository's installers, the sidecar built in
    release mode. PgBouncer is not used here."""
    sidecar = sidecar_bin if sidecar_bin is not None else bench_tools.build_sidecar()
    if not sidecar.exists():
        raise RuntimeError(f"sidecar binary not found: {sidecar}")
    return Tools(
        pg_bindir=bench_tools.script_output("ensure-postgres.sh"),
        doltgres=bench_tools.script_output("ensure-doltgres.sh"),
        sidecar=sidecar.resolve(),
        pgbouncer=Path("/nonexistent/pgbouncer"),
    )


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


# --- the sidecar -------------------------------------------------------------------------------


class Sidecar:
    """One config, and the processes that ran it: the first, then its successor."""

    def __init__(self, tools: Tools, base: Path, name: str, upstream: Endpoint, shutdown_timeout: int) -> None:
        self.tools = tools
        self.home = base / name
        self.home.mkdir()
        self.name = name
        self.endpoint = Endpoint("127.0.0.1", free_port())
        admin_port = free_port()
        self.admin = f"http://127.0.0.1:{admin_port}"
        self.config = self.home / "sidecar.toml"
        self.config.write_text(
            f'listen = "{self.endpoint.addr}"\n'
            f'upstream = "{upstream.addr}"\n'
            f'admin_listen = "127.0.0.1:{admin_port}"\n'
            f'handover_socket = "{self.home / "handover.sock"}"\n'
            f'shutdown_timeout = "{shutdown_timeout}s"\n'
            'log_format = "json"\n'
            "max_client_connections = 200\n"
        )
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DOLTGRES_SIDECAR_")}
        self.env["RUST_LOG"] = SIDECAR_LOG
        self.first = self.start("first", [])
        servers.wait_ready(tools, Server(name, self.endpoint, self.first, self.home))
        self.successor: Managed | None = None

    def start(self, which: str, extra: list[str]) -> Managed:
        argv = [str(self.tools.sidecar), "run", "--config", str(self.config), *extra]
        return Managed(f"{self.name}-{which}", argv, self.home / f"{which}.log", env=self.env)

    def upgrade(self) -> Managed:
        self.successor = self.start("successor", ["--upgrade"])
        return self.successor

    def status_pid(self) -> int:
        with urllib.request.urlopen(self.admin + "/status", timeout=2) as resp:
            return int(json.loads(resp.read())["pid"])


def log_events(path: Path) -> list[dict]:
    """The sidecar's JSON log lines: each event's Unix time, message and fields."""
    events = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(record, dict) or "timestamp" not in record:
            continue
        fields = record.get("fields") or {}
        at = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")).timestamp()
        events.append({"at": at, "level": record.get("level"), "message": fields.get("message", ""),
                       "fields": {k: v for k, v in fields.items() if k != "message"}})
    return events


def first_event(events: list[dict], text: str) -> dict | None:
    return next((e for e in events if text in e["message"]), None)


# --- what runs beside pgbench ------------------------------------------------------------------


class Probe(threading.Thread):
    """Opens a TCP connection to the listen address every PROBE_EVERY seconds and times the answer
    to an SSLRequest (one byte, `N` without TLS): the accept path, which pgbench's per-transaction
    latency leaves out. A refused or unanswered connection is recorded as an error."""

    def __init__(self, endpoint: Endpoint) -> None:
        super().__init__(daemon=True)
        self.endpoint = endpoint
        self.stop = threading.Event()
        self.samples: list[tuple[float, float, str | None]] = []  # (start, seconds, error)

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.time()
            error = None
            try:
                with socket.create_connection((self.endpoint.host, self.endpoint.port), timeout=5) as sock:
                    sock.sendall(SSL_REQUEST)
                    answer = sock.recv(1)
                    if answer not in (b"N", b"S"):
                        error = f"answer {answer!r}"
            except OSError as e:
                error = f"{type(e).__name__}: {e}"
            self.samples.append((started, time.time() - started, error))
            self.stop.wait(max(0.0, started + PROBE_EVERY - time.time()))


class StatusPoller(threading.Thread):
    """Reads `GET /status` every STATUS_EVERY seconds: which process answers."""

    def __init__(self, sidecar: Sidecar) -> None:
        super().__init__(daemon=True)
        self.sidecar = sidecar
        self.stop = threading.Event()
        self.samples: list[tuple[float, int | None, str | None]] = []  # (time, pid, error)

    def run(self) -> None:
        while not self.stop.is_set():
            at = time.time()
            try:
                self.samples.append((at, self.sidecar.status_pid(), None))
            except (OSError, ValueError, KeyError) as e:
                self.samples.append((at, None, f"{type(e).__name__}: {e}"))
            self.stop.wait(max(0.0, at + STATUS_EVERY - time.time()))


class ExitWatch(threading.Thread):
    """Records when a process exits, and its exit code."""

    def __init__(self, proc: Managed) -> None:
        super().__init__(daemon=True)
        self.proc = proc
        self.exited_at: float | None = None
        self.code: int | None = None

    def run(self) -> None:
        self.code = self.proc.popen.wait()
        self.exited_at = time.time()


# --- pgbench -----------------------------------------------------------------------------------

RUNS = ("per_txn", "persistent")


def pgbench_argv(tools: Tools, endpoint: Endpoint, args: argparse.Namespace, kind: str, duration: int, prefix: Path) -> list[str]:
    clients = args.per_txn_clients if kind == "per_txn" else args.persistent_clients
    spec = workload.RunSpec("", "sidecar", args.script, args.mode, clients, duration, 0)
    argv = workload.pgbench_argv(tools, endpoint, spec, prefix, os.cpu_count() or 1)
    # Before the database name. Under -R, pgbench measures a transaction's latency from its
    # scheduled start, so with -C it includes the connection (and any wait for the accept).
    rate = args.per_txn_rate if kind == "per_txn" else args.persistent_rate
    if rate > 0:
        argv[-1:-1] = ["-R", f"{rate:g}"]
    if kind == "per_txn":
        argv.insert(-1, "-C")
    return argv


def output_path(prefix: Path, stream: str) -> Path:
    return prefix.parent / f"{prefix.name}-pgbench-{stream}.txt"


def start_pgbench(argv: list[str], prefix: Path) -> subprocess.Popen:
    with open(output_path(prefix, "stdout"), "w") as out, open(output_path(prefix, "stderr"), "w") as err:
        return subprocess.Popen(argv, env=servers.client_env(), stdin=subprocess.DEVNULL, stdout=out, stderr=err)


CONNECTION_ERROR = re.compile(r"connection to server|establishing connection|could not connect|server closed the connection", re.I)


def finish_pgbench(proc: subprocess.Popen, argv: list[str], prefix: Path, duration: int, started: float) -> dict:
    """Waits for pgbench; its summary, errors, and every transaction it logged."""
    try:
        code = proc.wait(timeout=max(1.0, started + duration + workload.RUN_TIMEOUT_SLACK - time.time()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        code = -1
    ended = time.time()
    stdout = output_path(prefix, "stdout").read_text(errors="replace")
    stderr = output_path(prefix, "stderr").read_text(errors="replace")
    run = {"argv": shlex.join(["pgbench", *argv[1:]]), "started_at": started, "ended_at": ended, "exit_code": code}
    run.update(workload.parse_summary(stdout))
    if run["tps"] is None:  # -C: pgbench counts the reconnections in
        run["tps"] = workload._number(r"tps = ([\d.]+) \(including reconnection times\)", stdout)
    run["schedule_lag_ms"] = workload._number(r"rate limit schedule lag: avg [\d.]+ \(max ([\d.]+)\) ms", stdout)
    run["average_connection_time_ms"] = workload._number(r"average connection time = ([\d.]+) ms", stdout)
    run["connections_established"] = workload._number(r"number of connections established: (\d+)", stdout, int)
    run["errors"] = workload.error_lines(stderr)
    run["connection_error_lines"] = sum(1 for line in stderr.splitlines() if CONNECTION_ERROR.search(line))
    run["ok"] = code == 0 and not run["aborted"] and bool(run["transactions"]) and not run["connection_error_lines"]
    run["txns"] = timeline.read_log(prefix)
    return run


def run_load(
    tools: Tools, sidecar: Sidecar, args: argparse.Namespace, duration: int, prefix: Path, upgrade: bool, observe: bool
) -> dict:
    """The two pgbench runs at once (and, when `observe`, the probe and the poller); with `upgrade`,
    `run --upgrade` starts `--upgrade-at` seconds in."""
    argvs = {kind: pgbench_argv(tools, sidecar.endpoint, args, kind, duration, Path(f"{prefix}-{kind}")) for kind in RUNS}
    probe, poller = Probe(sidecar.endpoint), StatusPoller(sidecar)
    started = time.time()
    procs = {kind: start_pgbench(argvs[kind], Path(f"{prefix}-{kind}")) for kind in RUNS}
    if observe:
        probe.start()
        poller.start()
    events: dict = {}
    try:
        if upgrade:
            time.sleep(max(0.0, started + args.upgrade_at - time.time()))
            old_exit = ExitWatch(sidecar.first)
            old_exit.start()
            events["upgrade_started_at"] = time.time()
            successor = sidecar.upgrade()
            events["successor_pid"] = successor.pid
            events["old_pid"] = sidecar.first.pid
    finally:
        runs = {kind: finish_pgbench(procs[kind], argvs[kind], Path(f"{prefix}-{kind}"), duration, started) for kind in RUNS}
    pgbench_ended = max(r["ended_at"] for r in runs.values())
    if upgrade:
        old_exit.join(timeout=EXIT_GRACE)
        events["pgbench_ended_at"] = pgbench_ended
        events["old_exited_at"] = old_exit.exited_at
        events["old_exit_code"] = old_exit.code
        events["successor_running"] = sidecar.successor.alive()
    probe.stop.set()
    poller.stop.set()
    if observe:
        probe.join()
        poller.join()
    return {"started_at": started, "duration": duration, "runs": runs, "events": events,
            "probe": probe.samples, "status": poller.samples}


# --- analysis ----------------------------------------------------------------------------------


def near(txns: list[Txn], moment: float) -> list[Txn]:
    return [t for t in txns if abs(t.start - moment) <= NEAR_SECONDS]


def longest_pause(txns: list[Txn], first: float, last: float) -> float | None:
    """The longest time in [first, last] in which no transaction ended, in ms."""
    ends = sorted(t.end for t in txns if first <= t.end <= last)
    if not ends:
        return None
    points = [first, *ends, last]
    return max(b - a for a, b in zip(points, points[1:])) * 1000.0


def probe_summary(samples: list[tuple[float, float, str | None]], moment: float | None) -> dict:
    ok = sorted(s[1] * 1000.0 for s in samples if s[2] is None)
    errors = [s for s in samples if s[2] is not None]
    out = {
        "probes": len(samples),
        "errors": len(errors),
        "error_samples": [{"at": s[0], "error": s[2]} for s in errors[:5]],
        "connect_ms": {"p50": timeline.nearest_rank(ok, 0.5), "p99": timeline.nearest_rank(ok, 0.99), "max": ok[-1]} if ok else None,
    }
    if moment is not None:
        close = [s for s in samples if abs(s[0] - moment) <= NEAR_SECONDS]
        close_ok = [s[1] * 1000.0 for s in close if s[2] is None]
        out["near"] = {"probes": len(close), "errors": sum(1 for s in close if s[2]), "max_ms": max(close_ok, default=None)}
    return out


def analyse_phase(phase: dict, moment: float | None) -> dict:
    """Figures of one phase. `moment`: the hand-over (upgrade phase) or the same offset into the
    steady phase, for the transactions near it."""
    started, duration = phase["started_at"], phase["duration"]
    out: dict = {"started_at": started, "duration": duration, "runs": {}}
    every: list[Txn] = []
    for kind, run in phase["runs"].items():
        txns = run["txns"]
        every += txns
        close = near(txns, moment) if moment is not None else []
        out["runs"][kind] = {k: v for k, v in run.items() if k != "txns"} | {
            "latency_ms": timeline.latency_ms(txns),
            "failures": timeline.failures(txns),
            "near": {"latency_ms": timeline.latency_ms(close), "failures": timeline.failures(close)},
            "longest_pause_ms": longest_pause(txns, started + 1.0, started + duration - 0.5),
        }
    every.sort(key=lambda t: t.end)
    close = near(every, moment) if moment is not None else []
    out["all"] = {
        "transactions": sum(r["transactions"] or 0 for r in phase["runs"].values()),
        "failed": sum(r["failed"] or 0 for r in phase["runs"].values()),
        "tps": sum(r["tps"] or 0 for r in phase["runs"].values()),
        "latency_ms": timeline.latency_ms(every),
        "failures": timeline.failures(every),
        "near": {"at": moment, "latency_ms": timeline.latency_ms(close), "failures": timeline.failures(close),
                 "longest_pause_ms": longest_pause(every, moment - NEAR_SECONDS, moment + NEAR_SECONDS) if moment else None},
        "longest_pause_ms": longest_pause(every, started + 1.0, started + duration - 0.5),
        "connection_error_lines": sum(r["connection_error_lines"] for r in phase["runs"].values()),
        "ok": all(r["ok"] for r in phase["runs"].values()),
    }
    out["probe"] = probe_summary(phase["probe"], moment)
    status = phase["status"]
    out["status_polls"] = {"polls": len(status), "errors": sum(1 for s in status if s[2]),
                           "error_samples": [s[2] for s in status if s[2]][:3]}
    return out


def hand_over(sidecar: Sidecar, phase: dict) -> dict:
    """When the upgrade happened, from the logs of both processes and the status poller."""
    ev = phase["events"]
    first_log = log_events(sidecar.home / "first.log")
    new_log = log_events(sidecar.home / "successor.log")
    took = first_event(new_log, TOOK_OVER)
    received = first_event(new_log, "received the running sidecar's listeners")
    confirmed = first_event(first_log, "the successor accepts on the listeners")
    draining = first_event(first_log, "shutting down: waiting for sessions")
    stopped = first_event(first_log, "proxy stopped")
    timeout = first_event(first_log, "shutdown timeout reached")
    finished = first_event(new_log, "the previous process finished")
    exited = first_event(new_log, "the previous process exited")
    new_pid_seen = next((s[0] for s in phase["status"] if s[1] == ev.get("successor_pid")), None)
    moment = took["at"] if took else new_pid_seen
    upgrade_at = ev["upgrade_started_at"]
    last_persistent = max((t.end for t in phase["runs"]["persistent"]["txns"]), default=None)

    def rel(t: float | None, to: float | None) -> float | None:
        return None if t is None or to is None else t - to

    warnings = [e for e in first_log + new_log if e["level"] in ("WARN", "ERROR")]
    return {
        "upgrade_started_at": upgrade_at,
        "upgrade_offset_s": upgrade_at - phase["started_at"],
        "moment": moment,
        "moment_source": "successor log" if took else ("status poll" if new_pid_seen else None),
        "old_pid": ev["old_pid"],
        "successor_pid": ev["successor_pid"],
        "received_after_ms": rel(received["at"], upgrade_at) * 1000 if received else None,
        "took_over_after_ms": rel(moment, upgrade_at) * 1000 if moment else None,
        "predecessor_confirmed_after_ms": rel(confirmed["at"], upgrade_at) * 1000 if confirmed else None,
        "status_new_pid_after_ms": rel(new_pid_seen, upgrade_at) * 1000 if new_pid_seen else None,
        "sessions_left_on_old": draining["fields"].get("sessions") if draining else None,
        "shutdown_timeout_reached": timeout is not None,
        "old_proxy_stopped_after_s": rel(stopped["at"], moment) if stopped and moment else None,
        "old_exited_after_s": rel(ev["old_exited_at"], moment) if moment else None,
        # The persistent sessions keep the old process until their last transaction; pgbench's
        # own exit is seen by the harness a little later than it closes them.
        "old_exited_after_last_persistent_txn_s": rel(ev["old_exited_at"], last_persistent),
        "old_exited_after_pgbench_s": rel(ev["old_exited_at"], ev["pgbench_ended_at"]),
        "old_exit_code": ev["old_exit_code"],
        "successor_saw_final_counters": finished is not None,
        "successor_saw_exit_after_s": rel(exited["at"], moment) if exited and moment else None,
        "successor_running": ev["successor_running"],
        "warnings": [{"at": e["at"], "level": e["level"], "message": e["message"], "fields": e["fields"]} for e in warnings],
    }


def check(figures: dict, what: str, problems: list[str]) -> None:
    for kind, run in figures["runs"].items():
        if not run["ok"]:
            problems.append(
                f"{what}: pgbench {kind} exit {run['exit_code']}, aborted {run['aborted']}, "
                f"{run['connection_error_lines']} connection error line(s): {'; '.join(run['errors'][:2])}"
            )
        if run["failed"]:
            problems.append(f"{what}: pgbench {kind}: {run['failed']} failed transaction(s) {run['failures']}")
    if figures["probe"]["errors"]:
        problems.append(f"{what}: {figures['probe']['errors']} connect probe(s) failed: {figures['probe']['error_samples'][:2]}")


def measure(tools: Tools, base: Path, upstream: str, args: argparse.Namespace, logs: Path) -> dict:
    print(f"upgrade: {upstream}: starting the server and loading the pgbench tables (scale 1)", flush=True)
    if upstream == "postgres":
        server = servers.start_postgres(tools, base, max_connections=100)
    else:
        server = servers.start_doltgres(tools, base)
    dataset.init(tools, upstream, server.endpoint)
    sidecar = Sidecar(tools, base, f"sidecar-{upstream}", server.endpoint, args.shutdown_timeout)
    if args.warmup > 0:
        print(f"upgrade: {upstream}: warm-up, {args.warmup} s (unrecorded)", flush=True)
        run_load(tools, sidecar, args, args.warmup, logs / f"{upstream}-warmup", upgrade=False, observe=False)
    print(f"upgrade: {upstream}: steady, {args.duration} s", flush=True)
    steady = run_load(tools, sidecar, args, args.duration, logs / f"{upstream}-steady", upgrade=False, observe=True)
    print(f"upgrade: {upstream}: same load, {args.duration} s, `run --upgrade` at {args.upgrade_at:g} s", flush=True)
    upgraded = run_load(tools, sidecar, args, args.duration, logs / f"{upstream}-upgrade", upgrade=True, observe=True)
    handover = hand_over(sidecar, upgraded)
    moment = handover["moment"]
    offset = (moment - upgraded["started_at"]) if moment else args.upgrade_at
    result = {
        "server": upstream,
        "handover": handover,
        "steady": analyse_phase(steady, steady["started_at"] + offset),
        "upgrade": analyse_phase(upgraded, moment),
    }
    problems: list[str] = []
    check(result["steady"], f"{upstream} steady", problems)
    check(result["upgrade"], f"{upstream} upgrade", problems)
    if moment is None:
        problems.append(f"{upstream}: no hand-over seen (no '{TOOK_OVER}' in the successor's log, no new pid in /status)")
    if handover["old_exited_after_s"] is None:
        problems.append(f"{upstream}: the old process had not exited {EXIT_GRACE:.0f} s after pgbench ended")
    elif handover["old_exit_code"] != 0:
        problems.append(f"{upstream}: the old process exited with {handover['old_exit_code']}")
    if not handover["successor_running"]:
        problems.append(f"{upstream}: the successor is not running after the upgrade")
    if handover["shutdown_timeout_reached"]:
        problems.append(f"{upstream}: the old process reached its shutdown_timeout and ended sessions")
    result["problems"] = problems
    for line in upgrade_report.console(result):
        print(f"  {line}", flush=True)
    for p in problems:
        print(f"  PROBLEM: {p}", flush=True)
    # The servers of this upstream stop before the next one starts: each has the machine to itself.
    stop_all()
    return result


def interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, interrupt)
    started = time.time()
    load_before = loadavg()
    tools = find_tools(args.sidecar_bin)
    base = Path(tempfile.mkdtemp(prefix="dgs-upgrade-"))
    base.chmod(0o755)  # PostgreSQL runs as `postgres` in a subdirectory
    # A private copy, so that a rebuild during the run cannot change the binary under test.
    sidecar_copy = base / "doltgres-sidecar"
    shutil.copy2(tools.sidecar, sidecar_copy)
    tools = Tools(tools.pg_bindir, tools.doltgres, sidecar_copy, tools.pgbouncer)
    versions = {k: v for k, v in bench_tools.versions(tools).items() if k != "pgbouncer"}
    logs = base / "txn-logs"
    logs.mkdir()
    failure = None
    by_server: dict = {}
    try:
        for upstream in args.upstreams:
            by_server[upstream] = measure(tools, base, upstream, args, logs)
    except KeyboardInterrupt:
        failure = "interrupted"
        print("upgrade: interrupted", file=sys.stderr)
    except Exception as e:
        failure = f"failed: {e}"
        traceback.print_exc()
    finally:
        stop_all()
        if args.keep_tmp:
            print(f"upgrade: kept {base}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)
    if failure is not None:
        print(f"upgrade: {failure}; nothing written", file=sys.stderr)
        return 1
    results = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
        "elapsed_seconds": time.time() - started,
        "command": shlex.join(["python3", "-m", "benches.upgrade.run", *argv]),
        "settings": {
            "duration_seconds": args.duration,
            "upgrade_at_seconds": args.upgrade_at,
            "per_txn_clients": args.per_txn_clients,
            "persistent_clients": args.persistent_clients,
            "per_txn_rate": args.per_txn_rate,
            "persistent_rate": args.persistent_rate,
            "mode": args.mode,
            "script": args.script,
            "scale": 1,
            "warmup_seconds": args.warmup,
            "shutdown_timeout_seconds": args.shutdown_timeout,
            "near_seconds": NEAR_SECONDS,
            "probe_every_seconds": PROBE_EVERY,
            "status_every_seconds": STATUS_EVERY,
        },
        "machine": machine() | {"loadavg_before": load_before, "loadavg_after": loadavg()},
        "versions": versions,
        "servers": by_server,
        "problems": [p for r in by_server.values() for p in r["problems"]],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "upgrade.json").write_text(json.dumps(results, indent=1) + "\n")
    upgrade_report.write(results, args.out / "upgrade.md")
    print(f"upgrade: wrote {args.out / 'upgrade.md'} and upgrade.json", flush=True)
    if results["problems"]:
        print("upgrade: PROBLEMS:\n  " + "\n  ".join(results["problems"]), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (RuntimeError, subprocess.CalledProcessError) as e:
        print(f"upgrade: {e}", file=sys.stderr)
        sys.exit(1)
