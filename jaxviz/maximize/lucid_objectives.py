"""Lucid's objectives beyond single units: diversity, channel interpolation and alignment
across a unit's batch of images (maximize(..., batch=n)), feature inversion and caricature
against a given image's activations. All compose with the objective algebra (+, -, *) and
are maximized; each returns one value per image of the batch, (B,), and the ascent
maximizes their mean, so "Lucent's value" below is Lucent's loss for the same batch.

    mx.channel("conv2", 3) + 1e2 * diversity("conv2")           # Lucid: channel - 1e2 * div
    channel_interpolate("conv2", 3, "conv2", 7) + 0.1 * alignment("conv2")
    match("conv2", target_acts)                                  # feature inversion
"""
from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from jaxviz.core.objectives import Objective, _index, _known


def _flat(a):
    """(B, ..., C) -> (B, P, C): positions by channels (a dense layer has P = 1)."""
    return a.reshape(a.shape[0], -1, a.shape[-1])


@dataclass(frozen=True)
class _Diversity:
    layer: str

    def __call__(self, args, logits, acts):
        f = _flat(acts[self.layer])
        grams = jnp.einsum("bpc,bpd->bcd", f, f)
        norm = jnp.sqrt(jnp.sum(grams ** 2, axis=(1, 2), keepdims=True))
        g = grams / jnp.maximum(norm, 1e-12)
        sim = jnp.einsum("bcd,ecd->be", g, g)
        return -(sim.sum(axis=1) - jnp.diagonal(sim))

    def check(self, args, out_shape, shapes):
        _known(self.layer, shapes)


@dataclass(frozen=True)
class _Interpolate:
    layer1: str
    layer2: str

    def __call__(self, c12, logits, acts):
        a1 = jnp.take(acts[self.layer1], c12[0], axis=-1)
        a2 = jnp.take(acts[self.layer2], c12[1], axis=-1)
        b = a1.shape[0]
        w = jnp.arange(b, dtype=jnp.float32) / max(b - 1, 1)
        mean = lambda a: a.reshape(b, -1).mean(axis=1)  # noqa: E731
        return (1 - w) * mean(a1) + w * mean(a2)

    def check(self, c12, out_shape, shapes):
        for layer, c in zip((self.layer1, self.layer2), c12):
            n = _known(layer, shapes)[-1]
            if not 0 <= int(c) < n:
                raise ValueError(f"channel {int(c)} is out of range: layer {layer!r} has {n} "
                                 f"channels (0..{n - 1})")


@dataclass(frozen=True)
class _Alignment:
    layer: str
    decay_ratio: float

    def __call__(self, args, logits, acts):
        a = acts[self.layer]
        b = a.shape[0]
        per = jnp.zeros(b)
        for d in range(1, min(4, b - 1) + 1):
            sq = ((a[:-d] - a[d:]) ** 2).reshape(b - d, -1).mean(axis=1)
            per = per.at[:-d].add(sq / self.decay_ratio ** d)
        return -per

    def check(self, args, out_shape, shapes):
        _known(self.layer, shapes)


def _target_check(layer, target, shapes):
    shape = _known(layer, shapes)
    if tuple(np.shape(target)) != tuple(shape[1:]):
        raise ValueError(f"target activations for layer {layer!r} must have shape "
                         f"{tuple(shape[1:])} (one image's, no batch axis); got "
                         f"{tuple(np.shape(target))}")
    if not np.all(np.isfinite(target)) or not np.any(target):
        raise ValueError(f"target activations for layer {layer!r} must be finite and not all "
                         f"zero")


@dataclass(frozen=True)
class _Match:
    layer: str

    def __call__(self, t, logits, acts):
        a = acts[self.layer]
        err = ((a - t[None]) ** 2).reshape(a.shape[0], -1).sum(axis=1)
        return -err / jnp.sum(t ** 2)

    def check(self, t, out_shape, shapes):
        _target_check(self.layer, t, shapes)


@dataclass(frozen=True)
class _Caricature:
    layer: str
    cossim_pow: float

    def __call__(self, t, logits, acts):
        a = acts[self.layer].reshape(acts[self.layer].shape[0], -1)
        t = t.reshape(-1)
        tn = jnp.sqrt(jnp.sum(t ** 2))
        dot = a @ t
        cos = dot / (tn * jnp.sqrt(jnp.sum(a ** 2, axis=1)) + 1e-12)
        return dot / tn * jnp.maximum(cos, 1e-6) ** self.cossim_pow

    def check(self, t, out_shape, shapes):
        _target_check(self.layer, t, shapes)


def diversity(layer: str) -> Objective:
    """Minus each image's summed Gram-matrix cosine similarity to the others of the batch.

    Gram matrix per image: G = F^T F with F (positions, channels) at `layer`, divided by its
    Frobenius norm. Image i scores -sum_{j != i} <G_i, G_j>; their mean is Lucent's
    diversity loss for the batch (Lucid's diversity is its negative). Add it with a weight
    (Lucid uses 1e2 beside a channel objective) to make a unit's batch differ.
    """
    return Objective(_Diversity(str(layer)), None, f"diversity({layer})")


def channel_interpolate(layer1: str, c1: int, layer2: str, c2: int) -> Objective:
    """Image i of n maximizes (1 - w) * mean channel c1 of layer1 + w * mean channel c2 of
    layer2, w = i / (n - 1): a morph from one unit to another across the batch. n times the
    batch mean is minus Lucent's channel_interpolate loss."""
    args = (_index(c1, "channel c1"), _index(c2, "channel c2"))
    return Objective(_Interpolate(str(layer1), str(layer2)), np.stack(args),
                     f"{layer1}:{c1}->{layer2}:{c2}")


def alignment(layer: str, decay_ratio: float = 2.0) -> Objective:
    """Minus the mean squared distance of image i's activations at `layer` to those of
    images i+1..i+4, weighted 1 / decay_ratio^d: neighbours in the batch stay alike. n
    times the batch mean is minus Lucent's alignment loss."""
    if not isinstance(decay_ratio, (int, float)) or isinstance(decay_ratio, bool) \
            or decay_ratio <= 0:
        raise ValueError(f"decay_ratio must be a number > 0; got {decay_ratio!r}")
    return Objective(_Alignment(str(layer), float(decay_ratio)), None, f"alignment({layer})")


def match(layer: str, target) -> Objective:
    """Feature inversion: minus ||a - target||^2 / ||target||^2 at `layer` (0 at a perfect
    match). target: one image's activations, the layer's shape without the batch axis;
    a list of match objectives of one layer runs as one batched ascent."""
    return Objective(_Match(str(layer)), np.asarray(target, np.float32), f"match({layer})")


def caricature(layer: str, target, cossim_pow: float = 1.0) -> Objective:
    """(a . t / |t|) * cos(a, t)^cossim_pow at `layer`: grow what the target image's
    activations t already have, in their direction (Lucid's caricature; Lucid's notebook
    divides by |t| only in its "cossim"; here cos is the true cosine, floored at 1e-6).
    """
    if not isinstance(cossim_pow, (int, float)) or isinstance(cossim_pow, bool) \
            or cossim_pow < 0:
        raise ValueError(f"cossim_pow must be a number >= 0; got {cossim_pow!r}")
    return Objective(_Caricature(str(layer), float(cossim_pow)), np.asarray(target, np.float32),
                     f"caricature({layer})")
