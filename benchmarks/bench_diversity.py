"""Diversity benchmark (issue 16): every method of ``difflab.guidance.diversity`` against i.i.d. on the same seeds.

    python benchmarks/bench_diversity.py --quick      # < 1 minute: exact 2-D mixtures, 60 groups of 10
    python benchmarks/bench_diversity.py              # 500 groups per mixture + mnist-uncond at --n (2000)

Exact mixtures (ring of 10, ring of 10 with weights 1..10, 3 x 3 grid with a heavy centre): modes per group of 10,
share of samples on a mode, TV of the pooled mode frequencies to the true weights and its i.i.d. noise floor.
mnist-uncond (not with --quick): modes per 10, classifier-FID vs mnist:test, class KL, IS, PRDC, Vendi.
The same code runs behind ``difflab reproduce diversity`` (difflab.experiments.diversity; resumable there).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def main(argv=None) -> int:
    p = common.parser("diversity", __doc__)
    p.add_argument("--n", type=int, default=2000, help="mnist-uncond samples per row (not with --quick)")
    args = p.parse_args(argv)
    common.cpu_only(args, "bench_diversity")
    common.setup(args)
    from difflab.experiments.diversity import run_mnist, run_toys

    t0 = time.time()
    toys = run_toys(groups=60 if args.quick else 500, steps=40 if args.quick else 100)
    out = {"benchmark": "diversity", "quick": args.quick, "machine": common.machine(), "toys": toys}
    rows = [{"data": m, "row": r, "modes": v["modes"], "on_mode": v["on_mode"], "tv": v["tv"],
             "tv_iid_p95": b["tv_iid_floor"]["p95"]} for m, b in toys.items() for r, v in b["rows"].items()]
    if not args.quick:
        out["mnist"] = run_mnist(args.n)
        rows += [{"data": "mnist-uncond", "row": r, "modes": v["modes_per_10"], "on_mode": v.get("precision"),
                  "tv": v["class_kl_uniform"], "tv_iid_p95": v["fid_classifier"]} for r, v in out["mnist"].items()]
    out["seconds"] = time.time() - t0
    return common.finish(args, out, rows, "diversity (mnist rows: on_mode = precision, tv = class KL, "
                         "tv_iid_p95 = classifier-FID)")


if __name__ == "__main__":
    sys.exit(main())
