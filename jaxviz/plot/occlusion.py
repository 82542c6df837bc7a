"""Occlusion figures: per-digit attribution and probability maps, and the Keras recipe's own
figure. Arrays in, a Figure out; the report's occlusion stage computes and saves."""
from __future__ import annotations

import numpy as np

from jaxviz.plot.core import DIVERGING, GRAY, heatmap_overlay, new_figure


def _gray(image):
    image = np.asarray(image, np.float32)
    return image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image


def occlusion_figure(images, attribution, occluded_prob, labels, *, title: str | None = None):
    """Rows: image, attribution, overlay, p(true class) with the patch at each position.

    images: (K, H, W, C); attribution: (K, H, W); occluded_prob: (K, nH, nW) in [0, 1];
    labels: (K,) true classes (indices or names). Attribution rows share one symmetric colour scale,
    probability rows the scale [0, 1]; one colorbar each.
    """
    images, attribution = np.asarray(images), np.asarray(attribution, np.float32)
    occluded_prob, labels = np.asarray(occluded_prob, np.float32), np.asarray(labels)
    k = images.shape[0]
    if attribution.shape[0] != k or occluded_prob.shape[0] != k or labels.shape[0] != k:
        raise ValueError(f"images, attribution, occluded_prob and labels need the same length; "
                         f"got {k}, {attribution.shape[0]}, {occluded_prob.shape[0]}, "
                         f"{labels.shape[0]}")
    fig = new_figure(1.1 * k + 0.9, 4.7)
    axes = fig.subplots(4, k, squeeze=False)
    m = float(np.abs(attribution).max()) or 1.0
    h, w = attribution.shape[1:3]
    for i in range(k):
        img = _gray(images[i])
        axes[0, i].imshow(img, cmap=GRAY if img.ndim == 2 else None)
        axes[0, i].set_title(f"label {labels[i]}", fontsize=7, pad=2)
        im_attr = axes[1, i].imshow(attribution[i], cmap=DIVERGING, vmin=-m, vmax=m)
        heatmap_overlay(axes[2, i], img, attribution[i], cmap=DIVERGING, vmin=-m, vmax=m)
        im_prob = axes[3, i].imshow(occluded_prob[i], cmap="magma", vmin=0.0, vmax=1.0,
                                    extent=(0, w, h, 0))
        for ax in axes[:, i]:
            ax.set_axis_off()
    for row, text in enumerate(("image", "attribution", "overlay", "p(true) occluded")):
        axes[row, 0].text(-0.15, 0.5, text, transform=axes[row, 0].transAxes, rotation=90,
                          ha="right", va="center", fontsize=7)
    fig.colorbar(im_attr, ax=axes[1:3].ravel().tolist(), shrink=0.8, label="logit drop")
    fig.colorbar(im_prob, ax=axes[3].ravel().tolist(), shrink=0.9, label="p(true class)")
    if title:
        fig.suptitle(title)
    return fig


def keras_vis_occlusion_figure(images, heatmap, predicted, counts, labels, *, size: int = 8,
                               class_names=None):
    """The Keras recipe's figure per image: image, correct-class probability per cell,
    predicted class per cell, and how many cells were predicted as each class.

    images: (K, H, W, C); heatmap: (K, H, W); predicted: (K, nH, nW); counts: (K, classes);
    labels: (K,) indices or names; class_names: the bar chart's tick labels (default the
    class indices).
    """
    images, heatmap = np.asarray(images), np.asarray(heatmap, np.float32)
    predicted, counts, labels = np.asarray(predicted), np.asarray(counts), np.asarray(labels)
    k = images.shape[0]
    fig = new_figure(5.6, 1.25 * k + 0.4)
    axes = fig.subplots(k, 4, squeeze=False)
    h, w = heatmap.shape[1:3]
    for i in range(k):
        a = axes[i]
        a[0].imshow(_gray(images[i]), cmap=GRAY)
        a[0].set_title(f"label {labels[i]}", fontsize=7, pad=2)
        im = a[1].imshow(heatmap[i], cmap="magma", vmin=0.0, vmax=1.0)
        cells = np.repeat(np.repeat(predicted[i], size, 0), size, 1)[:h, :w]
        a[2].imshow(cells, cmap="tab10", vmin=-0.5, vmax=9.5)
        for (r, c), v in np.ndenumerate(predicted[i]):
            cy = (r * size + min((r + 1) * size, h)) / 2 - 0.5
            cx = (c * size + min((c + 1) * size, w)) / 2 - 0.5
            a[2].text(cx, cy, str(int(v)), ha="center", va="center", fontsize=6, color="white")
        for ax in a[:3]:
            ax.set_axis_off()
        a[3].bar(np.arange(counts.shape[1]), counts[i], color="0.3")
        ticks = np.arange(counts.shape[1])
        if class_names and i == k - 1:  # the cells show indices; the last bars name them
            a[3].set_xticks(ticks, [f"{t} {class_names[t]}" if t < len(class_names) else str(t)
                                    for t in ticks], rotation=60, ha="right")
        else:
            a[3].set_xticks(ticks)
        a[3].tick_params(labelsize=5)
        if i == 0:
            a[1].set_title("p(true), gray square", fontsize=7, pad=2)
            a[2].set_title("predicted class", fontsize=7, pad=2)
            a[3].set_title("cells per class", fontsize=7, pad=2)
    fig.colorbar(im, ax=axes[-1, 1], orientation="horizontal", fraction=0.08, pad=0.05,
                 label="p(true class)")
    return fig
