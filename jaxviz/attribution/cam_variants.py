"""The wider CAM set, as pytorch-grad-cam defines it: HiResCAM, XGrad-CAM, LayerCAM,
EigenCAM, Ablation-CAM and FullGrad.

`method(probe, params, images, target, *, layer=None, ...) -> Attribution`, map (N, H, W), like
`jaxviz.attribution.cam` (whose `resolve_layer`, `layer_grad` and `_finish` they share):
A (N, h, w, K) is the layer's activation, G = dS/dA the target logit's gradient there.

    HiResCAM     relu(sum_k G_k * A_k)                              (Draelos & Carin 2020)
    XGrad-CAM    relu(sum_k w_k A_k), w_k = sum_hw G_k A_k / (sum_hw A_k + 1e-7)  (Fu et al. 2020)
    LayerCAM     relu(sum_k relu(G_k) * A_k)                        (Jiang et al. 2021)
    EigenCAM     relu(A_c v), A_c the (h*w, K) activations centred per channel, v their
                 first principal direction                           (Muhammad & Yeasin 2020)
    Ablation-CAM relu(sum_k w_k A_k), w_k = (S - S_k) / S, S_k the score with channel k
                 set to `ablation_value`                              (Desai & Ramaswamy 2020)
    FullGrad     psi(|G_x * x|) + sum over bias layers l, channels c psi(|G_l,c * b_l,c|),
                 psi = min-max to [0, 1] per (image, channel), then bilinear upsampling
                                                                      (Srinivas & Fleuret 2019)

Documented differences from pytorch-grad-cam 1.5.5, measured side by side on the same
weights and layer by `python -m experiments.bench --only peers_gradcam`
(docs/peers_gradcam.md):
- Maps are not min-max scaled at the end (the display does that). The peer scales each
  map, (m - min) / (max - min + 1e-7), resizes it with cv2's bilinear (the same half-pixel
  interpolation as `jax.image.resize`) and scales again, so its output is
  `jaxviz.attribution.normalize.unit_range` of jaxviz's map: the option to get the peer's
  definition. The ReLU comes before upsampling on both sides. HiResCAM and LayerCAM have
  the peer's definitions exactly; XGrad-CAM too (the same 1e-7 on the activation sum;
  jaxviz gives weight 0 where sum + 1e-7 is exactly 0, where the peer divides by 0).
- EigenCAM's principal direction has a fixed sign (the projection correlates positively
  with the channel-summed activation), where the peer keeps whatever sign LAPACK's SVD
  gives (it also computes the full (h*w, h*w) U it does not use); where the signs differ
  the peer's map is relu(-p) where jaxviz's is relu(p). On the benchmark's digits no image
  differed in sign.
- Ablation-CAM sets the channel to `ablation_value` (default 0, the paper's choice) where
  the peer uses 0 for a layer whose minimum is 0 and otherwise min(A) - 1e7, recomputed
  after each channel of its batch is set (the i-th channel of a batch gets about
  min - 1e7 (i + 1)); behind a ReLU both are the same channel of zeros (conv2 of the
  benchmark's CNN: max rel. diff 1.5e-5). jaxviz gives a channel weight 0 when the
  unablated score is exactly 0, where the peer divides by it.
- FullGrad: the peer takes the biases of Conv2d and BatchNorm2d modules only (jaxviz: any
  spatial layer with a (K,) bias, below); the parts are scaled per channel as here and
  summed, and the peer min-max scales the sum at the end (unit_range of jaxviz's map).

FullGrad's bias gradients, for any Flax model without a layer list: the Probe hands over
each layer's module while the model is traced; a layer whose output is (N, h, w, K) and
whose own variables hold a (K,) `bias` (conv, dense on feature maps, LayerNorm, ...) adds
that bias at every position, so the bias-gradient map is G_l * b, G_l the gradient at the
layer's output (taken through an edit `a + delta`, as for the other CAMs). A BatchNorm
(variables `mean` and `var`, optional `scale`, the module's `epsilon`) runs in inference
mode, so its implicit bias is b - mean * scale / sqrt(var + epsilon), as in the paper.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxviz.attribution.cam import _finish, _is_spatial, layer_grad, resolve_layer
from jaxviz.core import adapters, analysis
from jaxviz.core import compile as compile_lib
from jaxviz.core import method, targets
from jaxviz.core.result import Attribution, attribution_method, cam_cause

GRAD_VARIANTS = ("hires", "xgrad", "layercam")
XGRAD_EPS = 1e-7  # pytorch-grad-cam's guard on the activation sum
SCALE_EPS = 1e-7  # pytorch-grad-cam's guard in min-max scaling


def _variant_map(a, g, variant):
    if variant == "hires":
        return (g * a).sum(-1)
    if variant == "layercam":
        return (jnp.maximum(g, 0) * a).sum(-1)
    s = a.sum(axis=(1, 2))
    denom = s + XGRAD_EPS
    weights = (g * a).sum(axis=(1, 2)) / jnp.where(denom != 0, denom, 1)
    return jnp.einsum("nhwk,nk->nhw", a, weights)


# Compiled as a backward program (materialized convolutions), like Grad-CAM.
def _grad_variant(probe, params, x, t, *, layer, variant, relu, upsample):
    a, g = layer_grad(probe, params, x, t, layer)
    return Attribution(_finish(_variant_map(a, g, variant), x, relu, upsample))


def _run_variant(variant, label, fn, params, x, t, layer, relu, upsample):
    layer = resolve_layer(fn, layer, x.shape, label, t)
    return method.run(_grad_variant, fn, params, x, t, layer=layer, variant=variant,
                      relu=bool(relu), upsample=bool(upsample))


@attribution_method("hires_cam", cam_cause, targets=method.CAM)
def hires_cam(fn, params, images, target, *, layer: str | None = None, relu: bool = True,
              upsample: bool = True) -> Attribution:
    """HiResCAM: relu(sum_k dS/dA_k * A_k), element-wise (no spatial averaging of the
    gradient, so the map is exactly what the layer contributes). -> (N, H, W)."""
    return _run_variant("hires", "HiResCAM", fn, params, images, target, layer, relu, upsample)


@attribution_method("xgrad_cam", cam_cause, targets=method.CAM)
def xgrad_cam(fn, params, images, target, *, layer: str | None = None, relu: bool = True,
              upsample: bool = True) -> Attribution:
    """XGrad-CAM: channel weights sum_hw(dS/dA_k * A_k) / (sum_hw A_k + 1e-7). -> (N, H, W).

    pytorch-grad-cam's XGradCAM up to its final min-max (unit_range of this map)."""
    return _run_variant("xgrad", "XGrad-CAM", fn, params, images, target, layer, relu, upsample)


@attribution_method("layer_cam", cam_cause, targets=method.CAM)
def layer_cam(fn, params, images, target, *, layer: str | None = None, relu: bool = True,
              upsample: bool = True) -> Attribution:
    """LayerCAM: relu(sum_k relu(dS/dA_k) * A_k), positive gradients weight each position.
    -> (N, H, W)."""
    return _run_variant("layercam", "LayerCAM", fn, params, images, target, layer, relu,
                        upsample)


def first_component(a: jax.Array) -> jax.Array:
    """Projection of each position's channel vector on the first principal direction.

    a: (N, h, w, K) -> (N, h, w). Channels are centred over positions first; the direction
    is signed so that the projection correlates positively with sum_k A_k (for a principal
    direction v, that correlation is proportional to sum(v))."""
    n, h, w, k = a.shape
    m = a.reshape(n, h * w, k).astype(jnp.float32)  # LAPACK's SVD has no bfloat16
    m = m - m.mean(axis=1, keepdims=True)
    _, _, vt = jnp.linalg.svd(m, full_matrices=False)
    v = vt[:, 0, :]
    v = v * jnp.where(v.sum(-1, keepdims=True) < 0, -1.0, 1.0)
    return jnp.einsum("npk,nk->np", m, v).reshape(n, h, w)


def _eigen_cam(probe, params, x, t, *, layer, relu, upsample):
    return Attribution(_finish(first_component(probe.run(params, x)[1][layer]), x, relu,
                               upsample))


@attribution_method("eigen_cam", cam_cause, targets=method.CAM)
def eigen_cam(fn, params, images, target, *, layer: str | None = None, relu: bool = True,
              upsample: bool = True) -> Attribution:
    """EigenCAM: the layer's activations projected on their first principal component,
    gradient-free and class-agnostic (`target` is checked, not used: T targets give T
    equal maps). -> (N, H, W).

    The sign is fixed (`first_component`); pytorch-grad-cam's EigenCAM keeps the SVD's
    arbitrary sign, so on an image where they differ its map is relu of the negated
    projection (relu=False here gives the projection to compare)."""
    layer = resolve_layer(fn, layer, images.shape, "EigenCAM")
    return method.run(_eigen_cam, fn, params, images, target, kind="forward", layer=layer,
                      relu=bool(relu), upsample=bool(upsample))


def _ablation_cam(probe, params, x, t, value, *, layer, relu, upsample, chunk_size):
    logits, acts = probe.run(params, x)
    a = acts[layer]
    score = t.score(logits, acts)  # (N,)
    channels = jnp.arange(a.shape[-1])

    def ablated(c):  # the layer's cached output with channel c replaced: earlier layers
        keep = channels != c  # are dead code in this pass and never recomputed
        edited = jnp.where(keep, a, value)
        return t.score(*probe.run(params, x, edits={layer: lambda _: edited}))

    drops = score[None] - analysis.chunked(ablated, channels, chunk_size)  # (K, N)
    weights = jnp.where(score != 0, drops / jnp.where(score != 0, score, 1), 0)
    return Attribution(_finish(jnp.einsum("nhwk,kn->nhw", a, weights), x, relu, upsample))


@attribution_method("ablation_cam", cam_cause, targets=method.CAM)
def ablation_cam(fn, params, images, target, *, layer: str | None = None, relu: bool = True,
                 upsample: bool = True, ablation_value: float = 0.0,
                 chunk_size: int | None = 16) -> Attribution:
    """Ablation-CAM: channel k's weight is the relative drop of the target logit when channel
    k of the layer is set to `ablation_value`. Gradient-free. -> (N, H, W).

    pytorch-grad-cam's AblationCAM uses 0 only where the layer's minimum is 0, else
    min(A) - 1e7 (growing per channel of its batch); the same as 0 behind a ReLU
    (module docstring).

    chunk_size: channels (ablated copies of the whole batch) run at once; None = all.
    """
    x, t = images, target
    layer = resolve_layer(fn, layer, x.shape, "Ablation-CAM", t)
    chunk_size = analysis.check_chunk_size(chunk_size)
    if isinstance(ablation_value, bool) or not isinstance(ablation_value, (int, float)):
        raise ValueError(f"ablation_value must be a number (the value an ablated channel "
                         f"takes, e.g. 0.0); got {ablation_value!r}")
    return method.run(_ablation_cam, fn, params, x, t, kind="forward",
                      value=jnp.float32(ablation_value), layer=layer, relu=bool(relu),
                      upsample=bool(upsample), chunk_size=chunk_size)


# ---- FullGrad ---------------------------------------------------------------------------

def _own_variables(module) -> dict:
    """A layer's own arrays by name ({"kernel", "bias"}, BatchNorm's "mean", "var", ...)."""
    return adapters.own_arrays(module)


def implicit_bias(module, width: int):
    """The (width,) constant a layer adds at every position, or None. BatchNorm (inference
    mode) folds its running statistics in: b - mean * scale / sqrt(var + epsilon)."""
    own = _own_variables(module)

    def vector(name):
        v = own.get(name)
        return v if v is not None and tuple(v.shape) == (width,) else None

    bias, mean, var = vector("bias"), vector("mean"), vector("var")
    if mean is not None and var is not None:
        scale = vector("scale")
        scale = 1.0 if scale is None else scale
        shift = mean * scale / jnp.sqrt(var + getattr(module, "epsilon", 1e-5))
        return (0.0 if bias is None else bias) - shift
    return bias


def bias_layers(probe, params, x) -> dict:
    """{layer: (K,) implicit bias} for every layer with a spatial (N, h, w, K) output and a
    bias, in call order. Traced inline: only the parameter reads survive compilation."""
    found = {}

    def on_call(name, module, a):
        shape = getattr(a, "shape", None)
        if _is_spatial(tuple(shape) if shape is not None else None):
            b = implicit_bias(module, shape[-1])
            if b is not None:
                found[name] = b
    probe.run(params, x, on_call=on_call)
    return found


def unit_scaled(m, size):
    """psi: min-max to [0, 1] per (image, channel), as pytorch-grad-cam (guard 1e-7), then
    bilinear upsampling to size (H, W). (N, h, w, K) -> (N, H, W, K)."""
    m = m - m.min(axis=(1, 2), keepdims=True)
    m = m / (SCALE_EPS + m.max(axis=(1, 2), keepdims=True))
    if m.shape[1:3] != tuple(size):
        m = jax.image.resize(m, (m.shape[0], *size, m.shape[-1]), "bilinear")
    return m


def full_gradients(probe, params, x, t):
    """FullGrad's raw parts, traced inline: (dS/dx * x (N, H, W, C), {layer: dS/dA_l * b_l
    (N, h, w, K)}). For a piecewise-linear net their sum plus the non-spatial layers' bias
    terms is the target logit (the full-gradient decomposition)."""
    if not isinstance(t, targets.Target):  # class indices, as this helper always took
        t = targets.resolve(probe, params, x, t)
    biases = bias_layers(probe, params, x)

    def run(params, x, deltas):
        return probe.run(params, x, edits={k: (lambda a, d=d: a + d) for k, d in deltas.items()})

    def score(x, deltas):
        return t.score(*compile_lib.fast_model(run)(params, x, deltas)).sum()

    zeros = {k: jnp.zeros(probe.check_layer(k, x.shape), x.dtype) for k in biases}
    gx, gl = jax.grad(score, argnums=(0, 1))(x, zeros)
    return gx * x, {k: gl[k] * b for k, b in biases.items()}


def _full_grad(probe, params, x, t):
    inputs, layers = full_gradients(probe, params, x, t)
    size = x.shape[1:3]
    total = unit_scaled(jnp.abs(inputs), size).sum(-1)
    for part in layers.values():
        total = total + unit_scaled(jnp.abs(part), size).sum(-1)
    return Attribution(total)


@attribution_method("full_grad", targets=method.CAM)
def full_grad(fn, params, images, target) -> Attribution:
    """FullGrad: input-gradient x input plus every spatial layer's bias-gradient, each
    min-max scaled per channel and upsampled (see the module docstring). -> (N, H, W) >= 0.

    pytorch-grad-cam's FullGrad is unit_range of this map where every bias layer is a conv
    or BatchNorm (the peer skips other biased layers, e.g. LayerNorm)."""
    resolve_layer(fn, None, images.shape, "FullGrad")  # a Probe, with spatial layers
    return method.run(_full_grad, fn, params, images, target)


__all__ = ["hires_cam", "xgrad_cam", "layer_cam", "eigen_cam", "ablation_cam", "full_grad",
           "first_component", "implicit_bias", "bias_layers", "full_gradients",
           "unit_scaled"]
