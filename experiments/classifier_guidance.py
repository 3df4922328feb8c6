"""Classifier guidance on MNIST: accuracy of the noise-conditional classifier by sigma, and how often
classifier-guided samples of mnist-uncond are the requested digit (scored by digit-classifier).
Run after `difflab train configs/noisy_classifier.yaml out=runs/noisy-classifier`."""
import json
import os

import torch

import difflab
from difflab.data.mnist import get_dataset
from difflab.guidance import ClassifierGuidance
from difflab.sampling import generate

torch.set_num_threads(2)
C = difflab.load("runs/noisy-classifier")
x, y = get_dataset("mnist:test", limit=2000).as_tensors()
g = torch.Generator().manual_seed(0)
acc = {}
with torch.no_grad():
    for s in [0.0, 0.5, 1.0, 2.0, 5.0]:
        xn = x + s * torch.randn(x.shape, generator=g)
        acc[s] = (C(xn, torch.full((len(x),), max(s, 0.002))).argmax(1) == y).float().mean().item()
print("noisy classifier accuracy by sigma (2000 test images):", acc)
D = difflab.load("mnist-uncond")
clf = difflab.load("digit-classifier")
labels = torch.arange(100) % 10
res = {}
for scale in [0.0, 2.0, 5.0]:
    guid = ClassifierGuidance(C, scale=scale, labels=labels) if scale else None
    xs = generate(D, 100, (1, 28, 28), steps=18, seed=0, guidance=guid)
    with torch.no_grad():
        res[scale] = (clf(xs).argmax(1) == labels).float().mean().item()
print("classifier guidance on mnist-uncond, digit-classifier agreement with the target label:", res)
os.makedirs("outputs", exist_ok=True)
json.dump({"accuracy_by_sigma": acc, "cg_agreement": res}, open("outputs/classifier_guidance.json", "w"), indent=2)
