"""Experiments: plain functions over the library that reproduce a figure or table, each with a thin CLI entry.

- :mod:`~difflab.experiments.demo`: the main job (``difflab demo``): the tour of the shipped models.
- :mod:`~difflab.experiments.reproduce`: the seed papers' tables (``difflab reproduce NAME``).
- :mod:`~difflab.experiments.ring`: particle guidance on the 2-D ring of 10 Gaussians with the exact score
  (``difflab toy gmm``; the PG paper's appendix, the thesis' Figure 6.3).
- :mod:`~difflab.experiments.motion`: next-frame experiments on Stochastic Moving MNIST (``difflab eval prior``,
  ``eval motion``, ``sample --cond-seq``).

They sit above ``eval`` and ``recipe`` (DESIGN.md section 2): an experiment builds SamplingSpecs and reuses the eval
package's metrics; nothing in the library imports this package.
"""
