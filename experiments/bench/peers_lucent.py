"""Lucent side by side: activation maximization of the 10 classes x 256 steps with Lucid's
decorrelated Fourier image and Lucid's standard transforms, on the same weights.

    python -m experiments.bench --only peers_lucent

Needs the peers extra's torch-lucent 0.1.8 (installed with --no-deps: its requirements pin
a CUDA torch) and what Lucent imports: kornia 0.5.x (0.6+ dropped the kornia.warp_affine
Lucent calls) and decorator; without them `rows()` raises ModuleNotFoundError(MISSING).
torchvision and IPython, imported by Lucent at module level for names this section never
calls (ImageNet normalisation, notebook display), are stand-ins whose names raise when the
real ones cannot be imported; the rows say which (`stand_ins`).

Model: jaxviz's MnistCNN (seed 0) and its PyTorch twin (`peers.torch_mnist_cnn`, logits
checked to 1e-4). Three rows share `ratio` = peer s / jaxviz s (> 1: jaxviz faster):
- Lucent's per-class loop: `render_vis` once per class, objective channel("preds", k);
- a batched PyTorch loop: one `render_vis` on a batch of 10 images, objective the sum of
  channel("preds", k, batch=k) (Lucent's own batching; a hand-written torch loop would run
  the same ops);
- jaxviz: `maximize` of the 10 class logits, one vmapped program, param="lucid", transforms
  standard_transforms((28, 28)) (pad 12, jitter 8, scale, rotate, jitter 4, resize to 28).
Both sides: Adam 0.05, 256 steps, spectrum std 0.01, one channel (grey: no colour to
decorrelate, Lucent's `image(channels=1)` path). Lucent's jitter translates with zero fill
where jaxviz's (Lucid's) crops, and its random scale resizes the image where jaxviz zooms at
a constant size; both end resized to 28x28 (Lucent: fixed_image_size=28). `mean_logit`: the
mean over classes of the final images' target logit (no transforms), for scale.
Agreement rows (no timing): the colour matrix, the spectrum scale at several sizes and a
whole decorrelated-Fourier RGB image from the same spectrum, jaxviz against Lucent's own
objects: `max_abs_diff`.
"""
from __future__ import annotations

import copy
import functools
import importlib
import inspect
import operator
import sys
import types

import numpy as np

from experiments.bench import harness, peers

MISSING = ("peers_lucent needs torch, torch-lucent 0.1.8, kornia 0.5.x and decorator: "
           "pip install --no-deps torch-lucent==0.1.8 kornia==0.5.11 decorator "
           "(README 'Install', the peers extra)")
STEPS, CLASSES, SIZE = 256, 10, 28


def _stand_ins() -> dict:
    """torchvision.transforms and IPython.display modules whose names raise when used."""
    def unavailable(name):
        def fail(*_, **__):
            raise RuntimeError(f"{name} is a stand-in here (experiments/bench/peers_lucent.py)")
        return fail
    mods = {}
    for pkg, sub, names in (("torchvision", "transforms", ("Normalize",)),
                            ("IPython", "display", ("display", "HTML", "Image"))):
        top, child = types.ModuleType(pkg), types.ModuleType(f"{pkg}.{sub}")
        for n in names:
            setattr(child, n, unavailable(f"{pkg}.{sub}.{n}"))
        setattr(top, sub, child)
        mods.update({pkg: top, f"{pkg}.{sub}": child})
    return mods


def import_lucent():
    """(torch, lucent modules namespace, which stand-ins were used). Raises
    ModuleNotFoundError(MISSING) without the packages."""
    if any(importlib.util.find_spec(m) is None for m in ("torch", "lucent", "kornia",
                                                          "decorator")):
        raise ModuleNotFoundError(MISSING)
    torch = importlib.import_module("torch")
    used = {}
    for pkg in ("torchvision", "IPython"):
        try:
            importlib.import_module(pkg)
        except Exception as err:  # noqa: BLE001 -- a broken build raises RuntimeError/OSError
            for name in [n for n in sys.modules if n == pkg or n.startswith(pkg + ".")]:
                del sys.modules[name]
            used[pkg] = f"{type(err).__name__}: {' '.join(str(err).split())[:80]}"
    stand = {k: v for k, v in _stand_ins().items() if k.split(".")[0] in used}
    sys.modules.update(stand)
    try:
        lucent = types.SimpleNamespace(**{
            n: importlib.import_module(f"lucent.optvis.{m}") for n, m in (
                ("render", "render"), ("param", "param"), ("objectives", "objectives"),
                ("transform", "transform"), ("color", "param.color"),
                ("spatial", "param.spatial"))})
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(f"{MISSING} ({err})") from err
    finally:  # the stand-ins are for Lucent's imports only
        for name in stand:
            sys.modules.pop(name, None)
    return torch, lucent, ", ".join(f"{k} ({v})" for k, v in used.items()) or "none"


def _agreement_rows(torch, lucent) -> list[dict]:
    """jaxviz's colour matrix, spectrum scale and decorrelated Fourier image vs Lucent's."""
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    from jaxviz.maximize import colour, fourier  # noqa: PLC0415

    rows = [harness.row("lucid colour matrix (normalised) [agreement]", 0.0,
                        settings="jaxviz colour.normalized(IMAGENET) vs Lucent's "
                                 "color_correlation_normalized", max_abs_diff=float(np.abs(
                            colour.normalized(colour.IMAGENET)
                            - lucent.color.color_correlation_normalized).max()),
                        lucent_matrix=str(np.round(lucent.color.color_correlation_normalized,
                                                   7).tolist()))]
    for h, w in ((28, 28), (32, 32), (31, 29), (224, 224)):
        _, image_f = lucent.spatial.fft_image((1, 3, h, w))
        scale = inspect.getclosurevars(image_f).nonlocals["scale"].numpy()[0, 0, :, :, 0]
        diff = np.abs(fourier.spectrum_scale(h, w) - scale[:, : w // 2 + 1]).max()
        rows.append(harness.row(f"lucid spectrum scale {h}x{w} [agreement]", 0.0,
                                settings="jaxviz fourier.spectrum_scale vs the scale inside "
                                         "Lucent's fft_image (its first w//2+1 columns)",
                                max_abs_diff=float(diff)))
    for h, w in ((28, 28), (31, 29)):
        params, image_f = lucent.spatial.fft_image((1, 3, h, w))
        rgb = lucent.color.to_valid_rgb(image_f, decorrelate=True)
        p = fourier.DecorrelatedFourier((h, w, 3))
        spec = np.asarray(p.init(jax.random.key(h))) * 50  # far from 0: a saturated image
        theirs_p = np.zeros(tuple(params[0].shape), np.float32)  # (1, C, h, fw, real/imag);
        theirs_p[0, :, :, : w // 2 + 1] = spec.transpose(3, 1, 2, 0)  # odd w: fw one more,
        with torch.no_grad():                                          # dropped by irfftn
            params[0].copy_(torch.from_numpy(theirs_p))
            theirs = rgb().numpy()[0].transpose(1, 2, 0)
        ours = np.asarray(jax.jit(p)(jnp.asarray(spec)))
        rows.append(harness.row(f"lucid decorrelated Fourier image {h}x{w}x3 [agreement]", 0.0,
                                settings="the same spectrum through Lucent's fft_image + "
                                         "to_valid_rgb(decorrelate=True) and jaxviz's "
                                         "DecorrelatedFourier", max_abs_diff=float(
                                    np.abs(ours - theirs).max()),
                                pixel_std=float(theirs.std())))
    return rows


def _lucent_runs(torch, lucent, net, steps: int = STEPS):
    """(per-class loop, batched loop) callables returning (10, 28, 28, 1) images."""
    kw = dict(transforms=list(lucent.transform.standard_transforms), thresholds=(steps,),
              preprocess=False, progress=False, show_image=False, fixed_image_size=SIZE)

    def per_class():
        out = []
        for k in range(CLASSES):  # a fresh copy: render_vis leaves its hooks on the model
            imgs = lucent.render.render_vis(
                copy.deepcopy(net), lucent.objectives.channel("preds", k),
                param_f=lambda: lucent.param.image(SIZE, channels=1), **kw)
            out.append(imgs[-1][0])
        return np.stack(out)

    def batched():
        obj = functools.reduce(operator.add, [lucent.objectives.channel("preds", k, batch=k)
                                              for k in range(CLASSES)])
        return lucent.render.render_vis(
            copy.deepcopy(net), obj,
            param_f=lambda: lucent.param.image(SIZE, batch=CLASSES, channels=1), **kw)[-1]
    return per_class, batched


def _pick_threads(torch, lucent, net) -> int:
    """torch's faster intra-op thread count here, 1 or all cores, on a short batched run
    (on a loaded machine all cores can be several times slower than one)."""
    import os  # noqa: PLC0415

    best = {}
    for n in sorted({1, os.cpu_count() or 1}):
        torch.set_num_threads(n)
        _, short = _lucent_runs(torch, lucent, net, steps=8)
        best[n] = harness.timed(short, 2).seconds
    torch.set_num_threads(min(best, key=best.get))
    return min(best, key=best.get)


def rows(quick: bool = False) -> list[dict]:
    """Lucent vs jaxviz rows (module docstring). Raises ModuleNotFoundError without Lucent."""
    import jax  # noqa: PLC0415
    from flax import nnx  # noqa: PLC0415

    from jaxviz import maximize as mx  # noqa: PLC0415
    from jaxviz.core import probe as probe_lib  # noqa: PLC0415
    from jaxviz.models import MnistCNN  # noqa: PLC0415

    torch, lucent, stand_ins = import_lucent()
    torch.manual_seed(0)
    np.random.seed(0)  # Lucent's transforms draw from numpy's global generator
    model = MnistCNN(rngs=nnx.Rngs(0))
    net = peers.torch_mnist_cnn(torch, model)
    probe = probe_lib.from_model(model)
    x = np.random.default_rng(0).uniform(size=(4, SIZE, SIZE, 1)).astype(np.float32)
    with torch.no_grad():
        diff = np.abs(net(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
                      - np.asarray(probe(probe.params, x))).max()
    assert diff < 1e-4, f"PyTorch and jaxviz logits differ by {diff:.2e}"
    out = _agreement_rows(torch, lucent)
    threads = _pick_threads(torch, lucent, net)
    per_class, batched = _lucent_runs(torch, lucent, net)
    objs = [mx.class_logit(k) for k in range(CLASSES)]
    t = mx.standard_transforms((SIZE, SIZE))

    def ours():
        return mx.maximize(probe, probe.params, objs, key=jax.random.key(0), steps=STEPS,
                           param="lucid", transforms=(t,)).images
    repeats = 1 if quick else 2
    jax_s, compile_s, jax_imgs = harness.timed(ours, repeats + 1)
    logit = lambda imgs: float(np.mean(np.diag(np.asarray(  # noqa: E731
        probe(probe.params, np.asarray(imgs, np.float32).reshape(CLASSES, SIZE, SIZE, 1))))))
    settings = f"{CLASSES} classes x {STEPS} steps, Adam 0.05, Fourier sd 0.01, Lucid transforms"
    jax_row = harness.row("lucid class maximization [jaxviz]", jax_s, compile_s=compile_s,
                          settings=settings + ", one vmapped program (maximize, loop auto)",
                          impl="jaxviz", mean_logit=logit(jax_imgs), stand_ins=stand_ins)
    out.append(jax_row)
    for name, fn, how in (("per-class loop", per_class, "render_vis per class"),
                          ("batched loop", batched, "one render_vis on a batch of 10")):
        s, _, imgs = harness.timed(fn, repeats, warm=False)
        out.append(harness.row(f"lucid class maximization, {name} [lucent]", s,
                               settings=f"{settings}, {how}, torch threads {threads}",
                               impl="lucent", ratio=s / jax_s,
                               mean_logit=logit(imgs), stand_ins=stand_ins))
    return out
