"""Lucid's batch objectives against loops written from Lucent's source (lucent/optvis/
objectives.py: diversity, channel_interpolate, alignment; Lucent returns losses to minimize,
these are values to maximize), feature inversion and diversity in a real ascent, and a batch
of images per unit run beside others as alone."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxviz import maximize as mx
import jaxviz.maximize.batched  # noqa: F401
from tests.helpers.maximize_tiny import tiny_rgb as make_tiny

KEY = jax.random.key(0)


@pytest.fixture(scope="module")
def tiny_rgb():
    return make_tiny()


@pytest.fixture(scope="module")
def acts():
    a = np.random.default_rng(0).uniform(size=(4, 3, 3, 5)).astype(np.float32)
    return {"L": jnp.asarray(a), "M": jnp.asarray(a[..., ::-1] ** 2)}


def _lucent_diversity(a):  # -sum_i sum_{j != i} <G_i, G_j> / B, G normalised Gram (C, C)
    b = len(a)
    grams = [f.reshape(-1, f.shape[-1]).T @ f.reshape(-1, f.shape[-1]) for f in a]
    grams = [g / np.linalg.norm(g) for g in grams]
    return -sum((grams[i] * grams[j]).sum() for i in range(b) for j in range(b) if j != i) / b


def _value(obj, acts):
    return np.asarray(jax.jit(lambda a: obj(None, a))(acts))  # one program, not op by op


def test_batch_objectives_equal_lucents(acts):
    a, m = np.asarray(acts["L"]), np.asarray(acts["M"])
    b = len(a)
    div = _value(mx.diversity("L"), acts)
    np.testing.assert_allclose(div.mean(), _lucent_diversity(a), rtol=1e-5)
    w = np.arange(b) / (b - 1)
    lucent_interp = -sum((1 - w[n]) * a[n, ..., 1].mean() + w[n] * m[n, ..., 3].mean()
                         for n in range(b))
    interp = _value(mx.channel_interpolate("L", 1, "M", 3), acts)
    np.testing.assert_allclose(b * interp.mean(), -lucent_interp, rtol=1e-5)
    lucent_align = sum(((a[i] - a[i + d]) ** 2).mean() / 2.0 ** d
                       for d in (1, 2, 3, 4) for i in range(b - d))
    align = _value(mx.alignment("L"), acts)
    np.testing.assert_allclose(b * align.mean(), -lucent_align, rtol=1e-5)
    # caricature: (a.t / |t|) cos(a, t)^p per image; match: relative squared distance
    t = a[0]
    car = _value(mx.caricature("L", t, cossim_pow=2.0), acts)
    flat = a.reshape(b, -1)
    cos = flat @ t.ravel() / (np.linalg.norm(flat, axis=1) * np.linalg.norm(t))
    np.testing.assert_allclose(car, flat @ t.ravel() / np.linalg.norm(t) * cos ** 2, rtol=1e-5)
    np.testing.assert_allclose(_value(mx.match("L", t), acts),
                               -((flat - t.ravel()) ** 2).sum(1) / (t ** 2).sum(), rtol=1e-5)


def test_feature_inversion_lowers_the_distance(tiny_rgb):
    x = jax.random.uniform(jax.random.key(5), (2, 8, 8, 3))
    _, a = tiny_rgb.run(tiny_rgb.params, x)
    targets = [mx.match("conv2", a["conv2"][i]) for i in range(2)]
    r = mx.maximize(tiny_rgb, tiny_rgb.params, targets, key=KEY, steps=40, param="lucid",
                    loop="python")
    start, end = -np.asarray(r.trace[:, 0]), -np.asarray(r.trace).max(1)
    assert np.all(end < start / 4), (start, end)  # the relative distance falls 4-fold
    _, got = tiny_rgb.run(tiny_rgb.params, r.best)  # the best step's image, as traced
    rel = ((got["conv2"] - a["conv2"]) ** 2).sum((1, 2, 3)) / (a["conv2"] ** 2).sum((1, 2, 3))
    np.testing.assert_allclose(rel, end, rtol=1e-3, atol=1e-6)


def test_diversity_spreads_the_batch(tiny_rgb):
    # two units from the same start: without and with the diversity term (one program)
    objs = [mx.channel("conv2", 1) + w * mx.diversity("conv2") for w in (0.0, 30.0)]
    r = mx.maximize(tiny_rgb, tiny_rgb.params, objs, key=KEY, steps=30, param="lucid", batch=3,
                    loop="python")
    assert r.images.shape == (2, 3, 8, 8, 3)
    imgs = np.asarray(r.images).reshape(2, 3, -1)
    spread = [np.mean([np.linalg.norm(u[i] - u[j]) for i in range(3) for j in range(i)])
              for u in imgs]
    assert spread[1] > 1.5 * spread[0], spread
    _, got = tiny_rgb.run(tiny_rgb.params, r.images.reshape(6, 8, 8, 3))
    sims = [_lucent_diversity(np.asarray(got["conv2"][3 * u:3 * u + 3])) for u in range(2)]
    assert sims[1] > sims[0], sims  # minus the Gram similarity: higher is more diverse


def test_interpolation_with_a_shared_parametrization(tiny_rgb):
    inner = mx.DecorrelatedFourier((8, 8, 3))
    shared = mx.batched.Batch(inner, 3, shared=True)
    p = jax.jit(shared.init)(KEY)
    want = np.stack([np.asarray(inner(jax.tree.map(jnp.add, p["shared"], p["own"][i])))
                     for i in range(3)])
    np.testing.assert_allclose(jax.jit(shared)(p), want, atol=1e-6)
    obj = mx.channel_interpolate("conv2", 0, "conv2", 5) + 0.5 * mx.alignment("conv2")
    r = mx.maximize(tiny_rgb, tiny_rgb.params, [obj], key=KEY, steps=6, param=shared,
                    loop="python")
    assert r.images.shape == (1, 3, 8, 8, 3)
    assert float(r.trace[0, -1]) > float(r.trace[0, 0])


def test_bad_targets_name_the_layer(tiny_rgb):
    with pytest.raises(ValueError, match=r"layer 'conv2' must have shape \(4, 4, 6\)"):
        mx.maximize(tiny_rgb, tiny_rgb.params, mx.match("conv2", np.ones((3, 3, 6))),
                    key=KEY, steps=1)
    with pytest.raises(ValueError, match="channel 9 is out of range"):
        mx.maximize(tiny_rgb, tiny_rgb.params, mx.channel_interpolate("conv1", 0, "conv2", 9),
                    key=KEY, steps=1)


def test_neuron_groups_are_nmf_directions(tiny_rgb):
    from jaxviz.concepts import factorize
    from jaxviz.maximize import groups

    x = jax.random.uniform(jax.random.key(7), (8, 8, 3))
    g = groups.neuron_groups(tiny_rgb, tiny_rgb.params, x, "conv2", n_groups=2, key=KEY,
                             nmf_steps=50, steps=5, param="lucid",
                             loop="python")
    a = np.asarray(tiny_rgb.run(tiny_rgb.params, x[None])[1]["conv2"][0]).reshape(16, 6)
    assert np.all(g.directions >= 0) and np.all(g.maps >= 0)
    recon = g.maps.reshape(2, 16).T @ g.directions
    np.testing.assert_allclose(np.linalg.norm(a - recon) / np.linalg.norm(a), g.error,
                               rtol=1e-4)
    same = factorize.nmf(a, 2, key=jax.random.split(KEY)[0], steps=50)
    np.testing.assert_allclose(g.directions, same.h, rtol=1e-5)
    assert np.all(np.asarray(g.result.trace[:, -1]) > np.asarray(g.result.trace[:, 0]))
