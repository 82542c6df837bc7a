"""A user's model file, as `jaxviz --model` loads it: copy it next to your data and edit.

    jaxviz train  --model experiments/examples/user_models_example.py:colour_cnn --data npz:images.npz
    jaxviz report --checkpoint runs/train --out runs/train/report

A factory takes a seed and returns the model with its input spec, here as a
`jaxviz.registry.ModelSpec` (model, (H, W, C), (lo, hi), num_classes). Plain forms work too:
`(model, (H, W, C))`, or an `nnx.Module` with an `input_shape` attribute. The file may sit
anywhere: `--model path/to/file.py:factory`, or `--model module:factory` from the directory
that holds `module.py`.
"""
import jax
from flax import linen as nn
from flax import nnx

from jaxviz.registry import ModelSpec


class ColourCNN(nnx.Module):
    """conv -> relu -> conv (stride 2) -> relu -> conv -> relu -> global mean -> dense.

    x: (N, H, W, 3) float32 in [0, 1] -> (N, num_classes) logits; any H x W.
    """

    def __init__(self, num_classes: int = 10, width: int = 16, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(3, width, (3, 3), rngs=rngs)
        self.conv2 = nnx.Conv(width, 2 * width, (3, 3), strides=(2, 2), rngs=rngs)
        self.conv3 = nnx.Conv(2 * width, 2 * width, (3, 3), rngs=rngs)
        self.head = nnx.Linear(2 * width, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = nnx.relu(self.conv1(x))
        x = nnx.relu(self.conv2(x))
        x = nnx.relu(self.conv3(x))
        return self.head(x.mean(axis=(1, 2)))


def colour_cnn(seed: int) -> ModelSpec:
    """An NNX CNN on 32x32 colour images, pixels in [0, 1], 10 classes."""
    return ModelSpec(ColourCNN(rngs=nnx.Rngs(seed)), (32, 32, 3), (0.0, 1.0), num_classes=10)


class SmallResidual(nn.Module):
    """A Linen residual net: stem, two blocks (the second strided), global mean, head."""

    num_classes: int = 10
    width: int = 8

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.relu(nn.Conv(self.width, (3, 3), name="stem")(x))
        for i, (width, stride) in enumerate(((self.width, 1), (2 * self.width, 2)), start=1):
            skip = x if stride == 1 else nn.Conv(width, (1, 1), strides=stride,
                                                 name=f"skip{i}")(x)
            h = nn.relu(nn.Conv(width, (3, 3), strides=stride, name=f"block{i}_conv1")(x))
            x = nn.relu(skip + nn.Conv(width, (3, 3), name=f"block{i}_conv2")(h))
        return nn.Dense(self.num_classes, name="head")(x.mean(axis=(1, 2)))


def residual32(seed: int):
    """The Linen residual net on 32x32x3 inputs, in the plain (model, shape) form."""
    del seed  # Linen modules are initialised by jaxviz from the run's seed
    return SmallResidual(), (32, 32, 3)


# Running statistics follow the last ~10 batches (PyTorch's default, 0.1 in its convention)
# rather than Flax's ~100: a run of a few hundred steps otherwise ends with statistics that
# lag the weights, and inference-mode accuracy far below training's (docs/colour_shapes.md).
MOMENTUM = 0.9


class BasicBlock(nn.Module):
    """conv -> BatchNorm -> relu -> conv -> BatchNorm, plus the skip (a strided 1x1 conv
    and BatchNorm when the shape changes), then relu."""

    width: int
    stride: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        norm = lambda name: nn.BatchNorm(use_running_average=not train, momentum=MOMENTUM,  # noqa: E731
                                         name=name)
        h = nn.Conv(self.width, (3, 3), self.stride, use_bias=False, name="conv1")(x)
        h = nn.relu(norm("bn1")(h))
        h = norm("bn2")(nn.Conv(self.width, (3, 3), use_bias=False, name="conv2")(h))
        if self.stride != 1 or x.shape[-1] != self.width:
            x = nn.Conv(self.width, (1, 1), self.stride, use_bias=False, name="proj")(x)
            x = norm("proj_bn")(x)
        return nn.relu(x + h)


class BNResNet(nn.Module):
    """A small ResNet with BatchNorm: stem conv-BN-relu, three BasicBlocks (widths w, 2w,
    4w; the last two strided), global mean, head. `train` switches BatchNorm between batch
    and running statistics; jaxviz sets it (True in the train step, False everywhere
    else), so nothing has to pass it.

    x: (N, H, W, 3) float32 in [0, 1] -> (N, num_classes) logits; any H x W.
    """

    num_classes: int = 9
    width: int = 16

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        x = nn.Conv(self.width, (3, 3), use_bias=False, name="stem")(x)
        x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=MOMENTUM,
                                 name="stem_bn")(x))
        for i, (mult, stride) in enumerate(((1, 1), (2, 2), (4, 2)), start=1):
            x = BasicBlock(mult * self.width, stride, name=f"block{i}")(x, train)
        return nn.Dense(self.num_classes, name="head")(x.mean(axis=(1, 2)))


def colour_resnet(seed: int) -> ModelSpec:
    """The BatchNorm ResNet for `experiments.colour_shapes` (32x32x3, 9 classes)."""
    del seed  # Linen modules are initialised by jaxviz from the run's seed
    return ModelSpec(BNResNet(), (32, 32, 3), (0.0, 1.0), num_classes=9)
