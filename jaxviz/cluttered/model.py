"""A small CNN for cluttered MNIST: 60x60x1 digits among clutter -> 10 logits.

A test subject like models.MnistCNN: analyses reach it only through `jaxviz.core.probe`.
"""
from __future__ import annotations

import jax
from flax import nnx


class ConvReLU(nnx.Module):
    """A 3x3 SAME convolution and its ReLU as one layer, like a Keras Conv2D with
    activation="relu": the probe records the rectified maps under this layer's name, which
    is what Grad-CAM and its relatives read by default (the convolution inside is
    `<name>.conv`)."""

    def __init__(self, c_in: int, c_out: int, *, rngs: nnx.Rngs):
        self.conv = nnx.Conv(c_in, c_out, (3, 3), padding="SAME", rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return nnx.relu(self.conv(x))


class ClutteredCNN(nnx.Module):
    """conv1 (16) -> 2x2 max-pool -> conv2 (32) -> 2x2 max-pool -> conv3 (64) -> 3x3 max-pool
    -> flatten -> dropout 0.3 -> dense1 (128) -> relu -> preds (10), each conv a 3x3 SAME
    convolution with its ReLU (`ConvReLU`), so the digit may sit anywhere, edges included.

    x: (N, 60, 60, 1) float32 -> (N, num_classes) float32 logits.
    """

    input_shape = (60, 60, 1)  # fixed by dense1's 5*5*64 inputs; read by probe.from_model

    def __init__(self, num_classes: int = 10, *, rngs: nnx.Rngs):
        self.conv1 = ConvReLU(1, 16, rngs=rngs)
        self.conv2 = ConvReLU(16, 32, rngs=rngs)
        self.conv3 = ConvReLU(32, 64, rngs=rngs)
        self.dropout = nnx.Dropout(0.3)
        self.dense1 = nnx.Linear(5 * 5 * 64, 128, rngs=rngs)
        self.preds = nnx.Linear(128, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array, *, dropout_key: jax.Array | None = None) -> jax.Array:
        x = nnx.max_pool(self.conv1(x), (2, 2), strides=(2, 2))
        x = nnx.max_pool(self.conv2(x), (2, 2), strides=(2, 2))
        x = nnx.max_pool(self.conv3(x), (3, 3), strides=(3, 3))
        x = self.dropout(x.reshape(x.shape[0], -1), rngs=dropout_key)
        return self.preds(nnx.relu(self.dense1(x)))


def cluttered_cnn(seed: int = 0) -> ClutteredCNN:
    """The model factory (`--model jaxviz.cluttered:cluttered_cnn`): weights from `seed`."""
    return ClutteredCNN(rngs=nnx.Rngs(seed))
