"""Evaluation figures: perturbation curves per method and the method x metric table.

Arrays and numbers in, a matplotlib Figure out; `jaxviz.evaluate` computes everything.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from jaxviz.plot.core import new_figure


def curves_figure(curves: Mapping[str, Mapping[str, np.ndarray]], *,
                  titles: Mapping[str, str] | None = None, y_label: str = "class probability"):
    """One panel per metric, one line per method: the mean curve over images with a band of
    +-1 standard error. curves: {metric: {method: (N, S) curves}}; the x axis is the
    fraction of pixels perturbed, 0 to 1."""
    if not curves:
        raise ValueError("curves must name at least one metric")
    fig = new_figure(3.2 * len(curves), 2.6)
    for i, (metric, per_method) in enumerate(curves.items()):
        ax = fig.add_subplot(1, len(curves), i + 1)
        for method, c in per_method.items():
            c = np.asarray(c, np.float64)
            if c.ndim != 2:
                raise ValueError(f"curves[{metric!r}][{method!r}] must be (N, S); got {c.shape}")
            frac = np.linspace(0, 1, c.shape[1])
            mean, se = c.mean(0), c.std(0) / np.sqrt(c.shape[0])
            (line,) = ax.plot(frac, mean, label=method, lw=1.2)
            ax.fill_between(frac, mean - se, mean + se, color=line.get_color(), alpha=0.15)
        ax.set_title((titles or {}).get(metric, metric))
        ax.set_xlabel("fraction of pixels")
        if i == 0:
            ax.set_ylabel(y_label)
        ax.grid(alpha=0.3)
    fig.axes[-1].legend(fontsize=6, loc="best")
    fig.tight_layout()
    return fig


def table_figure(methods: Sequence[str], columns: Sequence[str], text: Sequence[Sequence[str]],
                 best: Sequence[int | None] = (), *, title: str | None = None):
    """A table drawn as a figure: rows = methods, columns = metric headers (with their
    arrows), text[i][j] the cell; best[j]: the row to highlight in column j (or None)."""
    text = [list(r) for r in text]
    if len(text) != len(methods) or any(len(r) != len(columns) for r in text):
        raise ValueError(f"text must be {len(methods)} rows of {len(columns)} cells")
    fig = new_figure(1.2 + 1.45 * len(columns), 0.5 + 0.42 * (len(methods) + 1))
    ax = fig.add_subplot(1, 1, 1)
    ax.axis("off")
    tab = ax.table(cellText=text, rowLabels=list(methods), colLabels=list(columns),
                   loc="center", cellLoc="center")
    tab.auto_set_font_size(False)
    tab.set_fontsize(7)
    tab.scale(1.0, 2.2)
    for j, i in enumerate(best):
        if i is not None:
            tab[i + 1, j].set_facecolor("#d8f0d8")
    if title:
        ax.set_title(title)
    return fig
