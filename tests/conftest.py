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
    return probe_lib.from_model(module, variables)


@pytest.fixture(scope="session")
def trained_mnist(mnist):
    """MnistCNN trained briefly on the bundled digits (same seed -> same weights).

    Attributes: probe, params, x_val, y_val, accuracy (validation).
    """
    from jaxviz.train import TrainConfig, fit

    result = fit(TrainConfig(epochs=2, seed=0), mnist, run_dir=None, quiet=True)
    p = probe_lib.from_model(result.model)
    return SimpleNamespace(probe=p, params=p.params, x_val=mnist.x_val, y_val=mnist.y_val,
                           accuracy=result.metrics[-1]["val_accuracy"])


@pytest.fixture
def compiles(caplog):
    """compiles(call, shape) -> the compile log lines, during call(), of programs taking an
    array of `shape` (e.g. "float32[2,28,28,1]"); tiny eager helpers that never see the
    analysed images (key splits, casts) don't count."""
    def during(call, shape: str):
        with jax.log_compiles(), caplog.at_level(logging.DEBUG):
            caplog.clear()
            call()
        return [m for m in (r.getMessage() for r in caplog.records)
                if "Compiling" in m and shape in m]
    return during


@pytest.fixture
def policy():
    """jaxviz.core.compile, with the compile policy restored after the test."""
    from jaxviz.core import compile as compile_lib

    old = compile_lib.config()
    yield compile_lib
    compile_lib.configure(old)
