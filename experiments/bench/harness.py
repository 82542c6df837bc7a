"""The benchmark harness every section uses: timing, the machine's matmul peak, the row
schema, the printed line and the JSON file.

Timing rules (README "Benchmarks"): every call blocks until its result is ready; the first
call (compilation, warm-up) is timed apart and reported as `compile_s`, its extra time over
the steady state; `seconds` is the best of the repeats after it. Time functions whose
tensors are arguments: a closed-over constant gets constant-folded and fakes speed.
"""
from __future__ import annotations

import functools
import json
import math
import numbers
import os
import platform
import subprocess
import sys
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxviz import io

CNN_FORWARD_FLOPS = 23_984_896  # seed's CNN, per 28x28x1 image: conv1 + conv2 + dense1 + preds
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REQUIRED = ("name", "settings", "seconds", "compile_s", "gflops")
OPTIONAL = ("images_per_s", "forward_equiv", "ratio")  # printed when present


class Timing(NamedTuple):
    seconds: float    # best wall time of the repeats after the first call
    compile_s: float  # the first call's extra time over `seconds` (compile, warm-up), >= 0
    result: Any       # the last call's result


def seconds(fn) -> float:
    """Wall time of one fn() call, blocking on its result (jax arrays in any pytree)."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t0


def best_of(fn, repeats: int = 5) -> float:
    """Best wall time of fn() over `repeats` calls."""
    return min(seconds(fn) for _ in range(repeats))


def timed(fn, repeats: int, *, warm: bool = True) -> Timing:
    """Time fn(): one first call, then `repeats` more (warm=False: the first call counts as
    a repeat, for slow eager runs where a warm-up call would double the cost)."""
    times, result = [], None
    for _ in range(repeats + warm):
        t0 = time.perf_counter()
        result = jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    best = min(times[1:] if warm else times)
    return Timing(best, max(times[0] - best, 0.0), result)


def round_robin(cases: dict, rounds: int) -> dict:
    """Time every case once per round, interleaved, so that a shared machine's slow spells
    hit every variant alike and ratios within one table survive them.

    cases: {name: (fn, args)}; fn(*args) is called, and fn.lower(*args) read for XLA's FLOP
    count when fn has it. -> {name: (best wall s, best process CPU s, compile s, flops)}.
    """
    out = {}
    for name, (f, args) in cases.items():
        first = seconds(lambda f=f, args=args: f(*args))
        lower = getattr(f, "lower", None)
        flops = (lower(*args).compile().cost_analysis() or {}).get("flops") if lower else None
        out[name] = [math.inf, math.inf, first, flops]
    for _ in range(rounds):
        for name, (f, args) in cases.items():
            t, c = time.perf_counter(), time.process_time()
            jax.block_until_ready(f(*args))
            r = out[name]
            r[0], r[1] = min(r[0], time.perf_counter() - t), min(r[1], time.process_time() - c)
    return {name: (wall, cpu, max(first - wall, 0.0), flops)
            for name, (wall, cpu, first, flops) in out.items()}


@functools.cache
def matmul_peak(n: int | None = None) -> dict:
    """Best fp32 GFLOP/s of an n x n matmul, numpy's and jnp.dot's (n: 2048 on a CPU,
    8192 on an accelerator). Measured once per process."""
    n = n or (2048 if jax.default_backend() == "cpu" else 8192)
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    t_np = best_of(lambda: a @ a, repeats=5)
    dot, ja = jax.jit(jnp.dot), jnp.asarray(a)
    t_jnp = best_of(lambda: dot(ja, ja), repeats=5)
    flops = 2 * n ** 3
    return {"n": n, "numpy_gflops": flops / t_np / 1e9, "jnp_gflops": flops / t_jnp / 1e9,
            "peak_gflops": max(flops / t_np, flops / t_jnp) / 1e9}


def machine_line(peak: dict) -> str:
    return (f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"jax {jax.__version__} on {jax.default_backend()}; matmul peak "
            f"{peak['peak_gflops']:.0f} GFLOP/s (numpy {peak['numpy_gflops']:.0f}, "
            f"jnp.dot {peak['jnp_gflops']:.0f})")


def row(name: str, seconds: float, *, settings: str = "", compile_s: float | None = None,
        gflops: float | None = None, **extra) -> dict:
    """One benchmark row: the REQUIRED keys, then OPTIONAL ones and a section's own extras
    (ratios, FLOP counts, flags). A row's figures are plain floats, ints, bools or None."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string; got {name!r}")
    if not isinstance(settings, str):
        raise ValueError(f"settings must be a string; got {type(settings).__name__}")
    if isinstance(seconds, bool) or not isinstance(seconds, numbers.Real):
        raise ValueError(f"seconds must be a number; got {seconds!r}")
    for key, value in (("compile_s", compile_s), ("gflops", gflops)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
            raise ValueError(f"{key} must be a number or None; got {value!r}")
    return {"name": name, "settings": settings, "seconds": float(seconds),
            "compile_s": None if compile_s is None else float(compile_s),
            "gflops": None if gflops is None else float(gflops), **extra}


def with_peak(r: dict, section: str, peak: dict) -> dict:
    """r with its section, the machine's peak and its share of that peak (where it has GFLOP/s)."""
    missing = [k for k in REQUIRED if k not in r]
    if missing:
        raise ValueError(f"benchmark row {r.get('name')!r} of section {section!r} lacks "
                         f"{missing}; build rows with harness.row(...)")
    out = {**r, "section": r.get("section", section), "peak_gflops": peak["peak_gflops"]}
    if r.get("gflops"):
        out["pct_of_peak"] = 100 * r["gflops"] / peak["peak_gflops"]
    return out


def format_row(r: dict) -> str:
    """The printed line: name, time, compile, then whichever figures the row has."""
    ms = r["seconds"] * 1e3
    parts = [f"{r['name']:<48}", "  not run" if math.isnan(ms) else f"{ms:9.1f} ms"]
    if r.get("compile_s") is not None:
        parts.append(f"compile {r['compile_s']:.2f}s")
    for key, fmt in (("images_per_s", "{:.0f} img/s"), ("forward_equiv", "{:.2f}x fwd"),
                     ("ratio", "ratio {:.2f}"), ("gflops", "{:.1f} GFLOP/s"),
                     ("pct_of_peak", "{:.0f}% of peak")):
        if r.get(key) is not None:
            parts.append(fmt.format(r[key]))
    if r.get("settings"):
        parts.append(f"[{r['settings']}]")
    return "  ".join(parts)


def write_json(path: str | os.PathLike, peak: dict, rows: list[dict]) -> None:
    """{"peak": ..., "backend": ..., "rows": [...]} to `path`, atomically (jaxviz.io)."""
    io.write_json(path, {"peak": peak, "backend": jax.default_backend(), "rows": rows})


def run_child(module: str, *args: str, env: dict | None = None,
              timeout: float | None = None) -> dict:
    """Run `python -m experiments.bench.<module> *args` in a fresh process (own device count,
    own peak memory) from the repository root -> the JSON object on its last stdout line.
    A child still running after `timeout` seconds is killed (RuntimeError)."""
    environ = dict(os.environ, **(env or {}))
    environ["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, environ.get("PYTHONPATH")) if p)
    try:
        proc = subprocess.run([sys.executable, "-m", f"experiments.bench.{module}", *args],
                              env=environ, cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"experiments.bench.{module} {' '.join(args)} did not finish in "
                           f"{timeout:.0f} s") from None
    if proc.returncode != 0:
        raise RuntimeError(f"experiments.bench.{module} {' '.join(args)} exited with "
                           f"{proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
