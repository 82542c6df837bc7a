"""The peers section imports without torch and says how to get it. The suite never needs
torch: the PyTorch twin's logits are checked against jaxviz's (to 1e-4) inside the section
itself, before anything is timed, whenever the peers extra is installed."""
import sys

import pytest

from experiments.bench import run


def _without_torch(monkeypatch):
    # None in sys.modules makes `import torch` fail as if it were not installed; the section
    # is imported afresh so that nothing cached from an earlier import hides a top-level one.
    for name in ("torch", "captum", "captum.attr"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "experiments.bench.peers", raising=False)


def test_rows_without_torch_names_the_extra(monkeypatch):
    _without_torch(monkeypatch)
    with pytest.raises(ModuleNotFoundError, match=r"pip install -e \.\[peers\]"):
        run.section_rows("peers", quick=True)


def test_runner_skips_peers_without_torch_and_says_why(monkeypatch, capsys):
    _without_torch(monkeypatch)
    rows, failed = run.run(["peers"], quick=True, peak={"peak_gflops": 100.0})
    assert (rows, failed) == ([], [])
    assert r"## peers: skipped (peers need: pip install -e .[peers])" in capsys.readouterr().out
