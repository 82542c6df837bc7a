"""Lucid's parametrizations: the colour decorrelation matrix and the spectrum scale equal
Lucent's (constants read from lucent/optvis/param/color.py and spatial.py; the benchmark
section peers_lucent checks the same against Lucent itself, docs/bench/peers_lucent.log),
the data-derived colour root, CPPN's start, and the transforms' determinism."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxviz import maximize as mx
from jaxviz.maximize import colour, cppn, fourier, transforms
from tests.helpers.maximize_tiny import tiny_rgb as make_tiny

# Lucent 0.1.8's color_correlation_normalized: its svd-sqrt matrix over its largest column
# norm, sqrt(0.26^2 + 0.27^2 + 0.27^2) = 0.461952 (printed by peers_lucent).
LUCENT_NORMALIZED = np.array([[0.562829, 0.194825, 0.043295],
                              [0.584476, 0.000000, -0.108237],
                              [0.584476, -0.194825, 0.064942]])


@pytest.fixture(scope="module")
def tiny_rgb():
    return make_tiny()


def test_imagenet_matrix_equals_lucents():
    np.testing.assert_allclose(colour.normalized(colour.IMAGENET), LUCENT_NORMALIZED, atol=1e-6)
    z = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    np.testing.assert_allclose(colour.decorrelate(jnp.asarray(z), colour.IMAGENET),
                               z @ LUCENT_NORMALIZED.T, atol=1e-5)


def test_colour_root_from_data():
    rng = np.random.default_rng(0)
    m = np.asarray(colour.IMAGENET)
    # pixels whose sample covariance is exactly M M^T: whitened noise through M
    z = rng.normal(size=(4000, 3))
    z = (z - z.mean(0)) @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T
    root = np.asarray(colour.colour_sqrt((z @ m.T).reshape(40, 10, 10, 3)))
    np.testing.assert_allclose(root @ root.T, m @ m.T, atol=1e-9)
    gram = root.T @ root  # U sqrt(S): orthogonal columns, the largest first
    np.testing.assert_allclose(gram - np.diag(np.diag(gram)), 0, atol=1e-12)
    assert np.all(np.diff(np.diag(gram)) < 0) and np.all(root[0] >= 0)
    # any data: root root^T is the covariance
    x = rng.uniform(size=(6, 5, 5, 2)) * [1.0, 0.3] + rng.uniform(size=(6, 5, 5, 1))
    root2 = np.asarray(colour.colour_sqrt(x))
    np.testing.assert_allclose(root2 @ root2.T, np.cov(x.reshape(-1, 2), rowvar=False),
                               atol=1e-12)
    with pytest.raises(ValueError, match="same colour"):
        colour.colour_sqrt(np.ones((2, 3, 3, 3)))


def test_spectrum_scale_equals_lucents_by_hand():
    # Lucent: 1 / max(sqrt(fx^2 + fy^2), 1 / max(h, w)) ** decay, fy = fftfreq(h),
    # fx = fftfreq(w)[: w // 2 + 1] (odd w: one column more, which irfftn drops)
    r2, r5 = 1 / np.sqrt(0.125), 1 / np.sqrt(0.3125)
    want44 = [[4, 4, 2], [4, r2, r5], [2, r5, 1 / np.sqrt(0.5)], [4, r2, r5]]
    np.testing.assert_allclose(fourier.spectrum_scale(4, 4), want44, rtol=1e-6)
    want35 = [[5, 5, 2.5], [3, 1 / np.sqrt(1 / 9 + 0.04), 1 / np.sqrt(1 / 9 + 0.16)],
              [3, 1 / np.sqrt(1 / 9 + 0.04), 1 / np.sqrt(1 / 9 + 0.16)]]
    np.testing.assert_allclose(fourier.spectrum_scale(3, 5), want35, rtol=1e-6)
    np.testing.assert_allclose(fourier.spectrum_scale(4, 4, decay=2.0), np.square(want44),
                               rtol=1e-6)


def test_decorrelated_fourier_image_by_numpy():
    p = fourier.DecorrelatedFourier((6, 5, 3), -1.0, 2.0, colour.IMAGENET)
    spec = np.asarray(p.init(jax.random.key(0))) * 40
    img = np.asarray(jax.jit(p)(jnp.asarray(spec)))
    z = np.fft.irfft2((spec[0] + 1j * spec[1]) * fourier.spectrum_scale(6, 5)[..., None],
                      s=(6, 5), axes=(0, 1), norm="ortho") / 4.0
    want = -1.0 + 3.0 / (1 + np.exp(-(z @ LUCENT_NORMALIZED.T)))
    np.testing.assert_allclose(img, want, atol=1e-5)
    grey = fourier.DecorrelatedFourier((6, 5, 1), colour=colour.identity(1))
    assert jax.eval_shape(grey, grey.init(jax.random.key(1))).shape == (6, 5, 1)


def test_cppn_starts_mid_range():
    c = cppn.CPPN((8, 8, 3), 0.0, 2.0, hidden=6, layers=3)
    p = jax.jit(c.init)(jax.random.key(0))
    assert [k.shape for k, _ in p] == [(2, 6), (12, 6), (12, 3)]
    np.testing.assert_allclose(c(p), 1.0, atol=1e-7)  # zero output kernel: sigmoid(0)
    p[-1] = (jnp.ones((12, 3)), p[-1][1])
    img = np.asarray(jax.jit(c)(p))
    assert 0 < img.min() < img.max() < 2 and np.ptp(img[:, :, 0]) > 0.1


def test_transforms_deterministic_given_a_key():
    t = jax.jit(mx.standard_transforms((8, 8), pad=2, jitter=2, jitter2=1))
    x = jax.random.uniform(jax.random.key(0), (8, 8, 3))
    keys = jax.random.split(jax.random.key(1), 6)
    outs = np.stack([np.asarray(t(k, x)) for k in keys])
    np.testing.assert_array_equal(outs, np.stack([np.asarray(t(k, x)) for k in keys]))
    assert outs.shape == (6, 8, 8, 3)
    assert len({o.tobytes() for o in outs}) == 6, "different keys gave the same transform"


def test_shrink_and_resize_by_hand():
    x = jnp.arange(5 * 6 * 1, dtype=jnp.float32).reshape(5, 6, 1)
    out = np.asarray(transforms.shrink(2)(jax.random.key(3), x))
    windows = [(y, c) for y in range(3) for c in range(3)
               if np.array_equal(out, np.asarray(x)[y:y + 3, c:c + 4])]
    assert len(windows) == 1
    small = jnp.array([[0.0, 2.0], [4.0, 8.0]])[..., None]
    want = [[0, 1, 2], [2, 3.5, 5], [4, 6, 8]]  # corners aligned: the old pixels stay put
    np.testing.assert_allclose(transforms.resize(3, 3)(None, small)[..., 0], want, atol=1e-6)


def test_bad_input_names_the_argument(tiny_rgb):
    kw = dict(key=jax.random.key(0), steps=1)
    with pytest.raises(ValueError, match="colour must be a finite"):
        mx.maximize(tiny_rgb, tiny_rgb.params, mx.class_logit(0), param="lucid",
                    colour=np.eye(2), **kw)
    with pytest.raises(ValueError, match="colour is used by param='lucid'"):
        mx.maximize(tiny_rgb, tiny_rgb.params, mx.class_logit(0), colour=np.eye(3), **kw)
    with pytest.raises(ValueError, match="batch must be an integer >= 1"):
        mx.maximize(tiny_rgb, tiny_rgb.params, mx.class_logit(0), batch=0, **kw)
    with pytest.raises(ValueError, match="CPPN layers"):
        cppn.CPPN((4, 4, 3), layers=1)
