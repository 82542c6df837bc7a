"""saliency vs every LRP composite and DeepLIFT, seed MnistCNN (random init), 64 bundled digits,
interleaved rounds in one process, best wall and best process-CPU time per method."""
import sys, time, inspect
import jax
from flax import nnx
from jaxviz import attribution as A
from jaxviz.propagation import lrp_composites as LC
from jaxviz.core import probe as probe_lib
from jaxviz.data import load_bundled
from jaxviz.models import MnistCNN

R = int(sys.argv[1]) if len(sys.argv) > 1 else 10
data = load_bundled()
x, y = data.x_val[:64], data.y_val[:64]
p = probe_lib.from_model(MnistCNN(rngs=nnx.Rngs(0)))
cases = {"saliency": lambda: A.saliency(p, p.params, x, y),
         "deeplift": lambda: A.deeplift(p, p.params, x, y)}
if "rule" in inspect.signature(A.deeplift).parameters:
    cases["deeplift_reveal_cancel"] = lambda: A.deeplift(p, p.params, x, y, rule="reveal_cancel")
for c in LC.COMPOSITES:
    cases["lrp_" + c] = lambda c=c: A.lrp(p, p.params, x, y, composite=c)
best = {k: float("inf") for k in cases}; cpu = dict(best)
for f in cases.values():
    jax.block_until_ready(f()); jax.block_until_ready(f())
for _ in range(R):
    for k, f in cases.items():
        t, c = time.perf_counter(), time.process_time(); jax.block_until_ready(f())
        best[k] = min(best[k], time.perf_counter() - t); cpu[k] = min(cpu[k], time.process_time() - c)
print(f"{'method':32s} {'wall ms':>8s} {'ratio':>6s} {'cpu ms':>8s} {'ratio':>6s}")
for k in cases:
    print(f"{k:32s} {best[k]*1e3:8.2f} {best[k]/best['saliency']:6.2f} {cpu[k]*1e3:8.2f} {cpu[k]/cpu['saliency']:6.2f}")
