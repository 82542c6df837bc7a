"""Faithfulness by perturbation curves: remove (or insert) what the map calls important and
watch the class score. Every curve is batched (`perturb.curve_core`).

    deletion / insertion    Petsiuk et al. 2018 (RISE): pixels in attribution order removed
                            to a baseline / inserted into a blurred image; normalised AUC of
                            the probability curve (S + 1 points on [0, 1]).
    pixel_flipping          Bach et al. 2015, as Quantus' PixelFlipping: the curve after each
                            step, its trapezoid area with unit spacing (Quantus' AUC).
    region_perturbation_*   Samek et al. 2017: grid regions in MoRF / LeRF order; the curve is
                            f(x) - f(x_k); AOPC = sum_{k=0..R} curve_k / (R + 1) (curve_0 = 0).
    irof                    Rieger & Hansen 2020: the segments of a regular grid of
                            `cell` x `cell` squares (the documented stand-in for SLIC
                            superpixels), removed to the image mean by mean attribution; the
                            area over the curve f(x_k) / f(x), Quantus' S - trapz(curve).
    road_morf / road_lerf   Rong et al. 2022: the top (MoRF) or bottom (LeRF) p% of pixels
                            replaced by noisy linear imputation (`perturb.impute`); the curve
                            is correct-class accuracy (or a score) per percentage, the score
                            its mean.
Quantus' defaults where they apply: "black" is the image's minimum, probabilities (softmax)
are the score. Each step count must divide the units (a clear error otherwise).
"""
from __future__ import annotations

import functools

from jaxviz.core import analysis, checks
from jaxviz.evaluate import common, perturb
from jaxviz.evaluate.registry import Metric, MetricResult, register

_SAMEK = ("Samek et al. 2017, Evaluating the visualization of what a deep neural network "
          "has learned")
_ROAD = "Rong et al. 2022, A consistent and efficient evaluation strategy for attribution methods"


# Reducers: (score curve (N, S), unperturbed score (N,)) -> (scores (N,), reported curve).
def _deletion_auc(curve, base):
    return common.normalized_auc(curve), curve


def _trapz(curve, base):
    return common.trapz(curve), curve


def _aopc(curve, base):
    drop = base[:, None] - curve
    return drop.sum(-1) / (curve.shape[-1] + 1), drop


def _irof(curve, base):
    ratio = curve / base[:, None]
    return ratio.shape[-1] - common.trapz(ratio), ratio


def _mean(curve, base):
    return curve.mean(-1), curve


def _curve(fn, params, images, target, attributions, *, key, chunk_size, cell, counts, order,
           compose, fill, score, reduce, blur_sigma=5.0, noise=0.0, cg_steps=0,
           keyed=False) -> MetricResult:
    """Check everything, then one call of the compiled curve core."""
    x, t, a = common.prepare(fn, params, images, target, attributions)
    common.check_choice(score, common.SCORES, "score")
    chunk_size = analysis.check_chunk_size(chunk_size)
    kind, values = common.check_fill(fill, x) if compose != "impute" else ("array", 0.0)
    why = "ROAD draws imputation noise" if keyed else "baseline='uniform' draws noise"
    keys = common.metric_keys(key, x.shape[0], keyed or kind == "uniform", why)
    counts = counts(x.shape[1] * x.shape[2]) if callable(counts) else counts
    scores, curve = perturb.curve_core(
        analysis.static_fn(fn), params, x, t, a, values, keys, cell=cell,
        counts=tuple(int(c) for c in counts), order=order, compose=compose, fill_kind=kind,
        score=score, chunk_size=chunk_size, blur_sigma=float(blur_sigma), noise=float(noise),
        cg_steps=int(cg_steps), reduce=reduce)
    return MetricResult(scores, curve)


def _steps(per_step: int, pixels: int, first: int) -> tuple[int, ...]:
    return tuple(range(first * per_step, pixels + 1, per_step))


def deletion(fn, params, images, target, attributions, *, pixels_per_step: int = 28,
             baseline=0.0, score: str = "prob", key=None, chunk_size=None) -> MetricResult:
    """Deletion AUC (lower is better): curve (N, P / pixels_per_step + 1), from the image to
    the baseline. baseline: a number, an array like the images or a `common.FILLS` name."""
    h, w = _hw(images)
    step = common.divides(pixels_per_step, h * w, "pixels_per_step")
    return _curve(fn, params, images, target, attributions, key=key, chunk_size=chunk_size,
                  cell=1, counts=_steps(step, h * w, 0), order="morf", compose="delete",
                  fill=baseline, score=score, reduce=_deletion_auc)


def insertion(fn, params, images, target, attributions, *, pixels_per_step: int = 28,
              baseline="blur", blur_sigma: float = 5.0, score: str = "prob", key=None,
              chunk_size=None) -> MetricResult:
    """Insertion AUC (higher is better): pixels inserted in attribution order into the
    baseline (default a Gaussian blur, sigma `blur_sigma`, of the image), curve (N, S + 1)."""
    h, w = _hw(images)
    step = common.divides(pixels_per_step, h * w, "pixels_per_step")
    common.check_number(blur_sigma, "blur_sigma", strict=True)
    return _curve(fn, params, images, target, attributions, key=key, chunk_size=chunk_size,
                  cell=1, counts=_steps(step, h * w, 0), order="morf", compose="insert",
                  fill=baseline, score=score, reduce=_deletion_auc, blur_sigma=blur_sigma)


def pixel_flipping(fn, params, images, target, attributions, *, pixels_per_step: int = 28,
                   baseline="black", score: str = "prob", key=None,
                   chunk_size=None) -> MetricResult:
    """Pixel flipping (lower is better): pixels flipped to the baseline in MoRF order,
    curve (N, P / pixels_per_step) after each step, score its trapezoid area (dx=1)."""
    h, w = _hw(images)
    step = common.divides(pixels_per_step, h * w, "pixels_per_step")
    return _curve(fn, params, images, target, attributions, key=key, chunk_size=chunk_size,
                  cell=1, counts=_steps(step, h * w, 1), order="morf", compose="delete",
                  fill=baseline, score=score, reduce=_trapz)


def region_perturbation(fn, params, images, target, attributions, *, order: str = "morf",
                        patch_size: int = 4, n_regions: int | None = None, baseline="black",
                        score: str = "prob", key=None, chunk_size=None) -> MetricResult:
    """AOPC of region perturbation: patch_size squares on a grid (edge ones cut off), taken
    one more at a time in `order` ("morf" higher is better, "lerf" lower), n_regions of
    them (default all). curve (N, n_regions): f(x) - f(x_k)."""
    h, w = _hw(images)
    common.check_choice(order, ("morf", "lerf"), "order")
    cell = common.check_pixel_count(min(h, w), 1, patch_size, "patch_size")
    n_units = common.grid_units(h, w, cell)[1]
    n_regions = n_units if n_regions is None else n_regions
    n_regions = common.check_pixel_count(n_units, 1, n_regions, "n_regions")
    return _curve(fn, params, images, target, attributions, key=key, chunk_size=chunk_size,
                  cell=cell, counts=tuple(range(1, n_regions + 1)), order=order,
                  compose="delete", fill=baseline, score=score, reduce=_aopc)


def irof(fn, params, images, target, attributions, *, cell: int = 4, baseline="mean",
         score: str = "prob", key=None, chunk_size=None) -> MetricResult:
    """IROF (higher is better) on a grid of cell x cell segments: curve (N, S) of
    f(x_k) / f(x) as segments go by mean attribution; score S - trapz(curve)."""
    h, w = _hw(images)
    cell = common.check_pixel_count(min(h, w), 1, cell, "cell")
    n_units = common.grid_units(h, w, cell)[1]
    return _curve(fn, params, images, target, attributions, key=key, chunk_size=chunk_size,
                  cell=cell, counts=tuple(range(1, n_units + 1)), order="morf",
                  compose="delete", fill=baseline, score=score, reduce=_irof)


def road(fn, params, images, target, attributions, *, order: str = "morf",
         percentages=tuple(range(10, 100, 10)), noise: float = 0.01, score: str = "correct",
         cg_steps: int | None = None, key=None, chunk_size=None) -> MetricResult:
    """ROAD: for each percentage p, floor(P * p / 100) pixels (MoRF: most relevant first,
    lower is better; LeRF: higher) imputed from their neighbours plus N(0, noise^2). curve
    (N, len(percentages)): score "correct" (accuracy, as the paper and Quantus) or a
    probability/logit; the score is its mean. cg_steps: conjugate-gradient iterations
    (default 2 * max(H, W), enough for the system to settle)."""
    h, w = _hw(images)
    common.check_choice(order, ("morf", "lerf"), "order")
    pct = tuple(float(common.check_number(p, "percentages")) for p in percentages)
    if not pct or max(pct) > 100:
        raise ValueError(f"percentages must be a non-empty list of numbers in [0, 100]; "
                         f"got {percentages!r}")
    common.check_number(noise, "noise")
    steps = 2 * max(h, w) if cg_steps is None else checks.positive_int(cg_steps, "cg_steps")
    counts = tuple(int(h * w * p // 100) for p in pct)
    return _curve(fn, params, images, target, attributions, key=key, chunk_size=chunk_size,
                  cell=1, counts=counts, order=order, compose="impute", fill=0.0, score=score,
                  reduce=_mean, noise=noise, cg_steps=steps, keyed=True)


def _hw(images) -> tuple[int, int]:
    """(H, W) of the images, for checking options before the images themselves."""
    shape = getattr(images, "shape", None)
    if shape is None or len(shape) != 4:
        shape = checks.as_images(images).shape  # the images' own clear error
    return int(shape[1]), int(shape[2])


def _ordered(metric, order):
    f = functools.partial(metric, order=order)
    f.__name__ = f"{metric.__name__}_{order}"
    f.__doc__ = metric.__doc__
    return f


_STEP = dict(pixels_per_step=16)  # divides 28 x 28 and the tests' 8 x 8
for _m in (
    Metric("deletion", deletion, "lower", "faithfulness", quick=_STEP,
           paper="Petsiuk et al. 2018, RISE: randomized input sampling for explanation"),
    Metric("insertion", insertion, "higher", "faithfulness", quick=_STEP,
           paper="Petsiuk et al. 2018, RISE: randomized input sampling for explanation"),
    Metric("pixel_flipping", pixel_flipping, "lower", "faithfulness", quick=_STEP,
           paper="Bach et al. 2015, On pixel-wise explanations ... by layer-wise relevance "
                 "propagation"),
    Metric("region_perturbation_morf", _ordered(region_perturbation, "morf"), "higher",
           "faithfulness", paper=_SAMEK),
    Metric("region_perturbation_lerf", _ordered(region_perturbation, "lerf"), "lower",
           "faithfulness", paper=_SAMEK),
    Metric("irof", irof, "higher", "faithfulness",
           paper="Rieger & Hansen 2020, IROF: a low resource evaluation metric for "
                 "explanation methods"),
    Metric("road_morf", _ordered(road, "morf"), "lower", "faithfulness", needs_key=True,
           paper=_ROAD, quick=dict(percentages=(25, 50, 75))),
    Metric("road_lerf", _ordered(road, "lerf"), "higher", "faithfulness", needs_key=True,
           paper=_ROAD, quick=dict(percentages=(25, 50, 75))),
):
    register(_m)
