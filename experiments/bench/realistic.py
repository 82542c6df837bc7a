"""Realistic size (opt-in section `realistic`): a ResNet-18-style NNX model (BatchNorm,
residual blocks as modules, 1000 classes, random weights) on 8 images of 224x224x3,
through every registered attribution method with its default options and default
chunking, exact and incremental occlusion, activation maximization and the architecture
summary. Each analysis runs in a fresh process, so its peak RSS is its own.

Per analysis: the call is jitted and compiled first (compile_s), XLA's memory estimate for
it is read (xla_gb: temporaries + arguments + outputs), and it runs only if that estimate
fits in MEMORY_SHARE of this machine's memory; a row that did not fit says so (seconds
NaN). Workload options that are sized for 28x28 digits are scaled for 224x224 and named
in the row's settings: occlusion window 32 stride 16 (169 positions per image);
activation maximization 8 classes x 32 steps. Everything else is the method's defaults.

    python -m experiments.bench --only realistic           # about 30-60 minutes on 2 cores
    python -m experiments.bench --only realistic --quick   # the methods' quick options
"""
from __future__ import annotations

import inspect
import json
import os
import resource
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from experiments.bench import harness

BATCH, SHAPE, CLASSES = 8, (224, 224, 3), 1000
MEMORY_SHARE = 0.8  # of MemTotal: what one analysis may ask XLA for before it is not run
TIMEOUT_S = 900  # one analysis (build, compile, run); a slower one is a row that says so
OCCLUSION = dict(window=(32, 32), stride=(16, 16))
EXTRA = ("occlusion_incremental", "maximize", "arch_summary")
SAMPLERS = ("feature_ablation", "shapley_sampling", "kernel_shap", "lime", "rise")


class BasicBlock(nnx.Module):
    """conv3x3 -> BN -> relu -> conv3x3 -> BN, plus the (projected) skip, then relu."""

    def __init__(self, c_in: int, c_out: int, stride: int, rngs: nnx.Rngs):
        conv = lambda a, b, k, s: nnx.Conv(a, b, (k, k), strides=(s, s), padding="SAME",  # noqa: E731
                                           use_bias=False, rngs=rngs)
        self.conv1, self.bn1 = conv(c_in, c_out, 3, stride), nnx.BatchNorm(c_out, rngs=rngs)
        self.conv2, self.bn2 = conv(c_out, c_out, 3, 1), nnx.BatchNorm(c_out, rngs=rngs)
        self.projected = stride != 1 or c_in != c_out
        if self.projected:
            self.proj = conv(c_in, c_out, 1, stride)
            self.proj_bn = nnx.BatchNorm(c_out, rngs=rngs)

    def __call__(self, x):
        h = nnx.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        skip = self.proj_bn(self.proj(x)) if self.projected else x
        return nnx.relu(h + skip)


class ResNet18(nnx.Module):
    """ResNet-18 layout (He et al. 2016): 7x7/2 stem, 3x3/2 max-pool, 4 stages of 2 basic
    blocks (64, 128, 256, 512), global average pool, dense. x: (N, 224, 224, 3) -> (N, K)."""

    input_shape = SHAPE

    def __init__(self, num_classes: int = CLASSES, *, rngs: nnx.Rngs):
        self.stem = nnx.Conv(3, 64, (7, 7), strides=(2, 2), padding="SAME", use_bias=False,
                             rngs=rngs)
        self.stem_bn = nnx.BatchNorm(64, rngs=rngs)
        blocks, c = [], 64
        for width, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [BasicBlock(c, width, stride, rngs), BasicBlock(width, width, 1, rngs)]
            c = width
        self.blocks = nnx.List(blocks)
        self.head = nnx.Linear(512, num_classes, rngs=rngs)

    def __call__(self, x):
        x = nnx.relu(self.stem_bn(self.stem(x)))
        x = nnx.max_pool(x, (3, 3), (2, 2), padding="SAME")
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean(axis=(1, 2)))


def names() -> list[str]:
    from jaxviz import attribution  # noqa: PLC0415
    return [*attribution.METHODS, *EXTRA]


def rows(quick: bool = False, only: list[str] | None = None) -> list[dict]:
    """One row per analysis (`only`: a subset of names()), each measured in a fresh process;
    one that fails or runs past TIMEOUT_S is a row with its error and no time."""
    out = []
    for name in only or names():
        try:
            res = harness.run_child("realistic", json.dumps({"analysis": name, "quick": quick}),
                                    timeout=TIMEOUT_S)
        except RuntimeError as err:
            res = {"analysis": name, "error": str(err)[-300:]}
        print(f"#   {json.dumps(res)}", flush=True)  # progress: a long section's rows as they come
        extra = {k: res[k] for k in ("peak_rss_gb", "xla_gb", "fits", "error") if k in res}
        out.append(harness.row(
            f"realistic/{name}", res.get("seconds", float("nan")), compile_s=res.get("compile_s"),
            settings=f"ResNet-18 NNX, {BATCH} x 224x224x3, {res.get('options', '')}", **extra))
    return out


def _memory_limit_gb() -> float:
    with open("/proc/meminfo") as fh:
        total_kb = next(int(line.split()[1]) for line in fh if line.startswith("MemTotal"))
    return MEMORY_SHARE * total_kb / 1e6


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # Linux: kB


def _attribution_call(name: str, quick: bool, probe, t):
    from jaxviz import attribution  # noqa: PLC0415
    method = attribution.get(name)
    opts = dict(method.quick if quick else {})
    if name == "occlusion":
        opts.update(OCCLUSION)
    key = jax.random.key(1) if method.needs_key else None
    call = lambda params, x: method(probe, params, x, t, key=key, **opts).map  # noqa: E731
    shown = {**method.defaults, **opts}
    text = ", ".join(f"{k}={v}" for k, v in shown.items()) or "defaults"
    if name in SAMPLERS:
        text += f" ({_sampler_defaults(name, method.fn, probe, opts)})"
    return call, text


def _sampler_defaults(name: str, fn, probe, opts) -> str:
    """What a sampler's defaults come to at this size: its grid and chunk size."""
    from jaxviz.attribution import perturbation  # noqa: PLC0415
    args = {k: p.default for k, p in inspect.signature(fn).parameters.items()}
    args.update(opts)
    x_shape = (BATCH, *SHAPE)
    _, f = perturbation.feature_mask(None, args.get("grid"), x_shape)
    if name == "feature_ablation":
        passes = f
    elif name == "shapley_sampling":
        passes = args["n_samples"] * (f - 1)
    else:
        passes = args["n_masks" if name == "rise" else "n_samples"]
    chunk = perturbation.sampler_chunk(args["chunk_size"], probe, probe.params, x_shape, passes)
    grid = "" if name == "rise" else (
        f"grid {args.get('grid') or perturbation.default_grid(SHAPE[:2])} = {f} features, ")
    return f"{grid}{passes} samples/image, chunk_size {chunk}"


def _extra_call(name: str, quick: bool, probe, t):
    from jaxviz import arch, occlusion  # noqa: PLC0415
    from jaxviz.maximize import api  # noqa: PLC0415
    if name == "occlusion_incremental":
        return (lambda params, x: occlusion.occlusion(probe, params, x, t, method="incremental",
                                                      **OCCLUSION).map,
                "method=incremental, window=(32, 32), stride=(16, 16)")
    if name == "maximize":
        steps = 4 if quick else 32
        return (lambda params, x: api.all_units(probe, params, "logits", units=range(BATCH),
                                                key=jax.random.key(2), steps=steps).images,
                f"{BATCH} classes x {steps} steps")
    return (lambda params, x: arch.summary(probe, x[:1]).total_flops, "summary of one image")


def measure(name: str, quick: bool) -> dict:
    """The child's work: build, compile (when jittable), check memory, run once."""
    from jaxviz import attribution  # noqa: PLC0415
    from jaxviz.core import probe as probe_lib  # noqa: PLC0415
    probe = probe_lib.from_model(ResNet18(rngs=nnx.Rngs(0)))
    x = jax.random.uniform(jax.random.key(0), (BATCH, *SHAPE))
    t = jnp.arange(BATCH) % CLASSES
    make = _attribution_call if name in attribution.METHODS else _extra_call
    call, options = make(name, quick, probe, t)
    out = {"analysis": name, "options": options}
    warnings.simplefilter("ignore")
    if name in attribution.METHODS or name == "occlusion_incremental":
        t0 = time.perf_counter()
        compiled = jax.jit(call).lower(probe.params, x).compile()
        out["compile_s"] = time.perf_counter() - t0
        mem = compiled.memory_analysis()
        need = sum(getattr(mem, f, 0) or 0 for f in (
            "temp_size_in_bytes", "argument_size_in_bytes", "output_size_in_bytes")) / 1e9
        out.update(xla_gb=need, fits=need <= _memory_limit_gb())
        if not out["fits"]:
            out["peak_rss_gb"] = _peak_rss_gb()
            return out
        call = compiled
    t0 = time.perf_counter()
    jax.block_until_ready(call(probe.params, x))
    out.update(seconds=time.perf_counter() - t0, peak_rss_gb=_peak_rss_gb())
    return out


if __name__ == "__main__":  # the child process of rows()
    args = json.loads(sys.argv[1])
    print(json.dumps(measure(args["analysis"], args.get("quick", False))))
