"""The data-set evaluation's subprocess side (started by tests/evaluate/test_evaluate_dataset.py):

    python tests/helpers/evaluate_dataset_child.py sharded   # with 4 simulated devices: one device
                                                      # vs the mesh, prints {cell: max diff}
    python tests/helpers/evaluate_dataset_child.py run OUT   # run_dataset into OUT, a batch every
                                                      # SLOW seconds (the test kills it)
"""
import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jaxviz.core import probe as probe_lib

# A keyed method and a keyed metric that re-runs it: per-image keys through padding.
METHODS = ["smoothgrad"]
METRICS = ["deletion", "max_sensitivity"]
OPTIONS = {"deletion": {"pixels_per_step": 16}, "max_sensitivity": {"n_samples": 2}}
METHOD_OPTIONS = {"smoothgrad": {"n_samples": 3}}
N_BATCHES, BATCH = 6, 3
SLOW = 1.0


class Tiny(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(2, (3, 3), name="conv")(x))
        return nn.Dense(3, name="head")(x.reshape(x.shape[0], -1))


def model():
    module = Tiny()
    return probe_lib.from_model(module, module.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1))),
                                input_shape=(8, 8, 1))


def batches(n_batches=N_BATCHES, size=BATCH, slow=0.0):
    """The same batches every time: (images (size, 8, 8, 1), targets (size,))."""
    for i in range(n_batches):
        if slow and i >= 2:
            time.sleep(slow)
        x = jax.random.uniform(jax.random.key(100 + i), (size, 8, 8, 1))
        yield x, jnp.arange(size) % 3


def settings():
    return dict(methods=METHODS, metrics=METRICS, method_options=METHOD_OPTIONS,
                metric_options=OPTIONS)


def sharded():
    from jaxviz import sharding
    from jaxviz.evaluate import dataset
    assert len(jax.devices()) == 4, jax.devices()
    probe = model()
    kw = dict(settings(), key=jax.random.key(1))
    # Two batches of 6 images: 6 does not divide over 4 devices, so each is padded (to 8,
    # with per-image keys); one batch shape compiles each program once.
    data = list(batches(2, 6))
    one = dataset.evaluate_batches(probe, probe.params, data, **kw)
    mesh = dataset.evaluate_batches(probe, probe.params, data, mesh=sharding.batch_mesh(), **kw)
    print(json.dumps({f"{m}|{k}": float(np.max(np.abs(one[m, k].scores - mesh[m, k].scores)))
                      for m, k in one.cells}))


def run(out):
    from jaxviz.report.evaluate_run import run_dataset
    probe = model()
    run_dataset(probe, probe.params, batches(slow=SLOW), out, seed=3, **settings())


if __name__ == "__main__":
    sharded() if sys.argv[1] == "sharded" else run(sys.argv[2])
