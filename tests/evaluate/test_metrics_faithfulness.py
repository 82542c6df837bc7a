"""Faithfulness metrics against answers known in advance or computed independently (numpy
loops over the perturbed images, scipy for the blur and ROAD's linear system)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
import scipy.sparse
import scipy.sparse.linalg

from jaxviz.evaluate import common, faithfulness as F, faithfulness_random as FR, perturb


def linear(params, x):
    """f(x) = x . W + b: (N, H, W, 1) -> (N, K)."""
    return x.reshape(x.shape[0], -1) @ params["w"] + params["b"]


def _linear_case(h=6, w=6, n=2, k=3, seed=0):
    rng = np.random.default_rng(seed)
    params = {"w": jnp.asarray(rng.normal(size=(h * w, k)), jnp.float32),
              "b": jnp.asarray(rng.normal(size=(k,)), jnp.float32)}
    x = jnp.asarray(rng.uniform(0.2, 1.0, size=(n, h, w, 1)), jnp.float32)
    t = jnp.asarray(np.arange(n) % k, jnp.int32)
    exact = params["w"][:, t].T.reshape(n, h, w, 1) * x  # w * x: exactly faithful
    return params, x, t, exact


def _softmax_score(params, imgs, t):
    logits = np.asarray(imgs, np.float64).reshape(len(imgs), -1) @ np.asarray(
        params["w"], np.float64) + np.asarray(params["b"], np.float64)
    p = np.exp(logits - logits.max(1, keepdims=True))
    return (p / p.sum(1, keepdims=True))[np.arange(len(imgs)), t]


def _reference_curve(params, x, t, a, fill, steps, insert=False):
    """numpy: pixels in descending attribution order (stable), steps[k] of them changed."""
    x, a, fill = (np.asarray(v, np.float64) for v in (x, a, fill))
    out = np.zeros((len(x), len(steps)))
    for i in range(len(x)):
        order = np.argsort(-a[i].reshape(-1), kind="stable")
        for k, c in enumerate(steps):
            img = (fill[i] if insert else x[i]).reshape(-1).copy()
            src = (x[i] if insert else fill[i]).reshape(-1)
            img[order[:c]] = src[order[:c]]
            out[i, k] = _softmax_score(params, img[None], [t[i]])[0]
    return out


def test_deletion_and_insertion_match_a_hand_computation():
    params, x, t, _ = _linear_case(h=2, w=2, k=2)
    a = jnp.asarray([[[0.3], [-1.0]], [[2.0], [0.5]]])[None].repeat(2, 0) * jnp.array(
        [1.0, -1.0])[:, None, None, None]
    zero = np.zeros_like(x)
    ref = _reference_curve(params, x, t, a, zero, [0, 1, 2, 3, 4])
    res = F.deletion(linear, params, x, t, a, pixels_per_step=1, baseline=0.0)
    np.testing.assert_allclose(res.curve, ref, rtol=1e-5)
    auc = (ref.sum(1) - (ref[:, 0] + ref[:, -1]) / 2) / 4
    np.testing.assert_allclose(res.scores, auc, rtol=1e-5)
    start = np.full_like(x, 0.25)
    ins = F.insertion(linear, params, x, t, a, pixels_per_step=2, baseline=start)
    ref = _reference_curve(params, x, t, a, start, [0, 2, 4], insert=True)
    np.testing.assert_allclose(ins.curve, ref, rtol=1e-5)
    np.testing.assert_allclose(ins.scores, (ref[:, 0] / 2 + ref[:, 1] + ref[:, 2] / 2) / 2,
                               rtol=1e-5)


def test_pixel_flipping_is_quantus_curve_and_trapezoid():
    params, x, t, exact = _linear_case(h=4, w=4)
    res = F.pixel_flipping(linear, params, x, t, exact, pixels_per_step=4)
    black = np.broadcast_to(np.asarray(x).min(axis=(1, 2, 3), keepdims=True), x.shape)
    ref = _reference_curve(params, x, t, exact, black, [4, 8, 12, 16])
    np.testing.assert_allclose(res.curve, ref, rtol=1e-5)
    np.testing.assert_allclose(res.scores, np.trapezoid(ref, dx=1, axis=1), rtol=1e-5)


def test_region_perturbation_aopc_and_irof_match_hand_computations():
    params, x, t, exact = _linear_case(h=4, w=4)
    cells = np.arange(16).reshape(4, 4)
    cell_of = (cells // 4 // 2) * 2 + (cells % 4) // 2  # 2x2 patches
    xs, a = np.asarray(x, np.float64), np.asarray(exact, np.float64)
    base = _softmax_score(params, xs, t)
    for order, sign in (("morf", -1), ("lerf", 1)):
        res = F.region_perturbation(linear, params, x, t, exact, order=order, patch_size=2,
                                    baseline=0.0)
        for i in range(2):
            sums = np.array([a[i].reshape(-1)[cell_of.reshape(-1) == u].sum() for u in range(4)])
            img, drops = xs[i].reshape(-1).copy(), []
            for u in np.argsort(sign * sums, kind="stable"):
                img[cell_of.reshape(-1) == u] = 0.0
                drops.append(base[i] - _softmax_score(params, img[None], [t[i]])[0])
            np.testing.assert_allclose(res.curve[i], drops, rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(res.scores[i], sum(drops) / 5, rtol=1e-4, atol=1e-6)
    res = F.irof(linear, params, x, t, exact, cell=2)
    for i in range(2):
        sums = np.array([a[i].reshape(-1)[cell_of.reshape(-1) == u].mean() for u in range(4)])
        img, ratios = xs[i].reshape(-1).copy(), []
        for u in np.argsort(-sums, kind="stable"):
            img[cell_of.reshape(-1) == u] = xs[i].mean()
            ratios.append(_softmax_score(params, img[None], [t[i]])[0] / base[i])
        np.testing.assert_allclose(res.scores[i], 4 - np.trapezoid(ratios), rtol=1e-4)


def test_an_exact_map_beats_chance_and_a_random_map_scores_near_chance():
    """Linear logit, baseline 0 for both: a random order's expected curve is the straight
    line from f(x) to f(0), so deletion and insertion both average chance = (f(x) + f(0)) / 2,
    and for any map deletion + insertion = f(x) + f(0) (the two curves are complementary)."""
    n = 32
    params, x, _, _ = _linear_case(h=16, w=16, n=n, seed=1)
    t = jnp.zeros(n, jnp.int32)
    exact = params["w"][:, 0].reshape(1, 16, 16, 1) * x
    kw = dict(pixels_per_step=8, score="logit", baseline=0.0)
    f_x = np.asarray(linear(params, x))[:, 0]
    f_0 = np.asarray(linear(params, jnp.zeros_like(x)))[:, 0]
    chance = (f_x + f_0) / 2
    rand = jax.random.normal(jax.random.key(0), exact.shape)
    d_rand = np.asarray(F.deletion(linear, params, x, t, rand, **kw).scores)
    i_rand = np.asarray(F.insertion(linear, params, x, t, rand, **kw).scores)
    np.testing.assert_allclose(d_rand + i_rand, f_x + f_0, rtol=1e-4, atol=1e-3)
    dev = d_rand - chance
    assert abs(dev.mean()) < 4 * dev.std() / np.sqrt(n)  # chance, within sampling error
    d_exact = F.deletion(linear, params, x, t, exact, **kw).scores - chance
    d_worst = F.deletion(linear, params, x, t, -exact, **kw).scores - chance
    assert d_exact.mean() < -5 * dev.std() and d_worst.mean() > 5 * dev.std()


def test_blur_is_scipys_gaussian_filter_with_zero_padding():
    x = jax.random.uniform(jax.random.key(0), (2, 12, 9, 2))
    ref = scipy.ndimage.gaussian_filter(np.asarray(x, np.float64), sigma=(0, 5, 5, 0),
                                        mode="constant", truncate=1.0)
    np.testing.assert_allclose(common.blur(x, 5.0), ref, rtol=1e-5, atol=1e-6)


def _scipy_imputation(img, unknown):
    """ROAD's system built entry by entry (the reference code's construction), solved by
    scipy's sparse LU."""
    h, w, c = img.shape
    ids = {p: i for i, p in enumerate(zip(*np.nonzero(unknown)))}
    a = scipy.sparse.lil_matrix((len(ids), len(ids)))
    b = np.zeros((len(ids), c))
    for (y, x), i in ids.items():
        deg = 0.0
        for dy, dx, wt in perturb.NEIGHBOURS:
            yy, xx = y + dy, x + dx
            if not (0 <= yy < h and 0 <= xx < w):
                continue
            deg += wt
            if (yy, xx) in ids:
                a[i, ids[yy, xx]] = -wt
            else:
                b[i] += wt * img[yy, xx]
        a[i, i] = deg
    sol = scipy.sparse.linalg.spsolve(a.tocsc(), b).reshape(len(ids), c)
    out = img.copy()
    for (y, x), i in ids.items():
        out[y, x] = sol[i]
    return out


def test_road_imputation_solves_the_neighbour_system():
    rng = np.random.default_rng(0)
    img = rng.uniform(size=(10, 9, 2))
    unknown = rng.uniform(size=(10, 9)) < 0.6
    got = perturb.impute(jnp.asarray(img, jnp.float32), jnp.asarray(unknown), steps=60)
    np.testing.assert_allclose(got, _scipy_imputation(img, unknown), atol=1e-4)


def test_road_curve_is_the_model_on_imputed_images():
    """noise=0: each step is the scipy-imputed image (top or bottom p% of pixels unknown)."""
    params, x, t, exact = _linear_case(h=8, w=8, n=2, seed=2)
    pct = (20, 50, 80)
    for order, sign in (("morf", -1), ("lerf", 1)):
        res = F.road(linear, params, x, t, exact, order=order, percentages=pct, score="logit",
                     key=jax.random.key(0), noise=0.0, cg_steps=64)
        for i in range(2):
            rank = np.argsort(sign * np.asarray(exact[i]).reshape(-1), kind="stable")
            for k, p in enumerate(pct):
                unknown = np.zeros(64, bool)
                unknown[rank[:64 * p // 100]] = True
                img = _scipy_imputation(np.asarray(x[i], np.float64), unknown.reshape(8, 8))
                ref = (img.reshape(1, -1) @ np.asarray(params["w"]) + np.asarray(params["b"]))
                np.testing.assert_allclose(res.curve[i, k], ref[0, t[i]], rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(res.scores, res.curve.mean(1), rtol=1e-6)
    noisy = F.road(linear, params, x, t, exact, percentages=pct, key=jax.random.key(0))
    assert set(np.unique(noisy.curve)) <= {0.0, 1.0}  # "correct": the paper's accuracy
    with pytest.raises(ValueError, match="percentages"):
        F.road(linear, params, x, t, exact, percentages=(50, 120), key=jax.random.key(0))


def test_faithfulness_correlation_of_an_exact_map_is_one():
    params, x, t, exact = _linear_case()
    res = FR.faithfulness_correlation(linear, params, x, t, exact, key=jax.random.key(0),
                                      n_runs=20, subset_size=9, baseline=0.0)
    np.testing.assert_allclose(res.scores, 1.0, atol=1e-5)
    rand = jax.random.normal(jax.random.key(1), exact.shape)
    worse = FR.faithfulness_correlation(linear, params, x, t, rand, key=jax.random.key(0),
                                        n_runs=20, subset_size=9, baseline=0.0)
    assert (worse.scores < 0.9).all()


def test_infidelity_is_zero_with_the_matching_perturbation():
    params, x, t, exact = _linear_case()
    # w * x with subsets removed to 0 and Captum's multiply_by_inputs: I . a = f(x) - f(x~).
    res = FR.infidelity(linear, params, x, t, exact, key=jax.random.key(0), n_samples=8,
                        perturbation="subset", baseline=0.0, multiply_by_inputs=True)
    assert float(res.scores.max()) < 1e-8
    # The gradient w with Gaussian noise: I . w = f(x) - f(x - I) exactly.
    grad = params["w"][:, t].T.reshape(exact.shape)
    res = FR.infidelity(linear, params, x, t, grad, key=jax.random.key(0), sigma=0.3)
    assert float(res.scores.max()) < 1e-8
    rand = jax.random.normal(jax.random.key(1), exact.shape)
    plain = FR.infidelity(linear, params, x, t, rand, key=jax.random.key(0), normalize=True)
    scaled = FR.infidelity(linear, params, x, t, 3.0 * rand, key=jax.random.key(0),
                           normalize=True)
    np.testing.assert_allclose(plain.scores, scaled.scores, rtol=1e-4)  # normalize: scale-free
    assert (plain.scores > 1e-3).all()


def test_monotonicity_correlation_of_a_monotone_case_is_one():
    """x = 0, f linear: replacing pixel j by U[0, 1) changes f by w_j u, so the mean squared
    change grows with |w_j|, the attribution given."""
    h = w = 4
    wts = 1.3 ** np.arange(16) * np.where(np.arange(16) % 2, 1, -1)
    params = {"w": jnp.asarray(np.stack([wts, -wts], 1), jnp.float32), "b": jnp.zeros(2)}
    x = jnp.zeros((2, h, w, 1))
    a = jnp.asarray(np.abs(wts).reshape(1, h, w, 1).repeat(2, 0), jnp.float32)
    res = FR.monotonicity_correlation(linear, params, x, jnp.array([0, 1]), a,
                                      key=jax.random.key(0), pixels_per_step=1, n_samples=200,
                                      score="logit")
    assert res.curve.shape == (2, 16)
    assert (res.scores > 0.95).all()


@pytest.mark.parametrize("call, match", [
    (lambda p, x, t, a: F.deletion(linear, p, x, t, a, pixels_per_step=5), "pixels_per_step"),
    (lambda p, x, t, a: F.pixel_flipping(linear, p, x, t, a, pixels_per_step=7),
     "pixels_per_step"),
    (lambda p, x, t, a: F.deletion(linear, p, x, t, a, pixels_per_step=4, baseline="grey"),
     "baseline"),
    (lambda p, x, t, a: F.deletion(linear, p, x, t, a, pixels_per_step=4, score="softmax"),
     "score"),
    (lambda p, x, t, a: F.deletion(linear, p, x, t, a, pixels_per_step=4, baseline="uniform"),
     "key"),
    (lambda p, x, t, a: FR.monotonicity_correlation(linear, p, x, t, a, key=jax.random.key(0),
                                                    pixels_per_step=5), "pixels_per_step"),
    (lambda p, x, t, a: FR.faithfulness_correlation(linear, p, x, t, a, key=None), "key"),
    (lambda p, x, t, a: F.region_perturbation(linear, p, x, t, a, order="random"), "order"),
])
def test_bad_options_get_one_clear_error(call, match):
    params, x, t, exact = _linear_case()
    with pytest.raises(ValueError, match=match):
        call(params, x, t, exact)
