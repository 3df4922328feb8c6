"""Datasets: MNIST / Fashion-MNIST (IDX, SHA-256 verified), synthetic images, 2-D Gaussian mixtures."""
