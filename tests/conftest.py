"""Shared fixtures: small models, a briefly trained MnistCNN, and the bundled digits."""
import logging
from types import SimpleNamespace

import jax
import numpy as np
import pytest
from flax import nnx

from jaxviz.core import probe as probe_lib
from jaxviz.data import load_bundled
from jaxviz.models import MnistCNN, ResidualCNN
from tests.helpers import xla


@pytest.fixture(scope="session")
def mnist():
    return load_bundled()


@pytest.fixture(scope="session")
def digits(mnist):
    """8 validation digits, one per class 0..7: x (8, 28, 28, 1) float32, y (8,) int32."""
    idx = [int(np.flatnonzero(mnist.y_val == c)[0]) for c in range(8)]
    return mnist.x_val[idx], mnist.y_val[idx]


@pytest.fixture(scope="session")
def cnn_random():
    """MnistCNN with random weights, as a Probe."""
    return probe_lib.from_model(MnistCNN(rngs=nnx.Rngs(0)))


@pytest.fixture(scope="session")
def resnet_random():
    """The Linen ResidualCNN (width 8) with random weights on 28x28x1, as a Probe."""
    module = ResidualCNN(width=8)
    variables = module.init(jax.random.key(0), np.zeros((1, 28, 28, 1), np.float32))
    return probe_lib.from_model(module, variables, input_shape=(28, 28, 1))


@pytest.fixture(scope="session")
def trained_mnist(mnist):
    """MnistCNN trained briefly on the bundled digits (same seed -> same weights).

    Attributes: probe, params, x_val, y_val, accuracy (validation).
    """
    from jaxviz.train import TrainConfig, fit

    with xla.optimized():  # hundreds of steps of one program: the passes pay off
        result = fit(TrainConfig(epochs=2, seed=0), mnist, run_dir=None, quiet=True)
    p = probe_lib.from_model(result.model)
    return SimpleNamespace(probe=p, params=p.params, x_val=mnist.x_val, y_val=mnist.y_val,
                           accuracy=result.metrics[-1]["val_accuracy"])


# Eager helpers the tests themselves run (casts, a vmapped key derivation in a fresh lambda):
# they compile on their own schedule and are not the analysis.
EAGER = ("jit(<lambda>)", "jit(convert_element_type)")


@pytest.fixture
def compiles(caplog):
    """compiles(call, *shapes) -> the compile log lines, during call(), of programs that take
    an array of one of `shapes` (e.g. "float32[2,28,28,1]", "int32[2]"), eager helpers
    excluded. Pass the targets' shape too: a method whose map does not depend on the pixels
    (deconvnet through convs and ReLUs) compiles a program without the images."""
    def during(call, *shapes: str):
        with jax.log_compiles(), caplog.at_level(logging.DEBUG):
            caplog.clear()
            call()
        return [m for m in (r.getMessage() for r in caplog.records)
                if "Compiling" in m and any(s in m for s in shapes)
                and not any(e in m for e in EAGER)]
    return during
