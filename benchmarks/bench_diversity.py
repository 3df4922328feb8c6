"""Diversity benchmark (issue 16): every method of ``difflab.guidance.diversity`` against i.i.d. on the same seeds.

    python benchmarks/bench_diversity.py --quick              # < 1 minute: small sizes of parts a, c, d
    python benchmarks/bench_diversity.py                      # parts a, b (--n 2000), c, d at full size
    python benchmarks/bench_diversity.py --parts c,d          # only smmnist-circle and mnist-cond per class

(a) Exact mixtures (ring of 10, ring of 10 with weights 1..10, 3 x 3 grid with a heavy centre): modes per group of
10, share of samples on a mode, TV of the pooled mode frequencies to the true weights and its i.i.d. noise floor.
(b) mnist-uncond (not with --quick): modes per 10, classifier-FID vs mnist:test, class KL, IS, PRDC, Vendi.
(c) smmnist-circle: directions per 8 futures and the quality score (thesis eq. 4.5), 40 histories (--quick: 4,
10 Heun steps, rows iid / ortho / pg).  (d) mnist-cond per class: Vendi within a class and classifier-FID per class
and overall, 50 per class (--quick: classes 0 and 1, 10 each, rows iid / ortho / cads).
The same code runs behind ``difflab reproduce diversity [--rows c,d]`` (difflab.experiments.diversity; resumable
there). JSON keys: toys, mnist, circle, cond (those of the parts run), table.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

COLS = ["data", "row", "modes", "on_mode", "tv", "tv_iid_p95", "directions_per_8", "quality", "unusable",
        "vendi_class", "fid_class", "fid_all", "class_acc"]


def main(argv=None) -> int:
    p = common.parser("diversity", __doc__)
    p.add_argument("--n", type=int, default=2000, help="mnist-uncond samples per row (part b)")
    p.add_argument("--parts", default=None, help="comma list of a, b, c, d (default: a,c,d with --quick, else all)")
    args = p.parse_args(argv)
    common.cpu_only(args, "bench_diversity")
    common.setup(args)
    from difflab.experiments.diversity import CIRCLE_SIZES, COND_SIZES, parse_parts, run_mnist, run_toys
    from difflab.experiments.diversity_images import run_circle, run_cond, table_rows

    parts = parse_parts(args.parts or ("a,c,d" if args.quick else None))
    t0 = time.time()
    out = {"benchmark": "diversity", "quick": args.quick, "parts": parts, "machine": common.machine()}
    rows = []
    if "a" in parts:
        out["toys"] = toys = run_toys(groups=60 if args.quick else 500, steps=40 if args.quick else 100)
        rows += [{"data": m, "row": r, "modes": v["modes"], "on_mode": v["on_mode"], "tv": v["tv"],
                  "tv_iid_p95": b["tv_iid_floor"]["p95"]} for m, b in toys.items() for r, v in b["rows"].items()]
    if "b" in parts:
        out["mnist"] = run_mnist(100 if args.quick else args.n, rows=None)
        rows += [{"data": "mnist-uncond", "row": r, "modes": v["modes_per_10"], "on_mode": v.get("precision"),
                  "tv": v["class_kl_uniform"], "tv_iid_p95": v["fid_classifier"]} for r, v in out["mnist"].items()]
    if "c" in parts:
        out["circle"] = run_circle(**CIRCLE_SIZES[args.quick])
    if "d" in parts:
        out["cond"] = run_cond(**COND_SIZES[args.quick])
    rows += table_rows(out)
    out["seconds"] = time.time() - t0
    return common.finish(args, out, rows, "diversity (mnist-uncond rows: on_mode = precision, tv = class KL, "
                         "tv_iid_p95 = classifier-FID; circle: quality = eq. 4.5 score, lower is better; "
                         "mnist-cond: Vendi and classifier-FID per class, means over classes)", COLS)


if __name__ == "__main__":
    sys.exit(main())
