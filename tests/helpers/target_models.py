"""A tiny ReLU CNN for the target tests: conv1 -> relu -> conv2 -> relu -> mean -> head,
8x8x1 inputs, 3 classes, as a Probe (module-level cache: built once per process)."""
import functools

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxviz.core import probe as probe_lib


class TinyCNN(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Conv(4, (3, 3), name="conv1")(x))
        h = nn.relu(nn.Conv(5, (3, 3), name="conv2")(h))
        return nn.Dense(3, name="head")(h.mean(axis=(1, 2)))


@functools.lru_cache(maxsize=1)
def tiny():
    """(probe, images (4, 8, 8, 1) in [0, 1])."""
    model = TinyCNN()
    x = jax.random.uniform(jax.random.key(3), (4, 8, 8, 1))
    variables = jax.jit(model.init)(jax.random.key(0), x)
    return probe_lib.from_model(model, variables, input_shape=(8, 8, 1)), x


def conv2_by_hand(params, x):
    """conv2's output (before its relu) from the weights alone, (N, 8, 8, 5)."""
    p = params["params"]

    def conv(q, h):
        return jax.lax.conv_general_dilated(h, q["kernel"], (1, 1), "SAME",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC")) + q["bias"]
    return conv(p["conv2"], jnp.maximum(conv(p["conv1"], x), 0))
