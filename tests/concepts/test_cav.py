"""CAVs: a linear classifier of activations, fitted for many runs at once."""
import jax
import numpy as np
import pytest
from scipy import optimize

from jaxviz.concepts import cav

D, N_POS, N_POOL = 10, 40, 120


@pytest.fixture(scope="module")
def separable():
    """Concept rows with x·d >= 3 along a unit direction d, pool rows with x·d <= -3."""
    rng = np.random.default_rng(0)
    d = rng.normal(size=D)
    d /= np.linalg.norm(d)
    pos = rng.normal(size=(N_POS, D))
    pos += np.maximum(0, 3 - pos @ d)[:, None] * d
    pool = rng.normal(size=(N_POOL, D))
    pool -= np.maximum(0, pool @ d + 3)[:, None] * d  # every pool row has x·d <= -3
    bank = np.concatenate([pos, pool]).astype(np.float32)
    runs = cav.concept_runs(jax.random.key(0), np.arange(N_POS), np.arange(N_POS, N_POS + N_POOL),
                            n_runs=4, n_negative=N_POS, size=len(bank))
    return bank, d, runs, cav.fit_cavs(bank, runs)


def test_cav_separates_separable_concept(separable):
    bank, d, runs, fit = separable
    assert (bank[:N_POS] @ d).min() > 0 > (bank[N_POS:] @ d).max()  # separable by construction
    np.testing.assert_array_equal(np.asarray(fit.accuracy), 1.0)
    np.testing.assert_array_equal(np.asarray(fit.train_accuracy), 1.0)
    # the held-out rows of every run fall on the right side of the CAV's boundary
    assert np.all(np.asarray(fit.vectors) @ d > 0.5)


def logistic_by_lbfgs(xs, y, l2):
    """The same objective in float64, minimised by scipy's L-BFGS: (w, b)."""
    s = 2 * y - 1

    def loss(wb):
        z = s * (xs @ wb[:-1] + wb[-1])
        g = -s * 0.5 * (1 - np.tanh(z / 2)) / len(y)  # d mean log(1 + e^-z) / d margin
        return (np.logaddexp(0, -z).mean() + l2 / 2 * wb[:-1] @ wb[:-1],
                np.append(xs.T @ g + l2 * wb[:-1], g.sum()))
    res = optimize.minimize(loss, np.zeros(xs.shape[1] + 1), jac=True, method="L-BFGS-B",
                            options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 10_000})
    return res.x[:-1]


def test_cav_matches_logistic_regression_by_lbfgs(separable):
    bank, _, runs, fit = separable
    for r in range(2):
        tr = np.asarray(runs.train[r]) > 0
        x, y = bank[tr].astype(np.float64), np.asarray(runs.labels[r])[tr]
        xc = x - x.mean(0)
        ref = logistic_by_lbfgs(xc / np.sqrt((xc ** 2).sum(1).mean()), y, cav.DEFAULT_L2)
        cos = float(np.asarray(fit.vectors[r]) @ ref / np.linalg.norm(ref))
        assert cos > 0.9999, cos


def test_runs_batched_equal_one_by_one(separable):
    bank, _, runs, fit = separable
    one = cav.fit_cavs(bank, cav.Runs(*(v[2:3] for v in runs)))
    np.testing.assert_allclose(np.asarray(one.vectors[0]), np.asarray(fit.vectors[2]), atol=1e-5)


def test_concept_runs_masks(separable):
    _, _, runs, _ = separable
    lab, tr, te = (np.asarray(v) for v in runs)
    np.testing.assert_array_equal(lab[:, :N_POS], 1)          # every concept row, every run
    assert np.all(lab[:, N_POS:] == 0)
    np.testing.assert_array_equal((tr + te)[:, N_POS:].sum(1), N_POS)  # n_negative pool rows
    assert np.all(tr * te == 0)
    np.testing.assert_array_equal(te[:, :N_POS].sum(1), int(0.33 * N_POS))
    assert len({tuple(np.flatnonzero(r)) for r in (tr + te)[:, N_POS:]}) == 4  # fresh draws


def test_bad_arguments_are_named(separable):
    bank, _, runs, _ = separable
    with pytest.raises(ValueError, match="l2 must be > 0"):
        cav.fit_cavs(bank, runs, l2=0.0)
    with pytest.raises(ValueError, match=r"runs.labels must be \(R, 10\)"):
        cav.fit_cavs(bank[:10], runs)
    with pytest.raises(ValueError, match="random pool holds 5 images"):
        cav.concept_runs(jax.random.key(0), np.arange(3), np.arange(3, 8), n_runs=2,
                         n_negative=6, size=8)
