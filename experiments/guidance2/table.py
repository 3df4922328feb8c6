"""Print the markdown table of docs/results.md "Guidance beyond CFG" from the sweep's JSON files.

    python experiments/guidance2/table.py runs/g2"""

import json
import sys
from pathlib import Path

COLS = ["fid_classifier", "precision", "recall", "density", "coverage", "vendi", "vendi_per_10", "modes_per_10",
        "quality"]


def main(folder):
    rows = []
    for p in sorted(Path(folder).glob("*.json")):
        d = json.loads(p.read_text())
        if "sampling" not in d or p.stem == "smoke":
            continue
        rows.append((d["fid_classifier"], p.stem, d))
    print("| setting | n | " + " | ".join(COLS) + " | sampling s |")
    print("| --- " * (len(COLS) + 3) + "|")
    for _, name, d in sorted(rows, key=lambda r: r[0]):
        cells = [f"{d[c]:.3f}" for c in COLS]
        print(f"| {name} | {d['n']} | " + " | ".join(cells) + f" | {d['seconds']['sampling']:.0f} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/g2")
