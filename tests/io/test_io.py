"""jaxviz.io, the one writer: a killed or failing save never leaves a partial file, bad paths
say what is wrong, and what is written reads back unchanged."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from jaxviz import io

# A real figure save, blocked half-way through writing its PNG bytes.
_BLOCKED_SAVE = textwrap.dedent("""
    import io as stdio, sys, time
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure
    from jaxviz import io

    target, ready = sys.argv[1], sys.argv[2]
    real_savefig = Figure.savefig

    def blocked(self, fh, **kwargs):
        buf = stdio.BytesIO()
        real_savefig(self, buf, **kwargs)
        png = buf.getvalue()
        fh.write(png[: len(png) // 2])
        fh.flush()
        open(ready, "w").close()  # tell the parent we are mid-write
        time.sleep(120)

    Figure.savefig = blocked
    fig = plt.figure()
    fig.add_subplot().plot([0, 1, 0])
    io.save_figure(fig, target)
""")


def test_a_save_killed_half_way_leaves_the_old_file_and_nothing_else(tmp_path):
    target, ready = tmp_path / "out" / "fig.png", tmp_path / "ready"
    io.write_bytes(target, b"old figure")
    child = subprocess.Popen([sys.executable, "-c", _BLOCKED_SAVE, str(target), str(ready)],
                             stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert child.poll() is None, child.stderr.read().decode()
            assert time.monotonic() < deadline, "the child never reached the blocked write"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
    assert target.read_bytes() == b"old figure"
    leftovers = sorted(p.name for p in target.parent.iterdir())
    if hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd"):
        assert leftovers == ["fig.png"]  # the half-written data never had a name
    else:
        assert "fig.png" in leftovers


def test_an_error_mid_write_changes_nothing(tmp_path):
    target = tmp_path / "metrics.json"
    io.write_json(target, {"a": 1})
    with pytest.raises(RuntimeError, match="boom"):
        with io.open_atomic(target, "w") as fh:
            fh.write('{"a": 2, "half')
            raise RuntimeError("boom")
    assert json.loads(target.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_what_is_written_reads_back(tmp_path):
    assert io.write_text(tmp_path / "a" / "b.md", "é\n").read_text(encoding="utf-8") == "é\n"
    io.write_json(tmp_path / "m.json", {"x": np.float32(1.5), "v": np.arange(3)})
    assert json.loads((tmp_path / "m.json").read_text()) == {"x": 1.5, "v": [0, 1, 2]}
    io.save_npz(tmp_path / "arrays.npz", scores=np.eye(2), labels=np.array([3, 4]))
    with np.load(tmp_path / "arrays.npz") as z:
        np.testing.assert_array_equal(z["scores"], np.eye(2))
        np.testing.assert_array_equal(z["labels"], [3, 4])
    assert io.write_bytes(tmp_path / "b", b"\x00\x01").read_bytes() == b"\x00\x01"
    mode = (tmp_path / "b").stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask  # like a plain open(), not a private temp file


def test_bad_paths_are_clear_errors(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(NotADirectoryError, match=r"cannot write .*file/x.json.*is a file"):
        io.write_json(blocker / "x.json", {})
    with pytest.raises(IsADirectoryError, match="it is a directory"):
        io.write_text(tmp_path, "x")
    with pytest.raises(TypeError, match="path must be a str or os.PathLike.*got int"):
        io.write_text(3, "x")
    with pytest.raises(TypeError, match="text must be a str; got bytes"):
        io.write_text(tmp_path / "t", b"x")
    with pytest.raises(ValueError, match="mode must be 'wb' or 'w'"):
        with io.open_atomic(tmp_path / "t", "a"):
            pass
    with pytest.raises(NotADirectoryError, match="--out .* is not a directory"):
        io.ensure_dir(blocker / "sub", "--out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through directory permissions")
def test_unwritable_directory_names_it(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match="--out .*locked.* is not writable"):
            io.ensure_dir(locked, "--out")
        with pytest.raises(PermissionError, match="cannot write .*locked/x"):
            io.write_text(locked / "x", "x")
    finally:
        locked.chmod(0o700)
