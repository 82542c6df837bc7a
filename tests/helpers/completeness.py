"""Integrated gradients' completeness gap, measured against the model's own outputs."""
import jax.numpy as jnp
import numpy as np

from jaxviz import attribution as A


def relative_delta(probe, params, x, t, **options):
    """|sum(map) - (f(x) - f(baseline))| / |f(x) - f(baseline)| per image: (N,) float.

    The denominator is recomputed from the model's logits at the images and at the baseline
    IG used (zeros, or `A.blur_baseline(x)` when `baselines` is passed), so the test does not
    trust IG's own bookkeeping of the endpoints.
    """
    delta = A.integrated_gradients(probe, params, x, t, **options).extras["delta"]
    b = jnp.zeros_like(x) if options.get("baselines") is None else A.blur_baseline(x)
    both = probe(params, jnp.concatenate([x, b]))
    fx, fb = np.split(np.asarray(both)[np.arange(2 * len(t)), np.tile(t, 2)], 2)
    return np.abs(np.asarray(delta)) / np.abs(fx - fb)
