"""Images/s of batched analyses on 1 and 4 (simulated) CPU devices, batch axis sharded.

Each device count runs in its own process (XLA fixes the device count at start-up): this
module run as `python -m experiments.bench.sharding N DEVICES` is that process. On a CPU the
4 "devices" share the same cores, so these rows show that sharding works and what it
costs, not a speed-up; on 4 GPUs the same code splits the batch for real.
"""
from __future__ import annotations

import json
import sys

from experiments.bench import harness

def _child(n: int) -> dict:
    """{analysis: best seconds} on this process's devices, n digits sharded over them."""
    import jax.numpy as jnp  # noqa: PLC0415
    from flax import nnx  # noqa: PLC0415

    from jaxviz import attribution as A  # noqa: PLC0415
    from jaxviz import occlusion as O  # noqa: PLC0415
    from jaxviz import sharding  # noqa: PLC0415
    from jaxviz.core import probe as probe_lib  # noqa: PLC0415
    from jaxviz.data import load_bundled  # noqa: PLC0415
    from jaxviz.models import MnistCNN  # noqa: PLC0415

    p = probe_lib.from_model(MnistCNN(rngs=nnx.Rngs(0)))
    ds = load_bundled()
    mesh = sharding.batch_mesh()
    xs = sharding.shard_batch(jnp.asarray(ds.x_val[:n]), mesh)
    ys = sharding.shard_batch(jnp.asarray(ds.y_val[:n]), mesh)
    params = sharding.replicate(p.params, mesh)
    cases = {
        "saliency": lambda: A.saliency(p, params, xs, ys).map,
        "integrated_gradients (16 steps)": lambda: A.integrated_gradients(
            p, params, xs, ys, n_steps=16).map,
        "occlusion (4x4, stride 2)": lambda: O.occlusion(
            p, params, xs, ys, window=4, stride=2).map,
    }
    return {name: harness.timed(f, 3).seconds for name, f in cases.items()}


def _run(devices: int, n: int) -> dict:
    return harness.run_child("sharding", str(n), str(devices), env={
        "JAX_PLATFORMS": "cpu", "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"})


def rows(quick: bool = False) -> list[dict]:
    n = 16 if quick else 64
    one, four = _run(1, n), _run(4, n)
    out = []
    for name, t1 in one.items():
        for devices, t in ((1, t1), (4, four[name])):
            out.append(harness.row(f"{name}, {devices} device(s)", t,
                                   settings=f"{n} digits, batch sharded",
                                   images_per_s=n / t, ratio=t1 / t if devices == 4 else None))
    return out


if __name__ == "__main__":  # the child process of _run: N digits on DEVICES devices
    import jax

    n_digits, n_devices = int(sys.argv[1]), int(sys.argv[2])
    if len(jax.devices()) != n_devices:
        raise SystemExit(f"expected {n_devices} device(s), XLA started {len(jax.devices())}")
    print(json.dumps(_child(n_digits)))
