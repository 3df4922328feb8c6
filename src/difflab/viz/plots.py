"""Plots for evaluation: sweep heatmaps (thesis Figures 3.2 and 4.2) and the UMAP of classifier features with
the particles of one batch marked (thesis Figure 3.1). matplotlib with the Agg backend; every function writes a
PNG and returns its path (or a small dict)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _fmt_tick(v) -> str:
    if isinstance(v, str):
        return v
    v = float(v)
    if v == 0:
        return "0"
    return f"{v:.3g}"


def heatmap(values, xs, ys, path, *, xlabel: str = "x", ylabel: str = "y", title: str = "", fmt: str = ".2f",
            cmap: str = "viridis", reverse: bool = False, annotate: bool = True) -> Path:
    """A [len(ys), len(xs)] table as a heatmap (NaN cells blank), each cell annotated with its value.

    ``reverse=True`` flips the colour map (for metrics where lower is better, e.g. FID)."""
    plt = _plt()
    v = np.asarray(values, dtype=np.float64)
    if v.shape != (len(ys), len(xs)):
        raise ValueError(f"values must be [len(ys), len(xs)] = [{len(ys)}, {len(xs)}], got {v.shape}")
    fig, ax = plt.subplots(figsize=(max(4.5, 1.5 + 0.9 * len(xs)), max(3.2, 1.2 + 0.6 * len(ys))), dpi=110)
    cm = plt.get_cmap(cmap + ("_r" if reverse else ""))
    im = ax.imshow(np.ma.masked_invalid(v), cmap=cm, aspect="auto", origin="lower")
    ax.set_xticks(range(len(xs)), [_fmt_tick(x) for x in xs], rotation=45, ha="right")
    ax.set_yticks(range(len(ys)), [_fmt_tick(y) for y in ys])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    if annotate:
        finite = v[np.isfinite(v)]
        mid = (finite.min() + finite.max()) / 2 if finite.size else 0
        for i in range(v.shape[0]):
            for j in range(v.shape[1]):
                if np.isfinite(v[i, j]):
                    dark = (v[i, j] < mid) != reverse
                    ax.text(j, i, format(v[i, j], fmt), ha="center", va="center", fontsize=7,
                            color="white" if dark else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def embed_2d(features: np.ndarray, method: str = "auto", seed: int = 0, log=print) -> tuple[np.ndarray, str]:
    """2-D embedding: UMAP (umap-learn, optional) or PCA. 'auto' uses UMAP when installed, else PCA (and says so)."""
    f = np.asarray(features, dtype=np.float32)
    if method in ("auto", "umap"):
        try:
            import umap  # first import compiles with numba: ~30 s
        except ImportError:
            if method == "umap":
                raise ImportError("umap-learn is not installed: pip install umap-learn (or use method='pca')") from None
            log("umap-learn is not installed; falling back to PCA for the 2-D embedding")
            method = "pca"
        else:
            return umap.UMAP(n_components=2, random_state=seed, n_neighbors=15, min_dist=0.1).fit_transform(f), "umap"
    if method != "pca":
        raise ValueError(f"unknown method {method!r}; use auto, umap or pca")
    c = f - f.mean(0)
    _, _, vt = np.linalg.svd(c, full_matrices=False)
    return c @ vt[:2].T, "pca"


def umap_plot(real_features, gen_features, path, *, real_labels=None, gen_labels=None, batch=None,
              method: str = "auto", seed: int = 0, max_real: int = 5000, title: str | None = None, log=print) -> dict:
    """Generated samples over the real data in a 2-D embedding of (classifier) features (thesis Figure 3.1).

    The embedding is fitted on real and generated features together. Real points are coloured by class, the
    generated ones drawn as black crosses, and the particles of one batch (``batch``: indices into
    ``gen_features``, e.g. ``range(10)``) as numbered red stars. Returns {'path', 'method', 'n_real', 'n_gen'}."""
    plt = _plt()
    real, gen = np.asarray(real_features, np.float32), np.asarray(gen_features, np.float32)
    if len(real) > max_real:
        idx = np.random.default_rng(seed).choice(len(real), max_real, replace=False)
        real = real[idx]
        real_labels = None if real_labels is None else np.asarray(real_labels)[idx]
    emb, used = embed_2d(np.concatenate([real, gen]), method, seed, log=log)
    er, eg = emb[: len(real)], emb[len(real):]
    fig, ax = plt.subplots(figsize=(7, 6), dpi=110)
    if real_labels is not None:
        sc = ax.scatter(er[:, 0], er[:, 1], c=np.asarray(real_labels), cmap="tab10", s=3, alpha=0.35, vmin=-0.5,
                        vmax=9.5)
        cb = fig.colorbar(sc, ax=ax, ticks=range(10))
        cb.set_label("real digit")
    else:
        ax.scatter(er[:, 0], er[:, 1], c="0.7", s=3, alpha=0.35, label="real")
    ax.scatter(eg[:, 0], eg[:, 1], c="k", marker="x", s=14, linewidths=0.8, label="generated")
    if batch is not None:
        b = np.asarray(list(batch), dtype=np.int64)
        ax.scatter(eg[b, 0], eg[b, 1], c="red", marker="*", s=160, edgecolors="k", linewidths=0.6,
                   label=f"one batch ({len(b)} particles)")
        for j, i in enumerate(b):
            lab = f"{j}" if gen_labels is None else f"{j}:{int(np.asarray(gen_labels)[i])}"
            ax.annotate(lab, (eg[i, 0], eg[i, 1]), textcoords="offset points", xytext=(5, 5), fontsize=8, color="red")
    ax.legend(loc="best", fontsize=8)
    ax.set_title(title or f"{used.upper()} of classifier features: generated over real")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return {"path": str(path), "method": used, "n_real": int(len(real)), "n_gen": int(len(gen))}


__all__ = ["embed_2d", "heatmap", "umap_plot"]
