#!/usr/bin/env python3
"""pgbench harness: the sidecar against a direct connection, PgBouncer and two floors.

    python3 -m benches.pgbench.run            # full run, ~35 min on 2 cores
    python3 -m benches.pgbench.run --quick    # smoke test, a few minutes
    python3 -m benches.pgbench.run --profile  # syscalls, context switches, perf per proxy, ~2 min

Starts its own PostgreSQL, Doltgres, sidecar, PgBouncer, HAProxy (TCP mode) and tokio relay
(benches/relay_floor.rs) on free loopback ports in a temp dir, runs pgbench -S and -N in simple,
extended and prepared modes at several client counts (direct vs sidecar vs PgBouncer vs HAProxy vs
relay on PostgreSQL; direct vs sidecar vs PgBouncer vs HAProxy on Doltgres), interleaved and
repeated, then measures proxy memory with idle sessions, and writes benches/results/latest.{md,json}
and plots. `--profile` instead runs one short case through each proxy under strace and perf and
writes benches/results/profile.{md,json}. See benches/README.md.
"""

from __future__ import annotations

import sys

sys.dont_write_bytecode = True

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from dataclasses import dataclass, field, replace  # noqa: E402
from pathlib import Path  # noqa: E402

from benches.pgbench import dataset
from benches.pgbench import floor
from benches.pgbench import memory
from benches.pgbench import profile_report
from benches.pgbench import profiling
from benches.pgbench import proxies
from benches.pgbench import report
from benches.pgbench import servers
from benches.pgbench import workload
from benches.pgbench.bench_venv import ensure_venv
from benches.pgbench.procs import stop_all
from benches.pgbench.servers import Endpoint, Server
from benches.pgbench.tools import REPO, Tools, find_tools, machine, versions

HERE = Path(__file__).resolve().parent
# The plots plots.py draws, removed before a new run draws them again.
PLOTS = ("tps-*.png", "latency-*.png", "cpu-per-txn-*.png")
FULL = {"repeat": 3, "duration": 3, "clients": [1, 8, 32, 128], "out": REPO / "benches" / "results"}
QUICK = {"repeat": 1, "duration": 2, "clients": [1, 32], "out": REPO / "benches" / "results" / "quick"}
# --profile: one case, -S prepared at 8 clients for 5 s, through each proxy in front of PostgreSQL.
PROFILE = {"repeat": 1, "duration": 5, "clients": [8], "modes": ["prepared"], "scripts": ["select-only"]}


@dataclass(frozen=True)
class Target:
    """One way of reaching an upstream: directly, or through a proxy whose CPU we sample."""

    name: str
    endpoint: Endpoint
    proxy_pid: int | None


def csv(kind):
    return lambda text: [kind(part) for part in text.split(",") if part]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 1 repeat, -T 2, clients 1,32; writes to benches/results/quick/",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="profile mode: -S prepared, 8 clients, -T 5 through each proxy under strace and perf;"
        " writes profile.{md,json}",
    )
    p.add_argument("--repeat", type=int, help="interleaved repeats of every run (default 3)")
    p.add_argument("--duration", type=int, help="pgbench -T seconds per run (default 3)")
    p.add_argument("--clients", type=csv(int), help="client counts (default 1,8,32,128)")
    p.add_argument("--modes", type=csv(str), help="pgbench -M modes (default simple,extended,prepared)")
    p.add_argument("--scripts", type=csv(str), help="select-only,simple-update (-S, -N; default both)")
    p.add_argument("--upstreams", type=csv(str), default=["postgres", "doltgres"], help="postgres,doltgres")
    p.add_argument(
        "--idle-sessions", type=int, default=1000, help="idle sessions for the memory test; 0 skips it"
    )
    p.add_argument(
        "--sidecar-bin", type=Path, help="use this sidecar binary instead of building target/release"
    )
    p.add_argument(
        "--relay-bin", type=Path, help="use this relay_floor binary instead of building the example"
    )
    p.add_argument(
        "--haproxy-threads",
        type=int,
        default=floor.HAPROXY_THREADS,
        help=f"HAProxy nbthread (default {floor.HAPROXY_THREADS})",
    )
    p.add_argument(
        "--relay-threads", type=int, help="relay_floor worker threads (default: tokio's, one per core)"
    )
    p.add_argument(
        "--out", type=Path, help="results directory (default benches/results, or benches/results/quick)"
    )
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (server logs) after the run")
    args = p.parse_args(argv)
    defaults = dict(QUICK if args.quick else FULL, modes=list(workload.MODES), scripts=list(workload.SCRIPTS))
    if args.profile:
        defaults.update(PROFILE)
        args.upstreams = ["postgres"]
    for key in ("repeat", "duration", "clients", "out", "modes", "scripts"):
        if getattr(args, key) is None:
            setattr(args, key, defaults[key])
    for value, allowed, what in (
        (args.modes, workload.MODES, "mode"),
        (args.scripts, workload.SCRIPTS, "script"),
        (args.upstreams, ("postgres", "doltgres"), "upstream"),
    ):
        unknown = set(value) - set(allowed)
        if unknown:
            p.error(f"unknown {what}: {', '.join(sorted(unknown))} (choose from {', '.join(allowed)})")
    return args


def raise_fd_limit() -> None:
    """Every session costs the proxy two descriptors; children inherit the raised limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass
class Bed:
    """Everything started for the benchmark runs."""

    targets: dict[str, list[Target]]
    postgres: Server | None = None
    # The proxies in front of PostgreSQL by kind, stopped before the memory test.
    postgres_proxies: dict[str, Server] = field(default_factory=dict)


def floor_settings(args: argparse.Namespace) -> proxies.FloorSettings:
    return proxies.FloorSettings(haproxy_threads=args.haproxy_threads, relay_threads=args.relay_threads)


def start_bed(tools: Tools, base: Path, args: argparse.Namespace) -> Bed:
    """Starts the upstreams and proxies and loads the pgbench tables."""
    max_clients = max(args.clients) + 50
    bed = Bed(targets={})
    if "postgres" in args.upstreams:
        pg = servers.start_postgres(tools, base, max_connections=max(400, args.idle_sessions + 100))
        dataset.init(tools, "postgres", pg.endpoint)
        bed.targets["postgres"] = [Target("direct", pg.endpoint, None)]
        for kind in proxies.KINDS:
            proxy = proxies.start(kind, tools, base, f"{kind}-pg", pg.endpoint, max_clients, floor_settings(args))
            bed.targets["postgres"].append(Target(kind, proxy.endpoint, proxy.pid))
            bed.postgres_proxies[kind] = proxy
        bed.postgres = pg
    if "doltgres" in args.upstreams:
        dg = servers.start_doltgres(tools, base)
        dataset.init(tools, "doltgres", dg.endpoint)
        bed.targets["doltgres"] = [Target("direct", dg.endpoint, None)]
        for kind in proxies.DOLTGRES_KINDS:
            proxy = proxies.start(kind, tools, base, f"{kind}-dg", dg.endpoint, max_clients, floor_settings(args))
            bed.targets["doltgres"].append(Target(kind, proxy.endpoint, proxy.pid))
    return bed


def plan(args: argparse.Namespace, targets: dict[str, list[Target]]) -> list[tuple[workload.RunSpec, Target]]:
    """Every run in order: repeat by repeat, case by case, the targets of a case back to back
    (their order rotated each repeat so no target always runs first)."""
    runs = []
    for repeat in range(1, args.repeat + 1):
        for upstream in args.upstreams:
            ring = targets[upstream]
            shift = (repeat - 1) % len(ring)
            order = ring[shift:] + ring[:shift]
            for script in args.scripts:
                for mode in args.modes:
                    for clients in args.clients:
                        for target in order:
                            spec = workload.RunSpec(
                                upstream, target.name, script, mode, clients, args.duration, repeat
                            )
                            runs.append((spec, target))
    return runs


def warm_up(tools: Tools, args: argparse.Namespace, targets: dict[str, list[Target]], log_dir: Path) -> None:
    """One short unrecorded -S run per target: caches, connection paths and CPU frequency settle."""
    for upstream in args.upstreams:
        for target in targets[upstream]:
            spec = workload.RunSpec(
                upstream, target.name, "select-only", "simple", 8, min(2, args.duration), 0
            )
            workload.run(tools, target.endpoint, spec, log_dir, target.proxy_pid)


def describe(result: dict) -> str:
    if not result["ok"]:
        return f"FAILED (exit {result['exit_code']}): {'; '.join(result['errors'][:1])}"
    text = f"{result['tps']:>9,.0f} tps"
    lat = result["latency_ms"]
    if lat:
        text += f"  p50 {lat['p50']:.3f}  p99 {lat['p99']:.3f} ms"
    if result.get("proxy_cpu_us_per_txn") is not None:
        text += f"  cpu {result['proxy_cpu_us_per_txn']:.1f} µs/txn"
    if result["failed"]:
        text += f"  failed txns {result['failed']}"
    return text


def run_benchmarks(tools: Tools, runs: list, log_dir: Path, results: list[dict]) -> None:
    for i, (spec, target) in enumerate(runs, 1):
        result = workload.run(tools, target.endpoint, spec, log_dir, target.proxy_pid)
        results.append(result)
        print(f"[{i:>3}/{len(runs)}] {spec.label()}  {describe(result)}", flush=True)


def measure_memory(
    tools: Tools, venv_python: Path, base: Path, bed: Bed, sessions: int, settings: proxies.FloorSettings
) -> list[dict]:
    """Each proxy freshly started in front of PostgreSQL, one at a time, with `sessions` idle sessions."""
    pg = bed.postgres
    for proxy in bed.postgres_proxies.values():
        proxy.proc.stop()
    out = []
    for kind in proxies.KINDS:
        memory.wait_for_backends_to_leave(tools, pg)
        proxy = proxies.start(kind, tools, base, f"{kind}-mem", pg.endpoint, sessions + 50, settings)
        try:
            figures = memory.measure(venv_python, proxy, sessions)
        finally:
            proxy.proc.stop()
        idle, loaded = figures["rss_idle_bytes"] / 2**20, figures["rss_loaded_bytes"] / 2**20
        print(
            f"memory: {kind}: {figures['sessions_opened']} sessions, RSS {idle:.1f} -> {loaded:.1f} MiB, "
            f"{figures['bytes_per_session'] or 0:,.0f} bytes/session",
            flush=True,
        )
        out.append(figures)
    return out


def draw_plots(venv_python: Path | None, raw: Path, out: Path) -> list[str]:
    if venv_python is None:
        return []
    done = subprocess.run(
        [str(venv_python), "-B", "-m", "benches.pgbench.plots", str(raw), str(out)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    if done.returncode != 0:
        print("bench: plotting failed; the report has no plots", file=sys.stderr)
    return [line for line in done.stdout.splitlines() if line.strip()]


def dump(results: dict) -> str:
    """JSON with one line per run: readable, and diffs between result files stay small."""
    head = json.dumps({k: v for k, v in results.items() if k != "runs"}, indent=1)
    runs = ",\n".join("  " + json.dumps(run, separators=(",", ":")) for run in results["runs"])
    return head[: head.rindex("}")].rstrip() + ',\n "runs": [\n' + runs + "\n ]\n}\n"


def write_outputs(results: dict, venv_python: Path | None, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    # Only this harness's plots: results/ also holds the other benchmarks' (soak.png, copy-stall.png).
    for pattern in PLOTS:
        for old in out.glob(pattern):
            old.unlink()
    raw = out / "latest.json"
    raw.write_text(dump(results))
    plots = draw_plots(venv_python, raw, out)
    report.write(results, plots, out / "latest.md")
    print(f"bench: wrote {out / 'latest.md'}, {raw.name} and {len(plots)} plot(s)", flush=True)


def interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def run_harness(
    tools: Tools, venv_python: Path, base: Path, log_dir: Path, args: argparse.Namespace, collected: dict
) -> None:
    """The benchmark runs, then the memory test; results go into `collected` as they finish."""
    bed = start_bed(tools, base, args)
    warm_up(tools, args, bed.targets, log_dir)
    run_benchmarks(tools, plan(args, bed.targets), log_dir, collected["runs"])
    if args.idle_sessions > 0 and bed.postgres is not None:
        collected["memory"] = measure_memory(
            tools, venv_python, base, bed, args.idle_sessions, floor_settings(args)
        )


def run_profile(tools: Tools, base: Path, log_dir: Path, args: argparse.Namespace, collected: dict) -> None:
    """PostgreSQL and every proxy in front of it, then profiling.profile on one case."""
    pg = servers.start_postgres(tools, base, max_connections=400)
    dataset.init(tools, "postgres", pg.endpoint)
    endpoints, pids = {"direct": pg.endpoint}, {}
    for kind in proxies.KINDS:
        proxy = proxies.start(
            kind, tools, base, f"{kind}-pg", pg.endpoint, max(args.clients) + 50, floor_settings(args)
        )
        endpoints[kind], pids[kind] = proxy.endpoint, proxy.pid
    spec = workload.RunSpec(
        "postgres", "direct", args.scripts[0], args.modes[0], args.clients[0], args.duration, 1
    )
    work = base / "profile"
    work.mkdir()
    profiling.profile(tools, endpoints, pids, spec, log_dir, work, collected["profile"])


def write_profile(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "profile.json").write_text(json.dumps(results, indent=1) + "\n")
    profile_report.write(results, out / "profile.md")
    print(f"bench: wrote {out / 'profile.md'} and profile.json", flush=True)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, interrupt)
    raise_fd_limit()
    started = time.time()
    tools = find_tools(args.sidecar_bin, args.relay_bin)
    venv_python = None if args.profile else ensure_venv()
    base = Path(tempfile.mkdtemp(prefix="dgs-bench-"))
    base.chmod(0o755)  # PostgreSQL and PgBouncer run as `postgres` in subdirectories
    # Private copies, so that a rebuild during the run cannot change the binaries under test.
    tools = replace(
        tools,
        sidecar=Path(shutil.copy2(tools.sidecar, base / "doltgres-sidecar")),
        relay=Path(shutil.copy2(tools.relay, base / "relay_floor")),
    )
    log_dir = base / "txn-logs"
    log_dir.mkdir()
    program_versions = versions(tools)
    collected: dict = {"runs": [], "memory": [], "profile": {}}
    interrupted = None
    try:
        if args.profile:
            run_profile(tools, base, log_dir, args, collected)
        else:
            run_harness(tools, venv_python, base, log_dir, args, collected)
    except KeyboardInterrupt:
        interrupted = "interrupted"
        print("bench: interrupted; writing what finished", file=sys.stderr)
    except Exception as e:  # report what finished, then fail
        interrupted = f"failed: {e}"
        traceback.print_exc()
        print("bench: failed; writing what finished", file=sys.stderr)
    finally:
        stop_all()
        if args.keep_tmp:
            print(f"bench: kept {base}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)
    results = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
        "elapsed_seconds": time.time() - started,
        "command": "python3 -m benches.pgbench.run " + shlex.join(argv),
        "interrupted": interrupted,
        "settings": {
            "quick": args.quick,
            "profile": args.profile,
            "repeat": args.repeat,
            "duration": args.duration,
            "clients": args.clients,
            "modes": args.modes,
            "scripts": args.scripts,
            "upstreams": args.upstreams,
            "idle_sessions": args.idle_sessions,
            "haproxy_threads": args.haproxy_threads,
            "relay_threads": args.relay_threads,
            "threads": os.cpu_count(),
        },
        "machine": machine(),
        "versions": program_versions,
    }
    if args.profile:
        settings = results["settings"]
        settings.update(script=args.scripts[0], mode=args.modes[0], clients=args.clients[0])
        if collected["profile"]:
            write_profile({**results, "profile": collected["profile"]}, args.out)
    else:
        results.update(runs=collected["runs"], memory=collected["memory"])
        if collected["runs"] or collected["memory"]:
            write_outputs(results, venv_python, args.out)
    return 0 if interrupted is None else 1


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (RuntimeError, subprocess.CalledProcessError) as e:
        print(f"bench: {e}", file=sys.stderr)
        sys.exit(1)
