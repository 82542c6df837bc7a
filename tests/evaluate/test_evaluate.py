"""evaluate(): the method x metric table (maps once per method, cells, bootstrap, keys by
name, markdown) and its checks before any work."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from jaxviz import attribution as A
from jaxviz import evaluate as ev
from jaxviz.core import probe as probe_lib


class Tiny(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(2, (3, 3), name="conv")(x))
        return nn.Dense(3, name="head")(x.reshape(x.shape[0], -1))


@pytest.fixture(scope="module")
def case():
    module = Tiny()
    probe = probe_lib.from_model(module, module.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1))),
                                 input_shape=(8, 8, 1))
    x = jax.random.uniform(jax.random.key(1), (4, 8, 8, 1))
    return probe, x, jnp.array([0, 1, 2, 0])


METRICS = ["deletion", "sparseness", "max_sensitivity"]
OPTIONS = {m: dict(ev.get(m).quick) for m in METRICS}


def _table(case, **kw):
    probe, x, t = case
    args = dict(methods=["saliency", "gradient_x_input"], metrics=METRICS,
                key=jax.random.key(7), metric_options=OPTIONS)
    return ev.evaluate(probe, probe.params, x, t, **{**args, **kw})


def test_cells_are_the_metrics_on_the_methods_maps(case):
    probe, x, t = case
    table = _table(case)
    assert table.methods == ("saliency", "gradient_x_input") and table.metrics == tuple(METRICS)
    for meth in table.methods:
        maps = A.display_map(A.get(meth), A.attribute(meth, probe, probe.params, x, t))
        direct = ev.get("sparseness").fn(probe, probe.params, x, t, maps)
        cell = table[meth, "sparseness"]
        np.testing.assert_allclose(cell.scores, direct.scores, rtol=1e-6)
        for m in METRICS:
            c = table[meth, m]
            assert c.scores.shape == (4,) and c.low <= c.mean <= c.high
            np.testing.assert_allclose(c.mean, c.scores.mean(), rtol=1e-6)
    assert table.best("sparseness") in table.methods


def test_same_key_same_table_and_cells_do_not_depend_on_the_others(case):
    a, b = _table(case), _table(case)
    alone = _table(case, methods=["gradient_x_input"], metrics=["max_sensitivity"],
                   metric_options={"max_sensitivity": OPTIONS["max_sensitivity"]})
    for m in METRICS:
        assert a["saliency", m].mean == b["saliency", m].mean
        assert a["saliency", m].low == b["saliency", m].low
    np.testing.assert_array_equal(alone["gradient_x_input", "max_sensitivity"].scores,
                                  a["gradient_x_input", "max_sensitivity"].scores)
    other = _table(case, key=jax.random.key(8))
    assert not np.array_equal(other["saliency", "max_sensitivity"].scores,
                              a["saliency", "max_sensitivity"].scores)


def test_each_methods_maps_are_computed_once(case):
    calls = []

    def counting(fn, params, images, target):
        calls.append(images.shape)
        return A.gradient_x_input(fn, params, images, target).map

    A.register(A.Method("counting_gxi", counting))
    try:
        _table(case, methods=["counting_gxi"], metrics=["deletion", "sparseness"],
               metric_options={m: OPTIONS[m] for m in ("deletion", "sparseness")})
    finally:
        A.unregister("counting_gxi")
    assert calls == [(4, 8, 8, 1)]


def test_bootstrap_interval(case):
    s = np.array([1.0, 2.0, 3.0, 10.0])
    mean, low, high = ev.bootstrap(s, jax.random.key(0), n_boot=2000)
    idx = np.asarray(jax.random.randint(jax.random.key(0), (2000, 4), 0, 4))
    means = s[idx].mean(1)
    assert mean == 4.0 and (low, high) == (np.percentile(means, 2.5), np.percentile(means, 97.5))
    assert ev.bootstrap(np.full(5, 0.3), jax.random.key(0))[1:] == pytest.approx((0.3, 0.3))


def test_markdown_has_arrows_and_every_cell(case):
    table = _table(case)
    md = table.to_markdown()
    assert "deletion ↓" in md and "sparseness ↑" in md and "max_sensitivity ↓" in md
    assert md.count("\n| ") == 2 and "95% bootstrap interval" in md
    d = table.to_dict()
    assert d["arrows"]["sparseness"] == "↑"
    assert d["cells"]["saliency"]["deletion"]["mean"] == table["saliency", "deletion"].mean


@pytest.mark.parametrize("kw, match", [
    (dict(methods=["nope"]), "unknown method"),
    (dict(metrics=["nope"]), "unknown metric"),
    (dict(metric_options={"insertion": {}}), "insertion"),
    (dict(method_options={"grad_cam": {}}), "grad_cam"),
    (dict(metrics=["pointing_game"], metric_options={}), "masks"),
    (dict(methods=[]), "non-empty"),
])
def test_bad_arguments_fail_before_any_work(case, kw, match, compiles):
    def call():
        with pytest.raises(ValueError, match=match):
            _table(case, **kw)
    assert compiles(call, "float32[4,8,8,1]", "int32[4]") == []


def test_report_stage_draws_curves_and_table_and_reads_them(cnn_random, digits, tmp_path):
    from jaxviz.report.base import inputs_for, pngs, run_stage  # noqa: PLC0415
    from jaxviz.report.evaluate_stage import EvaluateStage, reading  # noqa: PLC0415

    x, y = digits
    inputs = inputs_for(cnn_random, cnn_random.params, x, y, n=3)
    stage = EvaluateStage(methods=("saliency", "grad_cam"),
                          metric_names=("deletion", "sparseness"))
    done = run_stage(stage, inputs, tmp_path)
    assert [p.name for p in done.paths] == ["evaluate_curves.png", "evaluate_table.png"]
    table = done.result
    assert table.n_images == 3 and table.methods == ("saliency", "grad_cam")
    section = stage.section(table, pngs(tmp_path, done.paths))
    assert section.title == "Which map to believe" and len(section.figures) == 2
    first, second = section.caption.split("\n")
    assert f"deletion ↓ {table.best('deletion')}" in first
    assert f"sparseness ↑ {table.best('sparseness')}" in first
    assert "3 images" in second
    assert stage.metrics(table)["evaluate"]["arrows"] == {"deletion": "↓", "sparseness": "↑"}
    assert reading(table) == section.caption
