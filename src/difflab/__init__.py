"""difflab: diffusion models behind one denoiser contract D(x, sigma, **cond) -> x0_hat."""

__version__ = "0.1.0"


def load(model, **kwargs):
    """Load a run directory, checkpoint folder or shipped model name (see difflab.models.load)."""
    from difflab.models import load as _load

    return _load(model, **kwargs)


__all__ = ["__version__", "load"]
