"""Reference CNNs: the seed's MNIST network (Flax NNX) and a small residual net (Flax Linen).

Both return logits. They are test subjects for the library, never special cases in it:
every analysis reaches them only through `jaxviz.core.probe`.
"""
import jax
import jax.numpy as jnp
from flax import linen as nn
from flax import nnx


class MnistCNN(nnx.Module):
    """The Keras MNIST CNN of the seed recipe, returning logits (no softmax).

    conv1 (32 3x3 VALID) -> relu -> conv2 (64 3x3 VALID) -> relu -> 2x2 max-pool ->
    dropout 0.25 -> flatten -> dense1 (128) -> relu -> dropout 0.5 -> preds (10).
    1,199,882 parameters for 28x28x1 inputs. Because `preds` gives logits, activation
    maximization needs no "swap softmax for linear"; use `probabilities` for softmax.

    x: (N, 28, 28, 1) float32 -> (N, num_classes) float32 logits.
    """

    input_shape = (28, 28, 1)  # fixed by dense1's 12*12*64 inputs; read by probe.from_model

    def __init__(self, num_classes: int = 10, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(1, 32, (3, 3), padding="VALID", rngs=rngs)
        self.conv2 = nnx.Conv(32, 64, (3, 3), padding="VALID", rngs=rngs)
        self.dropout1 = nnx.Dropout(0.25)
        self.dense1 = nnx.Linear(12 * 12 * 64, 128, rngs=rngs)
        self.dropout2 = nnx.Dropout(0.5)
        self.preds = nnx.Linear(128, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array, *, dropout_key: jax.Array | None = None) -> jax.Array:
        # One explicit key for both dropouts keeps training a pure function of (params, key).
        keys = (None, None) if dropout_key is None else tuple(jax.random.split(dropout_key))
        x = nnx.relu(self.conv1(x))
        x = nnx.relu(self.conv2(x))
        x = nnx.max_pool(x, window_shape=(2, 2), strides=(2, 2))
        x = self.dropout1(x, rngs=keys[0])
        x = x.reshape(x.shape[0], -1)
        x = nnx.relu(self.dense1(x))
        x = self.dropout2(x, rngs=keys[1])
        return self.preds(x)


class ResidualCNN(nn.Module):
    """A small Linen residual net: stem, two residual conv blocks, global average pool.

    Works on any (N, H, W, C) input (tested on 28x28x1 and 32x32x3).
    x: (N, H, W, C) float32 -> (N, num_classes) float32 logits.
    """

    num_classes: int = 10
    width: int = 16

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.relu(nn.Conv(self.width, (3, 3), name="stem")(x))
        for i, width in enumerate((self.width, 2 * self.width), start=1):
            if x.shape[-1] != width:
                x = nn.relu(nn.Conv(width, (3, 3), strides=(2, 2), name=f"down{i}")(x))
            h = nn.relu(nn.Conv(width, (3, 3), name=f"block{i}_conv1")(x))
            h = nn.Conv(width, (3, 3), name=f"block{i}_conv2")(h)
            x = nn.relu(x + h)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, name="head")(x)


def probabilities(logits: jax.Array) -> jax.Array:
    """Softmax over the last axis. logits: (N, K) -> (N, K)."""
    return jax.nn.softmax(logits, axis=-1)


def count_params(tree) -> int:
    """Number of scalars in the float leaves of a pytree (an nnx.State of Params, Linen params)."""
    return int(sum(leaf.size for leaf in jax.tree.leaves(tree)
                   if hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.floating)))
