"""Attribution figures: the method comparison grid and the randomization sanity check.

`write_attribution_figures` is the one call the experiment and the CLI make.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from jaxviz.plot.core import DIVERGING, GRAY, heatmap_overlay, new_figure, save_figure

SEQ_MAP = "hot"


def _gray(image):
    image = np.asarray(image, np.float32)
    return image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image


def comparison_figure(images, columns: Mapping[str, np.ndarray], *, labels=None,
                      overlay: tuple[str, ...] = ("Grad-CAM",), title: str | None = None):
    """Rows = images, columns = the image then one map per method.

    images: (K, H, W, C); columns: {name: (K, H, W) map}. Each tile has its own scale:
    maps with negative values use a diverging colormap symmetric around 0, others a
    sequential one from 0; names in `overlay` are drawn over the image.
    """
    images = np.asarray(images)
    k = images.shape[0]
    for name, m in columns.items():
        if np.shape(m)[:1] != (k,) or np.ndim(m) != 3:
            raise ValueError(f"columns[{name!r}] must be ({k}, H, W); got shape {np.shape(m)}")
    ncol = 1 + len(columns)
    fig = new_figure(1.05 * ncol, 1.05 * k + 0.4 + 0.2 * bool(title))
    axes = fig.subplots(k, ncol, squeeze=False)
    for i in range(k):
        img = _gray(images[i])
        axes[i, 0].imshow(img, cmap=GRAY if img.ndim == 2 else None)
        if labels is not None:
            axes[i, 0].set_ylabel(str(labels[i]), rotation=0, labelpad=8)
        for j, (name, maps) in enumerate(columns.items(), start=1):
            m = np.asarray(maps[i], np.float32)
            top = float(np.abs(m).max()) or 1.0
            if name in overlay:
                heatmap_overlay(axes[i, j], img, m, cmap="jet", vmin=min(0.0, float(m.min())),
                                vmax=top)
            elif m.min() < 0:
                axes[i, j].imshow(m, cmap=DIVERGING, vmin=-top, vmax=top)
            else:
                axes[i, j].imshow(m, cmap=SEQ_MAP, vmin=0, vmax=top)
    for j, name in enumerate(["image", *columns], start=0):
        axes[0, j].set_title(name, fontsize=7, pad=3)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        for s in ax.spines.values():
            s.set_visible(False)
    if title:
        fig.suptitle(title, y=1.0)
    fig.tight_layout()
    return fig


def randomization_figure(result: Mapping, *, title: str | None = None):
    """Line plot of `cascading_randomization`'s result: rank correlation vs. layers
    re-initialised (cumulative, from the top)."""
    layers = list(result["layers"])
    fig = new_figure(0.55 * len(layers) + 2.2, 2.4)
    ax = fig.subplots()
    xs = np.arange(len(layers) + 1)
    for name, values in result.items():
        if name != "layers":
            ax.plot(xs, [1.0, *np.asarray(values)], marker="o", label=name)
    ax.set_xticks(xs, ["none", *layers], rotation=30, ha="right")
    ax.set_xlabel("re-initialised down to layer")
    ax.set_ylabel("rank correlation with trained maps")
    ax.axhline(0, color="0.6", lw=0.5)
    ax.set_ylim(-1.05, 1.05)
    ax.legend(frameon=False)
    ax.set_title(title or "model randomization (Adebayo et al. 2018)")
    return fig


def write_attribution_figures(probe, params, images, labels, out_dir, key, *,
                              extra_columns: Mapping[str, np.ndarray] | None = None,
                              n_samples: int = 50, sigma: float = 0.15, n_steps: int = 64,
                              formats=("png",)) -> dict:
    """Compute every map for `images` (explaining `labels`), draw and save the figures.

    images: (K, H, W, C), K about 8; labels: (K,) classes to explain; key: a PRNG key
    (SmoothGrad noise, layer re-initialisation); extra_columns: {name: (K, H, W)} maps from
    other analyses (e.g. occlusion) appended to the comparison. Returns {"comparison": path,
    "sanity": path, "ig_delta_rel": max over images of |delta| / |f(x) - f(0)|,
    "randomization": cascading_randomization's result, "cam_layer": layer used}.
    """
    import jax
    import jax.numpy as jnp

    from jaxviz import attribution as attr
    from jaxviz.attribution import cam, sanity

    out_dir = Path(out_dir)
    x = jnp.asarray(images, jnp.float32)
    y = np.asarray(labels)
    k_noise, k_rand = jax.random.split(key)

    def gray(a):
        return np.asarray(attr.reduce_channels(jnp.abs(a), "max"))

    ig, delta = attr.integrated_gradients(probe, params, x, y, n_steps=n_steps,
                                          return_convergence_delta=True)
    logits = probe(params, jnp.concatenate([x, jnp.zeros_like(x)]))
    fx, fb = np.split(np.take_along_axis(np.asarray(logits), np.tile(y, 2)[:, None], 1)[:, 0], 2)
    rel = np.abs(np.asarray(delta)) / np.maximum(np.abs(fx - fb), 1e-12)
    columns = {
        "saliency": gray(attr.saliency(probe, params, x, y)),
        "guided\nbackprop": gray(attr.guided_backprop(probe, params, x, y)),
        "SmoothGrad": gray(attr.smoothgrad(probe, params, x, y, key=k_noise,
                                           n_samples=n_samples, sigma=sigma)),
        "Integrated\nGradients": np.asarray(attr.reduce_channels(ig, "sum")),
        "Grad-CAM": np.asarray(attr.grad_cam(probe, params, x, y)),
        "Guided\nGrad-CAM": gray(attr.guided_grad_cam(probe, params, x, y)),
        **{name: np.asarray(v) for name, v in (extra_columns or {}).items()},
    }
    cam_layer = cam.resolve_layer(probe, None, x.shape)
    comparison = save_figure(
        comparison_figure(x, columns, labels=[int(v) for v in y],
                          title=f"attribution for the true class (Grad-CAM at {cam_layer!r})"),
        out_dir / "attribution_comparison.png", formats)[0]
    rand = sanity.cascading_randomization(probe, params, x, y, key=k_rand,
                                          methods=("saliency", "guided_backprop", "grad_cam"))
    sanity_path = save_figure(randomization_figure(rand), out_dir / "attribution_sanity.png",
                              formats)[0]
    return {"comparison": comparison, "sanity": sanity_path, "ig_delta_rel": float(rel.max()),
            "randomization": {k: (list(v) if k == "layers" else [float(a) for a in v])
                              for k, v in rand.items()},
            "cam_layer": cam_layer}
