"""The benchmark harness (experiments/bench): timing, the row schema, JSON, the runner.
No test here times anything for real: speed claims live in the benchmark's own output."""
import ast
import importlib
import itertools
import json
import pathlib
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.bench import harness, run


def _fake_clock(monkeypatch, durations):
    """perf_counter readings such that successive timed calls last `durations` seconds."""
    ticks = itertools.accumulate(itertools.chain.from_iterable((0.0, d) for d in durations))
    monkeypatch.setattr(harness.time, "perf_counter", ticks.__next__)


def test_timed_reports_best_repeat_and_first_call_extra(monkeypatch):
    _fake_clock(monkeypatch, [5.0, 2.0, 1.0, 3.0])
    calls = iter(range(10))
    t = harness.timed(lambda: next(calls), repeats=3)
    assert (t.seconds, t.compile_s, t.result) == (1.0, 4.0, 3)


def test_timed_without_warm_up_counts_the_first_call(monkeypatch):
    _fake_clock(monkeypatch, [0.5, 2.0])
    t = harness.timed(lambda: None, repeats=2, warm=False)
    assert (t.seconds, t.compile_s) == (0.5, 0.0)


def test_round_robin_reads_xla_flops_and_times_every_case():
    a = jnp.ones((8, 8))
    out = harness.round_robin({"dot": (jax.jit(jnp.dot), (a, a)),
                               "plain": (lambda x: x + 1, (a,))}, rounds=2)
    wall, cpu, compile_s, flops = out["dot"]
    assert flops == 2 * 8 ** 3
    assert 0 < wall < float("inf") and cpu >= 0 and compile_s >= 0
    assert out["plain"][3] is None  # nothing to lower: no FLOP count


def test_matmul_peak_is_the_better_of_numpy_and_jnp():
    peak = harness.matmul_peak(64)
    assert peak["n"] == 64
    assert peak["peak_gflops"] == max(peak["numpy_gflops"], peak["jnp_gflops"]) > 0


def test_row_schema_and_printed_line():
    r = harness.row("x/y", 0.25, settings="64 digits", compile_s=1.5, gflops=50.0,
                    images_per_s=256.0, ratio=2.0, custom=3)
    assert [k for k in r][:5] == list(harness.REQUIRED)
    full = harness.with_peak(r, "demo", {"peak_gflops": 200.0})
    assert (full["section"], full["peak_gflops"], full["pct_of_peak"]) == ("demo", 200.0, 25.0)
    line = harness.format_row(full)
    for part in ("x/y", "250.0 ms", "compile 1.50s", "256 img/s", "ratio 2.00",
                 "50.0 GFLOP/s", "25% of peak", "[64 digits]"):
        assert part in line


def test_a_row_measured_without_running_prints_not_run():
    line = harness.format_row(harness.row("mem", float("nan"), xla_temp_gb=17.0))
    assert "not run" in line and "nan" not in line


@pytest.mark.parametrize("args, kwargs, match", [
    (("", 1.0), {}, "name must be a non-empty string"),
    (("a", None), {}, "seconds must be a number"),
    (("a", "1"), {}, "seconds must be a number"),
    (("a", 1.0), {"gflops": "fast"}, "gflops must be a number or None"),
    (("a", 1.0), {"settings": 3}, "settings must be a string"),
])
def test_row_rejects_bad_fields(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        harness.row(*args, **kwargs)


def test_with_peak_names_missing_keys():
    with pytest.raises(ValueError, match=r"lacks \['compile_s', 'gflops'\]"):
        harness.with_peak({"name": "a", "settings": "", "seconds": 1.0}, "s", {"peak_gflops": 1})


def test_write_json_round_trip(tmp_path):
    rows = [harness.with_peak(harness.row("a", np.float32(0.5), gflops=np.float64(2.0)), "s",
                              {"peak_gflops": 4.0})]
    path = tmp_path / "bench.json"
    harness.write_json(path, {"peak_gflops": 4.0}, rows)
    back = json.loads(path.read_text())
    assert back["backend"] == jax.default_backend()
    assert back["rows"] == [{"name": "a", "settings": "", "seconds": 0.5, "compile_s": None,
                             "gflops": 2.0, "section": "s", "peak_gflops": 4.0,
                             "pct_of_peak": 50.0}]


def test_every_section_resolves_to_a_rows_function():
    for where in {**run.SECTIONS, **run.OPT_IN}.values():
        module, function = where.split(":")
        assert callable(getattr(importlib.import_module(f"experiments.bench.{module}"), function))


def test_sections_wanted_and_unknown_ones_named():
    assert run.wanted_sections(None, peers=False) == list(run.SECTIONS)
    assert run.wanted_sections("train", peers=True) == [
        "train", "peers", "peers_methods", "peers_gradcam", "peers_layer", "quantus", "peers_tcav"]
    assert run.wanted_sections("quantus", peers=True) == [
        "quantus", "peers", "peers_methods", "peers_gradcam", "peers_layer", "peers_tcav"]
    with pytest.raises(ValueError, match=r"unknown section\(s\) \['trian'\]"):
        run.wanted_sections("train,trian", peers=False)
    with pytest.raises(SystemExit):
        run.main(["--only", "trian"])


def test_runner_keeps_other_sections_when_one_fails(monkeypatch, capsys):
    def fake(name, quick):
        if name == "bad":
            raise RuntimeError("boom")
        return [harness.row(f"{name} row", 0.1, gflops=10.0)]
    monkeypatch.setattr(run, "section_rows", fake)
    rows, failed = run.run(["good", "bad"], quick=True, peak={"peak_gflops": 100.0})
    assert failed == ["bad"]
    assert [(r["name"], r["section"], r["pct_of_peak"]) for r in rows] == [
        ("good row", "good", 10.0)]
    assert "## bad: FAILED (RuntimeError: boom)" in capsys.readouterr().out


def test_compare_pairs_rows_by_section_and_name(tmp_path):
    from experiments.bench import compare

    def run_file(name, rows, peak):
        path = tmp_path / name
        path.write_text(json.dumps({"peak": {"peak_gflops": peak}, "rows": rows}))
        return compare.load(str(path))

    before = run_file("b.json", [{"section": "s", "name": "a", "seconds": 2.0, "ratio": 4.0},
                                 {"section": "s", "name": "gone", "seconds": 1.0}], 100.0)
    after = run_file("a.json", [{"section": "s", "name": "a", "seconds": 1.0, "ratio": 3.0},
                                {"section": "t", "name": "a", "seconds": 1.0}], 50.0)
    both, gone, added = compare.paired(before, after)
    assert [(b["seconds"], a["seconds"]) for b, a in both] == [(2.0, 1.0)]
    assert (gone, added) == (["s: gone"], ["t: a"])
    row_line = compare.lines(before, after)[2].split()
    assert row_line[-3:] == ["0.50", "4.00", "3.00"]  # after/before, ratio before, ratio after
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ValueError, match="has no 'rows'"):
        compare.load(str(tmp_path / "x.json"))


def _jaxviz_names(tree):
    """{local name: object} for every `import jaxviz...` / `from jaxviz... import` in tree."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jaxviz"):
            for a in node.names:
                try:
                    obj = importlib.import_module(f"{node.module}.{a.name}")
                except ModuleNotFoundError:
                    obj = getattr(importlib.import_module(node.module), a.name)
                names[a.asname or a.name] = obj
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("jaxviz") and a.asname:
                    names[a.asname] = importlib.import_module(a.name)
    return names


@pytest.mark.parametrize("module", sorted(
    {where.split(":")[0] for where in {**run.SECTIONS, **run.OPT_IN}.values()}))
def test_sections_use_only_public_jaxviz_names_that_exist(module):
    """Every jaxviz name a section reaches (`train.jitted_train_step`, `api.plan_ascent`, ...)
    exists and is public, so a library rename breaks this test, not the next benchmark run."""
    path = pathlib.Path(run.__file__).with_name(f"{module}.py")
    tree = ast.parse(path.read_text())
    names = _jaxviz_names(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            obj = names.get(node.value.id)
            if isinstance(obj, types.ModuleType):
                assert not node.attr.startswith("_"), (
                    f"{module}.py uses private {node.value.id}.{node.attr}")
                assert hasattr(obj, node.attr), f"{module}.py: {obj.__name__} has no {node.attr}"
