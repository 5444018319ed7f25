#!/usr/bin/env python3
"""The benchmark table of scripts/bench-table.sh: loadgen's result files -> one summary JSON ->
Markdown, with the ratios the throughput goals name, and a before/after comparison of two
summaries.

    bench_table.py half RESULT.json            half of a run's requests/s (creates/s), for the
                                               open-loop rows
    bench_table.py collect DIR KEY=VALUE...    the summary of the loadgen results in DIR (one
                                               file per row, named after it) as JSON on stdout;
                                               KEY=VALUE pairs go into its "meta"
    bench_table.py render SUMMARY.json [--compare BEFORE.json]
                                               the Markdown table (and the comparison)

Only the standard library: it runs wherever python3 does.
"""

import json
import math
import os
import sys

# Rows in the order they run and print. Each: id, its label in the table, kind.
ROWS = [
    ("create", "task-api `POST /api/tasks`, 32 users round robin, 32 connections, through `sidecar run -f`", "http"),
    ("one-user", "the same, one user alone", "http"),
    ("half-peak", "the same (32 users) at half of the 32-user peak, open loop", "open"),
    ("fastapi", "the seed-shaped FastAPI service (2 uvicorn workers), same sidecar, same client", "http"),
    ("probe", "two-hop limit: an axum handler making two POSTs to a server that answers at once", "http"),
    ("sidecar", "sidecar alone, state GET, 8 connections", "http"),
    ("system", "whole system flat out (`scripts/load.sh --concurrency 16`), in-memory", "system"),
    ("system-half", "the same at half of its creates/s, open loop", "system-open"),
    ("kafka", "whole system flat out (`scripts/load.sh --kafka --concurrency 16`)", "system"),
    ("kafka-half", "the same at half of its creates/s, open loop", "system-open"),
]
ROW_IDS = [r[0] for r in ROWS]


def fail(message):
    print(f"bench_table: {message}", file=sys.stderr)
    sys.exit(2)


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        fail(f"{path}: {e}")


def pct(latency, key):
    return None if not latency else latency.get(key)


def summarise(result, kind):
    """The figures of one row from loadgen's result file."""
    http = result.get("http_latency")
    row = {
        "duration_s": result.get("duration_s"),
        "requests": result.get("requests"),
        "errors": result.get("errors"),
        "concurrency": result.get("concurrency"),
        "users": result.get("users"),
    }
    if kind in ("http", "open"):
        sent = result.get("requests_per_s")
        requests, errors = result.get("requests") or 0, result.get("errors") or 0
        row.update(
            # Successful requests per second: a row that answers errors fast is not fast.
            req_s=None if sent is None or not requests else sent * (requests - errors) / requests,
            sent_s=sent,
            p50_ms=pct(http, "p50_ms"),
            p99_ms=pct(http, "p99_ms"),
        )
    if kind == "open" or kind == "system-open":
        row["rate"] = result.get("rate")
    if kind in ("system", "system-open"):
        e2e = result.get("e2e_latency")
        audit = result.get("audit") or {}
        row.update(
            creates_s=result.get("requests_per_s"),
            emails_s=result.get("emails_per_s"),
            audit_s=audit.get("entries_per_s"),
            http_p99_ms=pct(http, "p99_ms"),
            e2e_p50_ms=pct(e2e, "p50_ms"),
            e2e_p99_ms=pct(e2e, "p99_ms"),
            emails_missing=result.get("emails_missing"),
            audit_missing=audit.get("missing"),
            audit_backlog_at_end=audit.get("backlog_at_end_of_sending"),
            audit_lag_p50_ms=pct(audit.get("lag"), "p50_ms"),
            audit_lag_p99_ms=pct(audit.get("lag"), "p99_ms"),
        )
    return row


def ratio(a, b):
    if a is None or b in (None, 0):
        return None
    return a / b


def ratios(rows):
    """(name, value, goal text, met) for each goal the rows allow to judge."""
    get = lambda row, key: (rows.get(row) or {}).get(key)
    out = []

    def add(name, value, goal, met, fmt):
        if value is not None:
            out.append((name, fmt(value), goal, "yes" if met(value) else "no"))

    times = lambda v: f"{v:.2f}" if v < 10 else f"{v:.1f}"
    add("one user ÷ 32 users (req/s)", ratio(get("one-user", "req_s"), get("create", "req_s")),
        "≥ 0.50", lambda v: v >= 0.5, lambda v: f"{v:.2f}")
    add("task-api ÷ FastAPI (req/s)", ratio(get("create", "req_s"), get("fastapi", "req_s")),
        "≥ 40×", lambda v: v >= 40, lambda v: f"{times(v)}×")
    add("task-api ÷ two-hop limit (req/s)", ratio(get("create", "req_s"), get("probe", "req_s")),
        "≥ 0.70", lambda v: v >= 0.7, lambda v: f"{v:.2f}")
    add("task-api p99 at half of peak, open loop", get("half-peak", "p99_ms"),
        "≤ 5 ms", lambda v: v <= 5, ms)
    for system, label in (("system", "in-memory"), ("kafka", "Kafka")):
        add(f"emails/s ÷ creates/s, flat out, {label}",
            ratio(get(system, "emails_s"), get(system, "creates_s")),
            "≥ 1.00", lambda v: v >= 0.995, lambda v: f"{v:.2f}")
        add(f"audit entries/s ÷ creates/s, flat out, {label}",
            ratio(get(system, "audit_s"), get(system, "creates_s")),
            "≥ 1.00", lambda v: v >= 0.995, lambda v: f"{v:.2f}")
        add(f"request→email p99 at half of the creates/s, {label}",
            get(f"{system}-half", "e2e_p99_ms"), "≤ 20 ms", lambda v: v <= 20, ms)
    return out


def num(v):
    if v is None:
        return "–"
    return f"{v:,.0f}" if v >= 100 else f"{v:,.1f}"


def ms(v):
    if v is None:
        return "–"
    if v >= 1000:
        return f"{v / 1000:.1f} s"
    if v >= 100:
        return f"{v:.0f} ms"
    if v >= 10:
        return f"{v:.1f} ms"
    return f"{v:.2f} ms"


def result_text(row_id, row):
    kind = dict((r[0], r[2]) for r in ROWS)[row_id]
    errors = f", {row['errors']:,} errors (not counted in req/s)" if row.get("errors") else ""
    if kind == "http":
        return f"{num(row.get('req_s'))} req/s, p50 {ms(row.get('p50_ms'))}, p99 {ms(row.get('p99_ms'))}{errors}"
    if kind == "open":
        return (f"at {num(row.get('rate'))} req/s: p50 {ms(row.get('p50_ms'))}, "
                f"p99 {ms(row.get('p99_ms'))}{errors}")
    missing = []
    if row.get("emails_missing"):
        missing.append(f"{row['emails_missing']:,} emails")
    if row.get("audit_missing"):
        missing.append(f"{row['audit_missing']:,.0f} audit entries")
    missing = f"; never arrived: {', '.join(missing)}" if missing else ""
    lead = (f"{num(row.get('creates_s'))} creates/s" if kind == "system"
            else f"at {num(row.get('rate'))} req/s: {num(row.get('creates_s'))} creates/s")
    return (f"{lead}, {num(row.get('emails_s'))} emails/s, {num(row.get('audit_s'))} audit "
            f"entries/s: request→email p50 {ms(row.get('e2e_p50_ms'))}, p99 {ms(row.get('e2e_p99_ms'))}; "
            f"audit lag p99 {ms(row.get('audit_lag_p99_ms'))}{errors}{missing}")


def render(summary):
    meta = summary.get("meta", {})
    rows = summary.get("rows", {})
    lines = []
    bits = [f"{k} {v}" for k, v in meta.items() if v not in (None, "")]
    if bits:
        lines.append("Measured " + ", ".join(bits) + ".")
        lines.append("")
    lines += ["| what | result |", "|---|---|"]
    for row_id, label, _ in ROWS:
        if row_id in rows:
            lines.append(f"| {label} | {result_text(row_id, rows[row_id])} |")
    found = ratios(rows)
    if found:
        lines += ["", "| ratio or goal | measured | goal | met |", "|---|---|---|---|"]
        lines += [f"| {n} | {v} | {g} | {m} |" for n, v, g, m in found]
    return "\n".join(lines)


# Figures compared before/after: (row, key, label, higher is better).
FIGURES = [
    ("create", "req_s", "task-api, 32 users: req/s", True),
    ("create", "p99_ms", "task-api, 32 users: p99 ms", False),
    ("one-user", "req_s", "one user alone: req/s", True),
    ("one-user", "p99_ms", "one user alone: p99 ms", False),
    ("half-peak", "p99_ms", "half of peak, open loop: p99 ms", False),
    ("fastapi", "req_s", "FastAPI: req/s", True),
    ("probe", "req_s", "two-hop limit: req/s", True),
    ("sidecar", "req_s", "sidecar state GET: req/s", True),
    ("sidecar", "p50_ms", "sidecar state GET: p50 ms", False),
]
for _system, _label in (("system", "in-memory"), ("kafka", "Kafka")):
    FIGURES += [
        (_system, "creates_s", f"flat out, {_label}: creates/s", True),
        (_system, "emails_s", f"flat out, {_label}: emails/s", True),
        (_system, "audit_s", f"flat out, {_label}: audit entries/s", True),
        (_system, "e2e_p50_ms", f"flat out, {_label}: request→email p50 ms", False),
        (f"{_system}-half", "e2e_p99_ms", f"half rate, {_label}: request→email p99 ms", False),
        (f"{_system}-half", "audit_lag_p99_ms", f"half rate, {_label}: audit lag p99 ms", False),
    ]


def figure(v):
    """A latency in ms for the comparison: two decimals below 10."""
    if v is None:
        return "–"
    return f"{v:.2f}" if v < 10 else f"{v:,.0f}"


def compare(before, after):
    lines = ["| figure | before | after | after ÷ before |", "|---|---|---|---|"]
    b_rows, a_rows = before.get("rows", {}), after.get("rows", {})
    for row, key, label, _higher in FIGURES:
        b = (b_rows.get(row) or {}).get(key)
        a = (a_rows.get(row) or {}).get(key)
        if a is None and b is None:
            continue
        r = ratio(a, b)
        show = figure if key.endswith("_ms") else num
        lines.append(f"| {label} | {show(b)} | {show(a)} | {'–' if r is None else f'{r:.2f}'} |")
    b_goals = {n: v for n, v, _, _ in ratios(b_rows)}
    for name, value, goal, _ in ratios(a_rows):
        lines.append(f"| {name} (goal {goal}) | {b_goals.get(name, '–')} | {value} | |")
    return "\n".join(lines)


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0
    command = argv[1]
    if command == "half":
        if len(argv) != 3:
            fail("usage: half RESULT.json")
        rate = load(argv[2]).get("requests_per_s")
        if not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate <= 0:
            fail(f"{argv[2]}: no requests_per_s to halve")
        print(f"{max(rate / 2, 0.1):.1f}")
        return 0
    if command == "collect":
        if len(argv) < 3:
            fail("usage: collect DIR KEY=VALUE...")
        directory = argv[2]
        meta = {}
        for pair in argv[3:]:
            key, sep, value = pair.partition("=")
            if not sep:
                fail(f"{pair}: expected KEY=VALUE")
            meta[key] = value
        rows = {}
        for row_id, _, kind in ROWS:
            path = os.path.join(directory, f"{row_id}.json")
            if os.path.exists(path):
                rows[row_id] = summarise(load(path), kind)
        json.dump({"meta": meta, "rows": rows}, sys.stdout, indent=2, ensure_ascii=False)
        print()
        return 0
    if command == "render":
        args = argv[2:]
        before = None
        if "--compare" in args:
            i = args.index("--compare")
            if i + 1 >= len(args):
                fail("--compare needs a file")
            before = load(args[i + 1])
            del args[i:i + 2]
        if len(args) != 1:
            fail("usage: render SUMMARY.json [--compare BEFORE.json]")
        after = load(args[0])
        print(render(after))
        if before is not None:
            print()
            print(compare(before, after))
        return 0
    fail(f"unknown command {command!r} (half, collect, render)")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
