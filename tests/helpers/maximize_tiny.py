"""A 2-conv RGB net on 8x8x3 as a Probe (from_function), for the feature-visualization tests."""
import jax
import jax.numpy as jnp

from jaxviz.core import probe as probe_lib

SHAPE = (8, 8, 3)


def _conv(p, x):
    return jax.lax.conv_general_dilated(x, p["kernel"], (1, 1), "VALID",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC")) + p["bias"]


def _apply(params, x, tap):
    h = tap("conv1", jax.nn.relu(_conv(params["conv1"], x)))
    h = tap("conv2", jax.nn.relu(_conv(params["conv2"], h)))
    return tap("head", h.mean((1, 2)) @ params["head"]["kernel"])


def tiny_rgb(seed: int = 1):
    """conv1 (3x3, 4 ch) -> conv2 (3x3, 6 ch, 4x4) -> mean -> head (5 classes)."""
    ks = jax.random.split(jax.random.key(seed), 3)
    params = {"conv1": {"kernel": 0.5 * jax.random.normal(ks[0], (3, 3, 3, 4)),
                        "bias": jnp.full(4, 0.05)},
              "conv2": {"kernel": 0.3 * jax.random.normal(ks[1], (3, 3, 4, 6)),
                        "bias": jnp.full(6, 0.05)},
              "head": {"kernel": jax.random.normal(ks[2], (6, 5))}}
    return probe_lib.from_function(_apply, params, input_shape=SHAPE)
