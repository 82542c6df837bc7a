"""The pure parts of the Captum side by side on issue 16's methods (`peers_methods`): no
torch, no jaxviz sampler. Feature masks and layouts between the two libraries, the agreement
figures, and exact Shapley values from every coalition's score (the reference the sampled
methods are measured against)."""
from __future__ import annotations

import math

import numpy as np

def captum_feature_mask(grid, hw) -> np.ndarray:
    """jaxviz's grid cells as Captum's feature_mask: (1, 1, H, W) int64, same ids."""
    from jaxviz.attribution import perturbation  # noqa: PLC0415
    ids, _ = perturbation.grid_mask(tuple(hw), grid)
    return ids[None, None].astype(np.int64)


def nchw_to_nhwc(a) -> np.ndarray:
    """(N, C, H, W) -> (N, H, W, C)."""
    a = np.asarray(a)
    if a.ndim != 4:
        raise ValueError(f"expected an (N, C, H, W) array; got shape {a.shape}")
    return a.transpose(0, 2, 3, 1)


def nhwc_to_nchw(a) -> np.ndarray:
    """(N, H, W, C) -> contiguous (N, C, H, W)."""
    a = np.asarray(a)
    if a.ndim != 4:
        raise ValueError(f"expected an (N, H, W, C) array; got shape {a.shape}")
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2))


def max_rel_diff(ref, other) -> float:
    """max |ref - other| / max |ref| (float64)."""
    a, b = np.asarray(ref, np.float64), np.asarray(other, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    return float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-30))


def rel_error(est, exact) -> float:
    """|est - exact| / |exact|, Frobenius norms over every value."""
    a, b = np.asarray(est, np.float64), np.asarray(exact, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def mean_correlation(a, b) -> float:
    """Mean over images of the Pearson correlation of two maps (N, ...); images where
    either map is constant are skipped (nan if all are)."""
    a = np.asarray(a, np.float64).reshape(len(a), -1)
    b = np.asarray(b, np.float64).reshape(len(b), -1)
    a, b = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    ok = den > 0
    return float(np.mean((a * b).sum(1)[ok] / den[ok])) if ok.any() else math.nan


def all_coalitions(n_features: int) -> np.ndarray:
    """Every subset as a bool row: (2^F, F), row m has feature i iff bit i of m is set."""
    m = np.arange(2 ** n_features)[:, None]
    return (m >> np.arange(n_features)[None] & 1).astype(bool)


def exact_shapley(values) -> np.ndarray:
    """Shapley values from every coalition's value: values (2^F, N), row m the coalition of
    `all_coalitions` row m -> (N, F). phi_i = sum over S without i of
    |S|! (F - |S| - 1)! / F! (v(S + i) - v(S))."""
    values = np.asarray(values, np.float64)
    f = int(round(math.log2(values.shape[0])))
    if 2 ** f != values.shape[0]:
        raise ValueError(f"values must have 2^F rows; got {values.shape[0]}")
    z = all_coalitions(f)
    size = z.sum(1)
    w = np.array([math.factorial(s) * math.factorial(f - s - 1) / math.factorial(f)
                  if s < f else 0.0 for s in size])
    out = np.zeros((values.shape[1], f))
    for i in range(f):
        without = ~z[:, i]
        gain = values[np.flatnonzero(without) | (1 << i)] - values[without]
        out[:, i] = (w[without][:, None] * gain).sum(0)
    return out


def coalition_images(x, baseline, mask, z) -> np.ndarray:
    """x: (N, H, W, C); mask: (H, W) ids; z: (S, F) bool -> (S, N, H, W, C), pixels of
    kept features from x, the others `baseline` (a number)."""
    keep = np.asarray(z)[:, np.asarray(mask)]  # (S, H, W)
    return np.where(keep[:, None, :, :, None], np.asarray(x)[None], np.float32(baseline))


def to_pixels(values, mask) -> np.ndarray:
    """values: (N, F) per feature -> (N, H, W) on an (H, W) feature mask."""
    return np.asarray(values)[:, np.asarray(mask)]


def throughput_fraction(passes_per_image: int, n_images: int, seconds: float,
                        forward_rows_per_s: float) -> float:
    """A sampler's model evaluations per second over the batched forward pass's rows/s."""
    return passes_per_image * n_images / seconds / forward_rows_per_s
