"""model_parameter_randomisation on BatchNorm models: every step is a valid model, a NaN map
is a NaN score (never a good one), and the cascade visits each parameter once."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from jaxviz import attribution as A
from jaxviz.attribution import sanity
from jaxviz.core import probe as probe_lib
from jaxviz.evaluate import randomisation as RZ
from tests.helpers.family_models import Member, nnx_bn_dropout


class Block(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.BatchNorm(use_running_average=True, name="bn")(nn.Conv(4, (3, 3), name="conv")(x))
        return x + nn.relu(h)


class LinenBN(nn.Module):
    """x: (N, 8, 8, 1) -> (N, 4): stem conv + BatchNorm, two block modules, a head."""

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.BatchNorm(use_running_average=True, name="stem_bn")(
            nn.Conv(4, (3, 3), name="stem")(x)))
        x = Block(name="block2")(Block(name="block1")(x))
        return nn.Dense(4, name="head")(x.mean((1, 2)))


@functools.cache
def linen_bn() -> Member:
    """The Linen net with running statistics as after training (mean 0.1, var 0.5)."""
    module, shape = LinenBN(), (8, 8, 1)
    v = jax.jit(module.init)(jax.random.key(0), jnp.zeros((1, *shape)))
    stats = jax.tree_util.tree_map_with_path(lambda path, a: np.full(
        a.shape, 0.5 if path[-1].key == "var" else 0.1, np.float32), v["batch_stats"])
    return Member(probe_lib.from_model(module, {**v, "batch_stats": stats}, input_shape=shape),
                  None, shape)


def _inputs(member, n=3):
    x = jax.random.uniform(jax.random.key(1), (n, *member.shape))
    t = jnp.arange(n) % 4
    a = A.display_map(A.get("saliency"), A.attribute("saliency", member.probe,
                                                       member.probe.params, x, t))
    return x, t, a


def test_nnx_batchnorm_model_gives_a_real_score():
    """Defect: on an NNX BatchNorm model (trained-like running statistics, a Dropout with its
    own Rngs) the randomised variances went negative, the maps NaN and the similarity 0, a
    falsely good score (or the RNG counter was redrawn as noise: a crash)."""
    m = nnx_bn_dropout()
    x, t, a = _inputs(m)
    res = RZ.model_parameter_randomisation(m.probe, m.probe.params, x, t, a, method="saliency")
    curve = np.asarray(res.curve)
    assert curve.shape == (3, 5) and np.isfinite(curve).all(), curve
    assert (curve != 0).all(), curve  # saliency maps are never constant here


def test_nan_maps_give_a_nan_score(monkeypatch):
    """Defect: NaN maps of a randomised model scored similarity 0 (the best score)."""
    m = linen_bn()
    x, t, a = _inputs(m)
    real = sanity.randomize_layers
    monkeypatch.setattr(sanity, "randomize_layers", lambda p, layers, key: jax.tree.map(
        lambda v: np.asarray(v) * np.nan, real(p, layers, key)) if len(layers) > 1
        else real(p, layers, key))
    with pytest.warns(RuntimeWarning, match=r"saliency.*images \[0, 1, 2\]"):
        res = RZ.model_parameter_randomisation(m.probe, m.probe.params, x, t, a,
                                               method="saliency",
                                               layers=["head", "block2.bn", "block2.conv"])
    curve = np.asarray(res.curve)
    assert np.isfinite(curve[:, 0]).all() and np.isnan(curve[:, 1:]).all()
    assert np.isnan(np.asarray(res.scores)).all()


def test_linen_cascade_visits_each_parameter_once():
    """Defect: blocks were steps of their own (all their layers at once), so the steps of the
    layers inside them changed nothing; Linen's batch_stats were never reset."""
    m = linen_bn()
    x, t, a = _inputs(m, 2)
    res = RZ.model_parameter_randomisation(m.probe, m.probe.params, x, t, a, method="saliency")
    assert res.curve.shape == (2, 7)  # 9 layers with parameters, two of them blocks
    layers = sanity.cascade_layers(m.probe, m.probe.params, x.shape)
    assert layers == ["head", "block2.bn", "block2.conv", "block1.bn", "block1.conv",
                      "stem_bn", "stem"]
    with pytest.raises(ValueError, match="already randomised"):
        RZ.model_parameter_randomisation(m.probe, m.probe.params, x, t, a, method="saliency",
                                         layers=["block2", "block2.conv"])
