"""Lucid's neuron groups: factor one image's activations at a layer into a few groups of
channels (non-negative factorization of its (positions, channels) matrix), then visualize
each group's channel direction, all groups in one batched ascent.

    g = neuron_groups(probe, params, image, "conv2", n_groups=3, key=key, param="lucid")
    g.directions   # (3, C) >= 0, the groups' channel weights (rows of H in A ~ W H)
    g.maps         # (3, h, w) where on the image each group is active (columns of W)
    g.result       # maximize's Maximized: one image per group (direction objectives)
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxviz.concepts import factorize
from jaxviz.core.objectives import direction
from jaxviz.maximize import api


class NeuronGroups(NamedTuple):
    directions: np.ndarray  # (k, C)
    maps: np.ndarray        # (k, h, w)
    error: float            # |A - W H|_F / |A|_F
    result: object          # Maximized, one unit per group


def neuron_groups(probe, params, image, layer: str, *, n_groups: int = 3, key,
                  nmf_steps: int = 300, **maximize_kw) -> NeuronGroups:
    """image: (H, W, C) one image; layer: a conv layer with non-negative activations (after
    a ReLU); maximize_kw go to `maximize` (steps, param, transforms, ...)."""
    image = jnp.asarray(image, jnp.float32)
    if image.ndim != 3:
        raise ValueError(f"image must be one image (H, W, C); got shape {image.shape}")
    a = probe.run(params, image[None])[1][layer][0]
    if a.ndim != 3:
        raise ValueError(f"neuron groups need a conv layer (h, w, C); {layer!r} is {a.shape}")
    if float(a.min()) < 0:
        raise ValueError(f"layer {layer!r} has negative activations (min {float(a.min()):.3g});"
                         f" NMF needs a layer after a ReLU")
    k_nmf, k_max = jax.random.split(key)
    f = factorize.nmf(a.reshape(-1, a.shape[-1]), n_groups, key=k_nmf, steps=nmf_steps)
    h = np.asarray(f.h)
    maps = np.asarray(f.w).T.reshape(n_groups, a.shape[0], a.shape[1])
    result = api.maximize(probe, params, [direction(layer, v) for v in h], key=k_max,
                          **maximize_kw)
    return NeuronGroups(h, maps, float(f.error), result)
