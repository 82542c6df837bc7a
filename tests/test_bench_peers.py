"""experiments.bench_peers: imports without torch, says how to get it, and (only where torch is
installed) its PyTorch copy of MnistCNN computes jaxviz's logits. Never needs torch."""
import importlib
import sys

import numpy as np
import pytest

from experiments import bench_peers


def test_rows_without_torch_names_the_extra(monkeypatch):
    # None in sys.modules makes `import torch` fail as if it were not installed.
    for name in ("torch", "captum", "captum.attr"):
        monkeypatch.setitem(sys.modules, name, None)
    module = importlib.reload(bench_peers)
    with pytest.raises(ModuleNotFoundError, match=r"pip install -e \.\[peers\]"):
        module.rows(quick=True)


def test_torch_copy_matches_jaxviz_logits(digits):
    torch = pytest.importorskip("torch")
    from flax import nnx

    from jaxviz import probe as probe_lib
    from jaxviz.models import MnistCNN

    model = MnistCNN(rngs=nnx.Rngs(1))
    net = bench_peers.torch_mnist_cnn(torch, model)
    x = np.asarray(digits[0])
    with torch.no_grad():
        got = net(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).numpy()
    probe = probe_lib.from_model(model)
    want = np.asarray(probe(probe.params, x))
    np.testing.assert_allclose(got, want, atol=1e-4)
