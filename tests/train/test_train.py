import json

import jax
import numpy as np
import pytest
from flax import nnx

from jaxviz import train
from jaxviz.data import Dataset
from jaxviz.models import MnistCNN

SMALL = train.TrainConfig(epochs=2, batch_size=64, seed=3)


@pytest.fixture(scope="module")
def small(mnist):
    return Dataset(mnist.x_train[:128], mnist.y_train[:128], mnist.x_val[:64], mnist.y_val[:64],
                   "small")


def _leaves(params):
    return [np.asarray(a) for a in jax.tree.leaves(params)]


def test_training_is_deterministic_and_learns(small):
    a = train.fit(SMALL, small, quiet=True)
    b = train.fit(SMALL, small, quiet=True)
    for x, y in zip(_leaves(a.params), _leaves(b.params)):
        np.testing.assert_array_equal(x, y)  # bitwise
    assert a.metrics[-1]["train_loss"] < a.metrics[0]["train_loss"]
    assert a.metrics[-1]["val_accuracy"] > 0.2


def test_resume_after_a_kill_gives_the_same_parameters(small, tmp_path):
    straight = train.fit(SMALL, small, tmp_path / "a", quiet=True)
    # "killed" after epoch 1: a run configured identically, stopped by raising in its logger.
    def die(record):
        if record["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train.fit(SMALL, small, tmp_path / "b", quiet=True, log=die)
    assert train.CheckpointStore(tmp_path / "b").latest() == 1
    resumed = train.fit(SMALL, small, tmp_path / "b", resume=True, quiet=True)
    assert resumed.resumed_from == 1
    for x, y in zip(_leaves(straight.params), _leaves(resumed.params)):
        np.testing.assert_array_equal(x, y)
    lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["epoch"] for l in lines] == [1, 2]


def test_checkpoint_roundtrip_and_mismatches(small, tmp_path):
    result = train.fit(SMALL, small, tmp_path, quiet=True)
    model, config = train.load_trained(tmp_path)
    assert config == SMALL
    x = small.x_val[:4]
    np.testing.assert_allclose(model(x), result.model(x), rtol=1e-6)
    with pytest.raises(ValueError, match=r"parameter \['preds'\]\['bias'\] is \(10,\)"):
        train.load_trained(tmp_path, model=MnistCNN(num_classes=5, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="different config"):
        train.fit(train.TrainConfig(epochs=2, batch_size=32, seed=3), small, tmp_path,
                  resume=True, quiet=True)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train.load_trained(tmp_path / "missing")


def test_half_written_checkpoint_is_ignored_and_cleaned(small, tmp_path):
    def die(record):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train.fit(SMALL, small, tmp_path, quiet=True, log=die)
    # What a save killed half-way leaves: a temporary directory next to the good checkpoint.
    junk = tmp_path / "checkpoints" / "2.orbax-checkpoint-tmp-123"
    junk.mkdir()
    (junk / "partial").write_bytes(b"\x00" * 10)
    assert train.CheckpointStore(tmp_path).latest() == 1
    train.fit(SMALL, small, tmp_path, quiet=True, overwrite=True)  # asked: a fresh run
    assert not junk.exists()
    model, _ = train.load_trained(tmp_path)
    assert model is not None


def test_nan_loss_stops_with_the_step(small, tmp_path):
    bad = small._replace(x_train=np.full_like(small.x_train, np.nan))
    with pytest.raises(FloatingPointError, match="NaN/inf at step 0"):
        train.fit(SMALL, bad, tmp_path, quiet=True)


def test_unwritable_run_dir_is_one_clear_error(small, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(PermissionError, match="not writable"):
        train.fit(SMALL, small, blocker / "run", quiet=True)


def test_bad_config_is_refused(small):
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        train.fit(train.TrainConfig(epochs=0), small, quiet=True)
