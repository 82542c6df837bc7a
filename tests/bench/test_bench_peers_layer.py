"""The Captum layer/neuron side by side (experiments/bench/peers_layer): registered as an
opt-in peer section, a one-line skip without torch, and its layout conversion. Nothing here
imports torch or runs Captum."""
import sys

import numpy as np

from experiments.bench import peers_layer as pl
from experiments.bench import run


class _Tensor:  # what _captum_side reads of a torch tensor
    def __init__(self, a):
        self.a = np.asarray(a)

    def detach(self):
        return self

    def numpy(self):
        return self.a


def test_section_is_an_opt_in_peer_section():
    assert run.OPT_IN["peers_layer"] == "peers_layer:rows"
    assert "peers_layer" not in run.SECTIONS
    assert "peers_layer" in run.wanted_sections(None, peers=True)


def test_runner_skips_without_torch_in_one_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)  # as if not installed
    rows, failed = run.run(["peers_layer"], quick=True, peak={"peak_gflops": 100.0})
    assert (rows, failed) == ([], [])
    assert capsys.readouterr().out.strip().splitlines() == [
        f"## peers_layer: skipped ({pl.MISSING})"]


def test_captum_results_come_back_channels_last_with_their_delta():
    nchw = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    m, d = pl._captum_side((_Tensor(nchw), _Tensor([0.5, -0.5])))
    np.testing.assert_array_equal(m, nchw.transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(d, [0.5, -0.5])
    m, d = pl._captum_side(_Tensor(np.ones((2, 7))))  # a dense layer stays (N, K); no delta
    assert m.shape == (2, 7) and d is None
