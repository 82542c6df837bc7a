"""Twins across frameworks: one architecture in Flax NNX, Flax Linen, Equinox and Keras 3,
all holding the same weights, so every analysis must give the same numbers on each.

    twin = twins.build("plain", "keras")   # a Twin: probe, apply, shape, framework, arch
    twin.apply(twin.probe.params, x)       # the framework's own forward, no jaxviz

Architectures (ARCHS), each on small NHWC inputs:
  plain:   conv 3x3 -> relu -> 2x2 max-pool -> conv 3x3 -> relu -> flatten -> dense
  bn_res:  conv -> BatchNorm -> relu -> [conv -> BatchNorm] + skip -> relu -> mean -> dense
           (inference mode, running statistics away from 0 and 1, eps 1e-5 everywhere)
  dw_gelu: conv -> depthwise conv -> GELU (exact, erf) -> 1x1 conv -> GELU -> mean -> dense

The weights are drawn once per architecture in one canonical layout (Flax's: HWIO conv
kernels, (in, out) dense kernels, an NHWC flatten) and written into each framework in its
own layout: Equinox keeps OIHW conv weights, (out, in) dense weights, (C, 1, 1) conv
biases and flattens (C, H, W); Keras keeps Flax's layout but a depthwise kernel is
(kh, kw, C, 1) where Flax's grouped one is (kh, kw, 1, C). Layer names agree across
frameworks ("conv1", "conv2", "head", ...); Keras and Equinox models also have layers for
what Flax writes as functions (Keras' ReLU, pooling, flatten; Equinox's max-pool).
"""
from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

from typing import Callable, NamedTuple  # noqa: E402

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
from flax import linen as nn  # noqa: E402
from flax import nnx  # noqa: E402

from jaxviz.core import probe as probe_lib  # noqa: E402

FRAMEWORKS = ("nnx", "linen", "equinox", "keras")
K = 4      # classes
EPS = 1e-5  # BatchNorm epsilon (Keras' default is 1e-3: set explicitly everywhere)
SHAPES = {"plain": (12, 12, 1), "bn_res": (8, 8, 3), "dw_gelu": (8, 8, 3)}
CAM_LAYER = {"plain": "conv2", "bn_res": "conv2", "dw_gelu": "pw"}  # named alike in all four


class Twin(NamedTuple):
    probe: probe_lib.Probe
    apply: Callable   # apply(params, x (N, H, W, C)) -> (N, K) logits, framework only
    shape: tuple      # (H, W, C)
    framework: str
    arch: str


# ---- canonical weights ------------------------------------------------------------------

def _conv(rng, kh, kw, cin, cout):
    return {"kernel": rng.normal(0, np.sqrt(2 / (kh * kw * cin)), (kh, kw, cin, cout)),
            "bias": rng.normal(0, 0.1, cout)}


def _dense(rng, n_in, n_out, gain=3.0):
    # gain: logits that move as a trained model's do (LIME's penalty zeroes flat ones)
    return {"kernel": gain * rng.normal(0, np.sqrt(1 / n_in), (n_in, n_out)),
            "bias": rng.normal(0, 0.1, n_out)}


def _bn(rng, c):
    return {"scale": rng.uniform(0.5, 1.5, c), "bias": rng.normal(0, 0.1, c),
            "mean": rng.normal(0, 0.2, c), "var": rng.uniform(0.5, 1.5, c)}


def weights(arch: str) -> dict:
    """{layer: {name: float32 array}} in Flax's layout, the same on every call."""
    rng = np.random.RandomState(sum(map(ord, arch)))
    if arch == "plain":
        w = {"conv1": _conv(rng, 3, 3, 1, 4), "conv2": _conv(rng, 3, 3, 4, 6),
             "head": _dense(rng, 3 * 3 * 6, K)}
    elif arch == "bn_res":
        w = {"conv1": _conv(rng, 3, 3, 3, 6), "bn1": _bn(rng, 6),
             "conv2": _conv(rng, 3, 3, 6, 6), "bn2": _bn(rng, 6), "head": _dense(rng, 6, K)}
    elif arch == "dw_gelu":
        w = {"conv1": _conv(rng, 3, 3, 3, 8), "dw": _conv(rng, 3, 3, 1, 8),
             "pw": _conv(rng, 1, 1, 8, 8), "head": _dense(rng, 8, K)}
    else:
        raise ValueError(f"arch must be one of {ARCHS}; got {arch!r}")
    return jax.tree.map(lambda a: np.asarray(a, np.float32), w)


# ---- Flax NNX ----------------------------------------------------------------------------

class NNXPlain(nnx.Module):
    def __init__(self, rngs):
        self.conv1 = nnx.Conv(1, 4, (3, 3), padding="VALID", rngs=rngs)
        self.conv2 = nnx.Conv(4, 6, (3, 3), padding="VALID", rngs=rngs)
        self.head = nnx.Linear(54, K, rngs=rngs)

    def __call__(self, x):
        h = nnx.max_pool(nnx.relu(self.conv1(x)), (2, 2), (2, 2))
        h = nnx.relu(self.conv2(h))
        return self.head(h.reshape(h.shape[0], -1))


class NNXBnRes(nnx.Module):
    def __init__(self, rngs):
        self.conv1 = nnx.Conv(3, 6, (3, 3), rngs=rngs)
        self.bn1 = nnx.BatchNorm(6, epsilon=EPS, rngs=rngs)
        self.conv2 = nnx.Conv(6, 6, (3, 3), rngs=rngs)
        self.bn2 = nnx.BatchNorm(6, epsilon=EPS, rngs=rngs)
        self.head = nnx.Linear(6, K, rngs=rngs)

    def __call__(self, x):
        h = nnx.relu(self.bn1(self.conv1(x)))
        h = nnx.relu(h + self.bn2(self.conv2(h)))
        return self.head(h.mean(axis=(1, 2)))


class NNXDwGelu(nnx.Module):
    def __init__(self, rngs):
        self.conv1 = nnx.Conv(3, 8, (3, 3), padding="VALID", rngs=rngs)
        self.dw = nnx.Conv(8, 8, (3, 3), feature_group_count=8, rngs=rngs)
        self.pw = nnx.Conv(8, 8, (1, 1), rngs=rngs)
        self.head = nnx.Linear(8, K, rngs=rngs)

    def __call__(self, x):
        h = jax.nn.gelu(self.dw(self.conv1(x)), approximate=False)
        h = jax.nn.gelu(self.pw(h), approximate=False)
        return self.head(h.mean(axis=(1, 2)))


def _nnx(arch, w):
    model = {"plain": NNXPlain, "bn_res": NNXBnRes, "dw_gelu": NNXDwGelu}[arch](nnx.Rngs(0))
    for layer, vals in w.items():
        sub = getattr(model, layer)
        for name, v in vals.items():
            getattr(sub, name)[...] = jnp.asarray(v)
    model.eval()
    graphdef, _ = nnx.split(model)
    return model, lambda state, x: nnx.merge(graphdef, state)(x)


# ---- Flax Linen --------------------------------------------------------------------------

class LinenPlain(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.max_pool(nn.relu(nn.Conv(4, (3, 3), padding="VALID", name="conv1")(x)),
                        (2, 2), (2, 2))
        h = nn.relu(nn.Conv(6, (3, 3), padding="VALID", name="conv2")(h))
        return nn.Dense(K, name="head")(h.reshape(h.shape[0], -1))


class LinenBnRes(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        bn = lambda name: nn.BatchNorm(use_running_average=not train, epsilon=EPS,  # noqa: E731
                                       name=name)
        h = nn.relu(bn("bn1")(nn.Conv(6, (3, 3), name="conv1")(x)))
        h = nn.relu(h + bn("bn2")(nn.Conv(6, (3, 3), name="conv2")(h)))
        return nn.Dense(K, name="head")(h.mean(axis=(1, 2)))


class LinenDwGelu(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.Conv(8, (3, 3), padding="VALID", name="conv1")(x)
        h = jax.nn.gelu(nn.Conv(8, (3, 3), feature_group_count=8, name="dw")(h),
                        approximate=False)
        h = jax.nn.gelu(nn.Conv(8, (1, 1), name="pw")(h), approximate=False)
        return nn.Dense(K, name="head")(h.mean(axis=(1, 2)))


def _linen_variables(w):
    params = {layer: {k: v for k, v in vals.items() if k not in ("mean", "var")}
              for layer, vals in w.items()}
    stats = {layer: {"mean": vals["mean"], "var": vals["var"]}
             for layer, vals in w.items() if "mean" in vals}
    return jax.tree.map(jnp.asarray, {"params": params, **({"batch_stats": stats} if stats
                                                           else {})})


def _linen(arch):
    return {"plain": LinenPlain, "bn_res": LinenBnRes, "dw_gelu": LinenDwGelu}[arch]()


# ---- Equinox (one channel-first image per call, as Equinox models are written) ----------

class EqxPlain(eqx.Module):
    conv1: eqx.nn.Conv2d
    pool: eqx.nn.MaxPool2d
    conv2: eqx.nn.Conv2d
    head: eqx.nn.Linear

    def __init__(self, key):
        k1, k2, k3 = jax.random.split(key, 3)
        self.conv1 = eqx.nn.Conv2d(1, 4, 3, key=k1)
        self.pool = eqx.nn.MaxPool2d(2, 2)
        self.conv2 = eqx.nn.Conv2d(4, 6, 3, key=k2)
        self.head = eqx.nn.Linear(54, K, key=k3)

    def __call__(self, x):  # x: (C, H, W)
        h = self.pool(jax.nn.relu(self.conv1(x)))
        return self.head(jnp.ravel(jax.nn.relu(self.conv2(h))))


class EqxBnRes(eqx.Module):
    conv1: eqx.nn.Conv2d
    bn1: eqx.nn.BatchNorm
    conv2: eqx.nn.Conv2d
    bn2: eqx.nn.BatchNorm
    head: eqx.nn.Linear

    def __init__(self, key):
        k1, k2, k3 = jax.random.split(key, 3)
        self.conv1 = eqx.nn.Conv2d(3, 6, 3, padding=1, key=k1)
        self.bn1 = eqx.nn.BatchNorm(6, "batch", eps=EPS, mode="ema")
        self.conv2 = eqx.nn.Conv2d(6, 6, 3, padding=1, key=k2)
        self.bn2 = eqx.nn.BatchNorm(6, "batch", eps=EPS, mode="ema")
        self.head = eqx.nn.Linear(6, K, key=k3)

    def __call__(self, x, state):  # x: (C, H, W)
        h, state = self.bn1(self.conv1(x), state)
        h = jax.nn.relu(h)
        g, state = self.bn2(self.conv2(h), state)
        return self.head(jax.nn.relu(h + g).mean(axis=(1, 2))), state


class EqxDwGelu(eqx.Module):
    conv1: eqx.nn.Conv2d
    dw: eqx.nn.Conv2d
    pw: eqx.nn.Conv2d
    head: eqx.nn.Linear

    def __init__(self, key):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        self.conv1 = eqx.nn.Conv2d(3, 8, 3, key=k1)
        self.dw = eqx.nn.Conv2d(8, 8, 3, padding=1, groups=8, key=k2)
        self.pw = eqx.nn.Conv2d(8, 8, 1, key=k3)
        self.head = eqx.nn.Linear(8, K, key=k4)

    def __call__(self, x):  # x: (C, H, W)
        h = jax.nn.gelu(self.dw(self.conv1(x)), approximate=False)
        h = jax.nn.gelu(self.pw(h), approximate=False)
        return self.head(h.mean(axis=(1, 2)))


def _eqx_layer(layer, vals, shape_in):
    """Flax-layout values -> Equinox's (weight, bias) for one layer."""
    kernel, bias = jnp.asarray(vals["kernel"]), jnp.asarray(vals["bias"])
    if kernel.ndim == 4:  # HWIO -> OIHW, bias (O,) -> (O, 1, 1)
        return kernel.transpose(3, 2, 0, 1), bias[:, None, None]
    if shape_in is not None:  # dense after an NHWC flatten: rows (h, w, c) -> (c, h, w)
        h, w, c = shape_in
        kernel = kernel.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(h * w * c, -1)
    return kernel.T, bias


def _equinox(arch, w):
    """(model in inference mode, state or None) holding the canonical weights."""
    cls = {"plain": EqxPlain, "bn_res": EqxBnRes, "dw_gelu": EqxDwGelu}[arch]
    model, state = (eqx.nn.make_with_state(cls)(jax.random.key(0)) if arch == "bn_res"
                    else (cls(jax.random.key(0)), None))
    for layer, vals in w.items():
        sub = getattr(model, layer)
        if "mean" in vals:  # BatchNorm: affine weights in the model, statistics in the state
            model = eqx.tree_at(lambda m: (getattr(m, layer).weight, getattr(m, layer).bias),
                                model, (jnp.asarray(vals["scale"]), jnp.asarray(vals["bias"])))
            state = state.set(sub.ema_state_index,
                              (jnp.asarray(vals["mean"]), jnp.asarray(vals["var"])))
            continue
        flat_in = (3, 3, 6) if (arch, layer) == ("plain", "head") else None
        model = eqx.tree_at(lambda m: (getattr(m, layer).weight, getattr(m, layer).bias),
                            model, _eqx_layer(layer, vals, flat_in))
    return eqx.nn.inference_mode(model), state


def _eqx_apply(arch, model, state):
    """Framework-only forward on NHWC batches: vmap over images, channel-first inside."""
    def apply(params, x):
        m = eqx.combine(params, eqx.filter(model, eqx.is_array, inverse=True))
        xs = jnp.transpose(x, (0, 3, 1, 2))
        if state is None:
            return jax.vmap(m)(xs)
        return jax.vmap(lambda xi: m(xi, state)[0], axis_name="batch")(xs)
    return apply


# ---- Keras 3 on JAX ------------------------------------------------------------------------

def _keras_model(arch):
    L = keras.layers
    if arch == "plain":
        return keras.Sequential([
            keras.Input(SHAPES[arch]), L.Conv2D(4, 3, name="conv1"), L.ReLU(name="relu1"),
            L.MaxPooling2D(2, name="pool"), L.Conv2D(6, 3, name="conv2"),
            L.ReLU(name="relu2"), L.Flatten(name="flatten"), L.Dense(K, name="head")],
            name="plain")
    x = inp = keras.Input(SHAPES[arch])
    if arch == "bn_res":
        bn = lambda name: L.BatchNormalization(epsilon=EPS, name=name)  # noqa: E731
        h = L.ReLU(name="relu1")(bn("bn1")(L.Conv2D(6, 3, padding="same", name="conv1")(x)))
        g = bn("bn2")(L.Conv2D(6, 3, padding="same", name="conv2")(h))
        h = L.ReLU(name="relu2")(L.Add(name="add")([h, g]))
    else:
        h = L.Conv2D(8, 3, name="conv1")(x)
        h = L.Activation("gelu", name="gelu1")(
            L.DepthwiseConv2D(3, padding="same", name="dw")(h))
        h = L.Activation("gelu", name="gelu2")(L.Conv2D(8, 1, name="pw")(h))
    out = L.Dense(K, name="head")(L.GlobalAveragePooling2D(name="mean")(h))
    return keras.Model(inp, out, name=arch)


def _keras(arch, w):
    model = _keras_model(arch)
    for layer, vals in w.items():
        if "mean" in vals:
            values = [vals["scale"], vals["bias"], vals["mean"], vals["var"]]
        elif layer == "dw":  # grouped (kh, kw, 1, C) -> depthwise (kh, kw, C, 1)
            values = [vals["kernel"].transpose(0, 1, 3, 2), vals["bias"]]
        else:
            values = [vals["kernel"], vals["bias"]]
        model.get_layer(layer).set_weights(values)
    return model


def _keras_apply(model):
    def apply(params, x):
        trainable, non_trainable = params
        return model.stateless_call(trainable, non_trainable, x, training=False)[0]
    return apply


def _keras_params(model):
    return ([v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables])


# ---- one entry point ---------------------------------------------------------------------

ARCHS = tuple(SHAPES)


def build(arch: str, framework: str) -> Twin:
    """The `arch` twin in `framework`, holding `weights(arch)`, as a Probe plus its
    framework-only forward `apply(x) -> logits` (the framework's own weights closed over)."""
    w, shape = weights(arch), SHAPES[arch]
    spec = dict(input_shape=shape)
    if framework == "nnx":
        model, fwd = _nnx(arch, w)
        state = nnx.state(model)
        return Twin(probe_lib.from_model(model, **spec), lambda x: fwd(state, x), shape,
                    framework, arch)
    if framework == "linen":
        module, variables = _linen(arch), _linen_variables(w)
        kw = {"train": False} if arch == "bn_res" else {}
        return Twin(probe_lib.from_model(module, variables, **spec),
                    lambda x: module.apply(variables, x, **kw), shape, framework, arch)
    if framework == "equinox":
        model, state = _equinox(arch, w)
        fwd = _eqx_apply(arch, model, state)
        params = eqx.filter(model, eqx.is_array)
        probe = (probe_lib.from_model(model, **spec) if state is None
                 else probe_lib.from_model(model, state, **spec))
        return Twin(probe, lambda x: fwd(params, x), shape, framework, arch)
    if framework == "keras":
        model = _keras(arch, w)
        fwd, params = _keras_apply(model), _keras_params(model)
        return Twin(probe_lib.from_model(model, **spec), lambda x: fwd(params, x), shape,
                    framework, arch)
    raise ValueError(f"framework must be one of {FRAMEWORKS}; got {framework!r}")
