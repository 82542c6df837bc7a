"""The ROAR grid (models split over the mesh) and evaluate_batches (images split over it) on
4 simulated CPU devices in 2 real processes (`jax.distributed`, a localhost coordinator,
2 devices each) give the numbers of one process on one device."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.helpers import multiprocess_child as child

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_four_devices_equal_one_device():
    port = _free_port()
    env = dict(os.environ, XLA_FLAGS=os.environ.get("XLA_FLAGS", "")
               + " --xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu")
    procs = [subprocess.Popen([sys.executable, str(ROOT / "tests" / "helpers" /
                                                   "multiprocess_child.py"), str(i), str(port)],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(2)]
    try:
        # Meanwhile, the reference: this process, one device, no mesh.
        single = {"grid": child.grid_numbers(None), "table": child.table_numbers(None)}
        outs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    multi = json.loads(outs[0][0].strip().splitlines()[-1])
    assert (multi["processes"], multi["devices"], multi["local_devices"]) == (2, 4, 2)
    np.testing.assert_allclose(multi["grid"]["train_loss"], single["grid"]["train_loss"],
                               rtol=1e-5, atol=1e-6)
    assert multi["grid"]["accuracy"] == single["grid"]["accuracy"]
    # The eight models differ from each other (the grid is not one model copied).
    assert len({round(v, 6) for v in np.ravel(single["grid"]["train_loss"])}) > 8
    assert multi["table"].keys() == single["table"].keys()
    for cell in single["table"]:
        np.testing.assert_allclose(multi["table"][cell], single["table"][cell], atol=1e-6)
