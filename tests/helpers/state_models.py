"""Test subjects with non-parameter state, importable by a subprocess (`state_models:...`).

BNNet: NNX, conv -> BatchNorm -> relu -> global mean -> dropout holding its own Rngs -> head.
BNResNet: Linen, blocks as modules, BatchNorm and dropout switched by a `train` flag.
toy_data: a small deterministic colour task (which channel is brightest).
"""
import jax
import numpy as np
from flax import linen as nn
from flax import nnx

from jaxviz.data import Dataset

SHAPE = (8, 8, 3)


class BNNet(nnx.Module):
    """x: (N, 8, 8, 3) -> (N, 3) logits."""

    input_shape = SHAPE

    def __init__(self, rngs: nnx.Rngs, width: int = 6):
        self.conv = nnx.Conv(3, width, (3, 3), rngs=rngs)
        self.bn = nnx.BatchNorm(width, momentum=0.9, rngs=rngs)
        self.drop = nnx.Dropout(0.25, rngs=rngs)  # its own RNG stream: a counter in the state
        self.head = nnx.Linear(width, 3, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = nnx.relu(self.bn(self.conv(x))).mean(axis=(1, 2))
        return self.head(self.drop(h))


class Block(nn.Module):
    width: int
    stride: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        norm = lambda name: nn.BatchNorm(use_running_average=not train, momentum=0.9, name=name)
        h = nn.relu(norm("bn1")(nn.Conv(self.width, (3, 3), self.stride, use_bias=False,
                                        name="conv1")(x)))
        h = norm("bn2")(nn.Conv(self.width, (3, 3), use_bias=False, name="conv2")(h))
        if self.stride != 1 or x.shape[-1] != self.width:
            x = norm("bn_skip")(nn.Conv(self.width, (1, 1), self.stride, use_bias=False,
                                        name="skip")(x))
        return nn.relu(x + h)


class BNResNet(nn.Module):
    """x: (N, H, W, 3) -> (N, 3) logits; `train` switches BatchNorm and dropout."""

    width: int = 4

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9, name="stem_bn")(
            nn.Conv(self.width, (3, 3), use_bias=False, name="stem")(x)))
        x = Block(self.width, name="block1")(x, train)
        x = Block(2 * self.width, 2, name="block2")(x, train)
        x = nn.Dropout(0.25, deterministic=not train)(x.mean(axis=(1, 2)))
        return nn.Dense(3, name="head")(x)


def bn_net(seed: int):
    return BNNet(nnx.Rngs(seed))


def bn_resnet(seed: int):
    del seed  # jaxviz initialises Linen modules from the run's seed
    return BNResNet(), SHAPE


def toy_data(n_train: int = 96, n_val: int = 48, seed: int = 0) -> Dataset:
    """Label = the brightest channel of a noisy, unevenly lit image (not centred, so
    BatchNorm's statistics move). x: (N, 8, 8, 3) float32 in [0, 1], y: (N,) int32."""
    rng = np.random.default_rng(seed)
    n = n_train + n_val
    y = rng.integers(0, 3, n).astype(np.int32)
    x = 0.3 * rng.random((n, *SHAPE), dtype=np.float32)
    x[np.arange(n), :, :, y] += 0.4 * rng.random((n, 1, 1), dtype=np.float32) + 0.2
    x = np.clip(x, 0.0, 1.0)
    return Dataset(x[:n_train], y[:n_train], x[n_train:], y[n_train:], "toy")
