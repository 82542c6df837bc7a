"""Class activation maps: Grad-CAM, Grad-CAM++, Score-CAM and Guided Grad-CAM.

`method(probe, params, images, target, *, layer=None, ...) -> Attribution`, map (N, H, W)
(or (N, h, w) at the layer's resolution with upsample=False). A map that is zero everywhere
after the ReLU raises a `BlankMapWarning` (see `jaxviz.core.result`). `probe` must be a `jaxviz.core.probe.Probe`: the
layer's activation A (N, h, w, K) is read, and its gradient taken, through
`probe.run(..., edits={layer: lambda a: a + delta})`, so the model is never edited.
layer=None picks the last layer whose output is (N, h, w, K), like keras-vis' search for
the penultimate conv/pool layer. Maps are upsampled bilinearly with `jax.image.resize`.

Against pytorch-grad-cam 1.5.5 (docs/peers_gradcam.md, `python -m experiments.bench --only
peers_gradcam`): both apply the ReLU at the layer's resolution, before upsampling; the peer
then min-max scales each map, (m - min) / (max - min + 1e-7), resizes it with cv2's
bilinear (the same half-pixel interpolation as `jax.image.resize` here) and min-max scales
the result again, where jaxviz returns the raw map. Min-max being affine per image, the
peer's output is `jaxviz.attribution.normalize.unit_range` of jaxviz's map (the option to
get the peer's definition; at the layer's resolution its 1e-7 guard moves a map of range r
by ~1e-7 / r, which unit_range does not add).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxviz.attribution.gradients import gradient_map
from jaxviz.core import analysis, paths, targets
from jaxviz.core import compile as compile_lib
from jaxviz.core import method
from jaxviz.core.probe import Probe
from jaxviz.core.result import Attribution, attribution_method, cam_cause


def _is_spatial(shape) -> bool:
    return (isinstance(shape, tuple) and len(shape) == 4
            and all(isinstance(d, int) for d in shape))


def spatial_layers(probe: Probe, x_shape) -> list[str]:
    """Layers whose output is (N, h, w, K), in call order."""
    return [k for k, s in probe.layer_shapes(tuple(x_shape)).items() if _is_spatial(s)]


def suggest_layers(probe: Probe, x_shape) -> list[tuple[str, tuple, bool]]:
    """The CAM candidates: (layer, activation shape, on the main path) for every spatial
    layer, in call order. A layer off the main path (a residual branch) misses what the
    logits receive around it; the default is the last one on it."""
    main = set(paths.main_path_layers(probe, x_shape))
    shapes = probe.layer_shapes(tuple(x_shape))
    return [(name, shapes[name], name in main) for name in spatial_layers(probe, x_shape)]


def resolve_layer(fn, layer: str | None, x_shape, method: str = "Grad-CAM", target=None) -> str:
    """Check `fn` is a Probe and `layer` a spatial layer of it. None -> the last spatial
    layer that every path from the input to the logits goes through (`suggest_layers`).
    target: a resolved Target, checked to be computed at or after the layer."""
    layer = _resolve_layer(fn, layer, x_shape, method)
    if target is not None:
        targets.check_above(target, fn, x_shape, layer, method)
    return layer


def _resolve_layer(fn, layer, x_shape, method):
    if not isinstance(fn, Probe):
        raise ValueError(f"{method} needs a layer's activations: pass a jaxviz.core.probe.Probe "
                         f"(jaxviz.core.probe.from_model(model)) as fn; got {type(fn).__name__}")
    if layer is None:
        candidates = suggest_layers(fn, x_shape)
        main = [name for name, _, on_main in candidates if on_main]
        if not main:
            listed = ", ".join(f"{n} {s[1:3]}" for n, s, _ in candidates) or "none"
            raise ValueError(f"{method}: no layer output with a spatial (N, h, w, K) shape lies "
                             f"on every path to the logits; pass layer= one of the spatial "
                             f"layers (name (h, w)): {listed}")
        return main[-1]
    shape = fn.check_layer(layer, tuple(x_shape))
    if not _is_spatial(shape):
        raise ValueError(f"layer {layer!r} has output shape {shape}, not (N, h, w, K): "
                         f"{method} needs a spatial layer; spatial layers: "
                         f"{spatial_layers(fn, x_shape)}")
    return layer


def layer_grad(probe, params, x, t, layer):
    """(A, dscore/dA): the layer's activation and the target's score's gradient there, for
    ONE target t (a `targets.Target`, or class indices)."""
    if not isinstance(t, targets.Target):
        t = targets.resolve(probe, params, x, t)

    def run(params, x, delta):
        return probe.run(params, x, edits={layer: lambda a: a + delta})

    def score(delta):
        logits, acts = compile_lib.fast_model(run)(params, x, delta)  # same gradients, faster on CPU
        return t.score(logits, acts).sum(), acts[layer]
    shape = probe.check_layer(layer, x.shape)
    g, a = jax.grad(score, has_aux=True)(jnp.zeros(shape, x.dtype))
    return a, g


def _finish(cam, x, relu, upsample):
    cam = cam.astype(jnp.float32)  # a bfloat16 model's activations still give a float32 map
    if relu:
        cam = jnp.maximum(cam, 0)
    if upsample:
        cam = jax.image.resize(cam, (cam.shape[0],) + x.shape[1:3], "bilinear")
    return cam


def _grad_cam_maps(probe, params, x, t, layer, plus_plus):
    a, g = layer_grad(probe, params, x, t, layer)
    if plus_plus:  # Chattopadhay et al. 2018, closed form for an exp(score) output
        g2 = g ** 2
        denom = 2 * g2 + a.sum(axis=(1, 2), keepdims=True) * g2 * g
        alpha = jnp.where(denom != 0, g2 / jnp.where(denom != 0, denom, 1), 0)
        weights = (alpha * jnp.maximum(g, 0)).sum(axis=(1, 2))
    else:
        weights = g.mean(axis=(1, 2))
    return jnp.einsum("nhwk,nk->nhw", a, weights)


# Compiled as a backward program (materialized convolutions); see docs/xla_cpu_backward.md.
def _cam(probe, params, x, t, *, layer, variant, relu, upsample):
    cam = _finish(_grad_cam_maps(probe, params, x, t, layer, variant == "gradcam++"), x,
                  relu, upsample)
    if variant == "guided":
        return Attribution(cam[..., None] * gradient_map("guided_backprop", probe, params, x, t))
    return Attribution(cam)


def _run_cam(variant, label, fn, params, x, t, layer, relu, upsample):
    layer = resolve_layer(fn, layer, x.shape, label, t)
    return method.run(_cam, fn, params, x, t, layer=layer, variant=variant, relu=bool(relu),
                      upsample=bool(upsample))


@attribution_method("grad_cam", cam_cause, targets=method.CAM)
def grad_cam(fn, params, images, target, *, layer: str | None = None, relu: bool = True,
             upsample: bool = True) -> Attribution:
    """Grad-CAM (Selvaraju et al. 2017): relu(sum_k mean_hw(dS/dA_k) A_k). -> map (N, H, W).

    The same definition as pytorch-grad-cam's GradCAM: unit_range of this map is its output
    (max rel. diff 4e-6 on the benchmark's digits; the module docstring says why).
    S is any target computed at or after the layer (`jaxviz.core.targets`)."""
    return _run_cam("gradcam", "Grad-CAM", fn, params, images, target, layer, relu, upsample)


@attribution_method("grad_cam_plus_plus", cam_cause, targets=method.CAM)
def grad_cam_plus_plus(fn, params, images, target, *, layer: str | None = None,
                       relu: bool = True, upsample: bool = True) -> Attribution:
    """Grad-CAM++: channel weights sum_hw alpha_hw relu(dS/dA_hw). -> map (N, H, W).

    alpha = G^2 / (2 G^2 + sum_hw(A) G^3) exactly (0 where that denominator is 0).
    pytorch-grad-cam's GradCAMPlusPlus adds 1e-6 to the denominator; where |G| is small
    (the benchmark's MnistCNN at conv2: |G| ~ 1e-4, G^2 ~ 1e-8) that constant dominates,
    alpha becomes ~G^2 / 1e-6 and the maps differ completely (max rel. diff 1.0); with its
    constant set to 0 they agree to 2e-4, float32 rounding amplified where 2 + sum(A) G
    nearly cancels."""
    return _run_cam("gradcam++", "Grad-CAM++", fn, params, images, target, layer, relu,
                    upsample)


@attribution_method("guided_grad_cam", cam_cause, targets=method.CAM)
def guided_grad_cam(fn, params, images, target, *, layer: str | None = None) -> Attribution:
    """Upsampled Grad-CAM times guided backprop. -> map (N, H, W, C), signed."""
    return _run_cam("guided", "Guided Grad-CAM", fn, params, images, target, layer, True, True)


def _score_cam(probe, params, x, t, *, layer, relu, upsample, chunk_size):
    a = probe.run(params, x)[1][layer]
    n, h, w, _ = x.shape
    up = jax.image.resize(a, (n, h, w, a.shape[-1]), "bilinear")
    lo, hi = up.min(axis=(1, 2), keepdims=True), up.max(axis=(1, 2), keepdims=True)
    masks = jnp.where(hi > lo, (up - lo) / jnp.where(hi > lo, hi - lo, 1), 0)
    masks = jnp.moveaxis(masks, -1, 0)[..., None]  # (K, N, H, W, 1)
    probs = analysis.chunked(lambda m: method.scores(probe, params, x * m, t), masks,
                             chunk_size)  # (K, N)
    return Attribution(_finish(jnp.einsum("nhwk,kn->nhw", a, probs), x, relu, upsample))


@attribution_method("score_cam", cam_cause,
                    targets=dataclasses.replace(method.CAM, score="prob"))
def score_cam(fn, params, images, target, *, layer: str | None = None, relu: bool = True,
              upsample: bool = True, chunk_size: int | None = 16) -> Attribution:
    """Score-CAM (Wang et al. 2020), gradient-free. -> map (N, H, W).

    Channel k's weight is the target's softmax probability for the input masked by channel
    k's activation, upsampled and min-max scaled to [0, 1] (a constant channel masks all);
    for an objective target, the objective's value on that input.
    chunk_size: channels (masked copies of the whole batch) run at once; None = all.

    pytorch-grad-cam's ScoreCAM differs in two choices: its masks are upsampled with
    `UpsamplingBilinear2d` (align_corners=True, not half-pixel) and scaled with a 1e-8 guard,
    and channel k's weight is the softmax over the channels of the masked inputs' target
    logits, not the softmax over classes (it runs 16 masked copies of one image per
    forward). Max rel. diff 0.10 on the benchmark's digits; 6e-7 with both choices made
    jaxviz's way on the peer side (docs/peers_gradcam.md).
    """
    x = images
    layer = resolve_layer(fn, layer, x.shape, "Score-CAM", target)
    chunk_size = analysis.check_chunk_size(chunk_size)
    return method.run(_score_cam, fn, params, x, target, kind="forward", layer=layer,
                      relu=bool(relu), upsample=bool(upsample), chunk_size=chunk_size)
