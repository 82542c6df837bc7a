"""Occlusion over many images, a fixed-size group at a time.

    res = grouped_occlusion(probe, probe.params, x, y, group=64, window=4, stride=2)
    res.map   # (N, H, W) numpy, as one `occlusion(...)` call over all N would give

Every group has the same shape (the last one is padded with copies of its first image and
the padding dropped), so the whole run uses one compiled program, and memory holds one
group's forward passes, whatever N is.
"""
from __future__ import annotations

import jax
import numpy as np
from tqdm import tqdm

from jaxviz.core import checks
from jaxviz.core.objectives import Objective
from jaxviz.core.result import Attribution, attribution_method
from jaxviz.occlusion.exact import occlusion


def _padded(a, start: int, group: int):
    """Rows start..start+group of a, the last group padded with copies of its first row."""
    part = np.asarray(a[start:start + group])
    if len(part) < group:
        part = np.concatenate([part, np.repeat(part[:1], group - len(part), axis=0)])
    return part


def _per_image_baseline(baseline, n: int) -> bool:
    return np.ndim(baseline) == 4 and np.shape(baseline)[0] == n and n > 1


@attribution_method("grouped_occlusion")
def grouped_occlusion(fn, params, images, target, *, group: int = 64, progress: bool = False,
                      **options) -> Attribution:
    """`occlusion(fn, params, images, target, **options)` run `group` images at a time.

    images: (N, H, W, C) (numpy or jax; only one group is on the device at once);
    target: an int, (N,) ints, or an objective (or a list of them) shared by all; group: images per compiled call; progress: show a tqdm
    bar. options: window, stride, baseline (a per-image (N, H, W, C) baseline is grouped
    with its images), score, chunk_size, method, as for `occlusion`.
    Returns an Attribution as `occlusion` does (map, extras "scores" and "base"), numpy
    arrays over all N images.
    """
    group = checks.positive_int(group, "group")
    if not hasattr(images, "shape"):
        images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must be a batch shaped (N, H, W, C); got shape "
                         f"{tuple(images.shape)}")
    n = int(images.shape[0])
    if n == 0:
        raise ValueError("images: got an empty batch (N = 0); pass at least one image")
    # Class indices are split with their images; an objective (or a list) is shared by all.
    shared = isinstance(target, (Objective, str)) or (
        isinstance(target, (list, tuple)) and any(isinstance(o, Objective) for o in target))
    targets = None if shared else np.asarray(checks.as_targets(target, n, None))
    baseline = options.pop("baseline", 0.0)
    per_image = _per_image_baseline(baseline, n)
    parts = []
    for start in tqdm(range(0, n, group), desc="occlusion", disable=not progress):
        b = _padded(baseline, start, group) if per_image else baseline
        t = target if shared else _padded(targets, start, group)
        res = occlusion(fn, params, _padded(images, start, group), t, baseline=b, **options)
        keep = min(group, n - start)
        parts.append(jax.tree.map(lambda a: np.asarray(a)[:keep], res))
    return jax.tree.map(lambda *a: np.concatenate(a), *parts)
