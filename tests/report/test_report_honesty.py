"""The report says what the methods say and speaks of the user's model and data: every
warning reaches the page and metrics.json, colormaps follow the method (not the tile),
figures of many methods stay readable at the page's width, class names label the rows,
activation maximization reaches the deepest conv layers."""
import json
import warnings

import jax
import matplotlib.pyplot as plt
import numpy as np
from flax import nnx

from jaxviz import attribution as A
from jaxviz.core import probe as probe_lib
from jaxviz.plot.attribution import comparison_figure
from jaxviz.report import Section, Subject, attribution_stage, inputs_for, run_stage
from jaxviz.report.evaluate_stage import EvaluateStage
from jaxviz.report.maximize_stage import deepest_layers
from jaxviz.report.page import page_html, page_md
from jaxviz.report.pipeline import run_report


class GeluNet(nnx.Module):
    """conv -> GELU -> conv -> GELU -> conv -> global mean -> dense: no ReLU anywhere.
    x: (N, 8, 8, 1) -> (N, 3)."""

    def __init__(self, rngs):
        self.conv1 = nnx.Conv(1, 4, (3, 3), rngs=rngs)
        self.conv2 = nnx.Conv(4, 4, (3, 3), rngs=rngs)
        self.conv3 = nnx.Conv(4, 4, (3, 3), rngs=rngs)
        self.head = nnx.Linear(4, 3, rngs=rngs)

    def __call__(self, x):
        x = nnx.gelu(self.conv2(nnx.gelu(self.conv1(x))))
        return self.head(self.conv3(x).mean(axis=(1, 2)))


def gelu_probe():
    return probe_lib.from_model(GeluNet(rngs=nnx.Rngs(0)))


def images(n=3):
    x = np.random.default_rng(0).random((n, 8, 8, 1)).astype(np.float32)
    return x, np.arange(n) % 3


class WarnStage:
    """A stage that warns and draws nothing: the pipeline's plumbing without JAX."""
    name = "toy"

    def run(self, inputs, earlier):
        warnings.warn("toy: something the user must read", RuntimeWarning)
        return 0

    def render(self, result, out_dir):
        return []

    def metrics(self, result):
        return {}

    def section(self, result, figures):
        return Section("Toy", "nothing to see", figures, {})


def test_guided_backprop_on_a_gelu_model_is_noted_beside_its_figure(tmp_path):
    """The report's guided-backprop column on a model without ReLUs is the plain gradient;
    the direct call says so, but the report stage used to silence every RuntimeWarning and
    the page showed the column without a word."""
    probe, (x, y) = gelu_probe(), images()
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        result = attribution_stage.compute(probe, probe.params, x, y, jax.random.key(0),
                                           methods=("saliency", "guided_backprop"),
                                           sanity_methods=("saliency",))
    gb = A.get("guided_backprop").label
    assert any("no ReLU" in n for n in result.notes[gb]), result.notes
    assert A.get("saliency").label not in result.notes
    stage = attribution_stage.AttributionStage()
    paths = stage.render(result, tmp_path)
    section = stage.section(result, [p.name for p in paths])
    assert any("no ReLU" in n for n in section.notes["attribution_comparison.png"])
    page = page_html("t", "i", [["a"], ["b"]], [section])
    assert page.index("attribution_comparison.png") < page.index("no ReLU")
    assert "guided_backprop" in stage.metrics(result)["attribution"]["warnings"][
        gb.replace("\n", " ")][0]


def test_evaluate_stage_warnings_reach_the_stage_record(tmp_path):
    """The evaluation stage also silenced RuntimeWarnings, so a method's warning during
    scoring never reached the page or the CLI."""
    probe, (x, y) = gelu_probe(), images(2)
    stage = EvaluateStage(methods=("guided_backprop",), metric_names=("sparseness",))
    with warnings.catch_warnings(record=True):  # run_stage raises them again
        warnings.simplefilter("always")
        done = run_stage(stage, inputs_for(probe, probe.params, x, y, n=2), tmp_path)
    assert any("guided_backprop" in w and "no ReLU" in w for w in done.warnings), done.warnings


def test_every_stage_warning_reaches_metrics_and_the_page_and_no_empty_settings(tmp_path):
    """Warnings raised by any stage land in metrics.json and as a note on report.html and
    report.md; the page speaks of the given model and data, not of MNIST; a section with no
    settings prints no empty `settings:` line."""
    probe, (x, y) = gelu_probe(), images()
    said = []
    subject = Subject("colour_cnn from my_models.py", "12 validation images of folder:shapes",
                      ("circle", "square", "triangle"))
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        metrics = run_report(probe, probe.params, x, y, tmp_path, stages=[WarnStage()],
                             accuracy=0.5, subject=subject, log=lambda m: None, warn=said.append)
    line = "RuntimeWarning: toy: something the user must read"
    assert said == [f"[toy] {line}"]
    assert json.loads((tmp_path / "metrics.json").read_text())["warnings"] == {"toy": [line]}
    assert metrics["warnings"] == {"toy": [line]}
    html, md = (tmp_path / "report.html").read_text(), (tmp_path / "report.md").read_text()
    for page in (html, md):
        assert line in page and "colour_cnn from my_models.py" in page
        assert "folder:shapes" in page and "MNIST" not in page and "settings:" not in page
    assert "circle, square, triangle" in md


def test_colormap_is_chosen_per_method_with_a_stated_range():
    """The comparison grid used to choose the colormap per tile from the data's sign: rows
    of one signed method (LIME) came out half 'hot' from their own minimum, half diverging.
    Now a signed method is diverging and symmetric about 0 in every row, an unsigned one
    sequential from its minimum (an offset map like RISE's keeps its contrast), and each
    tile states its range."""
    x = np.zeros((2, 4, 4, 1), np.float32)
    lime = np.stack([np.linspace(0.0, 0.1, 16).reshape(4, 4),  # all >= 0: drawn "hot" before
                     np.linspace(-0.2, 0.1, 16).reshape(4, 4)])
    rise = np.stack([np.linspace(0.5, 0.6, 16).reshape(4, 4)] * 2)
    blank = np.zeros((2, 4, 4))
    fig = comparison_figure(x, {"LIME": lime, "RISE": rise, "blank": blank},
                            signed={"LIME": True, "RISE": False, "blank": False})
    axes = np.asarray(fig.axes).reshape(2, 4)
    for row in range(2):
        lime_im, rise_im = axes[row, 1].images[0], axes[row, 2].images[0]
        assert lime_im.get_cmap().name == "RdBu_r"
        lo, hi = lime_im.get_clim()
        assert lo == -hi
        assert rise_im.get_cmap().name != "RdBu_r"
        np.testing.assert_allclose(rise_im.get_clim(), (0.5, 0.6), rtol=1e-6)
    assert axes[0, 1].get_xlabel() == "±0.1" and axes[1, 1].get_xlabel() == "±0.2"
    assert axes[0, 2].get_xlabel() == "0.5..0.6" and axes[0, 3].get_xlabel() == "blank (all 0)"
    plt.close(fig)


def fake_result(k=2, hw=16):
    """Every registered method's label with a random map: what render() draws, no JAX."""
    rng = np.random.default_rng(0)
    meths = list(A.METHODS.values())
    cols = {m.label: rng.standard_normal((k, hw, hw)).astype(np.float32) for m in meths}
    return attribution_stage.AttributionResult(
        rng.random((k, hw, hw, 3)).astype(np.float32), np.arange(k), cols, "conv3", None,
        {"layers": ["a"], "saliency": [0.5]},
        signed={m.label: attribution_stage.display_signed(m) for m in meths},
        families={m.label: attribution_stage.family(m) for m in meths},
        notes={A.get("lime").label: ("BlankMapWarning: lime: all zero for image 0",)},
        row_names=("circle", "square", "triangle")[:k])


def test_many_methods_split_by_family_each_readable_at_the_page_width(tmp_path):
    """attribution_comparison.png of 26 methods was 3,390 px wide, shown at ~1,100 px where
    its column titles could not be read. Now one figure per family, none much wider than
    the page, rows labelled by class name, a warning beside its family's figure."""
    result = fake_result()
    stage = attribution_stage.AttributionStage()
    paths = stage.render(result, tmp_path)
    names = [p.name for p in paths]
    figures = attribution_stage.panels(result)
    assert names == [f for f, _, _ in figures] + ["attribution_sanity.png"]
    assert len(result.columns) > attribution_stage.MAX_COLUMNS and len(figures) > 1
    shown = [lab for _, _, labs in figures for lab in labs]
    assert sorted(shown) == sorted(result.columns)  # every method once
    for _, fams, labs in figures:  # a figure holds whole families, in order
        assert {result.families[lab] for lab in labs} == set(fams.split(" and "))
        assert len(labs) <= attribution_stage.MAX_COLUMNS
    for p in paths:
        assert plt.imread(p).shape[1] <= 1320, (p.name, plt.imread(p).shape)
    section = stage.section(result, names)
    assert [n for n in section.notes] == ["attribution_perturbation.png"]
    page = page_md("t", "i", [["a"], ["b"]], [section])
    assert page.index("attribution_perturbation.png") < page.index("lime: all zero")


def test_comparison_rows_are_class_names_and_wide_families_wrap():
    x = np.zeros((2, 4, 4, 1), np.float32)
    cols = {f"m{i}": np.ones((2, 4, 4)) * i for i in range(5)}
    fig = comparison_figure(x, cols, labels=["cat", "dog"], max_columns=2)
    axes = np.asarray(fig.axes).reshape(6, 3)  # three bands of two rows, image + 2 methods
    assert [axes[r, 0].get_ylabel() for r in range(6)] == ["cat", "dog"] * 3
    assert [axes[0, j].get_title() for j in range(3)] == ["image", "m0", "m1"]
    assert axes[4, 0].get_title() == "image" and axes[4, 1].get_title() == "m4"
    assert not axes[4, 2].get_visible()
    plt.close(fig)


def test_maximize_reaches_the_deepest_conv_layers():
    """Activation maximization covered only the first two layers (flat colour squares on a
    colour model), not the deepest ones."""
    probe = gelu_probe()
    shapes = probe.layer_shapes((1, 8, 8, 1))
    assert deepest_layers(probe, probe.params, (8, 8, 1), shapes) == ["conv2", "conv3"]
    assert deepest_layers(probe, probe.params, (8, 8, 1), shapes, n=1) == ["conv3"]
