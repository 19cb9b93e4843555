#!/usr/bin/env python3
"""Client-visible stall of push and sync windows under load (issue 4, item 6).

    python3 -m benches.stall.run        # ~3 minutes on 2 cores

Starts Doltgres and the sidecar (with `[backup.push]` and `[backup.sync]` to file:// remotes) on
free loopback ports in a temp dir, loads the pgbench tables, then runs pgbench through the
sidecar twice with the same load: once for a steady state with no window, once while opening a
window every few seconds through the admin API (`POST /backups?action=push|sync`, alternately).
Each transaction's start and latency come from pgbench's per-transaction log; each window's start,
drain, stall and duration from the sidecar's answer. Writes benches/results/stall.md and
stall.json. See benches/README.md.

The servers, the pgbench tables and the pgbench invocation are the pgbench harness's own
(benches/pgbench), imported, not copied.
"""

from __future__ import annotations

import sys

sys.dont_write_bytecode = True  # no __pycache__ in benches/pgbench or here

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import urllib.error  # noqa: E402
import urllib.request  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent

from benches.pgbench import dataset
from benches.pgbench import servers
from benches.stall import stall_report
from benches.stall import timeline
from benches.pgbench import tools as bench_tools
from benches.pgbench import workload
from benches.pgbench.procs import Managed, free_port, stop_all
from benches.pgbench.servers import DATABASE, PASSWORD, USER, Endpoint, Server
from benches.stall.timeline import Span
from benches.pgbench.tools import REPO, Tools, machine

ACTIONS = ("push", "sync")
# How long one admin request may take (a window's action_timeout is 300 s by default).
ADMIN_TIMEOUT = 180.0
# A window is not opened in the last TAIL seconds of the load phase, so it ends inside it.
TAIL_SECONDS = 5.0
# The first window opens this long after pgbench starts (its connections are open by then).
LEAD_SECONDS = 4.0
# At least this long between one window's end and the next one's start.
MIN_GAP_SECONDS = 1.0


def csv(text: str) -> list[str]:
    return [part for part in text.split(",") if part]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steady", type=int, default=30, help="seconds of the steady-state run (default 30)")
    p.add_argument("--load", type=int, default=80, help="seconds of the run with windows (default 80)")
    p.add_argument("--every", type=float, default=5.0, help="seconds from one window's start to the next (default 5)")
    p.add_argument("--actions", type=csv, default=list(ACTIONS), help="window actions, opened in turn (default push,sync)")
    p.add_argument("--clients", type=int, default=8, help="pgbench clients (default 8)")
    p.add_argument("--mode", default="prepared", choices=workload.MODES, help="pgbench -M (default prepared)")
    p.add_argument(
        "--script", default="simple-update", choices=list(workload.SCRIPTS), help="simple-update (-N, default) or select-only (-S)"
    )
    p.add_argument("--warmup", type=int, default=5, help="seconds of an unrecorded pgbench run first (default 5)")
    p.add_argument("--sidecar-bin", type=Path, help="use this sidecar binary instead of building target/release")
    p.add_argument("--out", type=Path, default=REPO / "benches" / "results", help="where stall.md and stall.json go")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (server and sidecar logs)")
    p.add_argument(
        "--doltgres-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="start Doltgres with this in its environment (repeatable), e.g. DOLT_ARCHIVE_PULL_STREAMER=0",
    )
    args = p.parse_args(argv)
    unknown = set(args.actions) - set(ACTIONS)
    if unknown or not args.actions:
        p.error(f"--actions: choose from {', '.join(ACTIONS)}")
    for pair in args.doltgres_env:
        if "=" not in pair:
            p.error(f"--doltgres-env {pair}: expected NAME=VALUE")
    if args.load < LEAD_SECONDS + TAIL_SECONDS + 1:
        p.error(f"--load must be at least {LEAD_SECONDS + TAIL_SECONDS + 1:.0f} seconds")
    return args


def find_tools(sidecar_bin: Path | None) -> Tools:
    """PostgreSQL's client tools and Doltgres from the repository's installers, the sidecar built
    in release mode. PgBouncer is not used here."""
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


# --- the sidecar, configured for push and sync windows -----------------------------------------


@dataclass
class Sidecar:
    server: Server
    admin: str  # http://127.0.0.1:PORT

    def request(self, method: str, path: str, timeout: float = 10.0) -> tuple[int, str]:
        req = urllib.request.Request(self.admin + path, method=method, data=b"" if method == "POST" else None)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:  # 503/502: the window's record is still in the body
            return e.code, e.read().decode()

    def json(self, method: str, path: str, timeout: float = 10.0) -> tuple[int, dict]:
        status, body = self.request(method, path, timeout)
        try:
            return status, json.loads(body)
        except json.JSONDecodeError:
            return status, {"error": body}

    def metrics(self) -> str:
        return self.request("GET", "/metrics")[1]


def sidecar_config(listen: Endpoint, upstream: Endpoint, admin_port: int, base: Path, clients: int) -> str:
    """Windows only on request (no commit or interval trigger, no final window at shutdown); push
    commits the working set first so every push carries what the SQL COMMITs wrote."""
    return f"""\
listen = "{listen.addr}"
upstream = "{upstream.addr}"
admin_listen = "127.0.0.1:{admin_port}"
max_client_connections = {clients + 50}
drain_timeout = "10s"
drain_policy = "abort"
hold_notice_after = "5s"
hold_timeout = "60s"

[backup]
user = "{USER}"
password = "{PASSWORD}"
databases = ["{DATABASE}"]
every_write_commits = 0
on_shutdown = false

[backup.push]
remote = "backup"
url = "file://{base / 'remote'}/{{database}}"
branches = ["main"]
commit_working_set = true

[backup.sync]
name = "bk"
url = "file://{base / 'sync'}/{{database}}"
"""


def start_sidecar(tools: Tools, base: Path, upstream: Endpoint, clients: int) -> Sidecar:
    home = base / "sidecar"
    home.mkdir()
    (base / "remote").mkdir()
    (base / "sync").mkdir()
    listen = Endpoint("127.0.0.1", free_port())
    admin_port = free_port()
    config = home / "sidecar.toml"
    config.write_text(sidecar_config(listen, upstream, admin_port, base, clients))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOLTGRES_SIDECAR_")}
    env["RUST_LOG"] = "info"  # one line per window; nothing per transaction
    proc = Managed("sidecar", [str(tools.sidecar), "run", "--config", str(config)], home / "sidecar.log", env=env)
    server = servers.wait_ready(tools, Server("sidecar", listen, proc, home))
    return Sidecar(server, f"http://127.0.0.1:{admin_port}")


def stall_histogram(metrics_text: str) -> dict:
    """`doltgres_sidecar_window_stall_seconds`: how long held requests waited at the gate."""
    name = "doltgres_sidecar_window_stall_seconds"
    out: dict = {"count": 0, "sum_seconds": 0.0, "buckets": {}}
    for line in metrics_text.splitlines():
        if not line.startswith(name):
            continue
        key, _, value = line.rpartition(" ")
        if key.startswith(name + "_bucket"):
            le = key.split('le="', 1)[1].split('"', 1)[0]
            out["buckets"][le] = float(value)
        elif key == name + "_count":
            out["count"] = float(value)
        elif key == name + "_sum":
            out["sum_seconds"] = float(value)
    return out


def histogram_delta(before: dict, after: dict) -> dict:
    buckets = {le: after["buckets"][le] - before["buckets"].get(le, 0.0) for le in after["buckets"]}
    count = after["count"] - before["count"]
    total = after["sum_seconds"] - before["sum_seconds"]
    # The smallest bucket bound that holds every observation: an upper bound on the longest hold.
    bound = None
    for le, n in sorted(buckets.items(), key=lambda kv: float("inf") if kv[0] == "+Inf" else float(kv[0])):
        if n >= count and count > 0:
            bound = le
            break
    return {
        "held_requests": int(count),
        "sum_seconds": total,
        "mean_ms": total / count * 1000.0 if count else None,
        "longest_at_most_s": bound,
        "buckets": buckets,
    }


# --- pgbench -----------------------------------------------------------------------------------


def pgbench_argv(tools: Tools, endpoint: Endpoint, args: argparse.Namespace, duration: int, prefix: Path) -> list[str]:
    spec = workload.RunSpec("doltgres", "sidecar", args.script, args.mode, args.clients, duration, 0)
    return workload.pgbench_argv(tools, endpoint, spec, prefix, os.cpu_count() or 1)


def output_path(prefix: Path, stream: str) -> Path:
    """pgbench's stdout/stderr beside its logs (not matching the logs' `PREFIX.*` names)."""
    return prefix.parent / f"{prefix.name}-pgbench-{stream}.txt"


def start_pgbench(tools: Tools, endpoint: Endpoint, args: argparse.Namespace, duration: int, prefix: Path):
    out = open(output_path(prefix, "stdout"), "w")
    err = open(output_path(prefix, "stderr"), "w")
    try:
        return subprocess.Popen(
            pgbench_argv(tools, endpoint, args, duration, prefix),
            env=servers.client_env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
    finally:
        out.close()
        err.close()


def finish_pgbench(proc: subprocess.Popen, prefix: Path, duration: int, started: float) -> dict:
    """Waits for pgbench; returns its summary, errors, and every transaction it logged."""
    try:
        code = proc.wait(timeout=max(1.0, started + duration + workload.RUN_TIMEOUT_SLACK - time.time()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        code = -1
    stdout = output_path(prefix, "stdout").read_text(errors="replace")
    stderr = output_path(prefix, "stderr").read_text(errors="replace")
    run = {"duration": duration, "started_at": started, "wall_seconds": time.time() - started, "exit_code": code}
    run.update(workload.parse_summary(stdout))
    run["errors"] = workload.error_lines(stderr)
    run["notices"] = sum(1 for line in stderr.splitlines() if "backup window is in progress" in line)
    run["ok"] = code == 0 and not run["aborted"] and bool(run["transactions"])
    run["txns"] = timeline.read_log(prefix)
    return run


def run_pgbench(tools: Tools, endpoint: Endpoint, args: argparse.Namespace, duration: int, prefix: Path) -> dict:
    started = time.time()
    return finish_pgbench(start_pgbench(tools, endpoint, args, duration, prefix), prefix, duration, started)


def check_run(run: dict, what: str) -> None:
    if not run["ok"]:
        raise RuntimeError(f"pgbench {what} failed (exit {run['exit_code']}): {'; '.join(run['errors'][:2])}")


# --- windows -----------------------------------------------------------------------------------


def open_window(sidecar: Sidecar, action: str) -> dict:
    requested = time.time()
    status, record = sidecar.json("POST", f"/backups?action={action}", timeout=ADMIN_TIMEOUT)
    answered = time.time()
    return {"action": action, "requested_at": requested, "answered_at": answered, "http_status": status, "record": record}


def describe_window(w: dict) -> str:
    r = w["record"]
    if "stall_ms" not in r:
        return f"{w['action']}: HTTP {w['http_status']} {r.get('error', '')}"
    text = f"{w['action']:4} #{r.get('id')}: {r['result']}, drain {r['drain_ms']} ms, stall {r['stall_ms']} ms, duration {r['duration_ms']} ms"
    if r.get("error"):
        text += f" ({r['error']})"
    if r.get("steps"):
        text += f"\n        steps: {stall_report.steps_text(r['steps'])}"
    return text


def windows_during_load(sidecar: Sidecar, proc: subprocess.Popen, args: argparse.Namespace, started: float) -> list[dict]:
    """Opens a window every `--every` seconds while pgbench runs, the actions in turn."""
    windows: list[dict] = []
    next_at = started + LEAD_SECONDS
    last_start = started + args.load - TAIL_SECONDS
    while proc.poll() is None and next_at <= last_start:
        wait = next_at - time.time()
        if wait > 0:
            time.sleep(min(wait, 0.05))
            continue
        w = open_window(sidecar, args.actions[len(windows) % len(args.actions)])
        windows.append(w)
        print(f"  t={w['requested_at'] - started:5.1f}s  {describe_window(w)}", flush=True)
        next_at = max(w["requested_at"] + args.every, w["answered_at"] + MIN_GAP_SECONDS)
    return windows


def span_of(w: dict) -> Span:
    """The window on the wall clock: the sidecar's own start and duration (gate closed from the
    start; drain, action, resume), else our request's round trip."""
    r = w["record"]
    if "started_unix" in r and "duration_ms" in r:
        return Span(r["started_unix"], r["started_unix"] + r["duration_ms"] / 1000.0)
    return Span(w["requested_at"], w["answered_at"])


def gate_span_of(w: dict) -> Span | None:
    """When the gate was closed: the record's `gate_closed` step (windows that prepare before the
    gate closes), else — a sidecar that records no steps — from the window's start for
    `stall_ms`, since the gate then closed at once."""
    r = w["record"]
    if "started_unix" not in r or "stall_ms" not in r:
        return None
    steps = {step["step"]: step for step in r.get("steps") or []}
    # An aborted window has no `gate_closed` step: the gate was closed for its drain.
    step = steps.get("gate_closed") or steps.get("drain")
    if step is not None:
        start = r["started_unix"] + step["at_ms"] / 1000.0
        return Span(start, start + step["ms"] / 1000.0)
    return Span(r["started_unix"], r["started_unix"] + r["stall_ms"] / 1000.0)


# --- analysis ----------------------------------------------------------------------------------


def phase_summary(run: dict) -> dict:
    return {k: v for k, v in run.items() if k != "txns"} | {
        "latency_ms": timeline.latency_ms(run["txns"]),
        "failures": timeline.failures(run["txns"]),
    }


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def analyse(steady: dict, load: dict, windows: list[dict], actions: list[str]) -> dict:
    steady_lat = timeline.latency_ms(steady["txns"])
    steady_p99 = steady_lat["p99"] if steady_lat else None
    txns = load["txns"]
    spans = [span_of(w) for w in windows]
    for w, span in zip(windows, spans):
        inside = timeline.overlapping(txns, span)
        lat = timeline.latency_ms(inside)
        w["span"] = {"start": span.start, "end": span.end, "offset_s": span.start - load["started_at"]}
        gate = gate_span_of(w)
        held = timeline.latency_ms(timeline.overlapping(txns, gate)) if gate else None
        w["gate"] = {
            "start": gate.start if gate else None,
            "end": gate.end if gate else None,
            "latency_ms": held,
            "max_over_steady_p99": timeline.ratio(held["max"] if held else None, steady_p99),
        }
        w["overlapping"] = {
            "transactions": len(inside),
            "failures": timeline.failures(inside),
            "latency_ms": lat,
            "max_over_steady_p99": timeline.ratio(lat["max"] if lat else None, steady_p99),
            # Each overlapping transaction's start and end, ms from the window's start, slowest
            # first: which part of the window (drain, held steps, after resume) it waited through.
            "slowest": [
                {"start_ms": round((t.start - span.start) * 1000, 1), "end_ms": round((t.end - span.start) * 1000, 1),
                 "latency_ms": round(t.latency_us / 1000, 1)}
                for t in sorted(inside, key=lambda t: -(t.latency_us or 0))[:5] if t.latency_us is not None
            ],
        }
    quiet = timeline.between_windows(
        txns, spans, load["started_at"] + LEAD_SECONDS / 2, load["started_at"] + load["duration"]
    )
    quiet_lat = timeline.latency_ms(quiet)
    quiet_p99 = quiet_lat["p99"] if quiet_lat else None
    by_action = {}
    for action in actions:
        mine = [(w, s) for w, s in zip(windows, spans) if w["action"] == action]
        ok = [w for w, _ in mine if w["record"].get("result") == "ok"]
        inside = [t for t in txns if any(s.overlaps(t) for _, s in mine)]
        lat = timeline.latency_ms(inside)
        per_window_max = [w["overlapping"]["latency_ms"]["max"] for w, _ in mine if w["overlapping"]["latency_ms"]]
        rec = [w["record"] for w, _ in mine if "stall_ms" in w["record"]]
        gates = [g for g in (gate_span_of(w) for w, _ in mine) if g is not None]
        at_gate = timeline.latency_ms([t for t in txns if any(g.overlaps(t) for g in gates)])
        by_action[action] = {
            "windows": len(mine),
            "ok": len(ok),
            "duration_ms": {"median": median([r["duration_ms"] for r in rec]), "max": max((r["duration_ms"] for r in rec), default=None)},
            "drain_ms": {"median": median([r["drain_ms"] for r in rec]), "max": max((r["drain_ms"] for r in rec), default=None)},
            "stall_ms": {"median": median([r["stall_ms"] for r in rec]), "max": max((r["stall_ms"] for r in rec), default=None)},
            "transactions": len(inside),
            "failures": timeline.failures(inside),
            "latency_ms": lat,
            "max_latency_per_window_median_ms": median(per_window_max),
            "max_over_steady_p99": timeline.ratio(lat["max"] if lat else None, steady_p99),
            "p99_over_steady_p99": timeline.ratio(lat["p99"] if lat else None, steady_p99),
            "median_window_max_over_steady_p99": timeline.ratio(median(per_window_max), steady_p99),
            "max_over_between_windows_p99": timeline.ratio(lat["max"] if lat else None, quiet_p99),
            "p99_over_between_windows_p99": timeline.ratio(lat["p99"] if lat else None, quiet_p99),
            # Only the transactions that overlap the gate's closed period (could have been held).
            "gate_latency_ms": at_gate,
            "gate_max_over_steady_p99": timeline.ratio(at_gate["max"] if at_gate else None, steady_p99),
        }
    return {
        "steady": phase_summary(steady),
        "load": phase_summary(load) | {"between_windows_latency_ms": quiet_lat, "between_windows_failures": timeline.failures(quiet)},
        "by_action": by_action,
    }


# --- main --------------------------------------------------------------------------------------


def interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def write_outputs(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "stall.json").write_text(json.dumps(results, indent=1) + "\n")
    stall_report.write(results, out / "stall.md")
    print(f"stall: wrote {out / 'stall.md'} and stall.json", flush=True)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, interrupt)
    started = time.time()
    load_before = loadavg()
    tools = find_tools(args.sidecar_bin)
    base = Path(tempfile.mkdtemp(prefix="dgs-stall-"))
    # A private copy, so that a rebuild during the run cannot change the binary under test.
    sidecar_copy = base / "doltgres-sidecar"
    shutil.copy2(tools.sidecar, sidecar_copy)
    tools = Tools(tools.pg_bindir, tools.doltgres, sidecar_copy, tools.pgbouncer)
    versions = {k: v for k, v in bench_tools.versions(tools).items() if k != "pgbouncer"}
    logs = base / "txn-logs"
    logs.mkdir()
    results: dict = {}
    failure = None
    try:
        print("stall: starting Doltgres and loading the pgbench tables (scale 1)", flush=True)
        # Doltgres inherits our environment (benches/pgbench/servers.py).
        os.environ.update(pair.split("=", 1) for pair in args.doltgres_env)
        dg = servers.start_doltgres(tools, base)
        dataset.init(tools, "doltgres", dg.endpoint)
        sidecar = start_sidecar(tools, base, dg.endpoint, args.clients)
        endpoint = sidecar.server.endpoint

        # The first push commits and sends the whole database, the first sync copies it: not
        # what a window under steady traffic costs, so they run before any measurement.
        print("stall: first push and sync (whole database, unmeasured)", flush=True)
        priming = [open_window(sidecar, action) for action in args.actions]
        for w in priming:
            print(f"  {describe_window(w)}", flush=True)
            if w["record"].get("result") != "ok":
                raise RuntimeError(f"the first {w['action']} window failed: {w['record']}")

        if args.warmup > 0:
            print(f"stall: warm-up, {args.warmup} s (unrecorded)", flush=True)
            run_pgbench(tools, endpoint, args, args.warmup, logs / "warmup")

        print(f"stall: steady state, {args.steady} s, no windows", flush=True)
        steady = run_pgbench(tools, endpoint, args, args.steady, logs / "steady")
        check_run(steady, "steady state")
        lat = timeline.latency_ms(steady["txns"])
        print(f"  {steady['tps']:.0f} tps, p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms, max {lat['max']:.1f} ms, failed {steady['failed']}", flush=True)

        print(f"stall: same load, {args.load} s, a window every {args.every:g} s ({', '.join(args.actions)} in turn)", flush=True)
        hist_before = stall_histogram(sidecar.metrics())
        load_started = time.time()
        proc = start_pgbench(tools, endpoint, args, args.load, logs / "load")
        try:
            windows = windows_during_load(sidecar, proc, args, load_started)
        finally:
            load = finish_pgbench(proc, logs / "load", args.load, load_started)
        check_run(load, "with windows")
        hist = histogram_delta(hist_before, stall_histogram(sidecar.metrics()))
        _, listed = sidecar.json("GET", "/backups")

        results = {
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
            "elapsed_seconds": time.time() - started,
            "command": shlex.join(["python3", "-m", "benches.stall.run", *argv]),
            "settings": {
                "steady_seconds": args.steady,
                "load_seconds": args.load,
                "every_seconds": args.every,
                "actions": args.actions,
                "clients": args.clients,
                "threads": min(args.clients, os.cpu_count() or 1),
                "mode": args.mode,
                "script": args.script,
                "scale": 1,
                "warmup_seconds": args.warmup,
                "push": {"commit_working_set": True, "remote": "file://", "branches": ["main"]},
                "sync": {"remote": "file://"},
                "drain_timeout": "10s",
                "drain_policy": "abort",
                "doltgres_env": args.doltgres_env,
            },
            "machine": machine() | {"loadavg_before": load_before, "loadavg_after": loadavg()},
            "versions": versions,
            "priming": priming,
            **analyse(steady, load, windows, args.actions),
            "windows": windows,
            "sidecar_stall_histogram": hist,
            "sidecar_backups": listed,
        }
    except KeyboardInterrupt:
        failure = "interrupted"
        print("stall: interrupted", file=sys.stderr)
    except Exception as e:
        failure = f"failed: {e}"
        traceback.print_exc()
    finally:
        stop_all()
        if args.keep_tmp:
            print(f"stall: kept {base}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)
    if failure is not None:
        print(f"stall: {failure}; nothing written", file=sys.stderr)
        return 1
    write_outputs(results, args.out)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (RuntimeError, subprocess.CalledProcessError) as e:
        print(f"stall: {e}", file=sys.stderr)
        sys.exit(1)
