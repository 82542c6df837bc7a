"""Gradient ascent on the input for many units at once: one jitted, vmapped step.

Every unit (class, channel, ...) has its own image, optimizer state and PRNG stream; a step
is `jax.vmap` of the single-unit step. Two loop forms run the same step and give the same
images: "python" (a Python loop over steps calling the jitted step) and "scan" (all steps
in one program via `lax.scan`). XLA CPU runs backward convolutions slower inside a loop body
than at top level unless fastgrad's rewrite is on (the default), so "auto" is "scan" except
on CPU with fastgrad off (see choose_loop; measurements in docs/maximize.md). Both are
cached at module level with static settings (the model as `probe.static_view`, so no
weights are kept): a second call with the same shapes and settings does not retrace, also
for a fresh Probe of the same model.
"""
from __future__ import annotations

import warnings
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxviz.core import compile as compile_lib
from jaxviz.core import objectives as obj_lib

TRACES = {"init": 0, "step": 0, "scan": 0}  # incremented while tracing; tests read it


class Config(NamedTuple):
    """Everything static about an ascent (all hashable)."""
    model: object        # .run(params, x (1, H, W, C)) -> (logits, {layer: activation})
    node: object         # objective node (objectives.py)
    param: object        # parametrization: init(key) -> p, p -> image (H, W, C)
    optimizer: object    # an optax GradientTransformation
    regularizers: tuple  # image -> penalty
    transform: object    # (key, image) -> image, or None


class State(NamedTuple):
    p: object            # per-unit parametrization, leading axis U
    opt: object
    best: jax.Array      # (U, H, W, C) best image so far
    best_value: jax.Array  # (U,)
    best_step: jax.Array   # (U,) int32
    bad_step: jax.Array    # (U,) int32, first step with NaN/inf objective or gradient, -1 if none
    grad_max: jax.Array    # (U,) largest |gradient| seen (0 for a dead unit)


class Maximized(NamedTuple):
    """images, best: (U, H, W, C), or (U, n, H, W, C) with a batch of n per unit;
    trace: (U, steps) objective at each step;
    best_step: (U,); snapshots: (S, U, H, W, C) at the requested steps, or None."""
    images: jax.Array
    best: jax.Array
    trace: jax.Array
    best_step: jax.Array
    snapshots: jax.Array | None


def _unit_init(cfg: Config, key):
    p = cfg.param.init(key)
    img = cfg.param(p)
    return State(p, cfg.optimizer.init(p), img, jnp.float32(-jnp.inf), jnp.int32(-1),
                 jnp.int32(-1), jnp.float32(0))


def _unit_loss(p, cfg: Config, params, unit_args, shared, key):
    img = cfg.param(p)
    many = img.ndim == 4  # a batch of images per unit (batched.Batch): (n, H, W, C)
    seen = img if cfg.transform is None else (
        jax.vmap(cfg.transform)(jax.random.split(key, img.shape[0]), img) if many
        else cfg.transform(key, img))
    logits, acts = compile_lib.fast_model(cfg.model.run)(params, seen if many else seen[None])
    value = obj_lib.evaluate(cfg.node, unit_args, shared, logits, acts).mean()
    penalty = sum(((jax.vmap(r)(img).mean() if many else r(img)) for r in cfg.regularizers),
                  jnp.float32(0))
    return penalty - value, (value, img)  # maximize value: the one place the sign flips


def _unit_step(cfg: Config, params, shared, unit_args, key, s: State, t):
    grad_fn = jax.grad(_unit_loss, has_aux=True)
    g, (value, img) = grad_fn(s.p, cfg, params, unit_args, shared, jax.random.fold_in(key, t))
    finite = jnp.isfinite(value) & jnp.all(jnp.array([jnp.all(jnp.isfinite(x))
                                                      for x in jax.tree.leaves(g)]))
    better = finite & (value > s.best_value)
    updates, opt = cfg.optimizer.update(g, s.opt, s.p)
    gmax = jnp.max(jnp.array([jnp.max(jnp.abs(x)) for x in jax.tree.leaves(g)]))
    new = State(optax.apply_updates(s.p, updates), opt,
                jnp.where(better, img, s.best), jnp.where(better, value, s.best_value),
                jnp.where(better, t, s.best_step),
                jnp.where((s.bad_step < 0) & ~finite, t, s.bad_step),
                jnp.where(finite, jnp.maximum(s.grad_max, gmax), s.grad_max))
    return new, value


def _vstep(cfg, params, shared, unit_args, keys, state, t):
    return jax.vmap(partial(_unit_step, cfg), in_axes=(None, None, 0, 0, 0, None))(
        params, shared, unit_args, keys, state, t)


@partial(compile_lib.jit, kind="forward", static_argnames=("cfg",))
def init(cfg: Config, keys):
    TRACES["init"] += 1
    return jax.vmap(partial(_unit_init, cfg))(keys)


@partial(compile_lib.jit, kind="backward", static_argnames=("cfg",))
def step(cfg: Config, params, shared, unit_args, keys, state: State, t):
    """One ascent step for every unit -> (state, objective values (U,))."""
    TRACES["step"] += 1
    return _vstep(cfg, params, shared, unit_args, keys, state, t)


@partial(compile_lib.jit, kind="forward", static_argnames=("cfg",))
def images_of(cfg: Config, p):
    return jax.vmap(cfg.param)(p)


@partial(compile_lib.jit, kind="backward", static_argnames=("cfg", "segments"))
def scan(cfg: Config, params, shared, unit_args, keys, state: State, segments: tuple):
    """All steps in one program: lax.scan per segment; a snapshot after each segment."""
    TRACES["scan"] += 1
    body = lambda s, t: _vstep(cfg, params, shared, unit_args, keys, s, t)
    t0, values, snaps = 0, [], []
    for n in segments:
        state, v = jax.lax.scan(body, state, jnp.arange(t0, t0 + n, dtype=jnp.int32))
        values.append(v)
        snaps.append(jax.vmap(cfg.param)(state.p))
        t0 += n
    return state, jnp.concatenate(values).T, jnp.stack(snaps)


def run(cfg: Config, params, unit_args, shared, key, steps: int, loop: str,
        checkpoints: tuple[int, ...], names: list[str]) -> Maximized:
    """Run the ascent; raise on NaN/inf, warn on dead units."""
    n_units = len(names)
    # Every unit starts from the same image and sees the same transforms: a unit's result
    # does not depend on which other units run beside it or on its position in the list.
    keys = jnp.broadcast_to(jax.random.split(key), (n_units, 2))
    state = init(cfg, keys[:, 0])
    loop_keys = keys[:, 1]
    if loop == "auto":
        loop = choose_loop(cfg, params, shared, unit_args, loop_keys, state)
    snaps = None
    if loop == "scan":
        bounds = sorted({c for c in checkpoints if 0 < c < steps} | {steps})
        segments = tuple(np.diff([0] + bounds).tolist())
        state, trace, seg_snaps = scan(cfg, params, shared, unit_args, loop_keys, state, segments)
        if checkpoints:
            at = {b: i for i, b in enumerate(bounds)}
            first = images_of(cfg, init(cfg, keys[:, 0]).p) if 0 in checkpoints else None
            snaps = jnp.stack([first if c == 0 else seg_snaps[at[c]] for c in checkpoints])
    else:
        values, kept = [], {}
        if 0 in checkpoints:
            kept[0] = state.p
        for t in range(steps):
            state, v = step(cfg, params, shared, unit_args, loop_keys, state, jnp.int32(t))
            values.append(v)
            if t + 1 in checkpoints:
                kept[t + 1] = state.p
        trace = jnp.stack(values, axis=1)
        if checkpoints:
            snaps = jnp.stack([images_of(cfg, kept[c]) for c in checkpoints])
    _check_health(state, names)
    return Maximized(images_of(cfg, state.p), state.best, trace, state.best_step, snaps)


SCAN_BELOW_FLOPS = 5e7  # per step; the crossover on XLA CPU, see docs/maximize.md
_CHOICES: dict = {}


def choose_loop(cfg: Config, params, shared, unit_args, keys, state) -> str:
    """'scan' off CPU, and on CPU while fastgrad is on (its convolution VJPs keep their speed
    inside loop bodies, so scan also saves the per-step dispatch). With fastgrad off, XLA
    CPU runs backward convolutions much slower inside a loop body: 'python' unless a step
    is so cheap (< SCAN_BELOW_FLOPS) that per-step dispatch dominates (docs/maximize.md)."""
    if jax.default_backend() != "cpu" or compile_lib.fastgrad_on():
        return "scan"
    sig = (cfg, compile_lib.config(), str(jax.tree.map(lambda a: (jnp.shape(a), jnp.result_type(a)),
                                                     (params, shared, unit_args, state))))
    if sig not in _CHOICES:
        cost = step.lower(cfg, params, shared, unit_args, keys, state, jnp.int32(0)).cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        flops = float((cost or {}).get("flops", SCAN_BELOW_FLOPS))
        _CHOICES[sig] = "scan" if flops < SCAN_BELOW_FLOPS else "python"
    return _CHOICES[sig]


def _check_health(state: State, names: list[str]):
    bad = np.asarray(state.bad_step)
    if (bad >= 0).any():
        u = int(np.argmin(np.where(bad >= 0, bad, np.iinfo(np.int32).max)))  # earliest
        units = [f"unit {i} ({names[i]}) at step {int(bad[i])}" for i in np.flatnonzero(bad >= 0)]
        raise FloatingPointError(
            f"the objective or its gradient became NaN/inf for unit {u} ({names[u]}) at step "
            f"{int(bad[u])}; all affected: {', '.join(units[:10])}. Lower the learning rate, "
            f"add a regularizer, or check the objective")
    dead = np.flatnonzero(np.asarray(state.grad_max) == 0)
    if dead.size:
        warnings.warn(f"dead unit(s): the gradient was zero at every step for "
                      f"{[f'{i} ({names[i]})' for i in dead[:10]]}; their images are the "
                      f"initial images", RuntimeWarning, stacklevel=3)
