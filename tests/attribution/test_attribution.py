"""Attribution: one table of checks over every method on the NNX MnistCNN and the methods
that meet a model's values on the Linen ResidualCNN, then behaviour (linear model, completeness,
guided ReLU rule, hand-computed Grad-CAM),
the randomization sanity check and bad input."""
import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen, nnx

from jaxviz import attribution as A
from jaxviz.core import probe as probe_lib
from jaxviz.attribution import cam, integrated, sanity
from tests.helpers.method_checks import MODEL_VALUES, check_shared_table

KEY = jax.random.key(42)


class _Tiny(nnx.Module):
    """conv (SAME) -> relu -> global mean -> head: Grad-CAM at conv has a closed form."""

    def __init__(self, rngs):
        self.conv = nnx.Conv(2, 3, (3, 3), padding="SAME", rngs=rngs)
        self.head = nnx.Linear(3, 4, rngs=rngs)

    def __call__(self, x):
        return self.head(nnx.relu(self.conv(x)).mean(axis=(1, 2)))


# Every method on the NNX MnistCNN; on the Linen ResidualCNN (a residual add, a framework of
# its own) the methods that meet its values and ops (MODEL_VALUES, tests/helpers/method_checks.py).
@pytest.mark.parametrize("model, name", [("cnn_random", n) for n in A.METHODS]
                         + [("resnet_random", n) for n in MODEL_VALUES])
def test_shared_table(name, model, request, digits, compiles):
    check_shared_table(A.get(name), request.getfixturevalue(model), digits, compiles)


def test_eager_equals_jit():
    """Everything under jax.disable_jit() equals the jitted path (Grad-CAM, the ReLU rewrite
    and IG at once; a tiny model keeps op-by-op execution cheap)."""
    p = probe_lib.from_model(_Tiny(nnx.Rngs(5)))
    x, t = jax.random.normal(jax.random.key(6), (2, 5, 5, 2)), np.array([1, 2])
    calls = (lambda: A.guided_grad_cam(p, p.params, x, t, layer="conv").map,
             lambda: A.integrated_gradients(p, p.params, x, t, n_steps=3).map)
    for call in calls:
        out = call()
        with jax.disable_jit():
            eager = call()
        np.testing.assert_allclose(eager, out, rtol=1e-4, atol=1e-6 * float(jnp.abs(out).max()))


# ---- behaviour on a linear model: every gradient method has a closed form --------------

def _linear():
    k1, k2, k3 = jax.random.split(jax.random.key(1), 3)
    params = {"w": jax.random.normal(k1, (6 * 5 * 2, 3)), "b": jax.random.normal(k2, (3,))}
    x = jax.random.uniform(k3, (4, 6, 5, 2))
    return (lambda p, x: x.reshape(x.shape[0], -1) @ p["w"] + p["b"]), params, x


def test_linear_model_closed_forms():
    fn, params, x = _linear()
    t = jnp.array([0, 1, 2, 1])
    w = params["w"].T[t].reshape(x.shape)  # the target column of w, per image
    np.testing.assert_allclose(A.saliency(fn, params, x, t).map, jnp.abs(w), rtol=1e-5)
    np.testing.assert_allclose(A.saliency(fn, params, x, t, abs=False).map, w, rtol=1e-5)
    np.testing.assert_allclose(A.gradient_x_input(fn, params, x, t).map, w * x, rtol=1e-5)
    sg = functools.partial(A.smoothgrad, fn, params, x, t, key=KEY, n_samples=5, sigma=0.3)
    np.testing.assert_allclose(sg().map, jnp.abs(w), rtol=1e-5)
    np.testing.assert_allclose(sg(nt_type="smoothgrad_sq").map, w ** 2, rtol=1e-5)
    # A linear model has no variance: exactly 0 on jax 0.10, float noise (~1e-14) on 0.12.
    # The blank-map warning must come exactly when the map is exactly zero.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vg = np.asarray(sg(nt_type="vargrad").map)
    np.testing.assert_allclose(vg, 0, atol=1e-6)
    blank = [w for w in caught if issubclass(w.category, A.BlankMapWarning)]
    assert bool(blank) == bool((vg == 0).all()), (vg.max(), [str(w.message) for w in blank])
    assert all("smoothgrad" in str(w.message) for w in blank)
    # Chunked paths (lax.map / scan, with a remainder) agree with the all-at-once ones.
    np.testing.assert_allclose(sg(nt_type="smoothgrad_sq", chunk_size=2).map, w ** 2, rtol=1e-5)
    for method in integrated.METHODS:
        res = A.integrated_gradients(fn, params, x, t, n_steps=3, method=method,
                                     baselines=0.5, chunk_size=2 if method[0] == "r" else None)
        ig, delta = res.map, res.extras["delta"]
        np.testing.assert_allclose(ig, w * (x - 0.5), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(delta, 0, atol=1e-4)


def test_path_weights_integrate_exactly():
    for method in integrated.METHODS:
        a, w = A.path_weights(method, 7)
        assert a.shape == w.shape == (7,) and np.all((a >= 0) & (a <= 1))
        np.testing.assert_allclose(w.sum(), 1, rtol=1e-6)
    a, w = A.path_weights("gausslegendre", 5)  # exact for polynomials of degree <= 9
    np.testing.assert_allclose((w * a ** 9).sum(), 0.1, rtol=1e-5)


def test_smoothgrad_sigma_zero_is_saliency(cnn_random, digits):
    x, t = digits[0][:2], digits[1][:2]
    sg = A.smoothgrad(cnn_random, cnn_random.params, x, t, key=KEY, n_samples=2, sigma=0.0).map
    np.testing.assert_allclose(sg, A.saliency(cnn_random, cnn_random.params, x, t).map,
                               rtol=1e-5, atol=1e-7)


# ---- Integrated Gradients completeness -------------------------------------------------

def _with_random_biases(probe):
    def f(path, leaf):
        named = any(getattr(k, "key", None) == "bias" for k in path)
        return leaf + 0.1 * jax.random.normal(jax.random.key(leaf.size), leaf.shape) if named \
            else leaf
    return jax.tree_util.tree_map_with_path(f, probe.params)


def _relative_delta(probe, params, x, t, **kw):
    delta = A.integrated_gradients(probe, params, x, t, **kw).extras["delta"]
    b = kw.get("baselines")
    b = jnp.zeros_like(x) if b is None else A.blur_baseline(x)
    both = jax.jit(probe)(params, jnp.concatenate([x, b]))  # one program, not op by op
    fx, fb = np.split(np.asarray(both)[np.arange(2 * len(t)), np.tile(t, 2)], 2)
    return np.abs(np.asarray(delta)) / np.abs(fx - fb)


def test_ig_completeness_random_biased(resnet_random, digits):
    """Nonzero biases: the path integral is not trivially exact as for a homogeneous net."""
    params = _with_random_biases(resnet_random)
    x, t = digits[0][:4], digits[1][:4]
    coarse = _relative_delta(resnet_random, params, x, t, n_steps=2)
    fine = _relative_delta(resnet_random, params, x, t, n_steps=64)
    assert fine.mean() < coarse.mean()
    assert fine.max() <= 0.01, fine


def test_blur_baseline():
    x = jax.random.uniform(KEY, (2, 9, 7, 3))
    b = A.blur_baseline(x, 2.0)
    assert b.shape == x.shape and float(b.std()) < float(x.std())
    np.testing.assert_allclose(A.blur_baseline(jnp.full((1, 9, 7, 1), 0.3)), 0.3, rtol=1e-6)


# ---- guided backprop / deconvnet rule ---------------------------------------------------

@pytest.mark.parametrize("rule", ["guided", "deconvnet"])
def test_no_negative_gradient_through_relu(rule, cnn_random, digits):
    """Gradients at every ReLU's input (the outputs of conv1, conv2, dense1) are >= 0."""
    p = cnn_random
    x, t = jnp.asarray(digits[0][:2]), jnp.asarray(digits[1][:2])
    layers = ("conv1", "conv2", "dense1")
    zeros = {k: jnp.zeros(p.check_layer(k, x.shape)) for k in layers}

    def score(params, x, deltas):
        edits = {k: (lambda a, d=deltas[k]: a + d) for k in layers}
        logits = p.run(params, x, edits=edits)[0]
        return jnp.take_along_axis(logits, t[:, None], 1).sum()

    # jit: each reference one compiled program, not the CNN's ops dispatched one by one
    plain = jax.jit(jax.grad(score, argnums=2))(p.params, x, zeros)
    assert any(float(g.min()) < 0 for g in plain.values())
    modified = A.with_relu_rule(score, rule)
    np.testing.assert_allclose(jax.jit(modified)(p.params, x, zeros),
                               jax.jit(score)(p.params, x, zeros), rtol=1e-6)
    grads = jax.jit(jax.grad(modified, argnums=2))(p.params, x, zeros)
    for k, g in grads.items():
        assert float(g.min()) >= 0, k
        assert float(g.max()) > 0, k


@pytest.mark.parametrize("model", ["cnn_random", "resnet_random"])
def test_relu_rewrite_fires(model, request, digits):
    """NNX and Linen ReLUs are both found: guided and deconvnet maps differ (same shapes as
    the table, so nothing compiles again)."""
    p = request.getfixturevalue(model)
    x, t = jnp.asarray(digits[0][:2]), jnp.asarray(digits[1][:2])
    gb = A.guided_backprop(p, p.params, x, t).map
    assert not np.allclose(gb, A.deconvnet(p, p.params, x, t).map)
    assert not np.allclose(gb, A.gradient_x_input(p, p.params, x, t).map / jnp.where(x == 0, 1, x))


def test_noise_tunnel_wraps_any_method(cnn_random, digits):
    """noise_tunnel(method) with sigma=0 is the method itself (IG: a keyless method with
    options; guided backprop), and the noisy mean differs from it."""
    p, x, t = cnn_random, digits[0][:2], digits[1][:2]
    smooth_ig = A.noise_tunnel(A.integrated_gradients)
    ig = A.integrated_gradients(p, p.params, x, t, n_steps=4).map
    np.testing.assert_allclose(smooth_ig(p, p.params, x, t, key=KEY, n_samples=2, sigma=0.0,
                                         n_steps=4).map, ig, rtol=1e-4, atol=1e-6)
    gb = A.guided_backprop(p, p.params, x, t).map
    smooth_gb = A.noise_tunnel(A.guided_backprop)(p, p.params, x, t, key=KEY, n_samples=3,
                                                   sigma=0.2).map
    assert smooth_gb.shape == gb.shape and not np.allclose(smooth_gb, gb)


def test_bare_maximum_inside_jit_is_swapped():
    w = jax.random.normal(jax.random.key(3), (5, 4))
    inner = jax.jit(lambda h: jnp.maximum(h, 0.0))
    fn = lambda w, h: (inner(h @ w) * jnp.arange(-2.0, 2.0)).sum()  # noqa: E731
    h = jax.random.normal(jax.random.key(4), (3, 5))
    g_plain = jax.jit(jax.grad(fn, argnums=1))(w, h)
    g_guided = jax.jit(jax.grad(A.with_relu_rule(fn, "guided"), argnums=1))(w, h)
    assert not np.allclose(g_plain, g_guided)  # the rule changed something
    expect = ((h @ w > 0) * (jnp.arange(-2.0, 2.0) > 0) * jnp.arange(-2.0, 2.0)) @ w.T
    np.testing.assert_allclose(g_guided, expect, rtol=1e-5, atol=1e-6)


# ---- Grad-CAM by hand ---------------------------------------------------------------------

def test_grad_cam_matches_hand_computation():
    p = probe_lib.from_model(_Tiny(nnx.Rngs(5)))
    x = jax.random.normal(jax.random.key(6), (3, 5, 5, 2))
    t = np.array([0, 3, 1])
    a = np.asarray(p.run(p.params, x)[1]["conv"])  # (3, 5, 5, 3)
    w = np.asarray(probe_lib.layer_params(p, p.params, "head")["kernel"])  # (3, 4)
    grad = (a > 0) * w[:, t].T[:, None, None, :] / 25  # d mean(relu(A)) w / dA
    hand = np.einsum("nhwk,nk->nhw", a, grad.mean(axis=(1, 2)))
    got = A.grad_cam(p, p.params, x, t, layer="conv", relu=False, upsample=False).map
    np.testing.assert_allclose(got, hand, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(A.grad_cam(p, p.params, x, t, layer="conv").map,
                               np.maximum(hand, 0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(A.score_cam(p, p.params, x, t, chunk_size=2).map,
                               A.score_cam(p, p.params, x, t, chunk_size=None).map, rtol=1e-5)


def test_default_cam_layer_is_on_the_main_path(cnn_random, resnet_random):
    """The default is the last spatial layer every path to the logits goes through: the
    ResidualCNN's block convs are branches (the skip bypasses them), `down2` is not."""
    assert cam.resolve_layer(cnn_random, None, (1, 28, 28, 1)) == "dropout1"
    assert cam.resolve_layer(resnet_random, None, (1, 28, 28, 1)) == "down2"
    on_main = {n: m for n, _, m in cam.suggest_layers(resnet_random, (1, 28, 28, 1))}
    assert on_main == {"stem": True, "block1_conv1": False, "block1_conv2": False,
                       "down2": True, "block2_conv1": False, "block2_conv2": False}


class _Block(linen.Module):
    @linen.compact
    def __call__(self, x):
        h = linen.Conv(x.shape[-1], (3, 3), name="conv")(linen.relu(x))
        return linen.relu(x + h)


class _BlockNet(linen.Module):
    """Residual blocks as modules: a block's output (after the merge) is on the main path."""
    @linen.compact
    def __call__(self, x):
        x = linen.Conv(4, (3, 3), name="stem")(x)
        x = _Block(name="block1")(x)
        x = _Block(name="block2")(x)
        return linen.Dense(3, name="head")(x.mean(axis=(1, 2)))


class _TwoBranches(linen.Module):
    @linen.compact
    def __call__(self, x):
        y = linen.Conv(2, (3, 3), name="a")(x) + linen.Conv(2, (3, 3), name="b")(x)
        return y.mean(axis=(1, 2))


def test_default_cam_layer_of_blocks_and_of_branches_only():
    x = np.zeros((1, 8, 8, 1), np.float32)
    net = _BlockNet()
    p = probe_lib.from_model(net, jax.jit(net.init)(jax.random.key(0), x))
    assert cam.resolve_layer(p, None, x.shape) == "block2"
    assert [n for n, _, m in cam.suggest_layers(p, x.shape) if not m] == ["block1.conv",
                                                                          "block2.conv"]
    two = _TwoBranches()
    q = probe_lib.from_model(two, jax.jit(two.init)(jax.random.key(0), x))
    with pytest.raises(ValueError, match=r"no layer output .* every path.*a \(8, 8\), b \(8, 8\)"):
        cam.resolve_layer(q, None, x.shape)


# ---- sanity check, normalization, figures -------------------------------------------------

def test_rank_correlation():
    a = np.random.default_rng(0).normal(size=(2, 10))
    np.testing.assert_allclose(sanity.rank_correlation(a, 3 * a + 1), 1)
    np.testing.assert_allclose(sanity.rank_correlation(a, -a), -1)
    np.testing.assert_array_equal(sanity.rank_correlation(a, np.zeros_like(a)), 0)


def test_normalization_never_divides_by_zero():
    z = jnp.zeros((2, 4, 4, 3))
    for f in (A.unit_range, A.max_abs, A.clip_percentile):
        out = f(z)
        assert bool(jnp.isfinite(out).all()) and float(jnp.abs(out).max()) == 0
    m = jax.random.normal(KEY, (2, 4, 4, 3))
    u = A.unit_range(m)
    assert float(u.min()) == 0 and float(u.max()) == 1
    assert float(jnp.abs(A.max_abs(m)).max()) == pytest.approx(1)
    assert float(A.clip_percentile(m).max()) == 1
    assert A.reduce_channels(m, "max").shape == (2, 4, 4)


def test_figures_draw():
    from jaxviz.plot.attribution import comparison_figure, randomization_figure
    maps = np.random.default_rng(0).normal(size=(2, 6, 6))
    fig = comparison_figure(np.zeros((2, 6, 6, 1)), {"a": maps, "Grad-CAM": np.abs(maps)},
                            labels=[3, 4])
    assert len(fig.axes) == 6
    fig = randomization_figure({"layers": ["b", "a"], "saliency": np.array([0.5, 0.1])})
    assert fig.axes


# ---- bad input ------------------------------------------------------------------------------

def test_errors(cnn_random, digits):
    p, params = cnn_random, cnn_random.params
    x, t = digits[0][:2], digits[1][:2]
    with pytest.raises(ValueError, match="unknown layer 'nope'.*conv2"):
        A.grad_cam(p, params, x, t, layer="nope")
    with pytest.raises(ValueError, match="dense1.*spatial layers.*conv1"):
        A.grad_cam(p, params, x, t, layer="dense1")
    with pytest.raises(ValueError, match="Probe"):
        A.grad_cam(lambda q, x: p(q, x), params, x, t)
    with pytest.raises(ValueError, match="n_steps must be an integer >= 1; got 0"):
        A.integrated_gradients(p, params, x, t, n_steps=0)
    with pytest.raises(ValueError, match="sigma must be a number >= 0"):
        A.smoothgrad(p, params, x, t, key=KEY, sigma=-0.1)
    with pytest.raises(ValueError, match="key is required"):
        A.smoothgrad(p, params, x, t, key=None)
    with pytest.raises(ValueError, match=r"baselines must have the images' shape \(2, 28, 28, 1\)"):
        A.integrated_gradients(p, params, x, t, baselines=np.zeros((2, 14, 14, 1)))
    with pytest.raises(ValueError, match="baselines must be None, 'zeros', 'blur'"):
        A.integrated_gradients(p, params, x, t, baselines="mean")
    with pytest.raises(ValueError, match=r"target must lie in \[0, 10\); got values \[10\]"):
        A.saliency(p, params, x, 10)
    with pytest.raises(ValueError, match="method must be one of"):
        A.integrated_gradients(p, params, x, t, method="simpson")
    with pytest.raises(ValueError, match="nt_type must be one of"):
        A.smoothgrad(p, params, x, t, key=KEY, nt_type="mean")
    with pytest.raises(ValueError, match="rule must be one of"):
        A.with_relu_rule(p, "leaky")


class _GeluNet(nnx.Module):
    def __init__(self, rngs):
        self.conv = nnx.Conv(1, 3, (3, 3), rngs=rngs)
        self.head = nnx.Linear(3, 2, rngs=rngs)

    def __call__(self, x):
        return self.head(nnx.gelu(self.conv(x), approximate=False).mean(axis=(1, 2)))


def test_guided_backprop_warns_without_relus(cnn_random, digits):
    """A GELU model: guided backprop would silently be the plain gradient, so it warns and
    names what it found; a ReLU model does not warn."""
    p = probe_lib.from_model(_GeluNet(nnx.Rngs(0)))
    x = np.asarray(jax.random.uniform(KEY, (2, 6, 6, 1)))
    with pytest.warns(RuntimeWarning, match=r"no ReLU to rewrite.*'erfc?'"):
        gb = A.guided_backprop(p, p.params, x, 0).map
    np.testing.assert_allclose(gb, A.saliency(p, p.params, x, 0, abs=False).map, rtol=1e-5,
                               atol=1e-7)
    with warnings.catch_warnings():  # two digits: the shared table's shapes, compiled there
        warnings.simplefilter("error", RuntimeWarning)
        A.guided_backprop(cnn_random, cnn_random.params, digits[0][:2], digits[1][:2])
