"""jaxviz: see inside convolutional networks with pure, jittable JAX functions."""
# First, before anything can start a JAX backend: the compile policy, which reads jaxviz's
# environment variables once and asks XLA for deterministic GPU ops (see its docstring).
from jaxviz.core import compile as _compile  # noqa: F401

__version__ = "0.1.0"
