"""Benchmark for `jaxviz.attribution`: images/s per method on a batch of digits.

    .venv/bin/python -m experiments.bench_attribution [--quick]

About 3-5 minutes on a quiet 2-core machine (quick: ~1 minute). The seed's MnistCNN with
random weights (speed does not depend on the weights); every method called through its
public function, whose jitted body takes params and images as arguments. Settings as in the
issue: 64 digits, IG 50 Gauss-Legendre steps, SmoothGrad 50 samples, Score-CAM over all 64
channels of the default layer. GFLOP/s come from a model-based count: forward F = 24.0
MFLOP/image, a full backward 2F; Grad-CAM's backward stops at the pooled conv2 output
(dense layers only, ~4.7 MFLOP).
"""
from __future__ import annotations

import statistics
import sys
import time

import jax
from flax import nnx

from experiments.timing import CNN_FORWARD_FLOPS as F
from jaxviz import attribution as A
from jaxviz.core import probe as probe_lib
from jaxviz.data import load_bundled
from jaxviz.models import MnistCNN

DENSE_BWD = 2 * (9216 * 128 + 128 * 10) * 2  # backward through dense1 and preds only


def _cases(quick: bool):
    steps, samples = (10, 10) if quick else (50, 50)
    key = jax.random.key(0)
    return {  # name -> (call(probe, params, x, y), settings, FLOPs per image)
        "saliency": (lambda *a: A.saliency(*a), "", 3 * F),
        "gradient_x_input": (lambda *a: A.gradient_x_input(*a), "", 3 * F),
        "guided_backprop": (lambda *a: A.guided_backprop(*a), "jaxpr ReLU rewrite", 3 * F),
        "deconvnet": (lambda *a: A.deconvnet(*a), "jaxpr ReLU rewrite", 3 * F),
        "smoothgrad": (lambda *a: A.smoothgrad(*a, key=key, n_samples=samples),
                       f"{samples} samples vmapped", samples * 3 * F),
        "smoothgrad_chunked": (lambda *a: A.smoothgrad(*a, key=key, n_samples=samples,
                                                       batch_size=10),
                               f"{samples} samples, 10 at a time", samples * 3 * F),
        "integrated_gradients": (lambda *a: A.integrated_gradients(*a, n_steps=steps),
                                 f"{steps} Gauss-Legendre steps vmapped", (3 * steps + 2) * F),
        "integrated_gradients_chunked": (
            lambda *a: A.integrated_gradients(*a, n_steps=steps, internal_batch_size=10),
            f"{steps} steps, 10 at a time (scan)", (3 * steps + 2) * F),
        "grad_cam": (lambda *a: A.grad_cam(*a), "layer dropout1 (pooled conv2)", F + DENSE_BWD),
        "grad_cam_plus_plus": (lambda *a: A.grad_cam_plus_plus(*a), "layer dropout1",
                               F + DENSE_BWD),
        "score_cam": (lambda *a: A.score_cam(*a, batch_size=16),
                      "64 channels of dropout1, 16 at a time", 65 * F),
        "guided_grad_cam": (lambda *a: A.guided_grad_cam(*a), "", 4 * F + DENSE_BWD),
    }


def rows(quick: bool = False) -> list[dict]:
    n = 16 if quick else 64
    data = load_bundled()
    x, y = data.x_val[:n], data.y_val[:n]
    probe = probe_lib.from_model(MnistCNN(rngs=nnx.Rngs(0)))
    out = []
    for name, (call, settings, flops) in _cases(quick).items():
        run = lambda: jax.block_until_ready(call(probe, probe.params, x, y))  # noqa: E731
        t0 = time.perf_counter()
        run()
        first = time.perf_counter() - t0
        times = []
        for _ in range(2 if quick else 3):
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
        best = min(times)
        out.append(dict(name=f"attribution/{name}",
                        settings=f"{n} digits, MnistCNN" + (f", {settings}" if settings else ""),
                        seconds=best, compile_s=max(first - statistics.median(times), 0.0),
                        gflops=flops * n / best / 1e9, images_per_s=n / best,
                        forward_equiv=flops / F))
    return out


if __name__ == "__main__":
    from experiments.timing import format_row
    for r in rows(quick="--quick" in sys.argv):
        print(format_row(r))
