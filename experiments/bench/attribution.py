"""`jaxviz.attribution`: images/s of every registered method on a batch of digits.

The seed's MnistCNN with random weights (speed does not depend on the weights); each method
called through its public function. Settings: 64 digits, IG 50 Gauss-Legendre steps,
SmoothGrad 50 samples, Score-CAM over all 64 channels of the default layer; methods with a
`chunk_size` option also run 10 passes at a time. A method registered later and not in PLAN
gets one row with its registry defaults. GFLOP/s come from a model-based count: forward
F = 24.0 MFLOP/image, a full backward 2F; Grad-CAM's backward stops at the pooled conv2
output (dense layers only, ~4.7 MFLOP).
"""
from __future__ import annotations

import jax
from flax import nnx

from experiments.bench import harness
from jaxviz import attribution as A
from jaxviz.core import probe as probe_lib
from jaxviz.data import load_bundled
from jaxviz.models import MnistCNN

F = harness.CNN_FORWARD_FLOPS
DENSE_BWD = 2 * (9216 * 128 + 128 * 10) * 2  # backward through dense1 and preds only
CONV2 = 2 * 24 * 24 * 64 * 3 * 3 * 32  # conv2's forward; LRP's z+ adds one (W+ x)
SKIP = ("occlusion",)  # timed in its own section


def plan(quick: bool) -> dict:
    """{method: [(row suffix, options, settings, FLOPs per image)]}."""
    steps = samples = 10 if quick else 50
    key = jax.random.key(0)
    relu = [("", {}, "jaxpr ReLU rewrite", 3 * F)]
    cam = F + DENSE_BWD
    return {
        "saliency": [("", {}, "", 3 * F)],
        "gradient_x_input": [("", {}, "", 3 * F)],
        "guided_backprop": relu,
        "deconvnet": relu,
        "smoothgrad": [
            ("", dict(key=key, n_samples=samples), f"{samples} samples vmapped",
             samples * 3 * F),
            ("_chunked", dict(key=key, n_samples=samples, chunk_size=10),
             f"{samples} samples, 10 at a time", samples * 3 * F)],
        "integrated_gradients": [
            ("", dict(n_steps=steps), f"{steps} Gauss-Legendre steps vmapped",
             (3 * steps + 2) * F),
            ("_chunked", dict(n_steps=steps, chunk_size=10),
             f"{steps} steps, 10 at a time (scan)", (3 * steps + 2) * F)],
        "grad_cam": [("", {}, "layer dropout1 (pooled conv2)", cam)],
        "grad_cam_plus_plus": [("", {}, "layer dropout1", cam)],
        "score_cam": [("", dict(chunk_size=16), "64 channels of dropout1, 16 at a time",
                       65 * F)],
        "guided_grad_cam": [("", {}, "", 4 * F + DENSE_BWD)],
        "deeplift": [("", {}, "zero baseline (its reference pass on a batch of 1)", 3 * F)],
        "deeplift_shap": [("", dict(key=key, n_baselines=samples // 5),
                           f"{samples // 5} uniform baselines per image", samples // 5 * 4 * F)],
        "lrp": [("", {}, "epsilon_plus: conv z+, dense epsilon", 3 * F + CONV2),
                ("_epsilon", dict(composite="epsilon"), "every layer epsilon", 3 * F),
                ("_gamma_box", dict(composite="epsilon_gamma_box"),
                 "conv gamma, dense epsilon, conv1 z^B", None)],
    }


def _cases(quick: bool):
    """(row name, call(probe, params, x, y), settings, FLOPs per image or None)."""
    table = plan(quick)
    for name, method in A.METHODS.items():
        if name in SKIP:
            continue
        if name not in table:  # registered later: the registry's defaults
            key = jax.random.key(0) if method.needs_key else None
            yield (name, lambda *a, m=method, k=key: m(*a, key=k).map, "registry defaults",
                   None)
            continue
        for suffix, options, settings, flops in table[name]:
            yield (name + suffix, lambda *a, f=method.fn, o=options: f(*a, **o), settings,
                   flops)


def rows(quick: bool = False) -> list[dict]:
    n = 16 if quick else 64
    data = load_bundled()
    x, y = data.x_val[:n], data.y_val[:n]
    probe = probe_lib.from_model(MnistCNN(rngs=nnx.Rngs(0)))
    out = []
    for name, call, settings, flops in _cases(quick):
        t = harness.timed(lambda call=call: call(probe, probe.params, x, y),
                          2 if quick else 3)
        out.append(harness.row(
            f"attribution/{name}", t.seconds, compile_s=t.compile_s,
            settings=f"{n} digits, MnistCNN" + (f", {settings}" if settings else ""),
            gflops=flops * n / t.seconds / 1e9 if flops else None, images_per_s=n / t.seconds,
            forward_equiv=flops / F if flops else None))
    return out
