"""`jaxviz attribute --target/--layer/--image`: the targets a user names reach the method,
classes are shown by the data set's names, and an image file is explained at the model's
input size and drawn over the original colour image."""
import argparse
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from jaxviz import attribution as A
from jaxviz import cli, data, report, user_data
from jaxviz.core import probe as probe_lib

NAMES = ("cat", "dog", "bird")


class Net(nnx.Module):
    """conv -> relu -> global mean -> dense. x: (N, 8, 8, 1) -> (N, 3)."""

    def __init__(self, rngs):
        self.conv = nnx.Conv(1, 4, (3, 3), rngs=rngs)
        self.head = nnx.Linear(4, 3, rngs=rngs)

    def __call__(self, x):
        return self.head(nnx.relu(self.conv(x)).mean(axis=(1, 2)))


PROBE = probe_lib.from_model(Net(rngs=nnx.Rngs(0)), input_shape=(8, 8, 1))
X = np.random.default_rng(0).random((3, 8, 8, 1)).astype(np.float32)
Y = np.array([0, 1, 2])


def fake_loaded(args):
    ds = data.Dataset(X, Y, X, Y, "folder:pets", NAMES)
    subject = cli._subject("/somewhere/m.py:net", Path("run"), "folder:/d/pets", ds)
    return PROBE, PROBE.params, None, X, Y, subject


def _inputs(images=X):
    return report.Inputs(PROBE, PROBE.params, images, Y[:len(images)], cli._key(0), X, Y,
                         fake_loaded(None)[-1])


def test_parse_target():
    assert cli.parse_target("pred") is None and cli.parse_target("all") == "all"
    assert cli.parse_target("2") == 2 and cli.parse_target("label") == "label"
    assert cli.parse_target("conv:3").name == "conv:3"
    with pytest.raises(argparse.ArgumentTypeError, match="LAYER:CHANNEL"):
        cli.parse_target("conv:x")


def test_all_classes_are_columns_named_by_the_data():
    images, rows, columns = cli._OneMethod("saliency", "all").run(_inputs(), {})
    assert list(columns) == list(NAMES) and rows == list(NAMES)
    for k, name in enumerate(NAMES):
        want = A.saliency(PROBE, PROBE.params, X, k).map.max(-1)  # saliency's max_abs display
        np.testing.assert_allclose(columns[name], want, rtol=1e-6)
    _, rows, columns = cli._OneMethod("grad_cam", None, "conv").run(_inputs(), {})
    pred = np.asarray(PROBE(PROBE.params, X)).argmax(1)
    assert rows == [f"{t} (pred {NAMES[p]})" for t, p in zip(NAMES, pred)]
    np.testing.assert_allclose(columns["grad_cam: predicted @ conv"],
                               A.grad_cam(PROBE, PROBE.params, X, pred, layer="conv").map)


def test_image_file_is_resized_and_drawn_over_the_original(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(cli, "_loaded", fake_loaded)
    rgb = (np.random.default_rng(1).random((20, 16, 3)) * 255).astype(np.uint8)
    path = tmp_path / "mine.png"
    Image.fromarray(rgb).save(path)
    out = tmp_path / "out"
    code = cli.main(["attribute", "--checkpoint", "run", "--out", str(out), "--method",
                     "integrated_gradients", "--target", "conv:1", "--image", str(path),
                     "--quiet"])
    assert code == 0 and (out / "attribution_integrated_gradients.png").stat().st_size > 0
    x = user_data.to_range(user_data.read_image(path, (8, 8, 1))[None], PROBE.input_range)
    assert x.shape == (1, 8, 8, 1)
    stage = cli._OneMethod("integrated_gradients", cli.parse_target("conv:1"))
    stage.original = user_data.read_original(path)
    _, rows, columns = stage.run(_inputs(x), {})
    want = A.integrated_gradients(PROBE, PROBE.params, jnp.asarray(x),
                                  cli.parse_target("conv:1"), n_steps=64).map.sum(-1)
    np.testing.assert_allclose(columns["integrated_gradients: conv:1"], want, rtol=1e-5,
                               atol=1e-7)
    assert cli.main(["attribute", "--checkpoint", "run", "--out", str(out), "--target",
                     "all"]) == 1
    assert "pass --method NAME" in capsys.readouterr().err
