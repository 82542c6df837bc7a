"""TCAV (Kim et al. 2018): how much a class's score depends on a concept, with a significance test.

    result = tcav(probe, params, class_images, target=3, concepts={"striped": xs, ...},
                  random=pool, layer="conv2", key=jax.random.key(0))
    print(result)            # the table; result.to_json(); jaxviz.plot.concepts.tcav_bars

For each concept and each of `n_runs` runs, a CAV (`cav.py`: logistic regression) is fitted
between the concept's images and a fresh random draw of counterexamples from the `random`
pool; `n_random_runs` more CAVs are fitted between two disjoint random draws (random
"concepts"). For a class image x, the directional derivative along a CAV v is
S(x) = ∇_a f(a(x)) · v, f the target's score (a class logit, or any Objective) as a
function of the layer's activation a. A CAV's TCAV score is the fraction of the class
images with S > 0 (Captum's "sign_count"); its magnitude is the mean of S (Captum's
"magnitude", here along the unit CAV).

Significance, as in the paper: a two-sided Student t-test (equal variances,
`scipy.stats.ttest_ind`, as the authors' code) of a concept's n_runs TCAV scores against the
n_random_runs random-concept scores; Bonferroni across the C concepts tested: a concept is
significant when min(1, C p) < alpha. All CAVs are fitted in one compiled program and all
directional derivatives are one (N, D) x (D, R) product.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from jaxviz.concepts import cav as cav_lib
from jaxviz.concepts import sets
from jaxviz.core import analysis, checks
from jaxviz.core import compile as compile_lib
from jaxviz.core import objectives as objectives_lib


@dataclasses.dataclass(frozen=True)
class TCAVResult:
    """Scores per concept and run. scores, magnitudes, accuracy: (C, R); random_*: (R0,);
    p_values, p_adjusted (Bonferroni), significant: (C,)."""
    concepts: tuple
    layer: str
    target: str
    scores: np.ndarray
    magnitudes: np.ndarray
    accuracy: np.ndarray
    random_scores: np.ndarray
    random_magnitudes: np.ndarray
    random_accuracy: np.ndarray
    p_values: np.ndarray
    p_adjusted: np.ndarray
    significant: np.ndarray
    alpha: float
    settings: dict
    test: str = "ttest"
    random_set_scores: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros((0, 0)))  # (M, R): M fixed random sets, R runs each

    def rows(self) -> list[dict]:
        """One dict per concept (and a last one for the random concepts)."""
        out = [{"concept": c, "score_mean": float(self.scores[i].mean()),
                "score_std": float(self.scores[i].std(ddof=1)) if self.scores.shape[1] > 1
                else 0.0, "magnitude_mean": float(self.magnitudes[i].mean()),
                "cav_accuracy": _nanmean(self.accuracy[i]), "p_value": float(self.p_values[i]),
                "p_bonferroni": float(self.p_adjusted[i]),
                "significant": bool(self.significant[i])} for i, c in enumerate(self.concepts)]
        r = self.random_scores
        out.append({"concept": "(random)", "score_mean": float(r.mean()),
                    "score_std": float(r.std(ddof=1)) if len(r) > 1 else 0.0,
                    "magnitude_mean": float(self.random_magnitudes.mean()),
                    "cav_accuracy": _nanmean(self.random_accuracy), "p_value": None,
                    "p_bonferroni": None, "significant": None})
        return out

    def to_json(self) -> dict:
        """Everything as plain JSON types (per-run scores included)."""
        return {"layer": self.layer, "target": self.target, "alpha": self.alpha,
                "correction": f"Bonferroni over {len(self.concepts)} concept(s)",
                "test": TEST_NAMES[self.test],
                "settings": self.settings, "table": self.rows(),
                "scores": {c: self.scores[i].tolist() for i, c in enumerate(self.concepts)},
                "random_scores": self.random_scores.tolist(),
                "random_set_means": self.random_set_scores.mean(1).tolist()
                if self.random_set_scores.size else []}

    def __str__(self):
        lines = [f"TCAV at {self.layer!r} for {self.target} (alpha {self.alpha}, "
                 f"Bonferroni over {len(self.concepts)}):",
                 f"{'concept':<20} {'score':>13} {'CAV acc':>8} {'p (Bonf.)':>10}  signif."]
        for r in self.rows():
            p = "" if r["p_bonferroni"] is None else f"{r['p_bonferroni']:.2g}"
            s = "" if r["significant"] is None else ("yes" if r["significant"] else "no")
            lines.append(f"{r['concept']:<20} {r['score_mean']:6.3f} ± {r['score_std']:.3f} "
                         f"{r['cav_accuracy']:8.3f} {p:>10}  {s}")
        return "\n".join(lines)


TEST_NAMES = {"ttest": "two-sided Student t-test, concept runs vs random-concept runs",
              "prediction": "two-sided prediction test, concept mean vs random-concept runs",
              "random_sets": "two-sided prediction test, concept mean vs the means of "
                             "fixed random sets (as many runs each)"}


def _nanmean(a) -> float | None:
    a = np.asarray(a, np.float64)
    return None if np.all(np.isnan(a)) else float(np.nanmean(a))


def as_objective(target, num_classes: int | None):
    """A class index -> class_logit(k); an Objective as it is; anything else refused."""
    if isinstance(target, objectives_lib.Objective):
        return target
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        k = int(target)
        if k < 0 or (num_classes is not None and k >= num_classes):
            raise ValueError(f"target: class index {k} outside [0, {num_classes})")
        return objectives_lib.class_logit(k)
    raise ValueError(f"target must be a class index (int) or an Objective "
                     f"(jaxviz.core.objectives); got {type(target).__name__}")


@functools.partial(compile_lib.jit, kind="forward", static_argnames=("probe", "layer"))
def _acts(probe, params, x, layer):
    a = probe.run(params, x)[1][layer]
    return a.reshape(a.shape[0], -1).astype(jnp.float32)


@functools.partial(compile_lib.jit, static_argnames=("probe", "layer", "node"))
def _grads(probe, params, x, layer, node, args):
    def run(params, x, delta):
        return probe.run(params, x, edits={layer: lambda a: a + delta})

    def score(delta):
        logits, acts = compile_lib.fast_model(run)(params, x, delta)
        return node(args, logits, acts).sum()
    shape = probe.check_layer(layer, x.shape)
    g = jax.grad(score)(jnp.zeros(shape, x.dtype))
    return g.reshape(g.shape[0], -1).astype(jnp.float32)


def _chunks(f, x, chunk_size):
    n = len(x)
    size = n if chunk_size is None else chunk_size
    return jnp.concatenate([f(jnp.asarray(x[i:i + size])) for i in range(0, n, size)])


def layer_activations(probe, params, x, layer: str, chunk_size: int | None = None):
    """(N, D) float32: the layer's activations, flattened. x: (N, H, W, C)."""
    probe.check_layer(layer, (1, *np.shape(x)[1:]))
    view = analysis.static_fn(probe)
    return _chunks(lambda c: _acts(view, params, c, layer), x, chunk_size)


def layer_gradients(probe, params, x, layer: str, target, chunk_size: int | None = None):
    """(N, D) float32: ∇ of the target's score w.r.t. the layer's activation, flattened.

    target: a class index (its logit) or an Objective `obj(logits, acts) -> (N,)`.
    """
    obj = as_objective(target, probe.num_classes)
    probe.check_layer(layer, (1, *np.shape(x)[1:]))
    view = analysis.static_fn(probe)
    return _chunks(lambda c: _grads(view, params, c, layer, obj.node, obj.args), x, chunk_size)


def directional_derivatives(grads, cavs):
    """S = grads · CAV for every image and CAV: grads (N, D), cavs (R, D) -> (N, R)."""
    return jnp.asarray(grads) @ jnp.asarray(cavs).T


def t_test(concept_scores, random_scores) -> float:
    """Two-sided Student t-test p-value of two score samples; where both have zero
    variance (the t statistic undefined), 0 if their values differ and 1 if not."""
    a, b = np.asarray(concept_scores, np.float64), np.asarray(random_scores, np.float64)
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return 0.0 if a[0] != b[0] else 1.0
    return float(stats.ttest_ind(a, b).pvalue)


def prediction_test(concept_scores, random_scores) -> float:
    """Two-sided p-value of the concept's mean score as one more draw from the random
    concepts' distribution: t = (mean_c - mean_r) / (std_r sqrt(1 + 1/R0)), R0 - 1 degrees
    of freedom. The concept set counts as one sample (its runs share its images), which
    the paper's t-test does not allow for (docs/tcav.md: its false positives)."""
    a, b = np.asarray(concept_scores, np.float64), np.asarray(random_scores, np.float64)
    sd = b.std(ddof=1) * np.sqrt(1 + 1 / len(b))
    if sd == 0:
        return 0.0 if a.mean() != b[0] else 1.0
    return float(2 * stats.t.sf(abs(a.mean() - b.mean()) / sd, len(b) - 1))


TESTS = {"ttest": t_test, "prediction": prediction_test, "random_sets": prediction_test}


def significance(scores, reference, alpha: float = 0.05, test: str = "ttest"):
    """scores (C, R) -> (p (C,), Bonferroni p (C,), significant (C,)).

    test: "ttest" (the paper's: `t_test` against the random-concept runs' scores,
    reference (R0,)), "prediction" (`prediction_test` against the same) or "random_sets"
    (`prediction_test` against reference (M,): the mean scores of M fixed random sets)."""
    if test not in TESTS:
        raise ValueError(f"test must be one of {sorted(TESTS)}; got {test!r}")
    p = np.array([TESTS[test](s, reference) for s in np.asarray(scores)])
    adjusted = np.minimum(1.0, p * len(p))
    return p, adjusted, adjusted < alpha


def _bank(probe, params, concept_sets: dict, pool, layer, chunk_size):
    """One activation bank: every concept's rows, then the pool's, in one pass (one
    compile) -> (bank (M, D), {name: row indices}, pool row indices)."""
    rows, start = {}, 0
    for name, x in concept_sets.items():
        rows[name] = np.arange(start, start + len(x))
        start += len(x)
    bank = layer_activations(probe, params, np.concatenate([*concept_sets.values(), pool]),
                             layer, chunk_size)
    return bank, rows, np.arange(start, start + len(pool))


def _random_sets(key, pool_rows, m: int, n_pos: int, n_neg: int):
    """m disjoint fixed random sets of n_pos pool rows, and the pool rows left for their
    counterexamples -> (list of (n_pos,) rows, (P - m n_pos,) rows)."""
    if m == 0:
        return [], pool_rows
    if m * n_pos + n_neg > len(pool_rows):
        raise ValueError(f"the random pool holds {len(pool_rows)} images; n_random_sets={m} "
                         f"sets of {n_pos} and {n_neg} counterexamples need {m * n_pos + n_neg}")
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
    perm = rng.permutation(pool_rows)
    return [perm[i * n_pos:(i + 1) * n_pos] for i in range(m)], np.sort(perm[m * n_pos:])


def _stack(runs: list) -> cav_lib.Runs:
    return cav_lib.Runs(*(jnp.concatenate([getattr(r, f) for r in runs])
                          for f in cav_lib.Runs._fields))


def _score_runs(grads, bank, rows, pool_rows, k_runs, k_rand, *, n_runs, n_random_runs,
                n_random_sets, n_neg, l2, steps, test_fraction, concept_fraction):
    """Fit every CAV (concepts, fixed random sets, random concepts) in one program and score
    it -> (score, magnitude, accuracy) over the concept runs then the random-concept runs,
    and the fixed random sets' scores (M, n_runs)."""
    sizes = [len(r) for r in rows.values()]
    n_pos = max(2, round(concept_fraction * int(np.median(sizes))))
    sets_rows, pool_rest = _random_sets(k_rand, pool_rows, n_random_sets,
                                        int(np.median(sizes)), n_neg)
    targets = [*rows.values(), *sets_rows]
    keys = jax.random.split(k_runs, len(targets))
    runs = [cav_lib.concept_runs(k, r, pool_rows if i < len(rows) else pool_rest,
                                 n_runs=n_runs, n_negative=n_neg, size=len(bank),
                                 test_fraction=test_fraction, concept_fraction=concept_fraction)
            for i, (k, r) in enumerate(zip(keys, targets))]
    runs.append(cav_lib.random_runs(jax.random.fold_in(k_rand, 1), pool_rows,
                                    n_runs=n_random_runs, n_positive=n_pos, n_negative=n_neg,
                                    size=len(bank), test_fraction=test_fraction))
    cavs = cav_lib.fit_cavs(bank, _stack(runs), l2=l2, steps=steps)
    dd = directional_derivatives(grads, cavs.vectors)  # (N, all runs)
    score = np.asarray((dd > 0).mean(0), np.float64)
    mag = np.asarray(dd.mean(0), np.float64)
    acc = np.asarray(cavs.accuracy, np.float64)
    cut, cut2 = len(rows) * n_runs, len(targets) * n_runs
    set_scores = score[cut:cut2].reshape(n_random_sets, n_runs)
    return (*(np.concatenate([v[:cut], v[cut2:]]) for v in (score, mag, acc)), set_scores)


def _check_options(n_runs, n_random_runs, alpha, test, n_random_sets) -> None:
    for name, v, lo in (("n_runs", n_runs, 2), ("n_random_runs", n_random_runs, 2)):
        if int(v) < lo:
            raise ValueError(f"{name} must be >= {lo} (the t-test needs a spread); got {v!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1); got {alpha!r}")
    if test not in TESTS:
        raise ValueError(f"test must be one of {sorted(TESTS)}; got {test!r}")
    if test == "random_sets" and n_random_sets < 5:
        raise ValueError(f"test='random_sets' needs n_random_sets >= 5; got {n_random_sets}")


def tcav(probe, params, images, target, concepts, random, *, layer: str, key,
         n_runs: int = 20, n_random_runs: int | None = None, n_negative: int | None = None,
         alpha: float = 0.05, l2: float = cav_lib.DEFAULT_L2,
         steps: int = cav_lib.DEFAULT_STEPS, test_fraction: float = 0.33,
         test: str = "ttest", n_random_sets: int = 0, concept_fraction: float = 1.0,
         n_generated: int = 50,
         chunk_size: int | None = None) -> TCAVResult:
    """TCAV scores and their significance for each concept (module docstring).

    Args:
      probe, params: the model (a Probe) and its weights.
      images: (N, H, W, C) the images whose target score is explained (usually one class's).
      target: a class index (its logit) or an Objective `obj(logits, acts) -> (N,)`.
      concepts: {name: images}, "folder:PATH" (one subfolder per concept) or a generator
        fn(key, n) (called with n_generated); see `jaxviz.concepts.sets`.
      random: (P, H, W, C) the pool random counterexamples (and random concepts) are drawn
        from, or a generator fn(key, P) (called with P = 4 * n_generated).
      layer: the Probe layer whose activations the CAVs live in.
      key: PRNG key (counterexample draws, train/test splits).
      n_runs: CAVs per concept, each against a fresh random draw.
      n_random_runs: random-concept CAVs, the t-test's reference (default n_runs; >= 10 as
        the paper).
      n_negative: counterexamples per run (default: the largest concept set's size).
      alpha: the significance level after Bonferroni over the concepts.
      test: "ttest" (the paper's two-sided t-test of the runs), "prediction" (the
        concept's mean as one draw of the random runs' distribution; `prediction_test`) or
        "random_sets" (the concept's mean against the means of n_random_sets fixed random
        sets, each run like a concept; docs/tcav.md says why).
      n_random_sets: M fixed random sets (of the median concept size) drawn from the pool
        and scored like concepts, n_runs each against the rest of the pool (needed by
        test="random_sets", >= 5; their scores are in the result either way).
      l2, steps, test_fraction: the CAV classifier's (`cav.fit_cavs`); test_fraction of each
        run's rows is held out to report CAV accuracy.
      concept_fraction: each concept run uses a fresh random share of the concept's images
        (1.0: all of them, as Captum and the paper; < 1 puts the concept set's own
        sampling into the runs' spread; docs/tcav.md).
      chunk_size: images per forward/backward pass (None: all at once).
    Returns:
      TCAVResult (print it for the table; `.to_json()`).
    """
    n_random_runs = n_runs if n_random_runs is None else n_random_runs
    _check_options(n_runs, n_random_runs, alpha, test, n_random_sets)
    analysis.check_chunk_size(chunk_size)
    shape = probe.input_shape
    rng = probe.input_range if probe.range_declared else None
    x = checks.as_images(images, "images", input_shape=shape, input_range=rng)
    shape = tuple(x.shape[1:])
    k_sets, k_pool, k_runs, k_rand = jax.random.split(key, 4)
    concept_sets = sets.load_concepts(concepts, shape, rng, key=k_sets, n=n_generated)
    pool = sets.load_concepts({"random": random(k_pool, 4 * n_generated) if callable(random)
                               else random}, shape, rng, name="random")["random"]
    obj = as_objective(target, probe.num_classes)
    grads = layer_gradients(probe, params, x, layer, obj, chunk_size)
    bank, rows, pool_rows = _bank(probe, params, concept_sets, pool, layer, chunk_size)
    sizes = [len(r) for r in rows.values()]
    n_neg = max(sizes) if n_negative is None else int(n_negative)
    score, mag, acc, set_scores = _score_runs(
        grads, bank, rows, pool_rows, k_runs, k_rand, n_runs=n_runs,
        n_random_runs=n_random_runs, n_random_sets=n_random_sets, n_neg=n_neg, l2=l2,
        steps=steps, test_fraction=test_fraction, concept_fraction=concept_fraction)
    c, cut = len(rows), len(rows) * n_runs
    ref = set_scores.mean(1) if test == "random_sets" else score[cut:]
    p, adj, sig = significance(score[:cut].reshape(c, n_runs), ref, alpha, test)
    return TCAVResult(
        tuple(rows), layer, obj.name, score[:cut].reshape(c, n_runs),
        mag[:cut].reshape(c, n_runs), acc[:cut].reshape(c, n_runs), score[cut:], mag[cut:],
        acc[cut:], p, adj, sig, float(alpha),
        {"images": int(len(x)), "n_runs": int(n_runs), "n_random_runs": int(n_random_runs),
         "n_negative": n_neg, "concept_sizes": dict(zip(rows, sizes)), "pool": int(len(pool)),
         "classifier": f"logistic regression, l2={l2}, {steps} Nesterov steps",
         "test_fraction": test_fraction, "concept_fraction": concept_fraction,
         "n_random_sets": int(n_random_sets)}, test, set_scores)
