"""Warnings about a training set that fits its run badly: too big a batch, images left out
of every epoch, fewer classes than the model has outputs.

Each function returns the messages (plain strings, empty when all is well); `fit` raises
them as UserWarnings, and `jaxviz train` prints them.
"""
from __future__ import annotations

import numpy as np

MAX_DROPPED = 0.10  # fraction of the training set an epoch may leave out without a warning


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Full batches per epoch (at least one: a batch larger than the set takes all of it)."""
    return max(1, n_train // batch_size)


def batch_warnings(n_train: int, batch_size: int) -> list[str]:
    """Messages for a batch larger than half the training set, or one that leaves more
    than MAX_DROPPED of it unused in every epoch (only full batches are trained on)."""
    steps = steps_per_epoch(n_train, batch_size)
    used = min(n_train, steps * batch_size)
    dropped = n_train - used
    out = []
    if batch_size > n_train / 2:
        out.append(f"batch size {batch_size} is more than half of the {n_train} training "
                   f"images: {steps} optimizer step(s) per epoch; a smaller --batch-size "
                   f"(e.g. {_suggest(n_train)}) gives the optimizer more steps")
    if dropped > MAX_DROPPED * n_train:
        out.append(f"{dropped} of the {n_train} training images ({dropped / n_train:.0%}) are "
                   f"left out of every epoch: {steps} full batch(es) of {batch_size}; choose a "
                   f"--batch-size that divides the training set more evenly")
    return out


def _suggest(n_train: int) -> int:
    """A power of two giving at least 8 steps per epoch (at least 1)."""
    b = 1
    while b * 2 * 8 <= n_train:
        b *= 2
    return b


def class_warnings(labels: np.ndarray, num_outputs: int) -> list[str]:
    """A message when the labels (train and validation together) cover fewer classes than
    the model's num_outputs logits."""
    present = sorted(int(c) for c in np.unique(np.asarray(labels)))
    if len(present) >= num_outputs:
        return []
    shown = present if len(present) <= 10 else [*present[:10], "..."]
    return [f"the data has {len(present)} class(es) (labels {shown}) but the model outputs "
            f"{num_outputs} logits: the other {num_outputs - len(present)} class(es) never "
            f"get an example; check the data (folder: one subfolder per class) or the "
            f"model's number of classes"]
