"""Randomisation metrics and the similarities they use, against scipy/numpy and the
attribution package's own cascading check."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
import scipy.stats
from flax import linen as nn

from jaxviz import attribution as A
from jaxviz.core import probe as probe_lib
from jaxviz.evaluate import common, randomisation as RZ


def test_rank_correlations_match_scipy_with_ties():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 4, size=(5, 30)).astype(np.float32)  # many ties
    b = rng.normal(size=(5, 30)).astype(np.float32)
    ref = [scipy.stats.spearmanr(a[i], b[i])[0] for i in range(5)]
    np.testing.assert_allclose(common.spearman(jnp.asarray(a), jnp.asarray(b)), ref, rtol=1e-5)
    np.testing.assert_allclose(common.average_ranks(jnp.asarray(a)),
                               scipy.stats.rankdata(a, axis=1), rtol=1e-6)
    ref = [np.corrcoef(a[i], b[i])[0, 1] for i in range(5)]
    np.testing.assert_allclose(common.pearson(jnp.asarray(a), jnp.asarray(b)), ref, rtol=1e-5)


def _ssim_reference(a, b):
    """skimage.metrics.structural_similarity's algorithm (win 7, sample covariance), after
    Quantus' max-abs normalisation, with scipy's uniform filter and the border cropped."""
    out = []
    for x, y in zip(a.astype(np.float64), b.astype(np.float64)):
        x, y = x / np.abs(x).max(), y / np.abs(y).max()
        rng = max(x.max(), y.max()) - min(x.min(), y.min())
        c1, c2, cov = (0.01 * rng) ** 2, (0.03 * rng) ** 2, 49 / 48
        f = lambda v: scipy.ndimage.uniform_filter(v, size=7)  # noqa: E731
        ux, uy = f(x), f(y)
        vx, vy = cov * (f(x * x) - ux * ux), cov * (f(y * y) - uy * uy)
        vxy = cov * (f(x * y) - ux * uy)
        s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
        out.append(s[3:-3, 3:-3].mean())
    return np.array(out)


def test_ssim_matches_the_skimage_algorithm():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(3, 12, 10)).astype(np.float32)
    b = (a + rng.normal(scale=0.5, size=a.shape)).astype(np.float32)
    np.testing.assert_allclose(RZ.ssim(jnp.asarray(a), jnp.asarray(b)), _ssim_reference(a, b),
                               rtol=1e-4)
    np.testing.assert_allclose(RZ.ssim(jnp.asarray(a), 3 * jnp.asarray(a)), 1.0, rtol=1e-5)


def scaled_classes(params, x):
    """f_k(x) = c_k * sum(v * x^2): every class's saliency is a positive multiple of one map."""
    g = (x.reshape(x.shape[0], -1) ** 2) @ params["v"]
    return g[:, None] * params["c"][None, :]


def test_random_logit_of_class_blind_maps_is_one():
    params = {"v": jnp.linspace(0.5, 2.0, 64), "c": jnp.array([1.0, 2.0, 0.5, 3.0])}
    x = jax.random.uniform(jax.random.key(0), (3, 8, 8, 1), minval=0.1)
    t = jnp.array([0, 1, 3])
    a = A.display_map(A.get("saliency"), A.attribute("saliency", scaled_classes, params, x, t))
    for sim in RZ.SIMILARITIES:
        res = RZ.random_logit(scaled_classes, params, x, t, a, method="saliency",
                              key=jax.random.key(1), similarity=sim)
        np.testing.assert_allclose(res.scores, 1.0, rtol=1e-4)


class Tiny(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(3, (3, 3), name="conv")(x))
        x = nn.relu(nn.Dense(8, name="hidden")(x.reshape(x.shape[0], -1)))
        return nn.Dense(3, name="head")(x)


def test_model_parameter_randomisation_is_the_cascading_check():
    module = Tiny()
    probe = probe_lib.from_model(module, module.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1))),
                                 input_shape=(8, 8, 1))
    x = jax.random.uniform(jax.random.key(1), (4, 8, 8, 1))
    t = jnp.array([0, 1, 2, 0])
    a = A.display_map(A.get("saliency"), A.attribute("saliency", probe, probe.params, x, t))
    res = RZ.model_parameter_randomisation(probe, probe.params, x, t, a, method="saliency",
                                           model_seed=5)
    ref = A.cascading_randomization(probe, probe.params, x, t, key=jax.random.key(5),
                                    methods=("saliency",))
    assert res.curve.shape == (4, len(ref["layers"]))
    np.testing.assert_allclose(res.curve.mean(0), ref["saliency"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(res.scores, res.curve.mean(1), rtol=1e-6)
    with pytest.raises(ValueError, match="Probe"):
        RZ.model_parameter_randomisation(lambda p, v: probe(p, v), probe.params, x, t, a,
                                         method="saliency")
    with pytest.raises(ValueError, match="layers"):
        RZ.model_parameter_randomisation(probe, probe.params, x, t, a, method="saliency",
                                         layers=["nope"])
