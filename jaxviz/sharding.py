"""Run batched analyses, or stacks of models, on several devices with JAX's own SPMD machinery.

Analyses are jitted pure functions, so sharding is a property of their inputs: place the
batch axis across a `jax.sharding.Mesh` and XLA partitions the work (GSPMD); no home-made
scheduler. On several hosts, call `jax.distributed.initialize()` first on every host;
`jax.devices()` then spans all of them and the same code runs unchanged.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def batch_mesh(devices=None, axis: str = "batch") -> Mesh:
    """A 1-D mesh over all (or the given) devices, its one axis named `axis`."""
    devices = np.asarray(devices if devices is not None else jax.devices())
    return Mesh(devices.reshape(-1), (axis,))


def shard_batch(x, mesh: Mesh | None = None, axis: str = "batch"):
    """Place x (N, ...) with its first axis split across the mesh; other axes replicated.

    N must be a multiple of the number of devices (pad the batch otherwise). On a mesh
    across processes every process passes the same x and keeps its own devices' rows.
    """
    mesh = mesh or batch_mesh(axis=axis)
    n_dev = mesh.shape[axis]
    if x.shape[0] % n_dev:
        raise ValueError(f"batch size {x.shape[0]} must be a multiple of the {n_dev} devices "
                         f"on mesh axis {axis!r}; pad the batch")
    if spans_processes(mesh):
        return place(x, mesh, axis)
    return jax.device_put(x, NamedSharding(mesh, P(axis)))


def replicate(tree, mesh: Mesh | None = None):
    """Place every leaf of tree (e.g. params) fully replicated on the mesh."""
    mesh = mesh or batch_mesh()
    if spans_processes(mesh):
        return place(tree, mesh, None)
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
        if isinstance(a, jax.Array) and jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(one(jax.random.key_data(a)),
                                            impl=jax.random.key_impl(a))
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


def spans_processes(mesh: Mesh | None) -> bool:
    """Whether some of the mesh's devices belong to another process (jax.distributed)."""
    return mesh is not None and any(d.process_index != jax.process_index()
                                    for d in mesh.devices.flat)


def local_mesh(mesh: Mesh) -> Mesh:
    """The mesh's devices of this process, as a 1-D mesh with the mesh's first axis name."""
    mine = [d for d in mesh.devices.flat if d.process_index == jax.process_index()]
    return Mesh(np.asarray(mine), (mesh.axis_names[0],))


def process_share(tree, n: int):
    """This process's share of the rows of every leaf (n, ...) -> (share, rows per process):
    the rows padded (copies of the last) to a multiple of the process count, then process
    i keeps block i. For work whose checks read values on the host (attributions, metrics):
    each process runs it on local arrays, and `gather_shares` puts the results together."""
    count = jax.process_count()
    per = -(-n // count)
    lo = jax.process_index() * per

    def one(a):
        xp = jnp if isinstance(a, jax.Array) else np  # jax arrays: PRNG keys included
        extra = per * count - a.shape[0]
        a = a if extra == 0 else xp.concatenate([a, xp.repeat(a[-1:], extra, 0)])
        return a[lo:lo + per]

    return jax.tree.map(one, tree), per


def gather_shares(tree, n: int):
    """Every process's share put back in order (process 0's rows first), the first n rows
    of each leaf, as numpy arrays on every process; every process must call it."""
    if jax.process_count() == 1:
        return jax.tree.map(lambda a: np.asarray(a)[:n], tree)
    from jax.experimental import multihost_utils  # noqa: PLC0415 (multi-process only)

    gathered = multihost_utils.process_allgather(jax.tree.map(np.asarray, tree), tiled=True)
    return jax.tree.map(lambda a: np.asarray(a)[:n], gathered)
