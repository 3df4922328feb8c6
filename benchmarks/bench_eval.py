"""Evaluation benchmark: seconds per 1,000 images for each feature extractor, and real-data baselines.

    python benchmarks/bench_eval.py --quick --json outputs/bench_eval_quick.json    # < 1 minute
    python benchmarks/bench_eval.py --json outputs/bench_eval.json                   # MNIST train-vs-test FIDs

Measures (CPU unless --device cuda; torch threads = --threads):
- s/1000 images: digit-classifier features (28x28) and TF-Inception features (resized to 299x299);
- the shipped classifier's MNIST test accuracy (with and without Otsu masking);
- non-quick: classifier-feature FID of the first n_clf of mnist:train vs the first n_clf of mnist:test, and
  Inception FID train vs test on n_inc of each (the published full-set value is about 1.1; FID is biased
  upwards at small n, so n is part of the number), plus IS / modes of the real test images.
Reference features are cached (difflab.eval.features.reference_features), so a rerun is fast.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from difflab.utils import write_json

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def _time_features(ext, x, batch_size):
    """(wall, process CPU) seconds for the features of x, after a warm-up call (TorchScript profiling runs)."""
    from difflab.eval.features import extract

    extract(ext, x[: min(2, len(x))], batch_size)
    t0, c0 = time.perf_counter(), time.process_time()
    extract(ext, x, batch_size)
    return time.perf_counter() - t0, time.process_time() - c0


def _halves(f, seed=0):
    """Two disjoint random halves (the MNIST test file is not shuffled: its halves differ in writers)."""
    import numpy as np

    idx = np.random.default_rng(seed).permutation(len(f))
    h = len(f) // 2
    return f[idx[:h]], f[idx[h:2 * h]]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small n, no FIDs (< 1 minute)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--n-clf", type=int, default=10000, help="images per side for classifier FID")
    ap.add_argument("--n-inc", type=int, default=2000, help="images per side for Inception FID")
    ap.add_argument("--optimize", action="store_true", help="freeze + optimize_for_inference the Inception net")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from difflab.eval import classifier as clf
    from difflab.eval.features import ClassifierFeatures, InceptionFeatures, dataset_images, reference_features
    from difflab.eval.fid import fid_from_features

    res = {"quick": args.quick, "threads": args.threads, "device": args.device, "machine": common.machine()}
    rows = []
    x_test, y_test = dataset_images("mnist:test")

    model = clf.load_classifier("digit-classifier", device=args.device)
    n_c = 1000 if args.quick else 5000
    cf = ClassifierFeatures(model)
    s, c = _time_features(cf, x_test[:n_c], 500)
    res["classifier_s_per_1000"], res["classifier_cpu_s_per_1000"] = 1000 * s / n_c, 1000 * c / n_c
    rows.append(("classifier features", f"{res['classifier_s_per_1000']:.2f} s/1000",
                 f"n={n_c}, {cf.num_features}-d; CPU time {res['classifier_cpu_s_per_1000']:.2f} s/1000"))

    t0 = time.perf_counter()
    acc = clf.accuracy(model, "mnist:test")
    acc_otsu = clf.accuracy(model, "mnist:test", mask="otsu")
    res.update(classifier_accuracy=acc, classifier_accuracy_otsu=acc_otsu, accuracy_s=time.perf_counter() - t0)
    rows.append(("classifier test accuracy", f"{100 * acc:.2f}%", f"otsu-masked {100 * acc_otsu:.2f}%, n=10000"))

    try:
        inc = InceptionFeatures(optimize=args.optimize).to(args.device)
    except FileNotFoundError as e:
        inc = None
        rows.append(("inception features", "n/a", str(e)[:80]))
    if inc is not None:
        n_i = 8 if args.quick else 100
        s, c = _time_features(inc, x_test[:n_i].to(args.device), 50)
        res["inception_s_per_1000"], res["inception_cpu_s_per_1000"] = 1000 * s / n_i, 1000 * c / n_i
        res["inception_optimized"] = args.optimize
        rows.append(("inception features", f"{res['inception_s_per_1000']:.1f} s/1000",
                     f"n={n_i}, 2048-d, 299x299; CPU time {res['inception_cpu_s_per_1000']:.1f} s/1000"
                     + (", optimized" if args.optimize else "")))

    if not args.quick:
        t0 = time.perf_counter()
        ftr = reference_features(cf, "mnist:train", args.n_clf, batch_size=500)
        fte = reference_features(cf, "mnist:test", args.n_clf, batch_size=500)
        res["fid_classifier_train_vs_test"] = fid_from_features(ftr, fte)
        res["fid_classifier_n"] = [len(ftr), len(fte)]
        rows.append(("classifier FID train vs test", f"{res['fid_classifier_train_vs_test']:.4f}",
                     f"n={len(ftr)} vs {len(fte)} (first n of each split), {time.perf_counter() - t0:.0f}s"))
        from difflab.eval.run import evaluate_images

        real = evaluate_images(x_test, "is,modes,quality", true_labels=y_test)
        res["real_test_is"], res["real_test_quality"] = real["is"], real["quality"]
        rows.append(("IS of real mnist:test", f"{real['is']:.3f}", "digit classifier, n=10000 (ceiling 10)"))
        if inc is not None and args.n_inc > 1:
            t0 = time.perf_counter()
            itr = reference_features(inc, "mnist:train", args.n_inc, batch_size=50, progress=True)
            ite = reference_features(inc, "mnist:test", args.n_inc, batch_size=50, progress=True)
            res["fid_inception_train_vs_test"] = fid_from_features(itr, ite)
            res["fid_inception_n"] = [len(itr), len(ite)]
            rows.append(("Inception FID train vs test", f"{res['fid_inception_train_vs_test']:.3f}",
                         f"n={len(itr)} vs {len(ite)} (published ~1.1 at 60k vs 10k), {time.perf_counter() - t0:.0f}s"))
            if len(itr) >= 4 and len(ite) >= 4:
                h = len(ite) // 2
                a, b = _halves(ite)
                res["fid_inception_test_half_vs_half"] = fid_from_features(a, b)
                rows.append(("Inception FID test half vs half", f"{res['fid_inception_test_half_vs_half']:.3f}",
                             f"n={h} vs {len(ite) - h}, random halves: the small-n floor"))
                a, b = itr[:h], ite[:h]
                res["fid_inception_train_vs_test_at_half_n"] = fid_from_features(a, b)
                rows.append(("Inception FID train vs test, half n", f"{res['fid_inception_train_vs_test_at_half_n']:.3f}",
                             f"n={h} vs {h}: compare with the floor at the same n"))
        a, b = _halves(fte)
        res["fid_classifier_test_half_vs_half"] = fid_from_features(a, b)
        rows.append(("classifier FID test half vs half", f"{res['fid_classifier_test_half_vs_half']:.4f}",
                     f"n={len(a)} vs {len(b)}, random halves"))
        ordered = fid_from_features(fte[: len(fte) // 2], fte[len(fte) // 2:])
        res["fid_classifier_test_first_vs_second_half"] = ordered
        rows.append(("classifier FID test 1st vs 2nd half", f"{ordered:.4f}",
                     "file order: the halves come from different writer populations"))

    res["loadavg_end"] = common.loadavg()
    w = max(len(r[0]) for r in rows)
    print(f"{'measure':<{w}}  {'value':>16}  note")
    for name, v, note in rows:
        print(f"{name:<{w}}  {v:>16}  {note}")
    if args.json:
        print(f"wrote {write_json(res, args.json)}")
    return res


if __name__ == "__main__":
    main()
