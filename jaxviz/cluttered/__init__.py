"""Cluttered MNIST for localisation metrics: the data (digits among clutter, with their
masks and boxes) and a small CNN for its 60x60 images."""
from jaxviz.cluttered.data import (  # noqa: F401
    Cluttered, ClutteredMNIST, box_masks, clutter, load)
from jaxviz.cluttered.model import ClutteredCNN, cluttered_cnn  # noqa: F401
