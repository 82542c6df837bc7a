"""The model-randomisation sanity check on models with state: every randomised layer stays a
valid layer (no NaN), a NaN is never read as a correlation of 0, the cascade visits each
parameter once, NNX and Linen are randomised the same way, and a method's noise does not
depend on which other methods are checked."""
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import nnx

from jaxviz.attribution import sanity
from jaxviz.core import probe as probe_lib

SHAPE = (8, 8, 1)


class NNXBN(nnx.Module):
    """x: (N, 8, 8, 1) -> (N, 3); two conv + BatchNorm + relu blocks, trained-like stats."""

    def __init__(self, rngs):
        self.conv1 = nnx.Conv(1, 4, (3, 3), rngs=rngs)
        self.bn1 = nnx.BatchNorm(4, rngs=rngs)
        self.conv2 = nnx.Conv(4, 4, (3, 3), rngs=rngs)
        self.bn2 = nnx.BatchNorm(4, rngs=rngs)
        self.head = nnx.Linear(4, 3, rngs=rngs)
        for bn in (self.bn1, self.bn2):  # running statistics as after training
            bn.mean[...] = jnp.linspace(-0.2, 0.2, 4)
            bn.var[...] = jnp.linspace(0.05, 0.2, 4)

    def __call__(self, x):
        h = nnx.relu(self.bn1(self.conv1(x)))
        return self.head(nnx.relu(self.bn2(self.conv2(h))).mean((1, 2)))


class LinenBlock(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.Conv(4, (3, 3), name="conv")(x)
        return x + nn.relu(nn.BatchNorm(use_running_average=True, name="bn")(h))


class LinenBN(nn.Module):
    """x: (N, 8, 8, 1) -> (N, 3); a stem, one block module (conv + BatchNorm), a head."""

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.BatchNorm(use_running_average=True, name="stem_bn")(
            nn.Conv(4, (3, 3), name="stem")(x)))
        x = LinenBlock(name="block")(x)
        return nn.Dense(3, name="head")(x.mean((1, 2)))


def _nnx_probe():
    model = NNXBN(nnx.Rngs(0))
    model.eval()
    return probe_lib.from_model(model, input_shape=SHAPE)


def _linen_probe():
    module = LinenBN()
    v = module.init(jax.random.key(0), jnp.zeros((1, *SHAPE)))
    v = {**v, "batch_stats": jax.tree.map(lambda a: a + 0.3, v["batch_stats"])}
    return probe_lib.from_model(module, v, input_shape=SHAPE)


def _data(n=4):
    return jax.random.uniform(jax.random.key(1), (n, *SHAPE)), jnp.arange(n) % 3


def _bn_values(probe, params, layer):
    """{name: array} of a BatchNorm layer's scale, mean and var, for NNX or Linen params."""
    if probe.kind == "nnx":
        d = nnx.to_pure_dict(params)
        for part in layer.split("."):
            d = d[part]
        return {k: np.asarray(d[k]) for k in ("scale", "mean", "var")}
    p, s = params["params"], params["batch_stats"]
    for part in layer.split("."):
        p, s = p[part], s[part]
    return {"scale": np.asarray(p["scale"]), "mean": np.asarray(s["mean"]),
            "var": np.asarray(s["var"])}


@pytest.mark.parametrize("make, bn", [(_nnx_probe, "bn2"), (_linen_probe, "block.bn")])
def test_randomised_batchnorm_stays_a_valid_layer(make, bn):
    """Defect: NNX BatchNorm running variances were redrawn as Gaussian noise (some negative:
    NaN logits), while Linen's batch_stats were not touched at all. Both now reset the
    statistics to BatchNorm's initial values and draw a positive scale, the same way."""
    probe = make()
    x, _ = _data()
    layers = sanity.layers_with_params(probe, probe.params, x.shape)
    for key in range(3):
        p = sanity.randomize_layers(probe.params, layers, jax.random.key(key))
        v = _bn_values(probe, p, bn)
        np.testing.assert_array_equal(v["mean"], 0.0)
        np.testing.assert_array_equal(v["var"], 1.0)
        assert (v["scale"] > 0).all(), v["scale"]
        assert not np.allclose(v["scale"], _bn_values(probe, probe.params, bn)["scale"])
        assert np.isfinite(np.asarray(probe(p, x))).all()


def test_rank_correlation_keeps_nan():
    """Defect: a NaN map correlated 0.0 with the trained map, so a NaN model read as a pass.
    A constant map still correlates 0 (a blank CAM of a randomised model is a real map)."""
    a = np.random.default_rng(0).random((3, 5, 5))
    b = a.copy()
    b[1, 2, 2] = np.nan
    r = sanity.rank_correlation(a, b)
    np.testing.assert_allclose(r[[0, 2]], 1.0)
    assert np.isnan(r[1])
    np.testing.assert_array_equal(sanity.rank_correlation(a, np.zeros_like(a)), 0.0)


@pytest.mark.parametrize("make", [_nnx_probe, _linen_probe])
def test_cascade_on_batchnorm_models_has_no_nan(make):
    """Defect: on an NNX BatchNorm model the cascade returned [0.69, 0, 0, ...] (NaN maps
    read as 0): every step now gives a finite correlation, NNX and Linen alike."""
    probe = make()
    x, t = _data()
    r = sanity.cascading_randomization(probe, probe.params, x, t, key=jax.random.key(0))
    for m in ("saliency", "grad_cam"):
        assert r[m].shape == (len(r["layers"]),) and np.isfinite(r[m]).all(), (m, r[m])
    # These saliency maps are never constant, so an exact 0 could only be a NaN read as 0.
    assert (r["saliency"] != 0).all(), r["saliency"]


def test_cascade_visits_each_parameter_once():
    """Defect: the cascade randomised a block as a whole and then its children again, so
    those later steps changed nothing. Now every step changes parameters no earlier step did,
    and every parameter is randomised by the last step."""
    probe = _linen_probe()
    x, t = _data()
    key = jax.random.key(0)
    layers = sanity.cascading_randomization(probe, probe.params, x, t, key=key,
                                            methods=("saliency",))["layers"]
    assert layers == ["head", "block.bn", "block.conv", "stem_bn", "stem"]
    prev = jax.tree.leaves(probe.params)
    for i in range(len(layers)):
        cur = jax.tree.leaves(sanity.randomize_layers(probe.params, layers[:i + 1], key))
        assert any(not np.array_equal(a, b) for a, b in zip(prev, cur)), layers[i]
        prev = cur
    for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(probe.params)[0], cur):
        fresh_bias = jax.tree_util.keystr(path).endswith("['bias']") and not np.any(a)
        assert fresh_bias or not np.array_equal(a, b), jax.tree_util.keystr(path)
    with pytest.raises(ValueError, match="block.conv.*already randomised.*block"):
        sanity.cascading_randomization(probe, probe.params, x, jnp.zeros(4, int),
                                       key=key, layers=["head", "block", "block.conv"])


def test_rng_state_is_not_a_layer_to_randomise():
    """Defect: an NNX Dropout holding its own Rngs was listed as a layer with parameters and
    its uint32 RNG counter was redrawn as normal noise (a crash)."""
    from tests.helpers.family_models import nnx_bn_dropout
    m = nnx_bn_dropout()
    x = jax.random.uniform(jax.random.key(0), (2, *m.shape))
    layers = sanity.layers_with_params(m.probe, m.probe.params, x.shape)
    assert "drop" not in layers
    p = sanity.randomize_layers(m.probe.params, layers, jax.random.key(0))
    assert np.isfinite(np.asarray(m.probe(p, x))).all()


def test_nan_maps_are_an_explicit_nan_with_a_warning(monkeypatch):
    """Defect: NaN maps of a randomised model became a correlation of 0. A NaN now stays
    NaN in the curve and a warning names the method, the layer and the images."""
    probe = _nnx_probe()
    x, t = _data()
    real = sanity.randomize_layers

    def broken(params, layers, key):  # the model randomised down to bn2 gives NaN
        p = real(params, layers, key)
        return jax.tree.map(lambda a: np.asarray(a) * np.nan, p) if "bn2" in layers else p
    monkeypatch.setattr(sanity, "randomize_layers", broken)
    with pytest.warns(RuntimeWarning, match=r"saliency.*'bn2'.*images \[0, 1, 2, 3\]"):
        r = sanity.cascading_randomization(probe, probe.params, x, t, key=jax.random.key(0),
                                           methods=("saliency",))
    i = r["layers"].index("bn2")
    assert np.isfinite(r["saliency"][:i]).all() and np.isnan(r["saliency"][i:]).all()


def test_method_noise_does_not_depend_on_the_other_methods():
    """Defect: each method's key was folded in by its position in `methods`, so SmoothGrad's
    curve changed when another method was listed before it."""
    probe = _nnx_probe()
    x, t = _data(2)
    kw = dict(key=jax.random.key(3), layers=["head", "bn2"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        alone = sanity.cascading_randomization(probe, probe.params, x, t,
                                               methods=("smoothgrad",), **kw)
        second = sanity.cascading_randomization(probe, probe.params, x, t,
                                                methods=("saliency", "smoothgrad"), **kw)
    np.testing.assert_array_equal(alone["smoothgrad"], second["smoothgrad"])


def test_sanity_figure_marks_nan_instead_of_drawing_it():
    """Defect: a NaN step of the curve was drawn as a correlation of 0 (a flat line at 0,
    read as a pass). The figure now leaves a gap and writes NaN there."""
    from jaxviz.plot.attribution import randomization_figure
    fig = randomization_figure({"layers": ["head", "conv"], "saliency": np.array([0.5, np.nan])})
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == ["NaN"]
    ys = ax.lines[0].get_ydata()
    assert np.isnan(ys[-1]) and not np.any(np.asarray(ys[:-1]) == 0)


def test_trained_batchnorm_nets_curves_fall_without_nan():
    """Defect: on a trained NNX BatchNorm net the curve was [0.69, 0, 0, ...] (NaN read as
    0). Both the NNX net (trained by fit) and its Linen twin, briefly trained on the digits,
    now give finite curves below the untouched model's 1.0 (docs/sanity.md has the numbers
    of a longer run, `python -m experiments.sanity_batchnorm`)."""
    from experiments import sanity_batchnorm
    res = sanity_batchnorm.run(n_train=128, epochs=1, n_images=2, n_val=32)
    for kind in ("nnx", "linen"):
        r = res[kind]
        assert len(r["layers"]) == 5, r["layers"]
        for m in ("saliency", "grad_cam"):
            assert np.isfinite(r[m]).all() and max(r[m]) < 0.95, (kind, m, r[m])
        assert r["saliency"][-1] < 0.5, (kind, r["saliency"])
