"""Images/s of batched analyses on 1 and 4 (simulated) CPU devices, batch axis sharded.

Each device count runs in its own process (XLA fixes the device count at start-up).
On a CPU the 4 "devices" share the same cores, so this row shows that sharding works and
what it costs, not a speed-up; on 4 GPUs the same code splits the batch for real.
"""
import json
import os
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent("""
    import json, time, jax, jax.numpy as jnp
    from flax import nnx
    from jaxviz import attribution as A, occlusion as O, sharding
    from jaxviz.core import probe as P
    from jaxviz.data import load_bundled
    from jaxviz.models import MnistCNN
    p = P.from_model(MnistCNN(rngs=nnx.Rngs(0)))
    ds = load_bundled()
    x, y = jnp.asarray(ds.x_val[:N]), jnp.asarray(ds.y_val[:N])
    mesh = sharding.batch_mesh()
    xs, ys, params = sharding.shard_batch(x, mesh), sharding.shard_batch(y, mesh), sharding.replicate(p.params, mesh)
    out = {}
    for name, f in {"saliency": lambda: A.saliency(p, params, xs, ys),
                    "integrated_gradients (16 steps)": lambda: A.integrated_gradients(p, params, xs, ys, n_steps=16),
                    "occlusion (4x4, stride 2)": lambda: O.occlusion(p, params, xs, ys, window=4, stride=2).attribution}.items():
        jax.block_until_ready(f())
        best = min((lambda t0: (jax.block_until_ready(f()), time.perf_counter() - t0)[1])(time.perf_counter()) for _ in range(3))
        out[name] = best
    print(json.dumps({"devices": len(jax.devices()), "times": out}))
""")


def _run(devices: int, n: int) -> dict:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", f"N = {n}\n" + CHILD], env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def rows(quick: bool = False) -> list[dict]:
    n = 16 if quick else 64
    one, four = _run(1, n), _run(4, n)
    out = []
    for name, t1 in one["times"].items():
        t4 = four["times"][name]
        for devices, t in ((1, t1), (4, t4)):
            out.append({"name": f"{name}, {devices} device(s)", "settings": f"{n} digits, batch sharded",
                        "seconds": t, "compile_s": None, "gflops": None,
                        "images_per_s": n / t, "ratio": t1 / t if devices == 4 else None})
    return out


if __name__ == "__main__":
    for r in rows(quick="--quick" in sys.argv):
        print(r)
