"""BatchNorm running statistics: recomputed by `fit` after training and by the public
`recalibrate_batchnorm` (NNX and Linen), checked against independent computations, and a
warning when a model loaded for analysis carries stale ones."""
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxviz import cli, io, train
from tests.helpers.state_models import BNNet, BNResNet, bn_net, toy_data

CONFIG = train.TrainConfig(model="tests.helpers.state_models:bn_net", epochs=1, batch_size=16,
                           shift=0, learning_rate=3e-2)


class MomentumNet(nnx.Module):
    """conv -> BatchNorm (Flax's default momentum 0.99) -> relu -> mean -> head.
    x: (N, 8, 8, 3) -> (N, 3)."""

    input_shape = (8, 8, 3)

    def __init__(self, rngs: nnx.Rngs):
        self.conv = nnx.Conv(3, 8, (3, 3), rngs=rngs)
        self.bn = nnx.BatchNorm(8, rngs=rngs)
        self.head = nnx.Linear(8, 3, rngs=rngs)

    def __call__(self, x):
        return self.head(nnx.relu(self.bn(self.conv(x))).mean(axis=(1, 2)))


def momentum_net(seed: int) -> MomentumNet:
    return MomentumNet(nnx.Rngs(seed))


@pytest.fixture(scope="module")
def data():
    return toy_data(n_train=96, n_val=48)


@pytest.fixture(scope="module")
def trained(data):
    """BNNet (CONFIG.model) trained 3 epochs; fit recalibrates its statistics."""
    return train.fit(CONFIG.__class__(**{**CONFIG.to_dict(), "epochs": 3}), data, quiet=True,
                     model=bn_net(0))


def _conv(x, kernel, bias=0.0):
    return np.asarray(jax.lax.conv_general_dilated(
        jnp.asarray(x), jnp.asarray(kernel), (1, 1), "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"))) + bias


def _stats(model) -> dict:
    stats = nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))
    return {jax.tree_util.keystr(k): np.asarray(v)
            for k, v in jax.tree_util.tree_flatten_with_path(stats)[0]}


def test_nnx_statistics_are_the_average_of_the_batch_statistics(data):
    """Against lax.conv in numpy: the mean over a seeded pass of batches of 32 of each
    batch's mean and biased variance; the input model and its RNG state are untouched."""
    model = BNNet(nnx.Rngs(0))
    rng_before = np.asarray(jax.random.key_data(model.drop.rngs.key[...]))
    new = train.recalibrate_batchnorm(model, data.x_train, batch_size=32, seed=5)
    h = _conv(data.x_train, model.conv.kernel[...], model.conv.bias[...])
    order = np.random.default_rng(5).permutation(len(h))
    parts = [h[order[i:i + 32]] for i in range(0, len(h), 32)]
    np.testing.assert_allclose(new.bn.mean[...], np.mean([p.mean((0, 1, 2)) for p in parts], 0),
                               atol=1e-6)
    np.testing.assert_allclose(new.bn.var[...], np.mean([p.var((0, 1, 2)) for p in parts], 0),
                               rtol=1e-5)
    np.testing.assert_array_equal(model.bn.mean[...], 0.0)  # the input is not changed
    assert new.bn.momentum == model.bn.momentum == 0.9
    np.testing.assert_array_equal(jax.random.key_data(new.drop.rngs.key[...]), rng_before)
    assert int(new.drop.rngs.count[...]) == int(model.drop.rngs.count[...])


def test_linen_statistics_from_module_and_variables(data):
    """A Linen module with its variables gets new batch_stats, the stem's equal to the
    statistics of its conv over the whole set (one batch); params are kept."""
    module = BNResNet()
    variables = module.init(jax.random.key(0), data.x_train[:2], train=False)
    new = train.recalibrate_batchnorm(module, data.x_train, variables=variables,
                                      batch_size=len(data.x_train))
    h = _conv(data.x_train, variables["params"]["stem"]["kernel"])
    np.testing.assert_allclose(new["batch_stats"]["stem_bn"]["mean"], h.mean((0, 1, 2)),
                               atol=1e-6)
    np.testing.assert_allclose(new["batch_stats"]["stem_bn"]["var"], h.var((0, 1, 2)), rtol=1e-5)
    assert new["params"] is variables["params"]
    np.testing.assert_array_equal(variables["batch_stats"]["stem_bn"]["mean"], 0.0)
    with pytest.raises(ValueError, match="needs variables= with a 'batch_stats'"):
        train.recalibrate_batchnorm(module, data.x_train)


def test_fit_replaces_stale_running_statistics(data, tmp_path):
    """fit left a BatchNorm model with running statistics of momentum 0.99 after a short
    run (far from its weights' statistics); now the returned model, the last checkpoint
    and the metrics are the recalibrated model's, with the accuracy before recorded."""
    result = train.fit(CONFIG, data, tmp_path, quiet=True, model=momentum_net(0))
    again = train.recalibrate_batchnorm(result.model, data.x_train, batch_size=16,
                                        seed=CONFIG.seed)
    for k, v in _stats(again).items():
        np.testing.assert_allclose(_stats(result.model)[k], v, rtol=1e-6, atol=1e-7, err_msg=k)
    stale = train.fit(CONFIG, data, quiet=True, model=momentum_net(0), recalibrate=False)
    assert not np.allclose(_stats(stale.model)["['bn']['var']"],
                           _stats(result.model)["['bn']['var']"], rtol=0.1)
    rec, last = result.recalibration, result.metrics[-1]
    assert rec["val_accuracy_before"] == stale.metrics[-1]["val_accuracy"]
    assert last["val_accuracy"] == rec["val_accuracy_after"]
    assert last["val_accuracy_before_recalibration"] == rec["val_accuracy_before"]
    loaded, _ = train.load_trained(tmp_path, model=momentum_net(1))
    assert _stats(loaded).keys() == _stats(result.model).keys()
    for k, v in _stats(result.model).items():
        np.testing.assert_array_equal(_stats(loaded)[k], v)


def _staled(model):
    """The model with running means shifted far from its batch statistics."""
    model = nnx.merge(*nnx.split(model))
    model.bn.mean[...] = model.bn.mean[...] + 5.0 * jnp.sqrt(model.bn.var[...])
    return model


def test_stale_statistics_warn_and_name_the_fix(data, trained):
    """A model whose running statistics do not match its weights was explained with no
    word; now the check warns naming recalibrate_batchnorm, and is quiet once fixed."""
    bad = _staled(trained.model)
    with pytest.warns(UserWarning, match=r"stale.*jaxviz\.train\.recalibrate_batchnorm"):
        acc = train.check_batchnorm_statistics(bad, data.x_val, data.y_val)
    assert acc["batch_statistics"] - acc["inference"] > 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fixed = train.recalibrate_batchnorm(bad, data.x_train)
        assert train.check_batchnorm_statistics(fixed, data.x_val, data.y_val)["inference"] == 1.0
        assert train.check_batchnorm_statistics(nnx.Linear(2, 2, rngs=nnx.Rngs(0)),
                                                data.x_val, data.y_val) is None


def test_cli_analysis_warns_about_stale_statistics(data, trained, tmp_path, capsys):
    """`jaxviz summary` on a checkpoint whose BatchNorm statistics are stale printed
    nothing about it; now a warning line names the fix."""
    run = tmp_path / "run"
    bad = _staled(trained.model)
    store = train.CheckpointStore(run)
    store.open(CONFIG, resume=False)
    (graphdef, rest), params = train.split_model(bad)
    opt = train.make_optimizer(CONFIG, 1)
    store.save(1, train.TrainState(params, rest, opt.init(params)), jax.random.key(0), [])
    x = np.concatenate([data.x_train, data.x_val])
    y = np.concatenate([data.y_train, data.y_val])
    np.savez(tmp_path / "d.npz", x=x, y=y)
    io.write_json(run / "data.json", {"data": f"npz:{tmp_path / 'd.npz'}"})
    with warnings.catch_warnings(record=True) as caught:  # printed if the CLI prints them
        warnings.simplefilter("always")
        assert cli.main(["summary", "--checkpoint", str(run), "--out", str(tmp_path / "s"),
                         "--quiet"]) == 0
    shown = capsys.readouterr().err + " ".join(str(w.message) for w in caught)
    assert "BatchNorm statistics look stale" in shown and "recalibrate_batchnorm" in shown
