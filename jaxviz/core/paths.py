"""Which layers every path from the input to the output goes through.

A layer is on the main path when replacing its activation by an independent value leaves
the output independent of the input: nothing reaches the logits around it. In a residual
net, a block's output after the merge is on the main path; a conv inside the block's
branch is not (the skip connection bypasses it). Grad-CAM's default layer is the last
spatial layer on the main path, so its map accounts for everything the logits see.

Found by tracing only (no compute): the program is traced with the layer's activation
edited to a fresh input, then a dependency pass on the one jaxpr interpreter asks whether
the output still depends on the image.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxviz.core import interpret
from jaxviz.core import probe as probe_lib

_CACHE: dict = {}


def _depends(eqn, invals):
    return [any(invals)] * len(eqn.outvars)


def _bypassed(probe, x_shape, layer: str) -> bool:
    """True when the output depends on the input other than through `layer`'s activation."""
    shape = probe.check_layer(layer, x_shape)
    x = jax.ShapeDtypeStruct(tuple(x_shape), jnp.float32)
    d = jax.ShapeDtypeStruct(shape, jnp.float32)

    def edited(params, x, d):
        return probe.run(params, x, edits={layer: lambda a: d.astype(a.dtype)})[0]

    closed = jax.make_jaxpr(edited)(probe.params, x, d)
    n_params = len(jax.tree.leaves(probe.params))
    flags = [False] * n_params + [True, False]
    outs = interpret.evaluate(closed, flags, lift=lambda _: False, default=_depends,
                              custom="inline", remat="inline")
    return any(outs)


def main_path_layers(probe, x_shape) -> list[str]:
    """The layers every input-to-output path goes through, in call order.

    probe: a `jaxviz.core.probe.Probe`; x_shape: (N, H, W, C) of the inputs."""
    probe = probe_lib.static_view(probe)  # the cache must not keep weights alive
    key = (probe, tuple(x_shape))
    if key not in _CACHE:
        _CACHE[key] = [name for name, s in probe.layer_shapes(tuple(x_shape)).items()
                       if isinstance(s, tuple) and all(isinstance(v, int) for v in s)
                       and not _bypassed(probe, x_shape, name)]
    return list(_CACHE[key])
