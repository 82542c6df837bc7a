"""Which XLA-CPU speed-ups still pay off on the installed jax/jaxlib: every combination of
jaxviz's speed policy (`jaxviz.core.jax_compat.SpeedPolicy`) on MnistCNN's input gradient
and Adam train step, timed round robin in one process (ratios survive a shared machine).

    .venv/bin/python docs/bench/speed_policy.py [BATCH] [ROUNDS]        # lock, jax 0.10.2
    .venv-latest/bin/python docs/bench/speed_policy.py [BATCH] [ROUNDS] # newest releases

Variants (YNN = XLA CPU's YNNPACK fusions, on by default; `xla_cpu.options()` turns them off):
  plain            jax.jit, no rewrite
  ynn_off          YNNPACK off, no rewrite
  fast+pad         fastgrad (pool + conv, with the unpadded-conv row), YNNPACK on
  fast ynn_off     fastgrad (pool + conv, no padding), YNNPACK off   (the 0.10 policy)
  pool ynn_off     fastgrad's pool rewrite only, YNNPACK off
Columns: best wall ms, its ratio to `plain`, best process-CPU ms, its ratio.
"""
import sys
import time

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxviz.core import fastgrad, xla_cpu
from jaxviz.core import jax_compat as compat
from jaxviz.core import probe as probe_lib
from jaxviz.models import MnistCNN

BATCH = int(sys.argv[1]) if len(sys.argv) > 1 else 128
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 7
p = probe_lib.from_model(MnistCNN(rngs=nnx.Rngs(0)))
x = jax.random.uniform(jax.random.key(2), (BATCH, 28, 28, 1))
y = jnp.arange(BATCH) % 10
opt = optax.adam(1e-3)
off = xla_cpu.options()
VARIANTS = {"plain": (p, None), "ynn_off": (p, off),
            "fast+pad": (fastgrad.fast(p, pad_convs=True), None),
            "fast ynn_off": (fastgrad.fast(p, pad_convs=False), off),
            "pool ynn_off": (fastgrad.fast(p, conv=False, pad_convs=False), off)}


def programs(fn, options):
    def saliency(params, x, y):
        return jax.grad(lambda x: jnp.take_along_axis(fn(params, x), y[:, None], 1).sum())(x)

    def step(params, state, x, y):
        loss = lambda ps: optax.softmax_cross_entropy_with_integer_labels(fn(ps, x), y).mean()
        updates, state = opt.update(jax.grad(loss)(params), state, params)
        return optax.apply_updates(params, updates), state
    jit = lambda f: jax.jit(f, compiler_options=options or None)
    return {"input_gradient": (jit(saliency), (p.params, x, y)),
            "train_step_adam": (jit(step), (p.params, opt.init(p.params), x, y))}


cases = {(v, k): c for v, (fn, o) in VARIANTS.items() for k, c in programs(fn, o).items()}
wall = {k: float("inf") for k in cases}
cpu = dict(wall)
for f, a in cases.values():
    jax.block_until_ready(f(*a))
for _ in range(ROUNDS):
    for k, (f, a) in cases.items():
        t, c = time.perf_counter(), time.process_time()
        jax.block_until_ready(f(*a))
        wall[k] = min(wall[k], time.perf_counter() - t)
        cpu[k] = min(cpu[k], time.process_time() - c)
print(f"jax {jax.__version__} jaxlib {compat.JAXLIB_VERSION} batch {BATCH} rounds {ROUNDS}; "
      f"YNN-off options: {off}; policy in force: {compat.speed_policy()}")
print(f"{'pass':16s} {'variant':14s} {'wall ms':>8s} {'ratio':>6s} {'cpu ms':>8s} {'ratio':>6s}")
for kind in ("input_gradient", "train_step_adam"):
    base = (wall["plain", kind], cpu["plain", kind])
    for v in VARIANTS:
        w, c = wall[v, kind], cpu[v, kind]
        print(f"{kind:16s} {v:14s} {w * 1e3:8.1f} {w / base[0]:6.2f} {c * 1e3:8.1f} "
              f"{c / base[1]:6.2f}")
