"""The model family of tests/attribution/test_model_family.py: the CNNs people actually train, tiny.

Each builder returns a `Member`: the Probe, the raw forward `apply(params, x) -> logits`
written against the framework directly (NNX merge / Linen apply, no jaxviz), so checks
can compare jaxviz against an independent computation, and the input shape.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax import nnx

from jaxviz.core import probe as probe_lib


class Member(NamedTuple):
    probe: probe_lib.Probe
    apply: Callable  # apply(params, x) -> (N, K) logits, framework only
    shape: tuple     # (H, W, C)


def _nnx_member(model: nnx.Module, shape, **kw) -> Member:
    model.eval()
    graphdef, state = nnx.split(model)
    select = kw.get("output")

    def apply(params, x):
        out = nnx.merge(graphdef, params)(x)
        return out[select] if select is not None else out
    return Member(probe_lib.from_model(model, input_shape=shape, **kw), apply, shape)


# ---- NNX CNN with BatchNorm and dropout -------------------------------------------------

class BNDropCNN(nnx.Module):
    def __init__(self, rngs, c=1, k=4):
        self.conv1 = nnx.Conv(c, 6, (3, 3), rngs=rngs)
        self.bn1 = nnx.BatchNorm(6, rngs=rngs)
        self.drop = nnx.Dropout(0.3, rngs=rngs)
        self.conv2 = nnx.Conv(6, 8, (3, 3), rngs=rngs)
        self.bn2 = nnx.BatchNorm(8, rngs=rngs)
        self.head = nnx.Linear(6 * 6 * 8, k, rngs=rngs)

    def __call__(self, x):
        h = self.drop(nnx.relu(self.bn1(self.conv1(x))))
        h = nnx.max_pool(nnx.relu(self.bn2(self.conv2(h))), (2, 2), (2, 2))
        return self.head(h.reshape(h.shape[0], -1))


def nnx_bn_dropout() -> Member:
    model = BNDropCNN(nnx.Rngs(0))
    # Running statistics as after training, so inference mode differs from batch statistics.
    for bn, n in ((model.bn1, 6), (model.bn2, 8)):
        bn.mean[...] = jnp.linspace(-0.1, 0.1, n)
        bn.var[...] = jnp.linspace(0.5, 1.5, n)
    return _nnx_member(model, (12, 12, 1))


# ---- Linen ResNet with BatchNorm, a `train` flag, blocks as modules -------------------------

class ResBlock(nn.Module):
    width: int
    stride: int = 1

    @nn.compact
    def __call__(self, x, train: bool):
        norm = lambda name: nn.BatchNorm(use_running_average=not train, name=name)  # noqa: E731
        h = nn.relu(norm("bn1")(nn.Conv(self.width, (3, 3), self.stride, name="conv1")(x)))
        h = norm("bn2")(nn.Conv(self.width, (3, 3), name="conv2")(h))
        if x.shape[-1] != self.width or self.stride != 1:
            x = nn.Conv(self.width, (1, 1), self.stride, name="proj")(x)
        return nn.relu(x + h)


class BNResNet(nn.Module):
    num_classes: int = 5

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(nn.BatchNorm(use_running_average=not train, name="stem_bn")(
            nn.Conv(6, (3, 3), name="stem")(x)))
        x = ResBlock(6, name="block1")(x, train)
        x = ResBlock(8, 2, name="block2")(x, train)
        return nn.Dense(self.num_classes, name="head")(x.mean(axis=(1, 2)))


def _perturb_stats(variables, key):
    """Non-trivial running statistics (mean != 0, var != 1), as after training."""
    def f(path, v):
        name = jax.tree_util.keystr(path)
        noise = jax.random.uniform(jax.random.fold_in(key, hash(name) % 1000), v.shape)
        return 0.2 * (noise - 0.5) if name.endswith("['mean']") else 0.5 + noise
    return {**variables, "batch_stats": jax.tree_util.tree_map_with_path(
        f, variables["batch_stats"])}


def linen_resnet_bn() -> Member:
    module, shape = BNResNet(), (12, 12, 3)
    variables = _perturb_stats(module.init(jax.random.key(1), jnp.zeros((1, *shape))),
                               jax.random.key(2))
    probe = probe_lib.from_model(module, variables, input_shape=shape,
                                 apply_kwargs={"train": False})
    return Member(probe, lambda v, x: module.apply(v, x, train=False), shape)


# ---- ConvNeXt-style block: depthwise conv, LayerNorm, GELU ----------------------------------

class ConvNeXtBlock(nnx.Module):
    def __init__(self, c, rngs):
        self.dwconv = nnx.Conv(c, c, (5, 5), feature_group_count=c, rngs=rngs)
        self.norm = nnx.LayerNorm(c, rngs=rngs)
        self.pw1 = nnx.Linear(c, 4 * c, rngs=rngs)
        self.pw2 = nnx.Linear(4 * c, c, rngs=rngs)

    def __call__(self, x):
        return x + self.pw2(nnx.gelu(self.pw1(self.norm(self.dwconv(x)))))


class ConvNeXtTiny(nnx.Module):
    def __init__(self, rngs, k=4):
        self.stem = nnx.Conv(3, 8, (2, 2), strides=(2, 2), rngs=rngs)
        self.block = ConvNeXtBlock(8, rngs)
        self.norm = nnx.LayerNorm(8, rngs=rngs)
        self.head = nnx.Linear(8, k, rngs=rngs)

    def __call__(self, x):
        return self.head(self.norm(self.block(self.stem(x)).mean(axis=(1, 2))))


def convnext_block() -> Member:
    return _nnx_member(ConvNeXtTiny(nnx.Rngs(3)), (12, 12, 3))


# ---- strided convs, average pooling, global average pooling; colour 40x56 ------------------

class StridedAvgPool(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(6, (3, 3), strides=(2, 2), name="conv1")(x))  # 20 x 28
        x = nn.avg_pool(x, (2, 2), (2, 2))                                  # 10 x 14
        x = nn.relu(nn.Conv(8, (3, 3), strides=(2, 2), name="conv2")(x))  # 5 x 7
        return nn.Dense(4, name="head")(x.mean(axis=(1, 2)))


def strided_avgpool_colour() -> Member:
    module, shape = StridedAvgPool(), (40, 56, 3)
    variables = module.init(jax.random.key(4), jnp.zeros((1, *shape)))
    # Logits that move as a trained model's do: at init they vary by less than LIME's
    # Lasso penalty, which then (correctly) zeroes every coefficient.
    variables = jax.tree_util.tree_map_with_path(
        lambda path, v: 30 * v if "head" in jax.tree_util.keystr(path) else v, variables)
    return Member(probe_lib.from_model(module, variables, input_shape=shape),
                  module.apply, shape)


# ---- a model returning a dict ----------------------------------------------------------

class DictOut(nnx.Module):
    def __init__(self, rngs):
        self.conv = nnx.Conv(2, 6, (3, 3), rngs=rngs)
        self.head = nnx.Linear(6, 3, rngs=rngs)

    def __call__(self, x):
        feats = nnx.relu(self.conv(x))
        return {"features": feats, "logits": self.head(feats.mean(axis=(1, 2)))}


def dict_output() -> Member:
    return _nnx_member(DictOut(nnx.Rngs(5)), (10, 14, 2), output="logits")


# ---- bfloat16 parameters (and compute) ------------------------------------------------------

class HalfCNN(nnx.Module):
    def __init__(self, rngs, dtype=jnp.bfloat16):
        kw = dict(param_dtype=dtype, dtype=dtype, rngs=rngs)
        self.conv1 = nnx.Conv(1, 6, (3, 3), **kw)
        self.conv2 = nnx.Conv(6, 8, (3, 3), strides=(2, 2), **kw)
        self.head = nnx.Linear(8, 4, **kw)

    def __call__(self, x):
        h = nnx.relu(self.conv2(nnx.relu(self.conv1(x))))
        return self.head(h.mean(axis=(1, 2)))


def _half() -> HalfCNN:
    half = HalfCNN(nnx.Rngs(6))
    # Logits that move as a trained model's do: at init they vary by less than LIME's
    # Lasso penalty, which then (correctly) zeroes every coefficient.
    half.head.kernel[...] = half.head.kernel[...] * 30
    return half


def bfloat16_params() -> Member:
    return _nnx_member(_half(), (12, 12, 1))


def float32_twin() -> Member:
    """HalfCNN with the same (bfloat16-representable) weights in float32, computing in
    float32: the reference the bfloat16 model's maps are compared against."""
    half = _half()
    full = HalfCNN(nnx.Rngs(6), dtype=jnp.float32)
    nnx.update(full, jax.tree.map(lambda a: a.astype(jnp.float32), nnx.state(half)))
    return _nnx_member(full, (12, 12, 1))


FAMILY = {
    "nnx_bn_dropout": nnx_bn_dropout,
    "linen_resnet_bn": linen_resnet_bn,
    "convnext_block": convnext_block,
    "strided_avgpool_40x56x3": strided_avgpool_colour,
    "dict_output": dict_output,
    "bfloat16_params": bfloat16_params,
}
