"""mnist-latent / mnist-cascade with classifier-free guidance: IS and classifier-FID at n = 500 (Heun 18 steps).
    python experiments/latent/latent_cfg.py mnist-latent,mnist-cascade OUT.json"""
import json
import sys

import torch

from difflab.eval.run import evaluate_images
from difflab.models import load
from difflab.recipe import SamplingSpec, sample

torch.set_num_threads(1)

out = []
for name in sys.argv[1].split(","):
    D = load(name)
    for w in (1.5, 2.0):
        x, l = sample(D, SamplingSpec(steps=18, seed=0, batch_size=100, cfg_weight=w), 500)
        r = evaluate_images(x, "is,fid_classifier", true_labels=l)
        out.append({"model": name, "cfg_weight": w, "n": 500, "is": r["is"], "fid_classifier": r["fid_classifier"]})
        print(out[-1], flush=True)
json.dump(out, open(sys.argv[2], "w"), indent=1)
