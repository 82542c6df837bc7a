"""Hashes of the jaxprs of the benchmark's LRP (three composites) and DeepLIFT (both rules)
programs on MnistCNN, class targets: equal hashes in two trees mean the same compiled
program, so the same speed. Run from a tree's root:
    PYTHONPATH=. python docs/bench/propagation_tables_jaxprs.py
(the imports fall back to the pre-move module paths, jaxviz.attribution.lrp_*)."""
import hashlib
import importlib
import jax, jax.numpy as jnp
from jax import lax
from flax import nnx
from jaxviz.core import analysis, probe as probe_lib, compile as compile_lib
from jaxviz.models import MnistCNN
D = importlib.import_module("jaxviz.attribution.deeplift")  # the module, not the function
try:
    from jaxviz.propagation import lrp_composites as LC
    from jaxviz.propagation.lrp_trace import LrpFn
except ImportError:
    from jaxviz.attribution import lrp_composites as LC
    from jaxviz.attribution.lrp_trace import LrpFn
p = probe_lib.from_model(MnistCNN(rngs=nnx.Rngs(0)))
x = jnp.zeros((4, 28, 28, 1)); t = jnp.array([0, 1, 2, 3])
view = analysis.static_fn(p)
for comp in ("epsilon_plus", "epsilon", "epsilon_gamma_box"):
    model = compile_lib.fast_model(LrpFn(view, LC.resolve(comp)))
    def total(x):
        s = analysis.target_score(model(p.params, x), t)
        return (s * lax.stop_gradient(s)).sum()
    txt = str(jax.make_jaxpr(jax.grad(total))(x))
    print("lrp", comp, len(txt), hashlib.sha1(txt.encode()).hexdigest()[:12])
for rule in ("rescale", "reveal_cancel"):
    txt = str(jax.make_jaxpr(lambda x: D.multipliers(view, p.params, x, jnp.zeros((1, 28, 28, 1)), t, rule)[:2])(x))
    print("deeplift", rule, len(txt), hashlib.sha1(txt.encode()).hexdigest()[:12])
