"""Perturbation samplers against the machine's batched-forward throughput (issue 16's bar:
every model evaluation a batched forward pass, at >= 50% of batched-forward throughput).

The baseline is one jitted forward pass of the seed's MnistCNN (random weights) on
chunk_size x 64 digits, the rows one sampler step evaluates. Each sampler explains 64
digits with chunk_size 16; its row counts the model evaluations it makes (forward passes
per image x 64) and reports them per second, GFLOP/s from the model-based count
(24.0 MFLOP per forward pass), and `ratio` = its forward passes/s over the baseline's.
Ablation-CAM's ablated passes run only the layers after its layer (dense1 and preds, from
the cached pooled conv2 output), so its row counts FLOPs, not passes; its ratio compares
GFLOP/s.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from experiments.bench import harness
from jaxviz import attribution as A
from jaxviz.core import compile as compile_lib
from jaxviz.core import probe as probe_lib
from jaxviz.data import load_bundled
from jaxviz.models import MnistCNN

F = harness.CNN_FORWARD_FLOPS
DENSE_FWD = 2 * (9216 * 128 + 128 * 10)  # dense1 + preds, one image
CHUNK = 16
N = 64


def plan(quick: bool) -> list[tuple]:
    """(name, options, settings, forward passes per image, FLOPs per image)."""
    s = 4 if quick else 25
    n = 100 if quick else 500
    masks = 200 if quick else 1000
    feats = 49  # a 4x4 grid on 28x28
    passes = {"feature_ablation": feats + 1, "shapley_sampling": s * (feats - 1) + 2,
              "kernel_shap": n, "lime": n, "rise": masks}
    opts = {"feature_ablation": {}, "shapley_sampling": dict(n_samples=s),
            "kernel_shap": dict(n_samples=n), "lime": dict(n_samples=n),
            "rise": dict(n_masks=masks)}
    out = [(name, dict(opts[name], chunk_size=CHUNK), f"{passes[name]} passes/image",
            passes[name], passes[name] * F) for name in opts]
    out.append(("ablation_cam", dict(chunk_size=CHUNK), "64 channels of dropout1", None,
                F + 64 * DENSE_FWD))
    return out


def rows(quick: bool = False) -> list[dict]:
    data = load_bundled()
    x, y = data.x_val[:N], data.y_val[:N]
    probe = probe_lib.from_model(MnistCNN(rngs=nnx.Rngs(0)))
    repeats = 2 if quick else 3
    batch = jnp.asarray(np.tile(x, (CHUNK, 1, 1, 1)))
    forward = compile_lib.jit(lambda params, xb: probe(params, xb), kind="forward")
    base = harness.timed(lambda: forward(probe.params, batch), repeats)
    base_fps = CHUNK * N / base.seconds
    out = [harness.row("samplers/batched_forward", base.seconds, compile_s=base.compile_s,
                       settings=f"MnistCNN forward, batch {CHUNK * N}",
                       gflops=base_fps * F / 1e9, images_per_s=base_fps, ratio=1.0)]
    key = jax.random.key(0)
    for name, options, settings, passes, flops in plan(quick):
        method = A.get(name)
        k = key if method.needs_key else None
        t = harness.timed(lambda m=method, o=options, k=k: m(probe, probe.params, x, y, key=k,
                                                               **o).map, repeats)
        gflops = flops * N / t.seconds / 1e9
        fps = passes * N / t.seconds if passes else None
        out.append(harness.row(
            f"samplers/{name}", t.seconds, compile_s=t.compile_s, gflops=gflops,
            settings=f"{N} digits, chunk_size {CHUNK}, {settings}", images_per_s=N / t.seconds,
            forward_per_s=fps, ratio=(fps / base_fps if fps else gflops / (base_fps * F / 1e9))))
    return out


if __name__ == "__main__":
    for r in rows(quick=True):
        print(harness.format_row(r))
