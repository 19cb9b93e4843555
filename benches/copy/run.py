#!/usr/bin/env python3
"""Stall of stop-and-copy windows by database size and by bytes changed since the previous copy.

    python3 -m benches.copy.run                                   # 10 MB, 100 MB, 1 GB; 0/1/10 MB changes
    python3 -m benches.copy.run --sizes 10 --changes 0,1 --repeat 1   # smoke run, ~1 minute

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

import argparse
import atexit
import datetime
import json
import os
import shlex
import shutil
import signal
import tempfile
import time
import traceback
from pathlib import Path

from benches.copy.settings import BATCH_ROWS, GC_BYTES_PER_ROW, GC_TIMEOUT, JOURNAL_BYTES_PER_ROW_GUESS, MB, PAYLOAD, REPO, csv_numbers, log
from benches.copy.procs import Proc, on_signal
from benches.copy.tools import doltgres_binary, machine, sidecar_binary, versions
from benches.copy.bench import Bench, copy_row
from benches.copy.report import headline, make_plot, size_label, summarize, write_markdown


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
        command="python3 -m benches.copy.run" + ("" if not argv else " " + shlex.join(argv)),
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
