"""One result type: every method, called any way, returns `Attribution` (map + named
extras); no flag changes the type; compare's keys do not depend on the list order."""
import dataclasses
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxviz import attribution as A
from jaxviz import occlusion as O
from jaxviz.attribution import registry

KEY = jax.random.key(0)
DELTA_METHODS = ("integrated_gradients", "deeplift", "deeplift_shap", "gradient_shap", "lrp")


@pytest.fixture(scope="module")
def batch(digits):
    return digits[0][:4], digits[1][:4]


@pytest.mark.parametrize("name", ["integrated_gradients", "lrp"])
def test_the_old_delta_flag_is_refused_not_misread(cnn_random, batch, name):
    """The registry read (map, delta) out of a bare map when return_convergence_delta=False
    was passed: `.map` was image 0's map and extras["delta"] image 1's. Now the flag is
    refused with a message saying where the delta is."""
    x, y = batch
    with pytest.raises(TypeError, match=r"extras\['delta'\]"):
        A.attribute(name, cnn_random, cnn_random.params, x, y, return_convergence_delta=False,
                    **A.get(name).quick)
    fn = getattr(A, name)
    with pytest.raises(TypeError, match=r"extras\['delta'\]"):
        fn(cnn_random, cnn_random.params, x, y, return_convergence_delta=True)


@pytest.mark.parametrize("name", DELTA_METHODS)
def test_delta_is_always_an_extra(cnn_random, batch, name):
    """The plain functions returned an array or a tuple depending on a flag; now an
    Attribution whose extras always hold the (N,) delta, equal to the registry's."""
    x, y = batch
    m = A.get(name)
    key = KEY if m.needs_key else None
    plain = getattr(A, name)(cnn_random, cnn_random.params, x, y, **m.quick,
                             **({"key": key} if key is not None else {}))
    assert isinstance(plain, A.Attribution)
    assert plain.map.shape == x.shape and plain.extras["delta"].shape == (4,)
    via = A.attribute(name, cnn_random, cnn_random.params, x, y, key=key, **m.quick)
    np.testing.assert_allclose(via.map, plain.map, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(via.extras["delta"], plain.extras["delta"], rtol=1e-5, atol=1e-6)


def test_no_method_takes_the_delta_flag():
    """No public method keeps a parameter that switches its return type."""
    for name, m in A.METHODS.items():
        assert "return_convergence_delta" not in inspect.signature(m.fn).parameters, name
    assert not any(f.name == "to_result" for f in dataclasses.fields(A.Method))


def test_plain_functions_return_attribution(cnn_random, batch):
    """Occlusion returned a NamedTuple, the other plain functions an array; noise_tunnel
    guessed which. Every plain function now returns an Attribution."""
    x, y = batch
    p = cnn_random
    calls = {
        "saliency": A.saliency(p, p.params, x, y),
        "grad_cam": A.grad_cam(p, p.params, x, y),
        "lime": A.lime(p, p.params, x, y, key=KEY, n_samples=8, grid=(7, 7), lasso_steps=5),
        "occlusion": O.occlusion(p, p.params, x, y, window=7, stride=7),
        "smoothgrad": A.smoothgrad(p, p.params, x, y, key=KEY, n_samples=2),
        "tunnelled_ig": A.noise_tunnel(A.integrated_gradients)(p, p.params, x, y, key=KEY,
                                                               n_samples=2, n_steps=2),
    }
    for name, res in calls.items():
        assert isinstance(res, A.Attribution), name
        assert res.map.dtype == jnp.float32, name
    occ = calls["occlusion"]
    assert occ.map.shape == (4, 28, 28) and occ.extras["scores"].shape == (4, 4, 4)
    np.testing.assert_allclose(O.occluded(occ), occ.extras["base"][:, None, None]
                               - occ.extras["scores"])
    assert calls["tunnelled_ig"].map.shape == x.shape


def test_attribution_returns_from_jit(cnn_random, batch):
    """Attribution is a pytree: the user's jit can return it (no blank-map check there)."""
    x, y = batch
    run = jax.jit(lambda x: A.integrated_gradients(cnn_random, cnn_random.params, x, y,
                                                   n_steps=2))
    res = run(x)
    assert isinstance(res, A.Attribution) and res.extras["delta"].shape == (4,)


def test_compare_keys_do_not_depend_on_order(cnn_random, batch):
    """compare folded the key in by list position, so SmoothGrad's map changed when it
    moved in the list; keys now come from the method's name."""
    x, y = batch
    opts = {"smoothgrad": dict(n_samples=2)}
    k = jax.random.key(3)
    a = A.compare(cnn_random, cnn_random.params, x, y, key=k,
                  methods=["smoothgrad", "saliency"], options=opts)
    b = A.compare(cnn_random, cnn_random.params, x, y, key=k,
                  methods=["saliency", "smoothgrad"], options=opts)
    np.testing.assert_array_equal(a["smoothgrad"].map, b["smoothgrad"].map)
    alone = A.attribute("smoothgrad", cnn_random, cnn_random.params, x, y,
                        key=registry.method_key(k, "smoothgrad"), n_samples=2)
    np.testing.assert_array_equal(alone.map, a["smoothgrad"].map)


def test_a_registered_method_returning_a_tuple_is_refused(cnn_random, batch):
    """A registered function returning (map, delta) was read as one stacked array; now it
    is an error saying to return an Attribution."""
    x, y = batch

    def pair(fn, params, images, target):
        res = A.integrated_gradients(fn, params, images, target, n_steps=2)
        return res.map, res.extras["delta"]
    A.register(A.Method("toy_pair", pair))
    try:
        with pytest.raises(TypeError, match=r"toy_pair must return an Attribution.*tuple"):
            A.attribute("toy_pair", cnn_random, cnn_random.params, x, y)
    finally:
        A.unregister("toy_pair")
