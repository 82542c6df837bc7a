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


def discovered_concepts(images, heat, patches, *, importance=None, visualizations=None,
                        n_images: int = 3, title: str | None = None, vrange=(0.0, 1.0)):
    """One row per discovered concept: its feature visualization (if given), its top
    patches, then its heat map (upsampled, nearest) over the first n_images images.

    images: (N, H, W, C); heat: (N, h, w, k) (jaxviz.concepts.Discovery.heat or
    concept_heat); patches: (k, n, p, p, C) (top_patches); importance: (k,) per concept
    for the row label; visualizations: (k, H, W, C) or None. -> the figure."""
    images, heat, patches = np.asarray(images), np.asarray(heat), np.asarray(patches)
    k, n_p = patches.shape[:2]
    has_vis = visualizations is not None
    cols = int(has_vis) + n_p + n_images
    fig = new_figure(0.75 * cols, 0.8 * k + 0.4)
    axes = fig.subplots(k, cols, squeeze=False)
    lo, hi = vrange
    def show(a):
        return np.clip((np.asarray(a, np.float32) - lo) / (hi - lo), 0, 1).squeeze()
    big_h, big_w = images.shape[1:3]
    for j in range(k):
        col = 0
        if has_vis:
            axes[j, 0].imshow(show(visualizations[j]), cmap="gray")
            col = 1
        for i in range(n_p):
            axes[j, col + i].imshow(show(patches[j, i]), cmap="gray")
        top = max(float(heat[:n_images, ..., j].max()), 1e-12)
        for i in range(n_images):
            up = np.kron(heat[i, ..., j], np.ones((big_h // heat.shape[1],
                                                   big_w // heat.shape[2])))
            ax = axes[j, col + n_p + i]
            heatmap_overlay(ax, show(images[i]), up, vmin=0, vmax=top, alpha=0.55)
        label = f"concept {j}" + ("" if importance is None else f"\nimp {importance[j]:+.3g}")
        axes[j, 0].set_ylabel(label, fontsize=6, rotation=0, ha="right", va="center")
    names = (["feature vis."] if has_vis else []) + ["top patches"] + [""] * (n_p - 1) + \
        [f"image {i}" for i in range(n_images)]
    finish_grid(fig, axes, names, title)
    for j in range(k):  # finish_grid hides frames; keep the row labels visible
        axes[j, 0].axis("on")
        axes[j, 0].set_xticks([])
        axes[j, 0].set_yticks([])
    return fig
