"""Deterministic transforms for domain variants (no random augmentation: caches depend on it)."""

from __future__ import annotations

import numpy as np


def rotate_images(x: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate (N, C, H, W) images counter-clockwise, as DomainBed's Rotated-MNIST does
    (cubic spline, same size, zero fill)."""
    if degrees % 360 == 0:
        return x
    if x.ndim != 4:
        raise ValueError(f"rotation needs image data (N, C, H, W), got shape {x.shape}")
    from scipy.ndimage import rotate

    out = rotate(x, degrees, axes=(3, 2), order=3, reshape=False, cval=0.0, mode="constant")
    return np.clip(out, 0.0, None).astype(np.float32)


def stratified_split(
    y: np.ndarray, fractions: dict[str, float], seed: int
) -> dict[str, np.ndarray]:
    """Indices per split, stratified by class, deterministic for a given seed.

    Each class's rows are permuted with the seed and cut by the fractions (rounded so every
    row lands in exactly one split); split order follows ``fractions``.
    """
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in fractions}
    names = list(fractions)
    total = sum(fractions.values())
    for cls in np.unique(y):
        rows = np.flatnonzero(y == cls)
        rows = rows[rng.permutation(len(rows))]
        bounds = np.round(np.cumsum([fractions[n] / total for n in names]) * len(rows)).astype(int)
        start = 0
        for name, end in zip(names, bounds, strict=True):
            parts[name].append(rows[start:end])
            start = end
    return {name: np.sort(np.concatenate(chunks)) for name, chunks in parts.items()}


#: Below this, a feature counts as constant: it is centred but not scaled.
CONSTANT_STD = 1e-8


def fit_standardization(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std (population, in float64) of ``x`` flattened to (N, features).

    A constant feature gets std 1, so standardising it gives 0 instead of dividing by zero.
    """
    flat = x.reshape(len(x), -1).astype(np.float64)
    if len(flat) == 0:
        raise ValueError("cannot fit a standardisation on a split with no rows")
    mean = flat.mean(axis=0)
    std = flat.std(axis=0)
    std[std < CONSTANT_STD] = 1.0
    return mean, std


def standardize(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(x - mean) / std`` per feature, in the shape and float32 dtype of ``x``."""
    flat = x.reshape(len(x), -1).astype(np.float64)
    return ((flat - mean) / std).astype(np.float32).reshape(x.shape)
