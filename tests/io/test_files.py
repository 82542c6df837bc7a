"""Figures saved by jaxviz.io: closed after saving, atomic, one clear error when the disk says no."""
import errno
import resource

import matplotlib.pyplot as plt
import numpy as np
import pytest

from jaxviz import io
from jaxviz.plot import core


@pytest.fixture(autouse=True)
def no_open_figures():
    plt.close("all")  # figures other test modules left open are not this module's concern
    yield


def test_save_writes_png_and_svg_and_closes(tmp_path):
    fig = core.image_grid(np.random.default_rng(0).random((6, 5, 5)), ncols=3)
    paths = io.save_figure(fig, tmp_path / "grid.png", formats=["png", "svg"], rc=core.STYLE)
    assert [p.name for p in paths] == ["grid.png", "grid.svg"]
    assert not plt.get_fignums()
    img = plt.imread(paths[0])
    assert len(np.unique(img.reshape(-1, img.shape[-1]), axis=0)) > 10


def test_many_figures_keep_memory_flat(tmp_path):
    tiles = np.random.default_rng(0).random((1, 4, 4))  # tiny: the test is about leaks, not pixels
    for i in range(30):  # warm up caches (fonts, colormaps)
        io.save_figure(core.image_grid(tiles, tile_size=0.3), tmp_path / "warm.png")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for i in range(500):
        io.save_figure(core.image_grid(tiles, tile_size=0.3), tmp_path / "loop.png")
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert not plt.get_fignums()
    assert grown_mb < 50, f"peak RSS grew by {grown_mb:.0f} MB over 500 figures"


def test_disk_full_leaves_no_half_written_file(tmp_path, monkeypatch):
    target = tmp_path / "fig.png"
    io.save_figure(core.image_grid(np.ones((1, 4, 4))), target)
    good = target.read_bytes()

    def full(self, fh, **kwargs):
        fh.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(plt.Figure, "savefig", full)
    with pytest.raises(OSError, match="No space left"):
        io.save_figure(core.image_grid(np.zeros((1, 4, 4))), target)
    assert target.read_bytes() == good  # the previous file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png"]  # no temp files left


def test_unwritable_directory_is_one_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSError):
        io.save_figure(core.image_grid(np.ones((1, 4, 4))), blocker / "fig.png")
    assert not plt.get_fignums()
