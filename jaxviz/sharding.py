"""Run batched analyses, or stacks of models, on several devices with JAX's own SPMD machinery.

Analyses are jitted pure functions, so sharding is a property of their inputs: place the
batch axis across a `jax.sharding.Mesh` and XLA partitions the work (GSPMD); no home-made
scheduler. On several hosts, call `jax.distributed.initialize()` first on every host;
`jax.devices()` then spans all of them and the same code runs unchanged.
"""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def batch_mesh(devices=None, axis: str = "batch") -> Mesh:
    """A 1-D mesh over all (or the given) devices, its one axis named `axis`."""
    devices = np.asarray(devices if devices is not None else jax.devices())
    return Mesh(devices.reshape(-1), (axis,))


def shard_batch(x, mesh: Mesh | None = None, axis: str = "batch"):
    """Place x (N, ...) with its first axis split across the mesh; other axes replicated.

    N must be a multiple of the number of devices (pad the batch otherwise).
    """
    mesh = mesh or batch_mesh(axis=axis)
    n_dev = mesh.shape[axis]
    if x.shape[0] % n_dev:
        raise ValueError(f"batch size {x.shape[0]} must be a multiple of the {n_dev} devices "
                         f"on mesh axis {axis!r}; pad the batch")
    return jax.device_put(x, NamedSharding(mesh, P(axis)))


def replicate(tree, mesh: Mesh | None = None):
    """Place every leaf of tree (e.g. params) fully replicated on the mesh."""
    mesh = mesh or batch_mesh()
    return jax.device_put(tree, NamedSharding(mesh, P()))


def place(tree, mesh: Mesh, axis: str | None):
    """Every leaf of tree on the mesh, split on its first axis along `axis` (None:
    replicated). Works across processes: each process passes the same values and fills
    only its own devices (`jax.make_array_from_callback`); a leaf that is already a
    global array is resharded by a compiled identity, so every process runs the same op.
    """
    target = NamedSharding(mesh, P(axis) if axis else P())

    def one(a):
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            return jax.jit(lambda v: v, out_shardings=target)(a)
        host = np.asarray(a)
        if axis and host.shape[0] % mesh.shape[axis]:
            raise ValueError(f"leading axis {host.shape[0]} must be a multiple of the "
                             f"{mesh.shape[axis]} devices on mesh axis {axis!r}; pad it")
        return jax.make_array_from_callback(host.shape, target, lambda idx: host[idx])

    return jax.tree.map(one, tree)


def to_host(x) -> np.ndarray:
    """x as one numpy array on every process: gathered from the other processes' devices
    when x is a global array spanning several (`multihost_utils.process_allgather`)."""
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
        return np.asarray(x)
    from jax.experimental import multihost_utils  # noqa: PLC0415 (multi-process only)

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
