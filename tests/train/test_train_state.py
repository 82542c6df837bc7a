"""Training keeps all model state: BatchNorm statistics and RNG counters move, are saved,
restored exactly, and survive a killed run (NNX, and Linen through the registry's bridge)."""
import json
import signal
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxviz import registry, train
from jaxviz.train.checkpoint import storable_state

from tests.helpers.state_models import BNNet, SHAPE, bn_net, toy_data  # noqa: I001 (tests/ is on sys.path)

TESTS = Path(__file__).resolve().parents[2]  # the repository root: tests.helpers is importable
CONFIG = train.TrainConfig(model="tests.helpers.state_models:bn_resnet", epochs=2, batch_size=16, shift=0,
                           learning_rate=1e-2, seed=1)
NNX_CONFIG = train.TrainConfig(model="tests.helpers.state_models:bn_net", epochs=1, batch_size=16, shift=0)


@pytest.fixture(scope="module")
def data():
    return toy_data()


@pytest.fixture(scope="module")
def linen_run(data, tmp_path_factory):
    """The Linen BN ResNet trained through the registry's bridge, with a run directory."""
    run = tmp_path_factory.mktemp("linen_run")
    built = registry.build(CONFIG.model, CONFIG.seed)
    return built, train.fit(CONFIG, data, run, quiet=True, model=built.model), run


def _stats(model):
    return {k: np.asarray(v) for k, v in _flat(nnx.state(model, nnx.BatchStat)).items()}


def _flat(state) -> dict:
    return {jax.tree_util.keystr(k): v for k, v in
            jax.tree_util.tree_flatten_with_path(storable_state(state))[0]}


def test_one_step_updates_batchnorm_statistics_as_an_independent_computation(data):
    """After one step from mean 0 / var 1, the running statistics are momentum-weighted
    with the batch statistics of the conv output, computed here with lax.conv."""
    model = BNNet(nnx.Rngs(0))
    trainable, params = train.split_model(model)
    kernel, bias = np.asarray(model.conv.kernel[...]), np.asarray(model.conv.bias[...])
    x, y = jnp.asarray(data.x_train[:16]), jnp.asarray(data.y_train[:16])
    conv = jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC")) + bias
    opt = train.make_optimizer(train.TrainConfig(epochs=1), 1)
    _, rest, *_ = train.jitted_train_step(trainable.graphdef, opt, 0, params, trainable.rest,
                                          opt.init(params), x, y, jax.random.key(0))
    got = _flat(rest)
    np.testing.assert_allclose(got["['bn']['mean']"], 0.1 * np.mean(conv, (0, 1, 2)),
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got["['bn']['var']"], 0.9 + 0.1 * np.var(conv, (0, 1, 2)),
                               rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kind", ["nnx", "linen"])
def test_running_statistics_move_away_from_zero_and_one(kind, data, linen_run):
    if kind == "nnx":
        model = train.fit(NNX_CONFIG, data, quiet=True, model=bn_net(0)).model
    else:
        model = linen_run[1].model
    stats = _stats(model)
    means = [v for k, v in stats.items() if k.endswith("['mean']")]
    variances = [v for k, v in stats.items() if k.endswith("['var']")]
    assert means and len(means) == len(variances)
    assert all(np.abs(m).max() > 1e-2 for m in means)
    assert all(np.abs(v - 1).max() > 1e-2 for v in variances)


def test_own_dropout_rngs_draw_a_new_mask_every_step(data):
    """A model holding its own dropout Rngs: the counter the step returns changes the mask;
    the step's key does not (the same state gives the same mask)."""
    trainable, params = train.split_model(bn_net(0))
    opt = train.make_optimizer(train.TrainConfig(epochs=1), 4)
    x, y = jnp.asarray(data.x_train[:16]), jnp.asarray(data.y_train[:16])
    copy = lambda tree: jax.tree.map(jnp.copy, tree)  # noqa: E731 (the step donates its inputs)
    rests, p, rest, o = [copy(trainable.rest)], params, trainable.rest, opt.init(params)
    for step in range(2):
        p, rest, o, *_ = train.jitted_train_step(trainable.graphdef, opt, 0, p, rest, o, x, y,
                                                 jax.random.key(step))
        rests.append(copy(rest))
    # Read each mask with the same (final) parameters so only the state differs.
    logits = [np.asarray(train.train_forward(trainable.graphdef, p, r, x, jax.random.key(9))[0])
              for r in rests]
    for i in range(3):
        for j in range(i):
            assert not np.array_equal(logits[i], logits[j]), (i, j)
    again = train.train_forward(trainable.graphdef, p, rests[1], x, jax.random.key(5))[0]
    np.testing.assert_array_equal(again, logits[1])


def test_restored_linen_model_gives_bitwise_identical_inference_logits(data, linen_run):
    built, result, run = linen_run
    fresh = registry.build(CONFIG.model, seed=7)  # other weights, statistics at 0 / 1
    loaded, config = train.load_trained(run, model=fresh.model)
    assert config == CONFIG
    x = jnp.asarray(data.x_val)
    np.testing.assert_array_equal(loaded(x, train=False), result.model(x, train=False))
    # Independently of jaxviz's call path: Linen's own apply on the restored variables.
    variables = {"params": nnx.to_pure_dict(nnx.state(loaded, nnx.Param)),
                 "batch_stats": nnx.to_pure_dict(nnx.state(loaded, nnx.BatchStat))}
    probe = registry.to_probe(fresh, loaded)
    np.testing.assert_array_equal(probe(probe.params, x),
                                  built.linen.apply(variables, x, train=False))
    # The statistics matter: the same weights with statistics 0 / 1 give other logits.
    reset = {**variables, "batch_stats": jax.tree_util.tree_map_with_path(
        lambda k, a: (jnp.ones_like if "var" in jax.tree_util.keystr(k) else jnp.zeros_like)(a),
        variables["batch_stats"])}
    assert not np.allclose(built.linen.apply(reset, x, train=False), probe(probe.params, x))
    # The accuracy training reported is the restored model's in inference mode.
    acc = float(np.mean(np.argmax(probe(probe.params, x), -1) == data.y_val))
    assert acc == result.metrics[-1]["val_accuracy"]


def test_restored_nnx_model_gives_bitwise_identical_logits_and_rng_state(data, tmp_path):
    result = train.fit(NNX_CONFIG, data, tmp_path, quiet=True, model=bn_net(0))
    loaded, _ = train.load_trained(tmp_path, model=bn_net(3))
    x = jnp.asarray(data.x_val)
    np.testing.assert_array_equal(loaded(x), result.model(x))
    assert _flat(nnx.state(loaded, nnx.Not(nnx.Param))).keys() == {
        "['bn']['mean']", "['bn']['var']", "['drop']['rngs']['count']", "['drop']['rngs']['key']"}
    for k, v in _flat(nnx.state(result.model, nnx.Not(nnx.Param))).items():
        np.testing.assert_array_equal(_flat(nnx.state(loaded, nnx.Not(nnx.Param)))[k], v)


def test_strict_restore_names_the_first_state_mismatch(data, tmp_path):
    train.fit(NNX_CONFIG, data, tmp_path, quiet=True, model=bn_net(0))
    other = bn_net(0)
    other.drop = nnx.Dropout(0.25)  # same parameters, no RNG stream of its own
    with pytest.raises(ValueError, match=r"state entry \['drop'\]\['rngs'\]\['count'\] is "
                                         r"not in the model"):
        train.load_trained(tmp_path, model=other)
    wider = BNNet(nnx.Rngs(0), width=7)
    with pytest.raises(ValueError, match=r"parameter \['bn'\]\['bias'\] is \(6,\) float32 in "
                                         r"the checkpoint, \(7,\)"):
        train.load_trained(tmp_path, model=wider)


_KILLED_RUN = """
import json, os, signal, sys
sys.path.insert(0, {tests!r})
from jaxviz import train
from jaxviz.train import loop
from tests.helpers import state_models

config = train.TrainConfig(**json.loads(sys.argv[1]))
data = state_models.toy_data()
calls = []
step = loop.jitted_train_step

def step_then_die(*args):  # SIGKILL this process in the middle of epoch 2
    calls.append(1)
    if len(calls) == {kill_at}:
        os.kill(os.getpid(), signal.SIGKILL)
    return step(*args)

loop.jitted_train_step = step_then_die
train.fit(config, data, sys.argv[2], quiet=True)
"""


def test_resume_after_a_killed_process_equals_the_uninterrupted_run(data, tmp_path):
    """A real process is SIGKILLed in the middle of epoch 2; resuming from its epoch-1
    checkpoint ends with the parameters, BatchNorm statistics and metrics of a run never
    stopped."""
    config = train.TrainConfig(model="tests.helpers.state_models:bn_resnet", epochs=3, batch_size=16,
                               shift=1, seed=2)
    steps = len(data.x_train) // config.batch_size
    killed = tmp_path / "killed"
    code = _KILLED_RUN.format(tests=str(TESTS), kill_at=steps + steps // 2)
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(config.to_dict()),
                           str(killed)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert train.CheckpointStore(killed).latest() == 1
    assert len(train.CheckpointStore(killed).read_metrics()) == 1

    resumed = train.fit(config, data, killed, resume=True, quiet=True)
    straight = train.fit(config, data, tmp_path / "straight", quiet=True)
    assert resumed.resumed_from == 1
    for name, a in (("params", nnx.Param), ("state", nnx.Not(nnx.Param))):
        got, want = _flat(nnx.state(resumed.model, a)), _flat(nnx.state(straight.model, a))
        assert got.keys() == want.keys() and got, name
        for k in want:
            np.testing.assert_array_equal(got[k], want[k], err_msg=f"{name} {k}")
    timeless = lambda ms: [{k: v for k, v in m.items() if k != "seconds"} for m in ms]  # noqa: E731
    assert timeless(resumed.metrics) == timeless(straight.metrics)
