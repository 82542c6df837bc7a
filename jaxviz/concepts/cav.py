"""Concept activation vectors: linear classifiers of a layer's activations, many at once.

A CAV (Kim et al. 2018) is the normal of a linear boundary between a concept's examples
and counterexamples in a layer's flattened activation space. The classifier here is
L2-regularized logistic regression,

    min_w,b  mean_i∈train log(1 + exp(-s_i (w·x̃_i + b))) + l2/2 |w|²,   s_i = ±1,

on features x̃ = (x - mean) / rms, centred on the run's training rows and divided by their
root-mean-square norm (so `l2` means the same at every layer and scale), fitted by a fixed
number of full-batch Nesterov steps with step 1/L, L = 1/4 + l2 (the loss's curvature
bound once the features have unit mean-square norm). Gradient descent from w = 0 keeps w
in the span of the training rows, w = Σ α_j x̃_j, so the fit runs on the rows' Gram matrix:
one (M, D) x (D, M) product for all runs, then (M, M) steps — the layer's width D costs
nothing per step. Every run is a row mask over one shared bank of activations, so
`jax.vmap` fits all runs (concepts x random counterexample sets x splits) in one program.

The CAV is the fitted w, mapped back to activation space and normalised to unit length,
pointing towards the concept (label 1).
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxviz.core import compile as compile_lib

DEFAULT_L2 = 0.01
DEFAULT_STEPS = 300


class CAVs(NamedTuple):
    """R fitted CAVs. vectors: (R, D) unit; accuracy: (R,) on each run's held-out rows
    (NaN where a run holds none out); train_accuracy: (R,)."""
    vectors: jax.Array
    accuracy: jax.Array
    train_accuracy: jax.Array


class Runs(NamedTuple):
    """R classification problems over one bank of M rows, as masks: labels (R, M) in
    {0, 1}; train, test (R, M) in {0, 1} (rows in neither are not in that run)."""
    labels: jax.Array
    train: jax.Array
    test: jax.Array


def _fit_one(gram, labels, train, l2, steps):
    """One run's logistic regression in the dual. gram: (M, M) of the raw rows -> (alpha
    (M,) coefficients of the centred scaled rows, z (M,) decision values, scale², m)."""
    m = train / jnp.maximum(train.sum(), 1.0)  # weights of the training mean
    km = gram @ m
    mkm = m @ km

    def centred(a):  # (Xc Xcᵀ) a without forming the centred Gram
        ka, sa = gram @ a, a.sum()
        return ka - km * sa - (m @ ka - mkm * sa)

    sq = jnp.diag(gram) - 2 * km + mkm  # |x_i - mean|²
    s2 = jnp.maximum((m * sq).sum(), 1e-30)
    eta = 1.0 / (0.25 + l2)
    kappa = (0.25 + l2) / l2
    mom = (1 - kappa ** -0.5) / (1 + kappa ** -0.5)

    def grad(a, b):
        z = centred(a) / s2 + b
        g = (jax.nn.sigmoid(z) - labels) * m
        return g + l2 * a, g.sum()

    def step(_, carry):
        a, b, a_prev, b_prev = carry
        ya, yb = a + mom * (a - a_prev), b + mom * (b - b_prev)
        ga, gb = grad(ya, yb)
        return ya - eta * ga, yb - eta * gb, a, b

    zero = jnp.zeros_like(labels)
    a, b, _, _ = jax.lax.fori_loop(0, steps, step, (zero, 0.0, zero, 0.0))
    return a, centred(a) / s2 + b, m


@functools.partial(compile_lib.jit, kind="forward", static_argnames=("steps",))
def _fit(bank, runs: Runs, l2, steps: int) -> CAVs:
    gram = bank @ bank.T
    a, z, m = jax.vmap(_fit_one, in_axes=(None, 0, 0, None, None))(
        gram, runs.labels, runs.train, l2, steps)
    # w ∝ Σ α_j (x_j - mean) = Xᵀ (α - m Σα), one (R, M) x (M, D) product for all runs.
    w = (a - m * a.sum(1, keepdims=True)) @ bank
    w = w / jnp.maximum(jnp.linalg.norm(w, axis=1, keepdims=True), 1e-30)
    right = ((z > 0) == (runs.labels > 0.5)).astype(jnp.float32)

    def acc(mask):
        n = mask.sum(1)
        return jnp.where(n > 0, (right * mask).sum(1) / jnp.maximum(n, 1), jnp.nan)
    return CAVs(w, acc(runs.test), acc(runs.train))


def fit_cavs(bank, runs: Runs, *, l2: float = DEFAULT_L2, steps: int = DEFAULT_STEPS) -> CAVs:
    """Fit one CAV per run (module docstring), all runs in one compiled program.

    Args:
      bank: (M, ...) activations (flattened to (M, D) here), float.
      runs: Runs of R masks over the bank's rows (see `concept_runs`).
      l2: the L2 penalty on the scaled features (> 0; Captum's default SGD uses 0.01).
      steps: full-batch Nesterov steps (>= 1).
    Returns:
      CAVs(vectors (R, D) unit, accuracy (R,) held out, train_accuracy (R,)).
    """
    bank = jnp.asarray(bank, jnp.float32)
    bank = bank.reshape(bank.shape[0], -1)
    if not l2 > 0:
        raise ValueError(f"l2 must be > 0; got {l2!r}")
    if int(steps) < 1:
        raise ValueError(f"steps must be >= 1; got {steps!r}")
    m = bank.shape[0]
    for name in Runs._fields:
        shape = getattr(runs, name).shape
        if len(shape) != 2 or shape[1] != m:
            raise ValueError(f"runs.{name} must be (R, {m}) (one row mask per run over the "
                             f"bank's {m} rows); got {tuple(shape)}")
    empty = np.flatnonzero(np.asarray(runs.train).sum(1) == 0)
    if empty.size:
        raise ValueError(f"runs {empty[:5].tolist()} have no training rows")
    return _fit(bank, Runs(*(jnp.asarray(v, jnp.float32) for v in runs)), float(l2), int(steps))


def _split(rng: np.random.Generator, chosen, labels, test_fraction):
    """(train, test) masks: floor(test_fraction * n) of each label's n chosen rows held out."""
    train, test = chosen.copy(), np.zeros_like(chosen)
    for lab in (0.0, 1.0):
        rows = np.flatnonzero((chosen > 0) & (labels == lab))
        held = rng.permutation(rows)[:int(test_fraction * len(rows))]
        test[held], train[held] = 1.0, 0.0
    return train, test


def concept_runs(key, concept_rows, pool_rows, *, n_runs: int, n_negative: int, size: int,
                 test_fraction: float = 0.33, concept_fraction: float = 1.0) -> Runs:
    """R = n_runs problems: `concept_rows` (label 1) against n_negative rows drawn without
    replacement from `pool_rows` (label 0), a fresh draw and split per run.

    concept_rows, pool_rows: (n,) and (P,) int indices into a bank of `size` rows, disjoint.
    test_fraction: of each label's rows held out per run (for the accuracy only).
    concept_fraction: each run uses a fresh random round(concept_fraction * n) of the
      concept rows (1.0: all of them in every run, as Captum and the paper).
    """
    concept_rows = np.asarray(concept_rows)
    if not 0 < concept_fraction <= 1:
        raise ValueError(f"concept_fraction must lie in (0, 1]; got {concept_fraction!r}")
    n_pos = max(2, round(concept_fraction * len(concept_rows)))
    return _runs(key, concept_rows, np.asarray(pool_rows), n_runs, n_negative, 0, size,
                 test_fraction, n_pos)


def random_runs(key, pool_rows, *, n_runs: int, n_positive: int, n_negative: int,
                size: int, test_fraction: float = 0.33) -> Runs:
    """R = n_runs random-concept problems: n_positive pool rows (label 1) against
    n_negative other pool rows (label 0), both drawn afresh per run; masks over `size` rows."""
    return _runs(key, np.zeros(0, int), np.asarray(pool_rows), n_runs, n_negative,
                 n_positive, size, test_fraction, 0)


def _runs(key, concept_rows, pool_rows, n_runs, n_negative, n_positive, size, test_fraction,
          n_concept):
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction must lie in [0, 1); got {test_fraction!r}")
    if n_negative + n_positive > len(pool_rows):
        raise ValueError(f"the random pool holds {len(pool_rows)} images; each run draws "
                         f"{n_negative + n_positive} of them (n_negative {n_negative}"
                         + (f" + n_positive {n_positive}" if n_positive else "") + ")")
    # Masks are small host arrays: numpy, seeded from the key (no compile per set size).
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
    out = np.zeros((3, n_runs, size), np.float32)
    for r in range(n_runs):
        perm = rng.permutation(pool_rows)
        mine = (concept_rows if n_concept >= len(concept_rows)
                else rng.permutation(concept_rows)[:n_concept])
        pos = np.zeros(size, np.float32)
        pos[mine] = 1.0
        pos[perm[n_negative:n_negative + n_positive]] = 1.0
        chosen = pos.copy()
        chosen[perm[:n_negative]] = 1.0
        out[0, r] = pos
        out[1, r], out[2, r] = _split(rng, chosen, pos, test_fraction)
    return Runs(*(jnp.asarray(v) for v in out))
