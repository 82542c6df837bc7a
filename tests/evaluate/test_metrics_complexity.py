"""Complexity and axiomatic metrics against their closed forms and independent code."""
import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats
from flax import linen as nn

from jaxviz import attribution as A
from jaxviz.core import probe as probe_lib
from jaxviz.evaluate import axiomatic as AX, complexity as CX

X = jnp.ones((3, 5, 5, 1))


def _no_model(params, x):
    return jnp.zeros((x.shape[0], 2))


def test_gini_of_one_hot_is_about_one_and_of_a_constant_map_zero():
    one_hot = jnp.zeros((3, 5, 5)).at[:, 2, 3].set(4.0)
    np.testing.assert_allclose(CX.sparseness(_no_model, None, X, 0, one_hot).scores,
                               1 - 1 / 25, atol=1e-5)
    const = jnp.full((3, 5, 5), 0.3)
    np.testing.assert_allclose(CX.sparseness(_no_model, None, X, 0, const).scores, 0.0,
                               atol=1e-6)


def test_gini_and_entropy_of_random_maps_match_their_formulas():
    a = np.asarray(jax.random.normal(jax.random.key(0), (3, 5, 5, 1)), np.float64)
    v = np.abs(a.reshape(3, -1))
    s = np.sort(v / v.max(1, keepdims=True) + 1e-7, axis=1)
    i = np.arange(1, 26)
    gini = ((2 * i - 26) * s).sum(1) / (25 * s.sum(1))
    np.testing.assert_allclose(CX.sparseness(_no_model, None, X, 0, a).scores, gini, rtol=1e-5)
    ent = [scipy.stats.entropy(row) for row in v]
    np.testing.assert_allclose(CX.complexity(_no_model, None, X, 0, a).scores, ent, rtol=1e-5)
    one_hot = jnp.zeros((3, 5, 5)).at[:, 0, 0].set(1.0)
    np.testing.assert_allclose(CX.complexity(_no_model, None, X, 0, one_hot).scores, 0.0,
                               atol=1e-6)
    np.testing.assert_allclose(CX.complexity(_no_model, None, X, 0, jnp.ones((3, 5, 5))).scores,
                               np.log(25), rtol=1e-6)


def linear(params, x):
    return x.reshape(x.shape[0], -1) @ params["w"] + params["b"]


def _linear_case():
    w = jnp.asarray(np.where(np.arange(36) % 3 == 0, 0.0, np.linspace(0.3, 1.5, 36)))
    params = {"w": jnp.stack([w, -w], 1), "b": jnp.array([0.5, -0.2])}
    x = jax.random.uniform(jax.random.key(0), (2, 6, 6, 1), minval=0.2, maxval=1.0)
    return params, x, jnp.array([0, 1])


def test_completeness_is_exact_for_w_times_x_and_measures_the_gap_otherwise():
    params, x, t = _linear_case()
    exact = A.gradient_x_input(linear, params, x, t).map  # w * x: sum = f(x) - f(0)
    np.testing.assert_allclose(AX.completeness(linear, params, x, t, exact).scores, 0.0,
                               atol=1e-5)
    gap = (np.asarray(linear(params, x)) - np.asarray(params["b"]))[np.arange(2), t]
    res = AX.completeness(linear, params, x, t, 3 * exact)
    np.testing.assert_allclose(res.scores, 2 * np.abs(gap), rtol=1e-5)


class Tiny(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.tanh(nn.Conv(3, (3, 3), name="conv")(x))
        return nn.Dense(3, name="head")(x.reshape(x.shape[0], -1))


def test_completeness_of_integrated_gradients_is_its_delta():
    module = Tiny()
    probe = probe_lib.from_model(module, module.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1))),
                                 input_shape=(8, 8, 1))
    x = jax.random.uniform(jax.random.key(1), (3, 8, 8, 1))
    t = jnp.array([0, 1, 2])
    res = A.attribute("integrated_gradients", probe, probe.params, x, t, n_steps=8)
    got = AX.completeness(probe, probe.params, x, t, res.map)
    np.testing.assert_allclose(got.scores, np.abs(res.extras["delta"]), rtol=1e-3, atol=1e-5)


def test_non_sensitivity_counts_the_pixels_where_zero_and_no_effect_disagree():
    """Pixels with w = 0 have no effect; w * x is zero exactly there: no disagreement. Zeroing
    k effective pixels of the map makes exactly k disagreements (pixel by pixel)."""
    params, x, t = _linear_case()
    exact = A.gradient_x_input(linear, params, x, t).map
    kw = dict(pixels_per_step=1, score="logit", baseline=0.0)
    np.testing.assert_array_equal(AX.non_sensitivity(linear, params, x, t, exact, **kw).scores,
                                  [0, 0])
    wrong = exact.at[:, 0, 1].set(0.0).at[:, 4, 4].set(0.0).at[0, 5, 5].set(0.0)
    np.testing.assert_array_equal(AX.non_sensitivity(linear, params, x, t, wrong, **kw).scores,
                                  [3, 2])
    grouped = AX.non_sensitivity(linear, params, x, t, exact, pixels_per_step=4, score="logit",
                                 baseline=0.0)
    np.testing.assert_array_equal(grouped.scores, [0, 0])


def test_integer_keyed_sort_equals_numpy_sort():
    """The sort behind sparseness and the localisation metrics orders float32 values by
    their bit patterns: negatives, both zeros, infinities, denormals and ties included."""
    from jaxviz.evaluate import common
    rng = np.random.default_rng(0)
    v = rng.normal(size=(4, 257)).astype(np.float32) * np.float32(1e3)
    v[0, :6] = [-0.0, 0.0, np.inf, -np.inf, 1e-45, -1e-45]
    v[1, :50] = v[1, 50:100]  # ties
    got = np.asarray(jax.jit(common.sort_values)(v))
    np.testing.assert_array_equal(got, np.sort(v, axis=-1))
    assert got.dtype == np.float32
