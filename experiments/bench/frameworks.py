"""The same analyses on the seed's CNN written in Flax NNX, Equinox and Keras 3, same weights.

    python -m experiments.bench --only frameworks [--quick] [--json PATH]

Goal (docs/frameworks.md): an analysis on a Keras or Equinox model within 10% of its time
on the NNX twin. The NNX model is `jaxviz.models.MnistCNN` (random weights: speed does not
depend on them); the Keras model is the seed's own Sequential
(`experiments.seed_keras.seed_cnn`); the Equinox model is the same layers written as
Equinox writes them (one channel-first image per call, the flatten over (C, H, W)). The
NNX weights are copied into both, and the logits are checked equal before timing.

Rows: `frameworks/<analysis>/<framework>`, ratio = seconds / the NNX twin's seconds
(< 1.10 meets the goal). Analyses: saliency, integrated gradients (50 steps; --quick 10),
Grad-CAM at the pooled conv2 output, exact and incremental occlusion (4x4, stride 2) on
64 digits (--quick 16). Every case runs once per round, interleaved (`round_robin`), so
a shared machine's slow spells hit the three frameworks alike; seconds are the best round.
"""
from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from experiments import seed_keras  # noqa: E402
from experiments.bench import harness  # noqa: E402
from jaxviz import attribution as A  # noqa: E402
from jaxviz import occlusion as O  # noqa: E402
from jaxviz.core import probe as probe_lib  # noqa: E402
from jaxviz.data import load_bundled  # noqa: E402
from jaxviz.models import MnistCNN  # noqa: E402

FRAMEWORKS = ("nnx", "equinox", "keras")


class EqxSeedCNN(eqx.Module):
    """MnistCNN's layers as an Equinox user writes them. x: (1, 28, 28) -> (10,) logits."""
    conv1: eqx.nn.Conv2d
    conv2: eqx.nn.Conv2d
    pool: eqx.nn.MaxPool2d
    dropout1: eqx.nn.Dropout
    dense1: eqx.nn.Linear
    dropout2: eqx.nn.Dropout
    preds: eqx.nn.Linear

    def __init__(self, key):
        k = jax.random.split(key, 4)
        self.conv1 = eqx.nn.Conv2d(1, 32, 3, key=k[0])
        self.conv2 = eqx.nn.Conv2d(32, 64, 3, key=k[1])
        self.pool = eqx.nn.MaxPool2d(2, 2)
        self.dropout1 = eqx.nn.Dropout(0.25)
        self.dense1 = eqx.nn.Linear(12 * 12 * 64, 128, key=k[2])
        self.dropout2 = eqx.nn.Dropout(0.5)
        self.preds = eqx.nn.Linear(128, 10, key=k[3])

    def __call__(self, x, *, key=None):
        h = self.pool(jax.nn.relu(self.conv2(jax.nn.relu(self.conv1(x)))))
        h = jnp.ravel(self.dropout1(h, key=key))
        return self.preds(self.dropout2(jax.nn.relu(self.dense1(h)), key=key))


def _weights(model: MnistCNN) -> dict:
    return {name: (np.asarray(getattr(model, name).kernel[...]),
                   np.asarray(getattr(model, name).bias[...]))
            for name in ("conv1", "conv2", "dense1", "preds")}


def equinox_twin(w: dict) -> EqxSeedCNN:
    """EqxSeedCNN holding MnistCNN's weights: OIHW convs, (out, in) dense, CHW flatten."""
    m = EqxSeedCNN(jax.random.key(0))
    dense1 = w["dense1"][0].reshape(12, 12, 64, 128).transpose(2, 0, 1, 3).reshape(-1, 128)
    new = {"conv1": (w["conv1"][0].transpose(3, 2, 0, 1), w["conv1"][1][:, None, None]),
           "conv2": (w["conv2"][0].transpose(3, 2, 0, 1), w["conv2"][1][:, None, None]),
           "dense1": (dense1.T, w["dense1"][1]), "preds": (w["preds"][0].T, w["preds"][1])}
    for name, (weight, bias) in new.items():
        m = eqx.tree_at(lambda t: (getattr(t, name).weight, getattr(t, name).bias), m,
                        (jnp.asarray(weight), jnp.asarray(bias)))
    return m


def keras_twin(w: dict):
    """The seed's Keras Sequential holding MnistCNN's weights (Keras' layout is Flax's)."""
    model = seed_keras.seed_cnn()
    for layer, name in zip(("conv2d", "conv2d_1", "dense", "preds"), w):
        model.get_layer(layer).set_weights(list(w[name]))
    return model


def probes() -> dict:
    """{framework: (probe, the layer after conv2's pooling)}, logits checked equal."""
    nnx_model = MnistCNN(rngs=nnx.Rngs(0))
    w = _weights(nnx_model)
    out = {"nnx": (probe_lib.from_model(nnx_model), "dropout1"),
           "equinox": (probe_lib.from_model(equinox_twin(w), input_shape=(28, 28, 1)),
                       "dropout1"),
           "keras": (probe_lib.from_model(keras_twin(w)), "dropout")}
    x = load_bundled().x_val[:8]
    ref = np.asarray(out["nnx"][0](out["nnx"][0].params, x))
    for name, (p, _) in out.items():
        got = np.asarray(p(p.params, x))
        if not np.allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max()):
            raise AssertionError(f"{name} twin's logits differ from NNX's by "
                                 f"{np.abs(got - ref).max():.2e}")
    return out


def _cases(ps: dict, x, y, steps: int) -> dict:
    """{(analysis, framework): (fn, ())}: each returns the map, ready to block on."""
    def one(probe, layer):
        return {
            "saliency": lambda: A.saliency(probe, probe.params, x, y).map,
            "integrated_gradients": lambda: A.integrated_gradients(
                probe, probe.params, x, y, n_steps=steps).map,
            "grad_cam": lambda: A.grad_cam(probe, probe.params, x, y, layer=layer).map,
            "occlusion_exact": lambda: O.occlusion(probe, probe.params, x, y, window=4,
                                                   stride=2).map,
            "occlusion_incremental": lambda: O.occlusion(
                probe, probe.params, x, y, window=4, stride=2, method="incremental").map,
        }
    return {(analysis, fw): (fn, ()) for fw, (p, layer) in ps.items()
            for analysis, fn in one(p, layer).items()}


def rows(quick: bool = False) -> list[dict]:
    n, steps, rounds = (16, 10, 2) if quick else (64, 50, 5)
    data = load_bundled()
    x, y = data.x_val[:n], data.y_val[:n]
    ps = probes()
    timed = harness.round_robin(_cases(ps, x, y, steps), rounds)
    out = []
    for (analysis, fw), (wall, cpu, compile_s, _) in timed.items():
        base = timed[analysis, "nnx"][0]
        out.append(harness.row(
            f"frameworks/{analysis}/{fw}", wall, compile_s=compile_s,
            settings=f"{n} digits, seed CNN; {_settings(analysis, steps)}; "
                     f"best of {rounds} interleaved rounds",
            ratio=wall / base, cpu_seconds=cpu, framework=fw, analysis=analysis,
            within_10pct=bool(wall <= 1.10 * base)))
    return out


def _settings(analysis: str, steps: int) -> str:
    return {"integrated_gradients": f"{steps} steps", "grad_cam": "pooled conv2 output",
            "occlusion_exact": "4x4 window, stride 2",
            "occlusion_incremental": "4x4 window, stride 2"}.get(analysis, "abs gradient")
