#!/usr/bin/env python3
"""The Markdown report of scripts/profile.sh from callgrind's dumps of the measured window.

    callgrind_report.py DIR N INTRO

DIR holds task-api.dump, email-worker.dump, audit-logger.dump and sidecar.dump (callgrind's output files); N is the
number of creates (and emails) in the window. Prints the instructions per operation and, per
process, the top 15 functions inclusive (every function, then the project's own) and by self cost.
Inclusive figures above the window's total (recursive futures, counted once per level) are left
out.

The dumps are read here rather than with callgrind_annotate: a call that was already under way
when the counters were zeroed (a thread's main loop, a server's accept loop) is written as
`calls=0`, and callgrind_annotate 3.19 then books that call's whole cost as the caller's own, so
thread entry points show as 87% "self". Here every cost line that follows a `calls=` line is a
call's (inclusive) cost, whatever its count.
"""

import os
import re
import sys
from collections import defaultdict

PROCESSES = [
    ("task-api", "create"),
    ("email-worker", "email"),
    ("audit-logger", "create (its entries on the task trail and the user trail)"),
    ("sidecar", "create (every sidecar of the run: task-api's, the broker's delivery, the "
                "email-worker's, the audit-logger's)"),
]
OWN = ("task_api::", "email_worker::", "audit_logger::", "dapr_http::", "service_kit::", "sidecar_core::",
       "sidecar::", "events::", "resiliency::", "trace_context::")
NAMED = re.compile(r"^\((\d+)\)(?: (.*))?$")


def parse(path):
    """(total Ir, {function: self Ir}, {function: inclusive Ir}) of one callgrind dump."""
    names = {}
    self_cost = defaultdict(int)
    calls_cost = defaultdict(int)
    total = None
    function = None
    callee = None
    in_call = False

    def name(value):
        m = NAMED.match(value)
        if not m:
            return value
        if m.group(2) is not None:
            names[m.group(1)] = m.group(2)
        return names.get(m.group(1), value)

    with open(path, encoding="utf-8", errors="replace") as f:
        for raw in f:
            line = raw.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            head, sep, value = line.partition("=")
            if sep and head in ("fn", "cfn"):
                if head == "fn":
                    function = name(value)
                else:
                    callee = name(value)
                continue
            if sep and head == "calls":
                in_call = True
                continue
            if sep and head in ("ob", "fl", "fi", "fe", "cob", "cfi", "cfl", "jump", "jcnd"):
                continue
            if line.startswith("summary:") or line.startswith("totals:"):
                total = int(line.split(":", 1)[1].split()[0])
                continue
            first = line[0]
            if not (first.isdigit() or first in "+-*"):
                continue  # a header line (events:, positions:, desc: ...)
            parts = line.split()
            cost = int(parts[1]) if len(parts) > 1 else 0
            if function is None:
                continue
            if in_call:
                # A direct call to itself is already inside this function's figures.
                if callee != function:
                    calls_cost[function] += cost
                in_call = False
            else:
                self_cost[function] += cost
    inclusive = {f: self_cost.get(f, 0) + calls_cost.get(f, 0)
                 for f in set(self_cost) | set(calls_cost)}
    if total is None:
        total = sum(self_cost.values())
    return total, dict(self_cost), inclusive


def top(costs, total, keep=lambda name: True, n=15):
    # Above the total is recursion counted at each level (a future polled inside a future of the
    # same type, `'2` names), which says nothing about where the instructions went.
    ranked = sorted(((c, f) for f, c in costs.items() if keep(f) and c <= total), reverse=True)
    return [(c, 100.0 * c / total if total else 0.0, f) for c, f in ranked[:n]]


def table(rows, per):
    lines = ["| Ir | % | per operation | function |", "|---:|---:|---:|---|"]
    for ir, pct, function in rows:
        name = function if len(function) <= 160 else function[:157] + "..."
        name = name.replace("|", "\\|")
        lines.append(f"| {ir:,} | {pct:.1f} | {ir // per:,} | `{name}` |")
    return "\n".join(lines)


def main(argv):
    if len(argv) != 4:
        sys.exit("usage: callgrind_report.py DIR N INTRO")
    directory, n, intro = argv[1], int(argv[2]), argv[3]
    print("# callgrind: instructions per operation\n")
    print(intro + "\n")
    print("| process | Ir in the window | Ir per operation |")
    print("|---|---:|---|")
    profiles = {}
    for process, op in PROCESSES:
        total, self_cost, inclusive = parse(os.path.join(directory, f"{process}.dump"))
        profiles[process] = (total, self_cost, inclusive)
        print(f"| {process} | {total:,} | {total // n:,} per {op} |")
    for process, _ in PROCESSES:
        total, self_cost, inclusive = profiles[process]
        print(f"\n## {process}\n")
        print("Top 15 functions, inclusive:\n")
        print(table(top(inclusive, total), n))
        print("\nTop 15 of the project's own functions, inclusive:\n")
        print(table(top(inclusive, total, lambda f: any(m in f for m in OWN)), n))
        print("\nTop 15 functions, self:\n")
        print(table(top(self_cost, total), n))


if __name__ == "__main__":
    main(sys.argv)
