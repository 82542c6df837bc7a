"""Occlusion sensitivity: exact (vmapped forward passes), incremental (only the changed
region of each layer) and the Keras recipe's parity version (`keras_vis`)."""
from jaxviz.occlusion.exact import (  # noqa: F401
    METHODS, SCORES, axis_starts, coverage, grid, occluded, occlusion, occlusion_by_score)
from jaxviz.occlusion.keras_vis import keras_vis_occlusion  # noqa: F401
from jaxviz.occlusion.grouped import grouped_occlusion  # noqa: F401
