"""jaxviz: see inside convolutional networks with pure, jittable JAX functions."""

__version__ = "0.1.0"
