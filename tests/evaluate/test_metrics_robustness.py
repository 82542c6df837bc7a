"""Robustness metrics on cases whose answer is known: a linear model, where the gradient is
constant and gradient x input changes exactly as much as the input does."""
import jax
import jax.numpy as jnp
import numpy as np

from jaxviz import attribution as A
from jaxviz.evaluate import robustness as R

C = 0.7  # every weight of the target class


def linear(params, x):
    return x.reshape(x.shape[0], -1) @ params


def _case(n=3, h=6, w=6):
    params = jnp.stack([jnp.full((h * w,), C), jnp.linspace(-1, 1, h * w)], axis=1)
    x = jax.random.uniform(jax.random.key(0), (n, h, w, 1), minval=0.2, maxval=1.0)
    return params, x, jnp.zeros(n, jnp.int32)


def _maps(name, params, x, t):
    return A.display_map(A.get(name), A.attribute(name, linear, params, x, t))


def test_a_constant_gradient_has_zero_sensitivity():
    params, x, t = _case()
    a = _maps("saliency", params, x, t)
    for f in (R.max_sensitivity, R.avg_sensitivity):
        res = f(linear, params, x, t, a, method="saliency", key=jax.random.key(1), n_samples=4)
        assert res.curve.shape == (3, 4)
        np.testing.assert_allclose(res.scores, 0.0, atol=1e-6)


def test_gradient_x_input_changes_as_the_input_does():
    """a(x) = C x, so ||a(x + d) - a(x)|| / ||x + d - x|| = C for every d, and the
    sensitivity is ||d|| / ||x||, at most radius * sqrt(P) / ||x||."""
    params, x, t = _case()
    a = _maps("gradient_x_input", params, x, t)
    lle = R.local_lipschitz_estimate(linear, params, x, t, a, method="gradient_x_input",
                                     key=jax.random.key(1), n_samples=5, sigma=0.2)
    np.testing.assert_allclose(lle.curve, C, rtol=1e-4)
    kw = dict(method="gradient_x_input", key=jax.random.key(2), n_samples=6, radius=0.05)
    mx = R.max_sensitivity(linear, params, x, t, a, **kw)
    av = R.avg_sensitivity(linear, params, x, t, a, **kw)
    bound = 0.05 * 6 / np.sqrt((np.asarray(x) ** 2).sum((1, 2, 3)))
    assert (mx.scores > 0).all() and (mx.scores <= bound * (1 + 1e-5)).all()
    np.testing.assert_allclose(av.curve, mx.curve)  # the same draws, reduced two ways
    np.testing.assert_allclose(mx.scores, mx.curve.max(1))
    np.testing.assert_allclose(av.scores, mx.curve.mean(1), rtol=1e-6)


def test_a_callable_method_is_the_registered_one():
    params, x, t = _case()
    a = _maps("gradient_x_input", params, x, t)

    def my_gxi(fn, params, images, target):
        return A.gradient_x_input(fn, params, images, target).map

    kw = dict(key=jax.random.key(3), n_samples=3)
    by_name = R.max_sensitivity(linear, params, x, t, a, method="gradient_x_input", **kw)
    by_fn = R.max_sensitivity(linear, params, x, t, a, method=my_gxi, **kw)
    np.testing.assert_allclose(by_fn.scores, by_name.scores, rtol=1e-6)


def test_a_keyed_method_runs_inside_and_repeats_with_its_key():
    params, x, t = _case(n=2)
    a = _maps("saliency", params, x, t)
    kw = dict(method="smoothgrad", method_options={"n_samples": 3, "sigma": 0.1},
              key=jax.random.key(4), n_samples=2)
    first = R.max_sensitivity(linear, params, x, t, a, **kw)
    np.testing.assert_array_equal(first.scores, R.max_sensitivity(linear, params, x, t, a,
                                                                  **kw).scores)
    # SmoothGrad of a linear model is |w| = C everywhere, as saliency is.
    np.testing.assert_allclose(first.scores, 0.0, atol=1e-6)
