"""experiments.bench_peers imports without torch and says how to get it. The suite never
needs torch: the PyTorch twin's logits are checked against jaxviz's (to 1e-4) inside
bench_peers.rows() itself, before anything is timed, whenever the peers extra is installed."""
import importlib
import sys

import pytest

from experiments import bench_peers


def test_rows_without_torch_names_the_extra(monkeypatch):
    # None in sys.modules makes `import torch` fail as if it were not installed.
    for name in ("torch", "captum", "captum.attr"):
        monkeypatch.setitem(sys.modules, name, None)
    module = importlib.reload(bench_peers)
    with pytest.raises(ModuleNotFoundError, match=r"pip install -e \.\[peers\]"):
        module.rows(quick=True)
