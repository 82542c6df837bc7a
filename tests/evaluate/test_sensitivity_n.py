"""Sensitivity-n against answers known in advance (a linear model's gradient x input is
exactly sensitive-n for every n) and a numpy loop over the very subsets the metric drew."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxviz import evaluate as ev
from jaxviz.evaluate import sensitivity_n as SN

H = W = 6
N, K = 2, 3


def linear(params, x):
    """f(x) = x . W + b: (N, H, W, 1) -> (N, K)."""
    return x.reshape(x.shape[0], -1) @ params["w"] + params["b"]


def bent(params, x):
    """A nonlinear model, so the correlations are neither 1 nor trivial."""
    return jnp.tanh(linear(params, x)) + 0.3 * linear(params, x ** 2)


def _case(seed=0):
    rng = np.random.default_rng(seed)
    params = {"w": jnp.asarray(rng.normal(size=(H * W, K)), jnp.float32),
              "b": jnp.asarray(rng.normal(size=(K,)), jnp.float32)}
    x = jnp.asarray(rng.uniform(0.2, 1.0, size=(N, H, W, 1)), jnp.float32)
    t = jnp.asarray([0, 2], jnp.int32)
    grad_x_input = params["w"][:, t].T.reshape(N, H, W, 1) * x
    return params, x, t, grad_x_input


def test_gradient_times_input_of_a_linear_model_is_sensitive_n_for_every_n():
    params, x, t, gxi = _case()
    sizes = (1, 3, 10, 30)
    res = SN.sensitivity_n(linear, params, x, t, gxi, key=jax.random.key(0), sizes=sizes,
                           n_runs=12)
    assert res.curve.shape == (N, len(sizes))
    np.testing.assert_allclose(res.curve, 1.0, atol=1e-5)
    np.testing.assert_allclose(res.scores, 1.0, atol=1e-5)
    noise = jax.random.normal(jax.random.key(1), gxi.shape)
    worse = SN.sensitivity_n(linear, params, x, t, noise, key=jax.random.key(0), sizes=sizes,
                             n_runs=12)
    assert (np.asarray(worse.curve) < 0.9).all()


def test_equals_a_numpy_loop_over_the_drawn_subsets():
    params, x, t, gxi = _case(1)
    sizes, runs = (2, 9, 20), 5
    key = jax.random.key(3)
    res = SN.sensitivity_n(bent, params, x, t, gxi, key=key, sizes=sizes, n_runs=runs,
                           baseline=0.1)
    masks = np.asarray(SN.subset_masks(jax.random.split(key, N), sizes, runs, H * W))
    assert (masks.sum(-1) == np.asarray(sizes)[None, :, None]).all()  # sizes exactly n
    assert len({m.tobytes() for m in masks[0, 1]}) == runs  # distinct random subsets
    xs, a = np.asarray(x, np.float64), np.asarray(gxi, np.float64)
    f = lambda img: np.asarray(bent(params, jnp.asarray(img[None], jnp.float32)))[0]  # noqa: E731
    for i in range(N):
        base = f(xs[i])[t[i]]
        for s in range(len(sizes)):
            drops, sums = [], []
            for r in range(runs):
                m = masks[i, s, r].reshape(H, W, 1)
                drops.append(base - f(np.where(m, 0.1, xs[i]))[t[i]])
                sums.append((a[i] * m).sum())
            ref = np.corrcoef(sums, drops)[0, 1]
            np.testing.assert_allclose(res.curve[i, s], ref, atol=2e-4)
    np.testing.assert_allclose(res.scores, np.asarray(res.curve).mean(1), rtol=1e-6)
    other = SN.sensitivity_n(bent, params, x, t, gxi, key=jax.random.key(5), sizes=sizes,
                             n_runs=runs, baseline=0.1)
    assert not np.allclose(other.curve, res.curve)  # the key draws the subsets


def test_registered_and_bad_options_are_refused():
    assert ev.get("sensitivity_n").fn is SN.sensitivity_n
    assert SN.check_sizes(None, 784)[0] == 4 and SN.check_sizes(None, 784)[-1] == 706
    params, x, t, gxi = _case()
    for bad, match in (((0, 3), "sizes"), ((3, H * W + 1), "sizes"), (5, "sizes")):
        with pytest.raises(ValueError, match=match):
            SN.sensitivity_n(linear, params, x, t, gxi, key=jax.random.key(0), sizes=bad)
    with pytest.raises(ValueError, match="key"):
        SN.sensitivity_n(linear, params, x, t, gxi, key=None)
    with pytest.raises(ValueError, match="n_runs"):
        SN.sensitivity_n(linear, params, x, t, gxi, key=jax.random.key(0), n_runs=1)
