"""Occlusion sensitivity: exact (vmapped forward passes), incremental (only the changed
region of each layer) and the Keras recipe's parity version."""
from jaxviz.occlusion.exact import (  # noqa: F401
    METHODS, SCORES, Occlusion, SeedOcclusion, axis_starts, coverage, grid, occlusion,
    seed_iter_occlusion, write_occlusion_figures)
from jaxviz.occlusion.grouped import grouped_occlusion  # noqa: F401
