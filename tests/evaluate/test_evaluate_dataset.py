"""The table over a data set: batches give the whole set's numbers, finished batches are
not recomputed, 4 simulated devices give one device's numbers, a killed run resumes."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxviz import attribution as A
from jaxviz import evaluate as ev
from jaxviz.evaluate import dataset
from jaxviz.report import evaluate_run

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.helpers import evaluate_dataset_child as child  # noqa: E402

DETERMINISTIC = ["deletion", "sparseness", "completeness"]


def test_batches_give_the_whole_sets_numbers():
    probe = child.model()
    data = list(child.batches(2, 3))
    x = np.concatenate([b[0] for b in data])
    t = np.concatenate([b[1] for b in data])
    kw = dict(methods=["saliency"], metrics=DETERMINISTIC, key=jax.random.key(0),
              metric_options={"deletion": {"pixels_per_step": 16}})
    whole = ev.evaluate(probe, probe.params, x, t, **kw)
    parts = dataset.evaluate_batches(probe, probe.params, iter(data), **kw)
    assert parts.n_images == 6
    for m in DETERMINISTIC:
        np.testing.assert_allclose(parts["saliency", m].scores, whole["saliency", m].scores,
                                   rtol=1e-5, atol=1e-6)


def test_finished_batches_are_not_computed_again():
    probe = child.model()
    calls = []

    def counting(fn, params, images, target):
        calls.append(images.shape[0])
        return A.saliency(fn, params, images, target).map

    A.register(A.Method("counting_saliency", counting))
    try:
        kw = dict(methods=["counting_saliency"], metrics=["sparseness"], key=jax.random.key(0))
        saved = {}
        first = dataset.evaluate_batches(probe, probe.params, child.batches(3, 2),
                                         on_batch=saved.__setitem__, **kw)
        assert sorted(saved) == [0, 1, 2] and calls == [2, 2, 2]
        calls.clear()
        seen = []
        again = dataset.evaluate_batches(probe, probe.params, child.batches(3, 2),
                                         done={0: saved[0], 2: saved[2]},
                                         on_batch=lambda i, s: seen.append(i), **kw)
        assert calls == [2] and seen == [1]
        np.testing.assert_array_equal(again["counting_saliency", "sparseness"].scores,
                                      first["counting_saliency", "sparseness"].scores)
        with pytest.raises(ValueError, match="other methods or metrics"):
            dataset.evaluate_batches(probe, probe.params, child.batches(1, 2),
                                     done={0: {("x", "y"): np.zeros(2)}}, **kw)
    finally:
        A.unregister("counting_saliency")


def _child(*args, env=None, **kw):
    return subprocess.Popen([sys.executable, str(ROOT / "tests" / "helpers" / "evaluate_dataset_child.py"),
                             *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_four_simulated_devices_give_one_devices_numbers():
    env = dict(os.environ, XLA_FLAGS=os.environ.get("XLA_FLAGS", "")
               + " --xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    proc = _child("sharded", env=env)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    diffs = json.loads(out.strip().splitlines()[-1])
    assert len(diffs) == len(child.METHODS) * len(child.METRICS)
    assert max(diffs.values()) < 1e-5, diffs


def test_a_killed_run_resumes_without_recomputing_finished_batches(tmp_path):
    out = tmp_path / "run"
    proc = _child("run", str(out))
    try:
        deadline = time.time() + 300
        while not evaluate_run.batch_path(out, 1).exists():
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.time() < deadline, "the child wrote no batch in time"
            time.sleep(0.05)
        proc.kill()  # SIGKILL mid-run: no cleanup, no final table
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    finished = sorted(int(p.stem.split("_")[1]) for p in out.glob("batch_*.npz"))
    assert finished[:2] == [0, 1] and len(finished) < child.N_BATCHES
    assert not (out / "evaluate_table.json").exists()
    before = {p.name: p.read_bytes() for p in out.glob("batch_*.npz")}

    probe, logs = child.model(), []
    resumed = evaluate_run.run_dataset(probe, probe.params, child.batches(), out, seed=3,
                                       log=logs.append, **child.settings())
    scored = [int(line.split()[2]) for line in logs if " scored " in line]
    assert scored == [i for i in range(child.N_BATCHES) if i not in finished]
    assert {p: (out / p).read_bytes() for p in before} == before  # not rewritten
    fresh = evaluate_run.run_dataset(probe, probe.params, child.batches(), tmp_path / "fresh",
                                     seed=3, log=lambda s: None, **child.settings())
    for cell in fresh.cells:
        np.testing.assert_allclose(resumed[cell].scores, fresh[cell].scores, rtol=1e-6)
    assert json.loads((out / "evaluate_table.json").read_text())["cells"]
    with pytest.raises(ValueError, match="other settings"):
        evaluate_run.run_dataset(probe, probe.params, child.batches(), out, seed=4,
                                 log=lambda s: None, **child.settings())
