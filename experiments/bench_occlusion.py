"""Benchmark for `jaxviz.occlusion`: exact vs plain forward, incremental vs exact, the seed's
loop, and peak memory with and without chunking.

    .venv/bin/python -m experiments.bench_occlusion [--quick] [--vgg]

About 2-4 minutes on a quiet 2-core machine (quick: 16 digits, no VGG run; --vgg adds the
224x224x3 memory rows, ~1-3 minutes more). MnistCNN with random weights (speed does not depend
on the weights). Workload of the issue: 64 digits x 4x4 window, stride 1 = 625 positions
each, 40,000 forward passes; the plain batched forward runs the same 40,000 images in
batches of 625 in the same run. FLOPs come from XLA's cost analysis of the compiled programs.
"""
from __future__ import annotations

import functools
import json
import resource
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from experiments.timing import CNN_FORWARD_FLOPS as F
from experiments.timing import best_of
from jaxviz.occlusion import incremental
from jaxviz.core import probe as probe_lib
from jaxviz.data import load_bundled
from jaxviz.models import MnistCNN
from jaxviz.occlusion import grid, occlusion
from jaxviz.occlusion.exact import _occluded_logits


@functools.partial(jax.jit, static_argnames=("fn", "batch"))
def plain_forward(fn, params, x, *, batch):
    return jax.lax.map(lambda xi: fn(params, xi[None])[0], x, batch_size=batch)


def _flops(fn, params, x, method, window=(4, 4, 1), stride=(1, 1, 1)):
    """XLA's FLOP count for one image's occluded logits (all positions in one batch)."""
    starts, _ = grid(x.shape[1:], window, stride)
    f = incremental.occluded_logits if method == "incremental" else _occluded_logits
    body = lambda pr, xi: f(fn, pr, xi, xi, starts, window, len(starts))  # noqa: E731
    cost = jax.jit(body).lower(params, x[:1]).compile().cost_analysis()
    return float((cost[0] if isinstance(cost, list) else cost)["flops"])


def _timed(call, repeats):
    t0 = time.perf_counter()
    call()
    first = time.perf_counter() - t0
    best = best_of(call, repeats)
    return best, max(first - best, 0.0)


def matmul_peak() -> float:
    a = jnp.ones((2048, 2048), jnp.float32)
    f = jax.jit(jnp.dot)
    jax.block_until_ready(f(a, a))
    return 2 * 2048 ** 3 / best_of(lambda: jax.block_until_ready(f(a, a)), 5) / 1e9


def rows(quick: bool = False, vgg: bool = False) -> list[dict]:
    n = 16 if quick else 64
    data = load_bundled()
    x, y = data.x_val[:n], data.y_val[:n]
    probe = probe_lib.from_model(MnistCNN(rngs=nnx.Rngs(0)))
    params, reps, peak = probe.params, 2 if quick else 3, matmul_peak()
    kw = dict(window=4, stride=1)
    settings = f"{n} digits x 625 positions (4x4, stride 1), MnistCNN"
    big = jnp.repeat(x, 625, axis=0)  # as many plain images as occluded ones
    t_fwd, c_fwd = _timed(lambda: jax.block_until_ready(
        plain_forward(probe, params, big, batch=625)), reps)
    t_ex, c_ex = _timed(lambda: jax.block_until_ready(
        occlusion(probe, params, x, y, **kw)), reps)
    t_in, c_in = _timed(lambda: jax.block_until_ready(
        occlusion(probe, params, x, y, method="incremental", **kw)), reps)
    fl_ex, fl_in = _flops(probe, params, x, "exact"), _flops(probe, params, x, "incremental")
    gf = lambda flops, t: flops * n / t / 1e9  # noqa: E731
    out = [
        dict(name="occlusion/plain_forward", settings=f"{n * 625} images, batches of 625",
             seconds=t_fwd, compile_s=c_fwd, gflops=n * 625 * F / t_fwd / 1e9,
             pct_of_peak=100 * n * 625 * F / t_fwd / 1e9 / peak, matmul_peak_gflops=peak),
        dict(name="occlusion/exact", settings=settings, seconds=t_ex, compile_s=c_ex,
             gflops=gf(fl_ex, t_ex), pct_of_peak=100 * gf(fl_ex, t_ex) / peak,
             ratio=t_ex / t_fwd, overhead_vs_forward=t_ex / t_fwd - 1),
        dict(name="occlusion/incremental", settings=settings, seconds=t_in, compile_s=c_in,
             gflops=gf(fl_in, t_in), ratio=t_ex / t_in, speedup_vs_exact=t_ex / t_in,
             flops_per_image=fl_in, exact_flops_per_image=fl_ex,
             flops_saved=1 - fl_in / fl_ex),
    ]
    one = jax.jit(probe.__call__)
    starts, _ = grid((28, 28, 1), (4, 4, 1), (1, 1, 1))

    def seed_way():  # the seed's loop: one jitted forward per occluded copy
        img = np.asarray(x[0])
        for y0, x0, _ in starts:
            tmp = img.copy()
            tmp[y0:y0 + 4, x0:x0 + 4] = 0.0
            one(params, tmp[None]).block_until_ready()
    t_seed, c_seed = _timed(seed_way, 1 if quick else 2)
    out.append(dict(name="occlusion/seed_python_loop", settings="1 digit x 625 positions, "
                    "a jitted batch-1 forward per position", seconds=t_seed, compile_s=c_seed,
                    gflops=625 * F / t_seed / 1e9, ratio=t_seed / (t_ex / n),
                    slowdown_vs_exact_per_digit=t_seed / (t_ex / n)))
    if vgg:
        for chunk in (64, None):
            out.append(_vgg_row(chunk, run=chunk is not None))
    return out


def _vgg_row(chunk, run: bool) -> dict:
    """Peak RSS of a subprocess running exact occlusion on one 224x224x3 image (VGG-style)."""
    cmd = [sys.executable, "-m", "experiments.bench_occlusion", "--vgg-child",
           json.dumps({"chunk": chunk, "run": run})]
    res = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True)
                     .stdout.strip().splitlines()[-1])
    return dict(name=f"occlusion/vgg224_{'chunk' + str(chunk) if chunk else 'unchunked'}",
                settings="1 image 224x224x3, VGG-style random weights, 8x8 window, stride 4, "
                         f"3025 positions, chunk_size={chunk}" + ("" if run else
                         " (compiled, not run: XLA's temp buffer estimate)"),
                seconds=res.get("seconds", float("nan")), compile_s=res.get("compile_s"),
                gflops=None, **{k: res[k] for k in ("peak_rss_gb", "xla_temp_gb") if k in res})


def _vgg_child(chunk, run):
    from flax import linen as nn

    class VGG(nn.Module):
        @nn.compact
        def __call__(self, x):
            for width in (8, 16, 32, 64, 64):
                x = nn.relu(nn.Conv(width, (3, 3))(x))
                x = nn.relu(nn.Conv(width, (3, 3))(x))
                x = nn.max_pool(x, (2, 2), (2, 2))
            return nn.Dense(1000)(nn.relu(nn.Dense(256)(x.reshape(x.shape[0], -1))))
    module = VGG()
    x = jax.random.uniform(jax.random.key(0), (1, 224, 224, 3))
    probe = probe_lib.from_model(module, module.init(jax.random.key(1), x))
    kw = dict(window=8, stride=4, chunk_size=chunk)
    from jaxviz.occlusion.exact import _occlusion_exact as _occlusion
    lowered = _occlusion.lower(probe, probe.params, x, jnp.zeros(1, jnp.int32), jnp.zeros_like(x),
                               window=(8, 8, 3), stride=(4, 4, 3), score="logit",
                               batch=chunk or 3025, method="exact")
    mem = lowered.compile().memory_analysis()
    out = {"xla_temp_gb": getattr(mem, "temp_size_in_bytes", 0) / 1e9}
    if run:
        t0 = time.perf_counter()
        jax.block_until_ready(occlusion(probe, probe.params, x, 0, **kw))
        first = time.perf_counter() - t0
        out["seconds"] = best_of(lambda: jax.block_until_ready(
            occlusion(probe, probe.params, x, 0, **kw)), 1)
        out["compile_s"] = max(first - out["seconds"], 0.0)
        out["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(json.dumps(out))


if __name__ == "__main__":
    if "--vgg-child" in sys.argv:
        _vgg_child(**json.loads(sys.argv[-1]))
    else:
        from experiments.timing import format_row
        for r in rows(quick="--quick" in sys.argv, vgg="--vgg" in sys.argv):
            print(format_row(r), {k: v for k, v in r.items() if k in (
                "flops_saved", "overhead_vs_forward", "peak_rss_gb", "xla_temp_gb")})
