"""Occlusion sensitivity: slide a baseline patch over each image and score every position.

    res = occlusion(fn, params, x, target, window=(4, 4), stride=(2, 2))   # an Attribution
    res.extras["scores"]  # (N, nH, nW): score(x) - score(x with the patch at that position)
    res.map               # (N, H, W): that difference averaged over the windows covering a pixel
    res.extras["base"]    # (N,): score(x)
    occluded(res)         # (N, nH, nW): the score with the patch at each position

Definitions follow Captum's `Occlusion`: window corners at 0, stride, 2*stride, ... with
ceil((H - window) / stride) + 1 positions per axis, the last window cut off at the edge, so
every pixel is covered at least once when stride <= window (a longer stride leaves gaps,
whose attribution is 0, and Captum's count may add a last window past the edge, which
occludes nothing and scores 0). A 2-D window spans all channels; a 3-D window
(h, w, c) with a 3-D stride occludes channels separately and adds a channel axis to both
outputs. Every (image, position) pair is one row of a `jax.lax.map(..., batch_size=...)`, so
memory is bounded by `chunk_size` forward passes (default: one image's positions).
`method="incremental"` recomputes only the changed region of each layer (see
`jaxviz.occlusion.incremental`); results agree with the exact path to float precision.
`occlusion_by_score` scores one set of occluded forward passes several ways (logit drop and
probability). The Keras recipe's parity version is `jaxviz.occlusion.keras_vis`.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxviz.core import analysis, checks
from jaxviz.core import method as method_lib
from jaxviz.core import objectives, result, targets
from jaxviz.core.result import Attribution, attribution_method

SCORES = ("logit", "prob", "log_prob")
METHODS = ("exact", "incremental")


def occluded(res: Attribution) -> jax.Array:
    """The target score with the patch at each position, (N, nH, nW[, nC]), from an
    occlusion result (extras "scores" (N, nH, nW[, nC]) and "base" (N,))."""
    scores, base = res.extras["scores"], res.extras["base"]
    return base.reshape((-1,) + (1,) * (scores.ndim - 1)) - scores


def _result(scores, attribution, base) -> Attribution:
    return Attribution(attribution, {"scores": scores, "base": base})


def axis_starts(length: int, window: int, stride: int) -> np.ndarray:
    """Window corners along one axis (Captum's rule): 0, stride, ... until the axis is covered."""
    return np.arange(math.ceil((length - window) / stride) + 1) * stride


def grid(shape, window, stride) -> tuple[np.ndarray, tuple[int, ...]]:
    """All window corners over (H, W, C) as (P, 3) int, and the grid shape (nH, nW, nC)."""
    axes = [axis_starts(n, w, s) for n, w, s in zip(shape, window, stride)]
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([m.ravel() for m in mesh], 1), tuple(len(a) for a in axes)


def coverage(length: int, window: int, starts: np.ndarray) -> np.ndarray:
    """(len(starts), length) 0/1 matrix: does the window at each start cover each index."""
    i = np.arange(length)
    return ((i >= starts[:, None]) & (i < starts[:, None] + window)).astype(np.float32)


def _occluded_logits(fn, params, x, baseline, starts, window, batch):
    """Logits of every (image, patch) pair: (N, P, K). starts: (P, 3) corners (may be < 0)."""
    n, p = x.shape[0], starts.shape[0]
    starts = jnp.asarray(starts, jnp.int32)
    shape = x.shape[1:]
    iy, ix, ic = (jax.lax.broadcasted_iota(jnp.int32, shape, d) for d in range(3))

    def one(pair):
        i, j = pair
        oy, ox, oc = starts[j, 0], starts[j, 1], starts[j, 2]
        inside = ((iy >= oy) & (iy < oy + window[0]) & (ix >= ox) & (ix < ox + window[1])
                  & (ic >= oc) & (ic < oc + window[2]))
        xo = jnp.where(inside, baseline[i], x[i])
        return fn(params, xo[None])[0]

    pairs = (jnp.repeat(jnp.arange(n), p), jnp.tile(jnp.arange(p), n))
    out = jax.lax.map(one, pairs, batch_size=min(batch, n * p))
    return out.reshape(n, p, -1)


# Public under the same signature as incremental.occluded_logits (the benchmark lowers both).
occluded_logits = _occluded_logits


def _base_logits(fn, params, x, batch):
    return jax.lax.map(lambda xi: fn(params, xi[None])[0], x, batch_size=min(batch, x.shape[0]))


def _unit_scorer(fn, t):
    """A model whose "logits" are the target's score, (1, 1), for a target reading layers:
    its arguments are shared by every image (an objective), so one image scores alone."""
    def scored(params, xi):
        return t.score(*fn.run(params, xi))[:, None]
    return scored


def _occlusion_impl(fn, params, x, target, baseline, by_score=None, *, window, stride, batch,
                    method):
    """(deltas, attribution, base) for the target (a `targets.Target`); by_score: a tuple
    of Targets (one per score name) gives a tuple of those triples, all from the same
    forward passes."""
    starts, counts = grid(x.shape[1:], window, stride)
    every = (target,) if by_score is None else by_score
    if any(t.needs_acts for t in every):  # scores of the occluded passes, not logits
        fn = _unit_scorer(fn, target)
        every = (_as_logit(target),)
    base_logits = _base_logits(fn, params, x, batch)
    if method == "incremental":
        from jaxviz.occlusion import incremental
        logits = incremental.occluded_logits(fn, params, x, baseline, starts, window, batch)
    else:
        logits = _occluded_logits(fn, params, x, baseline, starts, window, batch)
    mats = [jnp.asarray(coverage(n, w, s)) for n, w, s in
            zip(x.shape[1:], window, [axis_starts(*a) for a in zip(x.shape[1:], window, stride)])]
    hi = jax.lax.Precision.HIGHEST
    n_cover = jnp.einsum("a,b,c->abc", *[m.sum(0) for m in mats], precision=hi)

    def scored(t):
        base = t.score(base_logits, {})
        occ = jax.vmap(lambda lg: t.score(lg, {}), in_axes=1, out_axes=1)(logits)  # (N, P)
        deltas = (base[:, None] - occ).reshape((x.shape[0],) + counts)
        total = jnp.einsum("nabc,ah,bw,cz->nhwz", deltas, *mats, precision=hi)
        # A stride longer than the window leaves gaps; no window saw those pixels: attribution 0.
        return deltas, total / jnp.maximum(n_cover, 1.0), base

    out = tuple(scored(t) for t in every)
    return out if by_score is not None else _result(*out[0])


def _as_logit(t):
    """The Target reading column 0 of a `_unit_scorer` model's output."""
    return targets.Target(objectives.class_logit(0).node, np.int32(0), n=t.n)


def _occlusion(fn, params, x, t, base, by_score=None, *, method, **kwargs):
    # The incremental program is many small materialized convs, compiled as backward
    # programs are; exact occlusion is forward passes only.
    kind = "backward" if method == "incremental" else "forward"
    return method_lib.run(_occlusion_impl, fn, params, x, t, kind=kind, baseline=base,
                          by_score=by_score, method=method, **kwargs)


def _window(window, stride, shape):
    h, w, c = shape
    win = (window,) * 2 if isinstance(window, (int, np.integer)) else tuple(window)
    if len(win) not in (2, 3):
        raise ValueError(f"window must be an int, (h, w) or (h, w, c); got {window!r}")
    std = (stride,) * len(win) if isinstance(stride, (int, np.integer)) else tuple(stride)
    if len(std) != len(win):
        raise ValueError(f"stride must be an int or have {len(win)} entries like window; "
                         f"got {stride!r}")
    win = tuple(checks.positive_int(v, "window") for v in win)
    std = tuple(checks.positive_int(v, "stride") for v in std)
    if len(win) == 2:
        win, std = win + (c,), std + (c,)
    if any(a > b for a, b in zip(win, shape)):
        raise ValueError(f"window {window!r} is larger than the images: (h, w, c) window "
                         f"{win} vs (H, W, C) {shape}")
    return win, std


def _baseline(baseline, x):
    if isinstance(baseline, str):
        if baseline != "mean":
            raise ValueError(f"baseline must be a number, an array or 'mean'; got {baseline!r}")
        return jnp.broadcast_to(x.mean(axis=(1, 2), keepdims=True), x.shape)
    b = jnp.asarray(baseline, jnp.float32)
    if b.ndim == 0:
        return jnp.broadcast_to(b, x.shape)
    if b.shape == x.shape[1:]:
        return jnp.broadcast_to(b, x.shape)
    if b.ndim == 4 and b.shape[1:] == x.shape[1:] and b.shape[0] in (1, x.shape[0]):
        return jnp.broadcast_to(b, x.shape)
    raise ValueError(f"baseline must be a scalar, (H, W, C) = {x.shape[1:]}, or "
                     f"(N, H, W, C) = {x.shape}; got shape {b.shape}")


@attribution_method("occlusion", targets=method_lib.PERTURBATION)
def occlusion(fn, params, images, target, *, window=(4, 4), stride=(2, 2), baseline=0.0,
              score: str = "logit", chunk_size: int | None = None,
              method: str = "exact") -> Attribution:
    """Occlusion sensitivity of fn's target score (Captum's `Occlusion`, batched and jitted).

    fn(params, x) -> logits (N, K) (a plain apply_fn or a Probe); images: (N, H, W, C)
    float32 (uint8 is divided by 255); target: any target (`jaxviz.core.targets`; T
    targets: map (N, T, H, W), scores (N, T, nH, nW), from one set of occluded forward
    passes; class indices are scored by `score`). window/stride: int,
    (h, w) (spanning channels) or (h, w, c). baseline: number, (H, W, C), (N, H, W, C) or
    "mean" (each image's per-channel mean). score: "logit", "prob" or "log_prob".
    chunk_size: forward passes per step (default: one image's positions).
    method: "exact" or "incremental" (recompute only the changed region of each layer).
    Returns Attribution: map (N, H, W[, C]); extras "scores" (N, nH, nW[, nC]) and
    "base" (N,) (see `occluded`).
    """
    return _run(fn, params, images, target, window, stride, baseline, None, chunk_size, method)


def occlusion_by_score(fn, params, images, target, *, scores=("logit", "prob"),
                       window=(4, 4), stride=(2, 2), baseline=0.0,
                       chunk_size: int | None = None, method: str = "exact"
                       ) -> dict[str, Attribution]:
    """`occlusion` scored several ways from one set of occluded forward passes.

    scores: names from SCORES, e.g. ("logit", "prob"): the logit drop for the attribution and
    the probability under occlusion, without running the forward passes twice. Other
    arguments as `occlusion`. Returns {score: Attribution}, equal to one `occlusion` per score
    (each checked for blank maps as `occlusion` is).
    """
    names = (scores,) if isinstance(scores, str) else tuple(scores)
    if not names or len(set(names)) != len(names) or any(s not in SCORES for s in names):
        raise ValueError(f"scores must be distinct names from {SCORES}, at least one; "
                         f"got {scores!r}")
    x = analysis.check_images(fn, params, images)
    by_score = tuple(targets.resolve(fn, params, x, target, score=s) for s in names)
    if by_score[0].source not in ("class", "predicted"):
        raise ValueError(f"occlusion_by_score takes class-index targets (an int, one per "
                         f"image, or None); got {', '.join(by_score[0].names)}")
    results = _run(fn, params, x, by_score[0], window, stride, baseline, by_score,
                   chunk_size, method)
    return {s: result.checked(f"occlusion_by_score[{s!r}]", r) for s, r in zip(names, results)}


def _run(fn, params, x, t, window, stride, baseline, by_score, chunk_size, method):
    """The call shared by `occlusion` (checked x, resolved t) and `occlusion_by_score`
    (by_score: a tuple of Targets, one per score name -> a tuple of Attribution)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    win, std = _window(window, stride, x.shape[1:])
    base = _baseline(baseline, x)
    checks.warn_outside_range(base, x, "baseline")
    n_pos = int(np.prod(grid(x.shape[1:], win, std)[1]))
    # None: one image's positions at once, fewer when they would not fit (CHUNK_MEMORY).
    batch = analysis.default_chunk(chunk_size, fn, params, (1, *x.shape[1:]), n_pos) or n_pos
    if method == "incremental":
        if t.needs_acts:
            raise ValueError(f"occlusion: method='incremental' recomputes the model's output "
                             f"only; the target {', '.join(t.names)} reads layers: use "
                             f"method='exact'")
        from jaxviz.occlusion import incremental
        method = incremental.check_supported(fn, params, x.shape[1:], win)
    out = _occlusion(fn, params, x, t, base, by_score=by_score, window=win, stride=std,
                     batch=batch, method=method)
    channel_window = not (isinstance(window, (int, np.integer)) or len(tuple(window)) == 2)

    def finish(res):
        if channel_window:
            return res
        return Attribution(res.map[..., 0], {**res.extras, "scores": res.extras["scores"][..., 0]})

    return tuple(finish(_result(*r)) for r in out) if by_score is not None else finish(out)
