"""`jaxviz.occlusion`: exact vs a plain forward of as many images, incremental vs exact,
the Keras recipe's loop; and (opt-in section `occlusion_memory`) peak memory with and
without chunking on a 224x224x3 model.

MnistCNN with random weights (speed does not depend on the weights). Workload: 64 digits x
4x4 window, stride 1 = 625 positions each, 40,000 forward passes; the plain batched forward
runs the same 40,000 images in batches of 625 in the same run. FLOPs of the occluded passes
come from XLA's cost analysis of one image's program.
"""
from __future__ import annotations

import functools
import json
import resource
import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from experiments.bench import harness
from jaxviz.core import probe as probe_lib
from jaxviz.data import load_bundled
from jaxviz.models import MnistCNN
from jaxviz.occlusion import exact, grid, incremental, occlusion

F = harness.CNN_FORWARD_FLOPS


@functools.partial(jax.jit, static_argnames=("fn", "batch"))
def plain_forward(fn, params, x, *, batch):
    return jax.lax.map(lambda xi: fn(params, xi[None])[0], x, batch_size=batch)


def _flops(fn, params, x, method, window=(4, 4, 1), stride=(1, 1, 1)):
    """XLA's FLOP count for one image's occluded logits (all positions in one batch)."""
    starts, _ = grid(x.shape[1:], window, stride)
    f = (incremental if method == "incremental" else exact).occluded_logits
    body = lambda pr, xi: f(fn, pr, xi, xi, starts, window, len(starts))  # noqa: E731
    cost = jax.jit(body).lower(params, x[:1]).compile().cost_analysis()
    return float((cost[0] if isinstance(cost, list) else cost)["flops"])


def _keras_recipe_row(probe, x, repeats):
    """The recipe's loop: one jitted batch-1 forward per occluded copy of one digit."""
    one = jax.jit(probe.__call__)
    starts, _ = grid((28, 28, 1), (4, 4, 1), (1, 1, 1))

    def loop():
        img = np.asarray(x[0])
        for y0, x0, _ in starts:
            tmp = img.copy()
            tmp[y0:y0 + 4, x0:x0 + 4] = 0.0
            one(probe.params, tmp[None]).block_until_ready()
    return harness.timed(loop, repeats)


def rows(quick: bool = False) -> list[dict]:
    n = 16 if quick else 64
    data = load_bundled()
    x, y = data.x_val[:n], data.y_val[:n]
    probe = probe_lib.from_model(MnistCNN(rngs=nnx.Rngs(0)))
    params, reps = probe.params, 2 if quick else 3
    kw = dict(window=4, stride=1)
    settings = f"{n} digits x 625 positions (4x4, stride 1), MnistCNN"
    big = jnp.repeat(x, 625, axis=0)  # as many plain images as occluded ones
    fwd = harness.timed(lambda: plain_forward(probe, params, big, batch=625), reps)
    ex = harness.timed(lambda: occlusion(probe, params, x, y, **kw), reps)
    inc = harness.timed(lambda: occlusion(probe, params, x, y, method="incremental", **kw), reps)
    fl_ex, fl_in = _flops(probe, params, x, "exact"), _flops(probe, params, x, "incremental")
    gf = lambda flops, t: flops * n / t / 1e9  # noqa: E731
    recipe = _keras_recipe_row(probe, x, 1 if quick else 2)
    per_digit = ex.seconds / n
    return [
        harness.row("occlusion/plain_forward", fwd.seconds,
                    settings=f"{n * 625} images, batches of 625", compile_s=fwd.compile_s,
                    gflops=n * 625 * F / fwd.seconds / 1e9),
        harness.row("occlusion/exact", ex.seconds, settings=settings, compile_s=ex.compile_s,
                    gflops=gf(fl_ex, ex.seconds), ratio=ex.seconds / fwd.seconds,
                    overhead_vs_forward=ex.seconds / fwd.seconds - 1),
        harness.row("occlusion/incremental", inc.seconds, settings=settings,
                    compile_s=inc.compile_s, gflops=gf(fl_in, inc.seconds),
                    ratio=ex.seconds / inc.seconds, speedup_vs_exact=ex.seconds / inc.seconds,
                    flops_per_image=fl_in, exact_flops_per_image=fl_ex,
                    flops_saved=1 - fl_in / fl_ex),
        harness.row("occlusion/seed_python_loop", recipe.seconds,
                    settings="1 digit x 625 positions, a jitted batch-1 forward per position",
                    compile_s=recipe.compile_s, gflops=625 * F / recipe.seconds / 1e9,
                    ratio=recipe.seconds / per_digit,
                    slowdown_vs_exact_per_digit=recipe.seconds / per_digit),
    ]


def memory_rows(quick: bool = False) -> list[dict]:
    """Peak memory of exact occlusion on one 224x224x3 image, chunked and not (the latter
    only compiled: XLA's temp buffer estimate). Each in a fresh process, for its peak RSS."""
    return [_memory_row(chunk, run=chunk is not None) for chunk in (64, None)]


def _memory_row(chunk, run: bool) -> dict:
    res = harness.run_child("occlusion", json.dumps({"chunk": chunk, "run": run}))
    return harness.row(
        f"occlusion/vgg224_{'chunk' + str(chunk) if chunk else 'unchunked'}",
        res.get("seconds", float("nan")), compile_s=res.get("compile_s"),
        settings="1 image 224x224x3, VGG-style random weights, 8x8 window, stride 4, "
                 f"3025 positions, chunk_size={chunk}" + ("" if run else
                 " (compiled, not run: XLA's temp buffer estimate)"),
        **{k: res[k] for k in ("peak_rss_gb", "xla_temp_gb") if k in res})


def _vgg_probe():
    from flax import linen as nn  # noqa: PLC0415

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
    return probe_lib.from_model(module, module.init(jax.random.key(1), x)), x


def _memory_child(chunk, run: bool) -> dict:
    """The measurement itself (run in a fresh process by _memory_row)."""
    probe, x = _vgg_probe()
    call = lambda params, x: occlusion(  # noqa: E731
        probe, params, x, 0, window=8, stride=4, chunk_size=chunk).map
    mem = jax.jit(call).lower(probe.params, x).compile().memory_analysis()
    out = {"xla_temp_gb": getattr(mem, "temp_size_in_bytes", 0) / 1e9}
    if run:
        t = harness.timed(lambda: call(probe.params, x), 1)
        out.update(seconds=t.seconds, compile_s=t.compile_s,
                   peak_rss_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6)
    return out


if __name__ == "__main__":  # the child process of memory_rows
    print(json.dumps(_memory_child(**json.loads(sys.argv[1]))))
