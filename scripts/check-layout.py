#!/usr/bin/env python3
"""The workspace's layout rules, checked from the source (run by .ci/run).

1. No import circle inside a crate. Within every module, its child modules must form a DAG: a
   child that refers to a sibling (through `crate::…`, `super::…` or `self::…` paths) depends on
   it, and no two siblings may depend on each other directly or through others. A parent and its
   own children are exempt (a parent owns what it declares).
2. No crate holds more than 25% of the workspace's source lines (`*.rs` under `crates/*/src`).
3. The services reach the sidecar's test harness only as a dev-dependency.

Exit 0 when every rule holds; otherwise print each violation and exit 1.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CRATES = ROOT / "crates"
MAX_SHARE = 0.25
SERVICES = ["task-api", "email-worker", "reminder-scheduler", "audit-logger"]
TEST_ONLY_CRATES = ["sidecar-testing", "service-testing"]

PATH_RE = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
LINE_COMMENT_RE = re.compile(r"//.*")
STRING_RE = re.compile(r'"(?:\\.|[^"\\])*"')


def module_path(src: Path, file: Path) -> tuple[str, ...]:
    """`src/a/b.rs` and `src/a/b/mod.rs` are `("a", "b")`; `lib.rs`/`main.rs` are the root."""
    parts = list(file.relative_to(src).with_suffix("").parts)
    if parts[-1] == "mod":
        parts.pop()
    if parts == ["lib"]:
        return ()
    if parts == ["main"]:
        # A binary beside a library is a crate of its own that uses the library from outside.
        return ("<bin>", "main") if (src / "lib.rs").exists() else ()
    if parts and parts[0] == "bin":
        return ("<bin>",) + tuple(parts[1:])
    return tuple(parts)


def expand_use_tree(tree: str) -> list[str]:
    """`crate::{a, b::{c, d}}` -> `crate::a`, `crate::b::c`, `crate::b::d`."""
    tree = re.sub(r"\s+", "", tree)
    start = tree.find("{")
    if start < 0:
        return [tree]
    prefix, depth, parts, current = tree[:start], 0, [], ""
    for ch in tree[start + 1:]:
        if ch == "{":
            depth += 1
        elif ch == "}":
            if depth == 0:
                break
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [path for part in parts if part for path in expand_use_tree(prefix + part)]


def code_paths(text: str) -> list[str]:
    """Every `crate::`/`super::`/`self::` path in the code, with `use` trees expanded."""
    code = "\n".join(STRING_RE.sub('""', LINE_COMMENT_RE.sub("", l)) for l in text.splitlines())
    paths = []
    for statement in re.findall(r"\buse\s+([^;]+);", code):
        paths += expand_use_tree(statement)
    return paths + [m.group(0) for m in PATH_RE.finditer(code)]


def absolute(path: str, here: tuple[str, ...]) -> list[str] | None:
    """`crate::a::b`, `super::a`, `self::a` (or a plain `a::b` inside a `use`) as segments from
    the crate root; None for paths into other crates."""
    match = PATH_RE.match(path)
    if not match:
        return None
    anchor, rest = match.group(1), match.group(2)
    segments = [s for s in rest.split("::") if s and s != "self"]
    if anchor == "crate":
        return segments
    if anchor == "self":
        return list(here) + segments
    base = list(here[:-1]) if here else []
    while segments and segments[0] == "super":
        segments.pop(0)
        base = base[:-1]
    return base + segments


def re_exports(files: dict[tuple[str, ...], Path]) -> dict[tuple[str, ...], dict[str, list[str]]]:
    """For each module, the names it re-exports with `pub use` and where they really live, so
    that `crate::Error` counts as a use of the module that defines `Error`."""
    table: dict[tuple[str, ...], dict[str, list[str]]] = {}
    for here, file in files.items():
        code = "\n".join(LINE_COMMENT_RE.sub("", l) for l in file.read_text(encoding="utf-8").splitlines())
        for statement in re.findall(r"\bpub(?:\([^)]*\))?\s+use\s+([^;]+);", code):
            for path in expand_use_tree(statement):
                name = path.split("::")[-1]
                if " as " in path or "as" in path.split("::")[-1:]:
                    continue
                target = path if PATH_RE.match(path) else "self::" + path
                resolved = absolute(target, here)
                if resolved and name != "*":
                    table.setdefault(here, {})[name] = resolved
    return table


def resolve(full: list[str], modules: set[tuple[str, ...]], exports, depth: int = 0):
    """The module that a path from the crate root names, following re-exports."""
    for cut in range(len(full), -1, -1):
        candidate = tuple(full[:cut])
        if candidate in modules:
            rest = full[cut:]
            if rest and depth < 8 and rest[0] in exports.get(candidate, {}):
                target = exports[candidate][rest[0]] + rest[1:]
                return resolve(target, modules, exports, depth + 1)
            return candidate
    return None


def referenced_modules(text: str, here: tuple[str, ...], modules: set[tuple[str, ...]], exports=None):
    """The modules that a file's `crate::`/`super::`/`self::` paths reach (longest known prefix,
    through re-exports)."""
    exports = exports or {}
    found = set()
    for path in code_paths(text):
        for match in PATH_RE.finditer(path):
            full = absolute(match.group(0), here)
            if full is None:
                continue
            target = resolve(full, modules, exports)
            if target is not None:
                found.add(target)
    return found


def sibling_cycles(crate: Path) -> list[str]:
    src = crate / "src"
    if not src.is_dir():
        return []
    files = {module_path(src, f): f for f in src.rglob("*.rs")}
    modules = set(files)
    exports = re_exports(files)
    # edges[parent][child_a] = set of siblings child_a refers to
    edges: dict[tuple[str, ...], dict[str, set[str]]] = {}
    for here, file in files.items():
        if not here or here[0] == "<bin>":
            continue
        text = file.read_text(encoding="utf-8")
        for target in referenced_modules(text, here, modules, exports):
            # The closest common ancestor decides which two siblings depend on each other.
            common = 0
            while common < min(len(here), len(target)) and here[common] == target[common]:
                common += 1
            if common == len(here) or common == len(target):
                continue  # ancestor or descendant: exempt
            parent = here[:common]
            edges.setdefault(parent, {}).setdefault(here[common], set()).add(target[common])
    problems = []
    for parent, graph in sorted(edges.items()):
        for members, cycle in find_cycles(graph):
            where = "::".join(parent) or "crate root"
            problems.append(
                f"{crate.name}: import circle in {where} among {{{', '.join(members)}}}, "
                f"e.g. {' -> '.join(cycle)}"
            )
    return problems


def find_cycles(graph: dict[str, set[str]]) -> list[tuple[list[str], list[str]]]:
    """Each strongly connected component with more than one node, with one cycle through it."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    cycles = []
    for component in components:
        members = set(component)
        # Walk inside the component from its first node until a node repeats.
        path = [component[0]]
        while True:
            nxt = sorted(n for n in graph.get(path[-1], ()) if n in members)[0]
            if nxt in path:
                cycles.append((component, path[path.index(nxt):] + [nxt]))
                break
            path.append(nxt)
    return cycles


def source_lines() -> dict[str, int]:
    counts = {}
    for crate in sorted(p for p in CRATES.iterdir() if (p / "Cargo.toml").exists()):
        src = crate / "src"
        counts[crate.name] = sum(
            len(f.read_text(encoding="utf-8").splitlines()) for f in src.rglob("*.rs")
        ) if src.is_dir() else 0
    return counts


def test_harness_in_normal_tree() -> list[str]:
    problems = []
    for service in SERVICES:
        tree = subprocess.run(
            ["cargo", "tree", "--offline", "-e", "normal", "-p", service, "--prefix", "none"],
            cwd=ROOT, capture_output=True, text=True,
        )
        if tree.returncode != 0:
            problems.append(f"cargo tree -p {service} failed: {tree.stderr.strip()}")
            continue
        names = {line.split(" ")[0] for line in tree.stdout.splitlines() if line}
        for crate in TEST_ONLY_CRATES:
            if crate in names:
                problems.append(f"{service} depends on {crate} outside [dev-dependencies]")
    return problems


def main() -> int:
    problems: list[str] = []
    for crate in sorted(p for p in CRATES.iterdir() if (p / "Cargo.toml").exists()):
        problems += sibling_cycles(crate)
    counts = source_lines()
    total = sum(counts.values())
    print(f"source lines (crates/*/src): {total}")
    for name, lines in sorted(counts.items(), key=lambda kv: -kv[1]):
        share = lines / total if total else 0.0
        print(f"  {name:<22} {lines:>6}  {share:6.1%}")
        if share > MAX_SHARE:
            problems.append(f"{name} holds {share:.1%} of the workspace's source lines (limit {MAX_SHARE:.0%})")
    if "--no-cargo" not in sys.argv:
        problems += test_harness_in_normal_tree()
    for problem in problems:
        print(f"layout: {problem}", file=sys.stderr)
    if not problems:
        print("layout: no import circle, no crate over 25%, test harness in dev-dependencies only")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
