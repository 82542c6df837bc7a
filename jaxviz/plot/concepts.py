"""Concept figures: TCAV scores with error bars and significance, TCAV against a controlled
cue's reliability, and discovered concepts (heat maps on images, top-activating patches).

Figures only draw results computed elsewhere (jaxviz.concepts); they never save or show."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jaxviz.plot.core import finish_grid, heatmap_overlay, new_figure

RANDOM_COLOUR = "0.6"
SIG_COLOUR = "tab:blue"
NOT_SIG_COLOUR = "tab:orange"


def tcav_bars(result, ax=None, *, title: str | None = None):
    """One bar per concept (mean TCAV score over its runs, ± 1 std), a grey bar for the
    random concepts, a star over the significant ones (Bonferroni); a dashed line at 0.5.
    result: a jaxviz.concepts.TCAVResult. -> the figure."""
    fig = None
    if ax is None:
        fig = new_figure(0.8 + 0.7 * (len(result.concepts) + 1), 2.6)
        ax = fig.add_subplot(1, 1, 1)
    rows = result.rows()
    means = [r["score_mean"] for r in rows]
    stds = [r["score_std"] for r in rows]
    colours = [SIG_COLOUR if r["significant"] else NOT_SIG_COLOUR for r in rows[:-1]]
    xs = np.arange(len(rows))
    ax.bar(xs, means, yerr=stds, color=[*colours, RANDOM_COLOUR], capsize=3)
    for x, r in zip(xs, rows[:-1]):
        if r["significant"]:
            ax.text(x, min(r["score_mean"] + r["score_std"] + 0.03, 1.05), "*",
                    ha="center", fontsize=11)
    ax.axhline(0.5, ls="--", lw=0.8, color="k")
    ax.set_xticks(xs, [r["concept"] for r in rows], rotation=30, ha="right")
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("TCAV score")
    ax.set_title(title or f"{result.target} at {result.layer} (* p < {result.alpha:g}, "
                 "Bonferroni)", fontsize=7)
    return fig if fig is not None else ax.figure


def tcav_against_q(qs: Sequence[float], results: Sequence, *, chance: float | None = None,
                   xlabel: str = "cue reliability q"):
    """TCAV score (mean ± std over runs) of each concept against q, one line per concept
    and a grey band for the random concepts' mean ± std; filled markers: significant.
    results: one TCAVResult per q, the same concepts in each. -> the figure."""
    fig = new_figure(3.6, 2.6)
    ax = fig.add_subplot(1, 1, 1)
    qs = np.asarray(qs, float)
    names = results[0].concepts
    for i, name in enumerate(names):
        m = np.array([r.scores[i].mean() for r in results])
        s = np.array([r.scores[i].std(ddof=1) for r in results])
        sig = np.array([bool(r.significant[i]) for r in results])
        line = ax.errorbar(qs, m, yerr=s, marker="", capsize=3, label=name)[0]
        ax.scatter(qs[sig], m[sig], color=line.get_color(), zorder=3)
        ax.scatter(qs[~sig], m[~sig], facecolor="white", edgecolor=line.get_color(), zorder=3)
    rm = np.array([r.random_scores.mean() for r in results])
    rs = np.array([r.random_scores.std(ddof=1) for r in results])
    ax.fill_between(qs, rm - rs, rm + rs, color=RANDOM_COLOUR, alpha=0.4,
                    label="random CAVs (±1 std)")
    if chance is not None:
        ax.axvline(chance, ls=":", lw=0.8, color="k")
    ax.set_ylim(-0.02, 1.05)
    ax.set_xlabel(xlabel + ("" if chance is None else f" (dotted: chance {chance:.2f})"))
    ax.set_ylabel("TCAV score")
    ax.set_title(f"{results[0].target} at {results[0].layer}: filled = significant", fontsize=7)
    ax.legend(fontsize=6, loc="best")
    return fig
