"""Every warning an analysis raises reaches the CLI's output as one `warning: ...` line,
and the report's words come from the run's model and data."""
import json
import warnings
from pathlib import Path

import numpy as np
from flax import nnx

from jaxviz import cli, data
from jaxviz.core import probe as probe_lib
from jaxviz.report import Section, pipeline


class GeluNet(nnx.Module):
    """conv -> GELU -> global mean -> dense: no ReLU. x: (N, 8, 8, 1) -> (N, 2)."""

    def __init__(self, rngs):
        self.conv = nnx.Conv(1, 3, (3, 3), rngs=rngs)
        self.head = nnx.Linear(3, 2, rngs=rngs)

    def __call__(self, x):
        return self.head(nnx.gelu(self.conv(x)).mean(axis=(1, 2)))


def fake_loaded(args):
    """What cli._loaded returns, for a tiny GELU model and 4 images of two named classes."""
    probe = probe_lib.from_model(GeluNet(rngs=nnx.Rngs(0)))
    x = np.random.default_rng(0).random((4, 8, 8, 1)).astype(np.float32)
    y = np.array([0, 1, 0, 1])
    ds = data.Dataset(x, y, x, y, "folder:pets", ("cat", "dog"))
    subject = cli._subject("/somewhere/my_models.py:gelu_net", Path("run"), "folder:/d/pets", ds)
    return probe, probe.params, None, x, y, subject


def test_attribute_prints_a_methods_warning_as_one_line(monkeypatch, tmp_path, capsys):
    """The CLI printed a method's warning as Python's two-line `file:line: RuntimeWarning`
    (or not at all inside the report stages); now each is one `warning: ...` line."""
    monkeypatch.setattr(cli, "_loaded", fake_loaded)
    code = cli.main(["attribute", "--checkpoint", "run", "--out", str(tmp_path), "--method",
                     "guided_backprop", "--images", "2", "--quiet"])
    assert code == 0
    err = capsys.readouterr().err.splitlines()
    mine = [line for line in err if "no ReLU" in line]
    assert len(mine) == 1 and mine[0].startswith("warning: RuntimeWarning: guided_backprop:"), err
    assert not any("warnings.warn" in line for line in err)
    assert (tmp_path / "attribution_guided_backprop.png").stat().st_size > 0


class WarnStage:
    name = "toy"

    def run(self, inputs, earlier):
        warnings.warn("toy: read me", UserWarning)
        warnings.warn("toy: read me", UserWarning)  # said twice, printed once
        return inputs.subject

    def render(self, result, out_dir):
        return []

    def metrics(self, result):
        return {}

    def section(self, result, figures):
        return Section("Toy", f"{result.model}; {result.data}; {result.names([0, 1])}", [], {})


def test_report_prints_every_stage_warning_and_names_the_users_model(monkeypatch, tmp_path,
                                                                     capsys):
    """`jaxviz report` on a user's model: warnings printed one line each, and the page titled
    by the model file and factory and the data source, not "the Keras recipe's MNIST CNN"."""
    monkeypatch.setattr(cli, "_loaded", fake_loaded)
    monkeypatch.setattr(pipeline, "default_stages", lambda small, accuracy: [WarnStage()])
    assert cli.main(["report", "--checkpoint", "run", "--out", str(tmp_path), "--quiet"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err.count("warning: UserWarning: toy: read me") == 1, err
    page = (tmp_path / "report.md").read_text()
    assert page.startswith("# jaxviz: inside gelu_net from my_models.py (checkpoint run)")
    assert "4 validation images of --data folder:/d/pets" in page
    assert "['cat', 'dog']" in page and "MNIST" not in page


def test_report_shows_what_loading_warned(monkeypatch, tmp_path, capsys):
    """A warning raised while the model and data load (stale BatchNorm statistics, a value
    range) reached neither the page nor metrics.json of `jaxviz report`."""
    def loading_warns(args):
        warnings.warn("stale statistics: recalibrate", UserWarning)
        return fake_loaded(args)

    monkeypatch.setattr(cli, "_loaded", loading_warns)
    monkeypatch.setattr(pipeline, "default_stages", lambda small, accuracy: [WarnStage()])
    assert cli.main(["report", "--checkpoint", "run", "--out", str(tmp_path), "--quiet"]) == 0
    line = "UserWarning: stale statistics: recalibrate"
    assert f"warning: {line}" in capsys.readouterr().err.splitlines()
    page = (tmp_path / "report.md").read_text()
    assert "## Warnings while loading the model and data" in page and line in page
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["warnings"]["load"] == [line]
