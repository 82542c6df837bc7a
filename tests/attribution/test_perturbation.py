"""Perturbation samplers and GradientSHAP against independent computations: feature ablation
== occlusion on its grid, Shapley sampling and KernelSHAP == brute-force Shapley values,
LIME's fit and weights, RISE's mass, GradientSHAP's completeness in expectation."""
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxviz import attribution as A
from jaxviz import occlusion as O
from jaxviz.attribution import perturbation as P
from jaxviz.attribution import surrogate as S

KEY = jax.random.key(7)


def _feature_sums(x, mask, f):
    """(N, F) sum of each feature's pixels (all channels)."""
    onehot = jax.nn.one_hot(jnp.asarray(mask), f)
    return jnp.einsum("nhwc,hwf->nf", x, onehot)


def _mlp(mask, f, seed=0):
    """logits = tanh(s W1) W2 of the feature sums s: every order of interaction."""
    k1, k2 = jax.random.split(jax.random.key(seed))
    params = {"w1": jax.random.normal(k1, (f, 8)), "w2": jax.random.normal(k2, (8, 3))}

    def fn(params, x):
        return jnp.tanh(_feature_sums(x, mask, f) @ params["w1"]) @ params["w2"]
    return fn, params


def _exact_shapley(fn, params, x, b, t, mask, f):
    """Shapley values by enumerating all 2^F coalitions, in numpy. -> (N, F)."""
    x, b = np.asarray(x), np.asarray(b)
    value = {}
    for z in itertools.product([False, True], repeat=f):
        keep = np.asarray(z)[mask][None, :, :, None]
        value[z] = np.asarray(fn(params, np.where(keep, x, b)))[np.arange(len(x)), t]
    phi = np.zeros((len(x), f))
    for z, v in value.items():
        k = sum(z)
        for j in (i for i in range(f) if not z[i]):
            with_j = z[:j] + (True,) + z[j + 1:]
            weight = math.factorial(k) * math.factorial(f - k - 1) / math.factorial(f)
            phi[:, j] += weight * (value[with_j] - v)
    return phi


def _per_feature(maps, mask, f):
    """(N, H, W) maps -> (N, F): the value on each feature's pixels (checked constant)."""
    maps = np.asarray(maps)
    out = np.stack([maps[:, mask == j].mean(-1) for j in range(f)], -1)
    np.testing.assert_allclose(maps, out[:, mask], rtol=1e-6, atol=1e-7)
    return out


@pytest.fixture(scope="module")
def small():
    """4 images (4, 6, 2) with a 2x2 grid: 6 features; an MLP on the feature sums."""
    mask, f = P.grid_mask((4, 6), (2, 2))
    x = jax.random.uniform(jax.random.key(1), (4, 4, 6, 2))
    t = np.array([0, 1, 2, 0])
    fn, params = _mlp(mask, f)
    return fn, params, x, t, mask, f


# ---- feature ablation ---------------------------------------------------------------------

def test_grid_mask_is_occlusions_grid():
    mask, f = P.grid_mask((10, 13), (4, 3))
    assert f == 3 * 5 and mask[9, 12] == 14 and mask[3, 2] == 0 and mask[4, 3] == 6
    for axis, (n, w) in enumerate([(10, 4), (13, 3)]):
        starts = O.axis_starts(n, w, w)  # occlusion's windows with stride == window
        assert len(np.unique(mask[:, 0] if axis == 0 else mask[0])) == len(starts)


def test_feature_ablation_equals_occlusion_on_its_grid(cnn_random, digits):
    p, x, t = cnn_random, digits[0][:2], digits[1][:2]
    occ = O.occlusion(p, p.params, x, t, window=(4, 4), stride=(4, 4)).map
    np.testing.assert_allclose(A.feature_ablation(p, p.params, x, t, grid=(4, 4)).map, occ,
                               rtol=1e-5, atol=1e-6)
    # cells cut off at the edges too, and a baseline, on a two-channel input
    def fn(params, x):
        return jnp.stack([jnp.sin(x).sum((1, 2, 3)), (x ** 2).sum((1, 2, 3))], -1)
    x2 = jax.random.uniform(KEY, (3, 10, 13, 2))
    occ = O.occlusion(fn, None, x2, 1, window=(4, 3), stride=(4, 3), baseline=0.5).map
    mask, _ = P.grid_mask((10, 13), (4, 3))
    for kw in (dict(grid=(4, 3)), dict(feature_mask=mask)):  # drops of sums near 90: float32
        np.testing.assert_allclose(A.feature_ablation(fn, None, x2, 1, baselines=0.5, **kw).map, occ,
                                   rtol=1e-5, atol=1e-4)


def test_per_image_masks_equal_one_image_at_a_time(small):
    fn, params, x, t, _, _ = small
    masks = np.stack([np.asarray(jax.random.randint(jax.random.key(i), (4, 6), 0, 5))
                      for i in range(4)])
    batched = A.feature_ablation(fn, params, x, t, feature_mask=masks).map
    for i in range(4):
        one = A.feature_ablation(fn, params, x[i:i + 1], t[i], feature_mask=masks[i]).map
        np.testing.assert_allclose(batched[i], one[0], rtol=1e-5, atol=1e-5)


# ---- Shapley values: sampling and KernelSHAP ----------------------------------------------

def test_additive_model_gives_exact_shapley_values():
    """f = sum_j g_j(s_j): each feature's Shapley value is g_j(s_j(x)) - g_j(s_j(b))."""
    mask, f = P.grid_mask((4, 6), (2, 2))
    a = jnp.linspace(-1.5, 2.0, f)

    def fn(params, x):
        g = jnp.tanh(a * _feature_sums(x, mask, f))
        return jnp.stack([g.sum(-1), -g.sum(-1)], -1)

    x = jax.random.uniform(jax.random.key(2), (3, 4, 6, 1))
    b = 0.25
    exact = np.tanh(a * _feature_sums(x, mask, f)) - np.tanh(a * b * 4)
    sv = A.shapley_sampling(fn, None, x, 0, key=KEY, n_samples=2, grid=(2, 2), baselines=b).map
    ks = A.kernel_shap(fn, None, x, 0, key=KEY, n_samples=40, grid=(2, 2), baselines=b).map
    np.testing.assert_allclose(_per_feature(sv, mask, f), exact, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(_per_feature(ks, mask, f), exact, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method,few,many", [("shapley_sampling", 3, 1200),
                                             ("kernel_shap", 12, 1500)])
def test_sampling_error_shrinks_to_exact_shapley_values(small, method, few, many):
    fn, params, x, t, mask, f = small
    exact = _exact_shapley(fn, params, x, np.zeros_like(x), t, mask, f)
    err = {}
    for n in (few, many):
        got = A.get(method).fn(fn, params, x, t, key=KEY, n_samples=n, grid=(2, 2)).map
        phi = _per_feature(got, mask, f)
        # Both satisfy efficiency exactly: the values sum to f(x) - f(baseline).
        np.testing.assert_allclose(phi.sum(-1), exact.sum(-1), rtol=1e-4, atol=1e-5)
        err[n] = np.abs(phi - exact).mean() / np.abs(exact).mean()
    assert err[many] < err[few] / 3, err
    assert err[many] < 0.05, err


# ---- LIME ---------------------------------------------------------------------------------

def test_lime_recovers_a_linear_models_coefficients():
    w = jax.random.normal(jax.random.key(3), (4 * 6 * 2, 3))
    fn = lambda params, x: x.reshape(len(x), -1) @ w  # noqa: E731
    x = jax.random.uniform(jax.random.key(4), (2, 4, 6, 2))
    mask, f = P.grid_mask((4, 6), (2, 2))
    t = np.array([2, 0])
    contrib = (np.asarray(w).T[t].reshape(x.shape) * np.asarray(x - 0.1)).sum(-1)
    expect = np.stack([contrib[:, mask == j].sum(-1) for j in range(f)], -1)
    for distance in ("cosine", "euclidean"):
        got = A.lime(fn, None, x, t, key=KEY, n_samples=30, grid=(2, 2), baselines=0.1,
                     alpha=0.0, distance=distance).map
        np.testing.assert_allclose(_per_feature(got, mask, f), expect, rtol=1e-4, atol=1e-4)


def test_lime_weights_are_captums_kernel():
    x = jax.random.uniform(jax.random.key(5), (2, 4, 6, 2))
    b = jnp.full_like(x, 0.3)
    mask, f = P.grid_mask((4, 6), (2, 2))
    masks = jnp.asarray(mask[None])
    z = jax.random.bernoulli(jax.random.key(6), 0.5, (5, 2, f))
    for distance in ("cosine", "euclidean"):
        got = S.lime_weights(x, b, masks, z, f, distance, 0.7)
        for s in range(5):
            xz = np.asarray(P.masked_inputs(x, b, masks, z[s])).reshape(2, -1)
            x0 = np.asarray(x).reshape(2, -1)
            if distance == "cosine":
                norms = np.linalg.norm(xz, axis=-1) * np.linalg.norm(x0, axis=-1)
                d = 1 - (xz * x0).sum(-1) / norms
            else:
                d = np.linalg.norm(xz - x0, axis=-1)
            np.testing.assert_allclose(got[s], np.exp(-d ** 2 / (2 * 0.7 ** 2)), rtol=1e-4)


def _lasso_cd(z, y, w, alpha, sweeps=3000):
    """Weighted Lasso with an intercept by cyclic coordinate descent (sklearn's objective)."""
    wn = w / w.sum()
    zc, yc = z - wn @ z, y - wn @ y
    c = np.zeros(z.shape[1])
    for _ in range(sweeps):
        for j in range(len(c)):
            r = yc - zc @ c + zc[:, j] * c[j]
            rho, norm = (wn * zc[:, j] * r).sum(), (wn * zc[:, j] ** 2).sum()
            c[j] = np.sign(rho) * max(abs(rho) - alpha, 0) / norm
    return c, wn @ y - (wn @ z) @ c


def test_weighted_lasso_matches_coordinate_descent():
    rng = np.random.default_rng(0)
    z = (rng.random((60, 5)) < 0.5).astype(np.float64)
    y = z @ np.array([1.0, -0.5, 0.02, 0.0, 0.3]) + 0.05 * rng.normal(size=60) + 2
    w = rng.random(60)
    for alpha in (0.0, 0.01, 0.05):
        coef, icpt = S.fit_linear(jnp.asarray(z, bool), jnp.asarray(y, jnp.float32),
                                  jnp.asarray(w, jnp.float32), alpha, 2000)
        ref, ref_icpt = _lasso_cd(z, y, w, alpha)
        np.testing.assert_allclose(coef, ref, atol=2e-4)
        np.testing.assert_allclose(icpt, ref_icpt, atol=2e-4)
    assert float(coef[3]) == 0  # the penalty zeroes the irrelevant feature


# ---- RISE ---------------------------------------------------------------------------------

def test_rise_puts_its_mass_where_the_model_looks():
    def fn(params, x):  # class 0's evidence is the top-left 6x6 block only
        return jnp.stack([8 * (x[:, :6, :6].mean((1, 2, 3)) - 0.5), jnp.zeros(len(x))], -1)

    x = jnp.ones((2, 16, 16, 1))
    sal = np.asarray(A.rise(fn, None, x, 0, key=KEY, n_masks=400, cells=4, chunk_size=64).map)
    inside, outside = sal[:, :6, :6].mean((1, 2)), sal[:, 9:, 9:].mean((1, 2))
    assert np.all(inside > outside + 0.1), (inside, outside)
    # far from the block, a pixel's mask says nothing about the score: E[f] (prob of class 0)
    probs = jax.nn.softmax(fn(None, x * 0.5), -1)[:, 0]
    np.testing.assert_allclose(outside, probs, atol=0.1)


def test_rise_is_the_score_weighted_mean_of_its_masks():
    fn = lambda params, x: jnp.stack([x.sum((1, 2, 3)), -x[:, :3].sum((1, 2, 3))], -1)  # noqa: E731
    x = jax.random.uniform(KEY, (2, 8, 9, 1))
    keys = jax.random.split(jax.random.key(8), 2)
    sal = A.rise(fn, None, x, 1, key=keys, n_masks=6, cells=3, p_keep=0.4, score="logit",
                 chunk_size=4).map
    u = P.image_draws(keys, 6 * 11).reshape(2, 6, 11)
    masks = np.asarray(jax.vmap(jax.vmap(lambda v: P.rise_mask(v, (8, 9), 3, 0.4)))(u))
    assert masks.min() >= 0 and masks.max() <= 1 and len(np.unique(masks)) > 2  # smooth
    xs = np.asarray(x)[:, None] * masks[..., None]  # (2, 6, 8, 9, 1)
    scores = -xs[:, :, :3].sum((2, 3, 4))  # class 1's logit for every masked copy
    hand = np.einsum("is,ishw->ihw", scores, masks) / (6 * 0.4)
    np.testing.assert_allclose(sal, hand, rtol=1e-4, atol=1e-5)


# ---- GradientSHAP -------------------------------------------------------------------------

def test_gradient_shap_completeness_in_expectation_on_a_linear_model():
    w = jax.random.normal(jax.random.key(9), (5 * 5 * 1, 2))
    fn = lambda params, x: x.reshape(len(x), -1) @ w  # noqa: E731
    x = jax.random.uniform(jax.random.key(10), (3, 5, 5, 1))
    bases = jax.random.uniform(jax.random.key(11), (7, 5, 5, 1))
    target = np.asarray(fn(None, x))[:, 1] - np.asarray(fn(None, bases))[:, 1].mean()
    err = {}
    for n in (8, 3200):
        res = A.gradient_shap(fn, None, x, 1, key=KEY, baselines=bases, n_samples=n,
                              stdevs=0.2, chunk_size=64)
        attr, delta = res.map, res.extras["delta"]
        np.testing.assert_allclose(delta, 0, atol=1e-4)  # each draw is exact for linear f
        err[n] = np.abs(np.asarray(attr.sum((1, 2, 3))) - target).max()
    assert err[3200] < err[8] / 3 and err[3200] < 0.05 * np.abs(target).max(), err
    # one baseline, no noise: w * (x - b) exactly, whatever the path points
    attr = A.gradient_shap(fn, None, x, 1, key=KEY, baselines=0.2, n_samples=3).map
    np.testing.assert_allclose(attr, np.asarray(w[:, 1]).reshape(5, 5, 1) * (x - 0.2),
                               rtol=1e-5, atol=1e-6)


# ---- defaults: a grid of at most 7 x 7 cells, memory-bounded chunks ---------------------

def test_default_grid_is_at_most_seven_cells_a_side():
    for shape, cells, n in (((28, 28), (4, 4), 49), ((224, 224), (32, 32), 49),
                            ((40, 56), (6, 8), 49), ((10, 13), (2, 2), 35), ((4, 6), (1, 1), 24)):
        assert P.default_grid(shape) == cells, shape
        mask, f = P.feature_mask(None, None, (1, *shape, 3))
        assert f == n and int(mask.max()) == n - 1, shape
        np.testing.assert_array_equal(mask[0], P.grid_mask(shape, cells)[0])


def test_defaults_equal_the_old_explicit_settings_on_digits(cnn_random, digits):
    """On 28x28 digits the new defaults (grid None, chunk_size None) are the old ones
    (grid (4, 4), chunk_size 16) up to the chunking (even chunks now), which changes which
    rows share a forward pass, not their values."""
    p, x, t = cnn_random, digits[0][:2], digits[1][:2]
    assert P.sampler_chunk(None, p, p.params, x.shape, 49) == 13  # 4 even chunks, not 16
    assert P.sampler_chunk(None, p, p.params, x.shape, 20) == 10
    np.testing.assert_allclose(A.feature_ablation(p, p.params, x, t).map,
                               A.feature_ablation(p, p.params, x, t, grid=(4, 4),
                                                  chunk_size=16).map, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        A.kernel_shap(p, p.params, x, t, key=KEY, n_samples=20).map,
        A.kernel_shap(p, p.params, x, t, key=KEY, n_samples=20, grid=(4, 4), chunk_size=16).map,
        rtol=1e-5, atol=1e-6)


def test_default_chunk_shrinks_to_fit_chunk_memory_with_the_same_maps(small, monkeypatch):
    """A model whose passes outgrow CHUNK_MEMORY gets fewer samples per forward pass (the
    even chunks of analysis.default_chunk); the maps do not change (padding dropped)."""
    fn, params, x, t, mask, f = small
    one_pass = P.analysis.pass_bytes(fn, params, x.shape)
    want = {name: call(chunk_size=None) for name, call in _samplers(small).items()}
    monkeypatch.setattr(P.analysis, "CHUNK_MEMORY", 3 * one_pass)
    assert P.sampler_chunk(None, fn, params, x.shape, 10) == 3  # 10 passes: 4 chunks of 3
    assert P.sampler_chunk(None, fn, params, x.shape, 2) == 2
    monkeypatch.setattr(P.analysis, "CHUNK_MEMORY", 100 * one_pass)
    assert P.sampler_chunk(None, fn, params, x.shape, 17) == 9  # at most 16: 2 chunks of 9
    assert P.sampler_chunk(5, fn, params, x.shape, 100) == 5  # an explicit chunk is kept
    for name, call in _samplers(small).items():
        np.testing.assert_allclose(call(chunk_size=None), want[name], rtol=1e-5, atol=1e-6,
                                   err_msg=name)
        np.testing.assert_allclose(call(chunk_size=1), want[name], rtol=1e-5, atol=1e-6,
                                   err_msg=name)


def _samplers(small):
    fn, params, x, t, mask, _ = small
    kw = dict(feature_mask=mask)
    return {
        "feature_ablation": lambda **c: A.feature_ablation(fn, params, x, t, **kw, **c).map,
        "shapley_sampling": lambda **c: A.shapley_sampling(fn, params, x, t, key=KEY,
                                                           n_samples=2, **kw, **c).map,
        "kernel_shap": lambda **c: A.kernel_shap(fn, params, x, t, key=KEY, n_samples=12,
                                                 **kw, **c).map,
        "lime": lambda **c: A.lime(fn, params, x, t, key=KEY, n_samples=12, lasso_steps=20,
                                   **kw, **c).map,
        "rise": lambda **c: A.rise(fn, params, x, t, key=KEY, n_masks=10, cells=2, **c).map,
    }


def test_direct_calls_on_a_bfloat16_model_return_float32(small):
    """The registry casts maps to float32; the functions themselves return float32 too."""
    fn, params, x, t, mask, _ = small
    half = jax.tree.map(lambda a: a.astype(jnp.bfloat16), params)
    fn16 = lambda p, v: fn(p, v).astype(jnp.bfloat16)  # noqa: E731 -- bfloat16 logits
    assert fn16(half, x).dtype == jnp.bfloat16
    for name, call in _samplers((fn16, half, x, t, mask, None)).items():
        out = call()
        assert out.dtype == jnp.float32 and out.shape == x.shape[:3], (name, out.dtype)
        assert bool(jnp.isfinite(out).all()) and float(jnp.abs(out).max()) > 0, name


# ---- bad input ----------------------------------------------------------------------------

def test_errors(small):
    fn, params, x, t, mask, _ = small
    with pytest.raises(ValueError, match=r"feature_mask must be \(H, W\) = \(4, 6\)"):
        A.feature_ablation(fn, params, x, t, feature_mask=np.zeros((4, 5), int))
    with pytest.raises(ValueError, match="feature_mask must hold integer"):
        A.feature_ablation(fn, params, x, t, feature_mask=np.zeros((4, 6)))
    with pytest.raises(ValueError, match="ids must be >= 0"):
        A.kernel_shap(fn, params, x, t, key=KEY, feature_mask=mask - 1)
    with pytest.raises(ValueError, match="grid cells .* larger than"):
        A.lime(fn, params, x, t, key=KEY, grid=(5, 2))
    with pytest.raises(ValueError, match="needs at least 2 features"):
        A.kernel_shap(fn, params, x, t, key=KEY, feature_mask=np.zeros((4, 6), int))
    with pytest.raises(ValueError, match="score must be one of"):
        A.feature_ablation(fn, params, x, t, score="margin")
    with pytest.raises(ValueError, match="n_samples must be an integer >= 2"):
        A.kernel_shap(fn, params, x, t, key=KEY, n_samples=1)
    with pytest.raises(ValueError, match="key is required"):
        A.shapley_sampling(fn, params, x, t, key=None)
    with pytest.raises(ValueError, match="distance must be one of"):
        A.lime(fn, params, x, t, key=KEY, distance="l1")
    with pytest.raises(ValueError, match="kernel_width must be a number > 0"):
        A.lime(fn, params, x, t, key=KEY, kernel_width=0)
    with pytest.raises(ValueError, match=r"p_keep must be a number in \(0, 1\]"):
        A.rise(fn, params, x, t, key=KEY, p_keep=1.5)
    with pytest.raises(ValueError, match="cells must be <="):
        A.rise(fn, params, x, t, key=KEY, cells=5)
    with pytest.raises(ValueError, match=r"baselines must be a number or an array of shape"):
        A.feature_ablation(fn, params, x, t, baselines=np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"baselines must be None, a number, one image"):
        A.gradient_shap(fn, params, x, t, key=KEY, baselines=np.zeros((2, 3, 3, 2)))
    with pytest.raises(ValueError, match="stdevs must be a number >= 0"):
        A.gradient_shap(fn, params, x, t, key=KEY, stdevs=-1.0)
    with pytest.raises(ValueError, match="feature_mask must be a concrete array"):
        jax.jit(lambda m: A.feature_ablation(fn, params, x, t, feature_mask=m).map)(mask)
    with pytest.warns(RuntimeWarning, match="outside the input range"):
        A.feature_ablation(fn, params, x, t, baselines=3.0)
