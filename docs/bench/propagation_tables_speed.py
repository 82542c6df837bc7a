"""The benchmark's attribution rows for LRP and DeepLIFT only (experiments.bench.attribution's
cases and harness: 64 digits, MnistCNN random init, best of 5 warm calls).

Run from a tree's root, for the tree before and after a change, alternating:
    PYTHONPATH=. python docs/bench/propagation_tables_speed.py
"""
import sys, json
from flax import nnx
from experiments.bench import harness, attribution as B
from jaxviz.core import probe as probe_lib
from jaxviz.data import load_bundled
from jaxviz.models import MnistCNN

n = 64
data = load_bundled()
x, y = data.x_val[:n], data.y_val[:n]
probe = probe_lib.from_model(MnistCNN(rngs=nnx.Rngs(0)))
for name, call, settings, flops in B._cases(False):
    if not (name.startswith("lrp") or name.startswith("deeplift")):
        continue
    t = harness.timed(lambda call=call: call(probe, probe.params, x, y), 5)
    print(json.dumps(dict(row=name, seconds=round(t.seconds, 4), compile_s=round(t.compile_s, 2))), flush=True)
