"""The layering rule of DESIGN.md section 2, from the code's own imports (also those inside functions).

A module may import the layers listed before its own, never those after; no two modules import each other
(directly or through others); nothing in the library imports the CLI or the experiments; no source file has
more than 450 lines. Run from anywhere: ``python tests/layering_rule.py`` (exit 1 and one line per problem)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
# Lowest first (DESIGN.md section 2, with viz below training: the trainer draws preview grids and viz imports
# nothing of difflab). A top-level module not listed (e.g. interop, export) may import any listed layer below cli.
LAYERS = ["difflab.utils", "difflab.config", "difflab.diffusion", "difflab.nets", "difflab.data",
          "difflab.checkpoint", "difflab.models", "difflab.sampling", "difflab.guidance", "difflab.recipe",
          "difflab.viz", "difflab.training", "difflab.eval", "difflab.experiments", "difflab.commands", "difflab.cli"]
LIBRARY = ("difflab.diffusion", "difflab.sampling", "difflab.guidance", "difflab.nets", "difflab.data",
           "difflab.training", "difflab.eval", "difflab.recipe", "difflab.viz")
MAX_LINES = 450


def modules() -> dict[str, Path]:
    out = {}
    for f in (SRC / "difflab").rglob("*.py"):
        parts = f.relative_to(SRC).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    def resolve(name):
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph = {m: set() for m in mods}
    for m, f in mods.items():
        pkg = m if f.name == "__init__.py" else m.rpartition(".")[0]
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    p = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join(p + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for t in targets:
                r = resolve(t) if t.startswith("difflab") else None
                # importing one's own package (its __init__) is not an edge
                if r and r != m and not (m.startswith(r + ".") and mods[r].name == "__init__.py"):
                    graph[m].add(r)
    return graph


def layer(m: str) -> int | None:
    for i, name in enumerate(LAYERS):
        if m == name or m.startswith(name + "."):
            return i
    return None


def cycles(graph) -> list[list[str]]:
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def problems() -> list[str]:
    mods = modules()
    graph = imports(mods)
    bad = [f"import circle: {', '.join(c)}" for c in cycles(graph)]
    for m, targets in sorted(graph.items()):
        for t in sorted(targets):
            lm, lt = layer(m), layer(t)
            if m.startswith(LIBRARY) and (t in ("difflab.cli", "difflab.commands") or t.startswith("difflab.experiments")):
                bad.append(f"library module {m} imports {t}")
            elif lm is not None and lt is not None and lt > lm:
                bad.append(f"upward import: {m} ({LAYERS[lm]}) -> {t} ({LAYERS[lt]})")
    for _, f in sorted(mods.items()):
        n = f.read_text().count("\n")
        if n > MAX_LINES:
            bad.append(f"{f.relative_to(SRC)} has {n} lines (> {MAX_LINES})")
    return bad


if __name__ == "__main__":
    found = problems()
    print("\n".join(found) if found else f"{len(modules())} modules: layering rule holds")
    sys.exit(1 if found else 0)
