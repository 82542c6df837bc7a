"""The pytorch-grad-cam side-by-side section (experiments/bench/peers_gradcam): registered
as an opt-in peer section, a one-line skip without torch or grad-cam, and its pure parts
(the peer's min-max formula, the agreement figure, the torchvision stand-in). Nothing here
imports torch or runs pytorch-grad-cam: the section checks the twin's logits itself."""
import sys

import numpy as np
import pytest

from experiments.bench import peers_gradcam as pg
from experiments.bench import run


def test_section_is_an_opt_in_peer_section():
    assert run.OPT_IN["peers_gradcam"] == "peers_gradcam:rows"
    assert "peers_gradcam" not in run.SECTIONS  # never in a default run
    assert "peers_gradcam" in run.wanted_sections(None, peers=True)
    assert run.wanted_sections("peers_gradcam", peers=False) == ["peers_gradcam"]


@pytest.mark.parametrize("absent", ["torch", "pytorch_grad_cam"])
def test_runner_skips_without_the_extra_in_one_line(monkeypatch, capsys, absent):
    monkeypatch.setitem(sys.modules, absent, None)  # as if not installed
    rows, failed = run.run(["peers_gradcam"], quick=True, peak={"peak_gflops": 100.0})
    assert (rows, failed) == ([], [])
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [f"## peers_gradcam: skipped ({pg.MISSING})"]
    assert "pip install -e .[peers]" in pg.MISSING


def test_peer_minmax_is_scale_cam_image_per_image():
    m = np.array([[[1.0, 3.0], [2.0, 5.0]], [[0.0, 0.0], [0.0, 0.0]]])
    out = pg.peer_minmax(m)
    np.testing.assert_allclose(out[0], (m[0] - 1) / (1e-7 + 4))
    np.testing.assert_array_equal(out[1], 0)  # a blank map stays 0, no division by zero


def test_max_rel_diff_and_shape_check():
    peer = np.array([[2.0, -4.0]])
    assert pg.max_rel_diff(peer, peer + [[0.0, 1.0]]) == pytest.approx(0.25)
    with pytest.raises(ValueError, match=r"shapes differ, peer \(1, 2\) vs jaxviz \(2,\)"):
        pg.max_rel_diff(peer, peer[0])


def test_torchvision_stand_in_raises_on_use():
    mods = pg._stand_in_torchvision()
    assert set(mods) == {"torchvision", "torchvision.ops", "torchvision.transforms"}
    with pytest.raises(RuntimeError, match="stand-in"):
        mods["torchvision.ops"].box_iou(None, None)
    with pytest.raises(RuntimeError, match="stand-in"):
        mods["torchvision.transforms"].Compose([])


def test_agreement_table_one_line_per_method():
    common = dict(peer=pg.PEER, method="grad_cam", ratio=4.0, max_rel_diff=3.7e-6,
                  max_rel_diff_layer=2.3e-6, max_rel_diff_explained=None)
    rows = [dict(common, impl=pg.PEER, seconds=0.2), dict(common, impl="jaxviz", seconds=0.05),
            {"name": "other section's row", "seconds": 1.0}]
    table = pg.agreement_table(rows).splitlines()
    assert len(table) == 3
    assert table[2] == "| grad_cam | GradCAM | 0.20 | 0.050 | 4.0 | 3.7e-06 | 2.3e-06 | — |"
