"""Markdown formatting shared by the harness's reports (report.py, profile_report.py)."""

from __future__ import annotations


def fmt_tps(figures: dict) -> str:
    if figures["tps"] is None:
        return "failed"
    text = f"{figures['tps']:,.0f}"
    return text if figures["ok"] == figures["runs"] else f"{text} ({figures['ok']}/{figures['runs']} ok)"


def fmt_ratio(ratio: dict | None) -> str:
    if ratio is None:
        return "–"
    if ratio["n"] == 1:
        return f"{ratio['median']:.2f}"
    return f"{ratio['median']:.2f} ({ratio['min']:.2f}–{ratio['max']:.2f})"


def fmt_latency(figures: dict) -> str:
    lat = figures["latency_ms"]
    if not lat:
        return "–"
    return " / ".join(fmt_ms(lat[k]) for k in ("avg", "p50", "p95", "p99"))


def fmt_ms(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def fmt_us(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def fmt_count(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def fmt_mib(value: float | None) -> str:
    return "–" if value is None else f"{value / 2**20:.1f} MiB"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines
