"""Issue 17 item 4 on the CPU: the sampler x NFE table and frontier plot from the n = 2,000 rows of n2000.sh.

Reads ``benchmarks/results/n2000/cond_*.json`` (one ``difflab eval mnist-cond`` each; the grid is the one in the
row's SamplingSpec, a grid file counting as "optimised"), prints a markdown table of classifier-FID (and recall) per
sampler and NFE budget, and draws classifier-FID against NFE per sampler (log axis) with the lower envelope (the frontier).

    python experiments/cpu/nfe_table.py [--dir benchmarks/results/n2000] [--png docs/figures/nfe_frontier_cpu.png]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from bench_quality_nfe import nfe_of  # noqa: E402  (the NFE count of a sampler and step count)

BUDGETS = (5, 8, 10, 15, 20, 35)


def budget_of(n: int) -> int:
    """The budget a row was run for (a two-stage sampler's 2 steps - 1 may fall one below it)."""
    return min(b for b in BUDGETS if b >= n)


def collect(folder: Path) -> dict:
    """{(sampler, grid): {budget: row}} for the unguided mnist-cond rows (no CFG, no sigma_min override)."""
    table: dict = {}
    for f in sorted(folder.glob("cond_*.json")):
        r = json.loads(f.read_text())
        s = r["sampling"]
        if s.get("cfg_weight") or s.get("autoguidance") or s.get("sigma_min") is not None:
            continue
        grid = s["grid"] if isinstance(s["grid"], str) and not s["grid"].endswith(".json") else "optimised"
        n = nfe_of(s["sampler"], int(s["steps"]))
        if n > 35:
            continue
        name = s["sampler"] + (f" (order {s['order'] or 2})" if s["sampler"] == "unipc" else "")
        table.setdefault((name, grid), {})[budget_of(n)] = {
            "nfe": n, "fid": r["fid_classifier"], "recall": r["recall"], "precision": r["precision"],
            "coverage": r["coverage"], "row": f.stem}
    return table


def markdown(table: dict) -> str:
    head = "| sampler | grid | " + " | ".join(f"{b} NFE" for b in BUDGETS) + " |"
    lines = [head, "|" + "---|" * (len(BUDGETS) + 2)]
    best = {b: min((rows[b]["fid"] for rows in table.values() if b in rows), default=math.inf) for b in BUDGETS}
    order = sorted(table, key=lambda k: (k[1] != "karras", min(v["fid"] for v in table[k].values())))
    for key in order:
        cells = []
        for b in BUDGETS:
            row = table[key].get(b)
            if row is None:
                cells.append("")
                continue
            fid = f"{row['fid']:.3f}" if row["fid"] < 10 else f"{row['fid']:.0f}"
            fid = f"**{fid}**" if row["fid"] == best[b] else fid
            mark = f" ({row['nfe']})" if row["nfe"] != b else ""
            cells.append(f"{fid} / {row['recall']:.3f}{mark}")
        lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(table: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.set_prop_cycle(color=plt.cm.tab20.colors)
    for (sampler, grid), rows in sorted(table.items()):
        pts = sorted((r["nfe"], r["fid"]) for r in rows.values())
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        ax.plot(xs, ys, marker="o", ms=3, lw=1, ls="-" if grid == "karras" else "--", label=f"{sampler} ({grid})")
    env = {}
    for rows in table.values():
        for r in rows.values():
            env[r["nfe"]] = min(env.get(r["nfe"], math.inf), r["fid"])
    xs, run, ys = sorted(env), math.inf, []
    for x in xs:
        run = min(run, env[x])
        ys.append(run)
    ax.plot(xs, ys, color="k", lw=2.5, alpha=0.3, label="frontier")
    ax.set(xlabel="network evaluations (NFE)", ylabel="classifier-FID (n = 2,000)", yscale="log",
           title="mnist-cond, deterministic samplers, CPU")
    ax.set_ylim(0.1, 10)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", default="benchmarks/results/n2000")
    p.add_argument("--png", default="docs/figures/nfe_frontier_cpu.png")
    a = p.parse_args()
    table = collect(Path(a.dir))
    print(markdown(table))
    if a.png:
        plot(table, Path(a.png))
        print(f"wrote {a.png}")


if __name__ == "__main__":
    main()
