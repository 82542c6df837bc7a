"""The one way to write an attribution method: the author writes the maths, this module
does the ritual (checked inputs, the resolved target, the static model, the compile
policy, several targets at once).

    @attribution_method("saliency", targets=method.GRADIENT)     # jaxviz.core.result
    def saliency(fn, params, images, target, *, abs=True):
        # images: checked (N, H, W, C) float32; target: a resolved targets.Target
        return method.run(_maths, fn, params, images, target, abs=bool(abs))

    def _maths(fn, params, x, target, *, abs):   # traced; target is ONE target
        g = method.input_grad(fn, params, x, target)
        return Attribution(jnp.abs(g) if abs else g)

`run(maths, ...)` compiles `maths` once per form (`compile.jit` of the given kind; array
options are traced, every other option is static) and, for several targets ("all" or a
list of objectives), `vmap`s it over the targets' stacked arguments inside the same
program: whatever does not depend on the target (every forward pass) runs once, and a
gradient method's backward passes are one batched pullback. Maps come back (N, T, ...),
extras (N, T, ...).

Support tells the decorator which target kinds a method takes (`targets.KINDS`), with the
reason for each it refuses, and how class-index targets are scored; the registry's tables
are read from it.
"""
from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from types import MappingProxyType

import jax
import jax.numpy as jnp
import numpy as np

from jaxviz.core import analysis
from jaxviz.core import compile as compile_lib
from jaxviz.core import targets as targets_lib


@dataclasses.dataclass(frozen=True)
class Support:
    """What targets a method takes.

    kinds: the objective kinds it explains (targets.KINDS); refused: {kind: why not} for
    the others (every kind not in `kinds` needs a reason). many: whether T targets at once
    work (True, or why not, as a string); predicted: whether target=None (the predicted
    class) works (True, or why not). score: how class-index targets are scored
    ("logit", "prob", "log_prob"; a method with a `score=` option uses that instead).
    layer: "cam" (layer= is the method's own CAM layer), "form" (layer= dispatches to the
    method's layer form, `jaxviz.attribution.layer`) or None.
    """
    kinds: frozenset = frozenset(targets_lib.KINDS)
    refused: Mapping[str, str] = dataclasses.field(default_factory=dict)
    many: bool | str = True
    predicted: bool | str = True
    score: str = "logit"
    layer: str | None = "form"

    def __post_init__(self):
        object.__setattr__(self, "kinds", frozenset(self.kinds))
        object.__setattr__(self, "refused", MappingProxyType(dict(self.refused)))
        unknown = sorted(set(self.kinds) - set(targets_lib.KINDS))
        missing = sorted(set(targets_lib.KINDS) - set(self.kinds) - set(self.refused))
        if unknown or missing:
            raise ValueError(f"Support: unknown kinds {unknown}; kinds without a reason for "
                             f"refusing them {missing}")


GRADIENT = Support()
CAM = Support(layer="cam")
PERTURBATION = Support()


def classes_only(why: str) -> Support:
    """A method that takes class indices (the logit) only: every other kind refused, why."""
    return Support(kinds={"class_logit"}, many=why, predicted=why, layer=None,
                   refused={k: why for k in targets_lib.KINDS if k != "class_logit"})


# ---- the compiled program ------------------------------------------------------------

def _program(maths, fn, params, x, target, arrays, static):
    opts = {**dict(static), **arrays}
    if not target.many:
        return maths(fn, params, x, target, **opts)
    out = jax.vmap(lambda u: maths(fn, params, x, target.unit(u), **opts))(target.args)
    return jax.tree.map(lambda a: jnp.moveaxis(a, 0, 1), out)  # (T, N, ...) -> (N, T, ...)


_PROGRAMS = {kind: compile_lib.jit(_program, kind=kind, static_argnames=("maths", "fn", "static"))
             for kind in compile_lib.KINDS}


def _is_array(v) -> bool:
    """Traced: arrays, dicts (of arrays), non-empty tuples/lists of arrays; else static."""
    if isinstance(v, dict):
        return True
    return isinstance(v, (jax.Array, np.ndarray)) or (
        isinstance(v, (tuple, list)) and bool(v) and all(
            isinstance(a, (jax.Array, np.ndarray)) for a in jax.tree.leaves(v)))


def run(maths: Callable, fn, params, x, target, *, kind: str = "backward", **options):
    """maths(fn, params, x, target, **options) compiled as a `kind` program ("backward":
    gradients; "forward": forward passes only), with fn static and the options split into
    traced arrays and static values (which must be hashable). Several targets: vmapped
    over them in the same program (module docstring)."""
    arrays = {k: v for k, v in options.items() if _is_array(v)}
    static = tuple(sorted((k, v) for k, v in options.items() if k not in arrays))
    return _PROGRAMS[kind](maths, analysis.static_fn(fn), params, x, target, arrays, static)


# ---- the maths' building blocks (traced inline) ---------------------------------------

def input_grad(fn, params, x, target, *, rewrite=None) -> jax.Array:
    """d score[i] / d x[i] for ONE target. x: (N, H, W, C) -> (N, H, W, C).

    rewrite: a function transform applied to the score function before `fast_model`
    (e.g. a ReLU backward rule, `relu_rules.with_relu_rule(f, "guided")`)."""
    f = targets_lib.score_fn(fn, target, fast=False)
    f = compile_lib.fast_model(rewrite(f) if rewrite is not None else f)
    return jax.grad(lambda x: f(params, x).sum())(x)


def scores(fn, params, x, target, *, fast: bool = False) -> jax.Array:
    """The target's scores (N,) on images x (N, ...)."""
    return targets_lib.score_fn(fn, target, fast=fast)(params, x)


def copy_grad(fn, params, inputs, target) -> jax.Array:
    """d score / d input of each copy: (c, N, H, W, C) -> (c, N, H, W, C), one backward pass
    of batch c * N (as `copy_scores`)."""
    return jax.grad(lambda z: copy_scores(fn, params, z, target, fast=True).sum())(inputs)


def copy_scores(fn, params, inputs, target, *, fast: bool = False) -> jax.Array:
    """(c, N, H, W, C) perturbed copies of the batch -> (c, N) scores, from ONE forward pass
    of batch c * N (images never interact inside fn); the score is then evaluated per copy,
    so a per-image class index meets its own image's copies. Not a vmap of the model: on XLA
    CPU a model vmapped over samples runs several times slower than the same rows as one
    batch."""
    c, n = inputs.shape[:2]
    out, acts = targets_lib.outputs(fn, params, inputs.reshape((c * n,) + inputs.shape[2:]),
                                    target, fast=fast)
    split = jax.tree.map(lambda a: a.reshape((c, n) + a.shape[1:]), (out, acts))
    return jax.vmap(lambda o, a: target.score(o, a))(*split)


def gathered_scores(fn, params, inputs, rows, target) -> jax.Array:
    """Scores of shared inputs (M, H, W, C) for each image's target: rows (c, N) int, image
    i of copy s scored on inputs[rows[s, i]] -> (c, N). One forward pass of the M inputs;
    the outputs (and activations the target reads) are gathered, not recomputed."""
    out, acts = targets_lib.outputs(fn, params, inputs, target, fast=False)
    picked = jax.tree.map(lambda a: a[rows], (out, acts))  # (c, N, ...)
    return jax.vmap(lambda o, a: target.score(o, a))(*picked)


# ---- the decorator's part --------------------------------------------------------------

def prepare(name: str, method_fn: Callable, support: Support, args, options: dict):
    """(fn, params, checked images, resolved Target) for a call of a method that declares
    `support`: images checked, the target resolved (class indices scored by the method's
    `score=` option where it has one) and its kinds checked against `support`."""
    if len(args) != 4:
        raise TypeError(f"{name} takes (fn, params, images, target) and options by name; got "
                        f"{len(args)} positional arguments")
    fn, params, images, target = args
    if target is None and support.predicted is not True:
        raise ValueError(f"{name}: target is required ({support.predicted})")
    x = analysis.check_images(fn, params, images)
    score, default = _score_option(method_fn, options, support)
    t = targets_lib.resolve(fn, params, x, target, score=score)
    if not isinstance(target, targets_lib.Target):
        if t.source in ("objective",) and score != default:
            raise ValueError(f"{name}: score={score!r} applies to class-index targets; the "
                             f"objective {', '.join(t.names)} is scored as itself (use "
                             f"objectives.class_prob(k) for a probability)")
        targets_lib.check_kinds(t, support.kinds, name, support.refused)
        if t.many and support.many is not True:
            raise ValueError(f"{name} explains one target at a time ({support.many}); got "
                             f"{t.count} targets")
    return fn, params, x, t


def _score_option(method_fn, options, support):
    param = inspect.signature(method_fn).parameters.get("score")
    if param is None:
        return support.score, support.score
    return options.get("score", param.default), param.default


def finish(res, t):
    """The result's extras say which classes a predicted-class target used."""
    if t.source == "predicted":
        return dataclasses.replace(res, extras={**res.extras, "target": t.classes})
    return res


# Layer forms of pixel methods (`layer=` on a method whose Support says "form"): a provider
# set by jaxviz.attribution (which holds them), read at call time.
_LAYER_FORMS: list[Callable[[], Mapping]] = []


def set_layer_forms(provider: Callable[[], Mapping]) -> None:
    """provider() -> {method name: layer form fn(fn, params, images, target, *, layer, ...)}."""
    _LAYER_FORMS[:] = [provider]


def layer_form(name: str):
    """The layer form of method `name`, or a ValueError saying which methods have one."""
    forms = _LAYER_FORMS[0]() if _LAYER_FORMS else {}
    if name not in forms:
        raise ValueError(f"{name} has no layer form, so it takes no layer=; methods with one: "
                         f"{sorted(forms)} (CAMs take layer= as their CAM layer)")
    return forms[name]
