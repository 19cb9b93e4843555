#!/usr/bin/env python3
"""Checks that a Grafana dashboard and Prometheus rule files name only metrics a running sidecar
really exports.

    check-metric-names.py METRICS_TEXT DASHBOARD_JSON [RULE_FILE...]

METRICS_TEXT is a scrape of GET /metrics. A family declared there (`# TYPE name type`) exports
`name` for gauges, `name_total` for counters, and `name_bucket`/`_sum`/`_count` for histograms.
Every `doltgres_sidecar_*` name in a dashboard query or a rule file must be one of those. The
dashboard must also show what an operator looks at first: sessions, commits per second, write
commits since the last backup, window stalls and backup age.
"""
import json
import re
import sys

NAME = re.compile(r"\bdoltgres_sidecar_[a-z0-9_]+\b")


def exported(text):
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(None, 3)
            kind = kind.strip()
            if kind == "counter":
                names.add(name + "_total")
                names.add(name)  # OpenMetrics declares counters without the suffix
            elif kind == "histogram":
                names.update(name + s for s in ("_bucket", "_sum", "_count"))
            else:
                names.add(name)
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, 1)[0])
    return names


def main():
    metrics, dashboard, *rules = sys.argv[1:]
    known = exported(open(metrics).read())
    if not any(n.startswith("doltgres_sidecar_") for n in known):
        sys.exit(f"{metrics}: no doltgres_sidecar_ metrics in the scrape")
    problems = []
    dash = json.load(open(dashboard))
    ids = [p["id"] for p in dash["panels"]]
    if len(ids) != len(set(ids)):
        problems.append(f"{dashboard}: panel ids repeat")
    exprs = []
    for p in dash["panels"]:
        if not p.get("targets"):
            problems.append(f"{dashboard}: panel {p['title']!r} has no query")
        for t in p.get("targets", []):
            exprs.append((p["title"], t["expr"]))
    for var in dash.get("templating", {}).get("list", []):
        if isinstance(var.get("query"), dict):
            exprs.append((f"variable {var['name']}", var["query"]["query"]))
    used = set()
    for where, expr in exprs:
        for name in NAME.findall(expr):
            used.add(name)
            if name not in known:
                problems.append(f"{dashboard}: {where}: {name} is not exported")
    wanted = {
        "sessions": "doltgres_sidecar_sessions",
        "commits per second": "doltgres_sidecar_commits_total",
        "write commits since backup": "doltgres_sidecar_write_commits_since_backup",
        "window stalls": "doltgres_sidecar_window_stall_seconds_bucket",
        "backup age": "doltgres_sidecar_last_backup_success_timestamp_seconds",
    }
    for what, name in wanted.items():
        if name not in used:
            problems.append(f"{dashboard}: no panel shows {what} ({name})")
    for path in rules:
        for lineno, line in enumerate(open(path), 1):
            for name in NAME.findall(line):
                if name not in known:
                    problems.append(f"{path}:{lineno}: {name} is not exported")
    if problems:
        sys.exit("\n".join(problems))
    print(f"{len(used)} metric names in {dashboard} and {len(rules)} rule file(s), all exported")


if __name__ == "__main__":
    main()
