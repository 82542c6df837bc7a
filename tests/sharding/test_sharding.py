"""Every batched analysis gives the same result sharded over 4 (simulated) devices."""
import json
import os
import subprocess
import sys
from pathlib import Path



def test_sharded_analyses_equal_single_device():
    env = dict(os.environ, XLA_FLAGS=os.environ.get("XLA_FLAGS", "")
               + " --xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, str(root / "tests" / "helpers" / "sharded_check.py")], env=env,
                          cwd=root, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "forward" in results and len(results) >= 2, results
    for name, r in results.items():
        assert r["diff"] < 1e-4, (name, r)
        assert r["devices"] == 4, (name, r)  # the result really lives on all four devices
