"""Run each batched analysis on one device and batch-sharded over 4 simulated CPU devices.

Started by tests/sharding/test_sharding.py in a subprocess with
XLA_FLAGS=--xla_force_host_platform_device_count=4; prints {name: max abs difference}.
"""
import json

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxviz import sharding
from jaxviz.core import probe as probe_lib
from jaxviz.data import load_bundled
from jaxviz.models import MnistCNN


def analyses():
    """name -> f(probe, params, x, y) returning an array (or a tuple whose first is used)."""
    table = {"forward": lambda p, params, x, y: p(params, x)}
    try:
        from jaxviz import attribution as A
        table["saliency"] = lambda p, params, x, y: A.saliency(p, params, x, y).map
        table["integrated_gradients"] = lambda p, params, x, y: A.integrated_gradients(
            p, params, x, y, n_steps=8).map
        table["grad_cam"] = lambda p, params, x, y: A.grad_cam(p, params, x, y, layer="conv2").map
    except ImportError:
        pass
    try:
        from jaxviz import occlusion as O
        table["occlusion"] = lambda p, params, x, y: O.occlusion(
            p, params, x, y, window=(8, 8), stride=(8, 8)).map
    except ImportError:
        pass
    return table


def main():
    assert len(jax.devices()) == 4, jax.devices()
    p = probe_lib.from_model(MnistCNN(rngs=nnx.Rngs(0)))
    ds = load_bundled()
    x, y = jnp.asarray(ds.x_val[:8]), jnp.asarray(ds.y_val[:8])
    mesh = sharding.batch_mesh()
    xs, ys = sharding.shard_batch(x, mesh), sharding.shard_batch(y, mesh)
    params = sharding.replicate(p.params, mesh)
    try:
        sharding.shard_batch(x[:7], mesh)
        raise AssertionError("7 images on 4 devices should be refused")
    except ValueError as err:
        assert "multiple of the 4 devices" in str(err)
    out = {}
    for name, fn in analyses().items():
        single = np.asarray(fn(p, p.params, x, y))
        sharded = fn(p, params, xs, ys)
        out[name] = {"diff": float(np.max(np.abs(single - np.asarray(sharded)))),
                     "devices": len(getattr(sharded, "sharding", None).device_set)
                     if hasattr(sharded, "sharding") else 1}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
