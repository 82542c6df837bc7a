"""Side by side with Quantus 0.6.0 on jaxviz's metric suite (`jaxviz.evaluate`).

    python -m experiments.bench --only quantus      # (--peers runs it with the other peers)

Needs `pip install -e .[peers]` (torch 2.13.0 CPU, captum, quantus 0.6.0); without them
`rows()` raises ModuleNotFoundError, which the runner prints as a one-line skip note.

Both sides get the same model (a PyTorch twin holding the NNX model's weights, logits
checked to 1e-4 first), the same digits, the same attribution arrays (jaxviz's saliency
maps; NCHW for Quantus) and the same settings (features per step, fills, numbers
of samples, noise scales, softmax or logits; `quantus_cases.cases`). Quantus' own
preprocessing is switched off where jaxviz has none (normalise=False, abs=False) or
matched where jaxviz has it (per-image max normalisation: Quantus' default divides by the
max of the whole batch).
Sizes: the seed's MnistCNN on bundled validation digits at 28x28, and the cluttered-MNIST
CNN at 60x60 (the localisation metrics need its ground-truth masks); both with random
weights (speed does not depend on them) and the model's own predictions as targets.
Time: about 7.5 minutes on the shared 2-core machine (docs/quantus.md; quick: fewer
images, one timed call each).

Each case gives two rows sharing `peer` = "quantus": `ratio` = Quantus seconds / jaxviz
seconds (> 1: jaxviz is faster), `ms_per_image` per side, and the agreement:
- "exact" cases (deterministic): `max_abs_diff` (and `max_rel_diff`) of the per-image
  scores, and of the curves where both have one;
- "sampled" cases (different random draws): mean and std over images of each side's
  scores (`peer_mean`, `peer_std`, `jax_mean`, `jax_std`) from the same number of samples;
- "crash": Quantus raised; `note` has the error, the jaxviz row is timed alone;
`note` says where the two definitions differ. The jaxviz row also has `forward_equiv`
(forward passes per image, `evaluate.forward_passes`) and `fwd_share`: forward passes per
second inside the metric over the model's own batched forward rate. jaxviz times are the
best of a few calls after the compiling one (`compile_s`); Quantus' the best of up to
three (one for a call over 2 s). PyTorch runs at its faster thread count (1 or all cores).
"""
from __future__ import annotations

import os
import time
import warnings
from typing import Any, NamedTuple

import numpy as np

from experiments.bench import harness
from experiments.bench.quantus_cases import (
    CRASH, Case, cases, chunk_size, compare, exact_agreement, nchw)

MISSING = "peers need: pip install -e .[peers]"

def _require():
    try:
        import captum.attr  # noqa: F401, PLC0415
        import quantus  # noqa: PLC0415
        import torch  # noqa: PLC0415
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(MISSING) from err
    return torch, quantus


def torch_cluttered_cnn(torch, model):
    """A torch.nn.Module computing the same logits as jaxviz's `ClutteredCNN` `model`.
    x: (N, 1, 60, 60) float32 -> (N, 10) logits."""
    nn, fn = torch.nn, torch.nn.functional

    class TorchClutteredCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
            self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
            self.conv3 = nn.Conv2d(32, 64, 3, padding=1)
            self.dense1 = nn.Linear(5 * 5 * 64, 128)
            self.preds = nn.Linear(128, 10)

        def forward(self, x):
            x = fn.max_pool2d(fn.relu(self.conv1(x)), 2)
            x = fn.max_pool2d(fn.relu(self.conv2(x)), 2)
            x = fn.max_pool2d(fn.relu(self.conv3(x)), 3)
            return self.preds(fn.relu(self.dense1(x.flatten(1))))

    net = TorchClutteredCNN()
    conv = lambda layer: np.asarray(layer.conv.kernel[...]).transpose(3, 2, 0, 1)  # noqa: E731
    # flax flattens the pooled (5, 5, 64) map as (h, w, c), torch as (c, h, w).
    d1 = np.asarray(model.dense1.kernel[...]).reshape(5, 5, 64, 128).transpose(2, 0, 1, 3)
    weights = {"conv1.weight": conv(model.conv1), "conv1.bias": model.conv1.conv.bias[...],
               "conv2.weight": conv(model.conv2), "conv2.bias": model.conv2.conv.bias[...],
               "conv3.weight": conv(model.conv3), "conv3.bias": model.conv3.conv.bias[...],
               "dense1.weight": d1.reshape(1600, 128).T, "dense1.bias": model.dense1.bias[...],
               "preds.weight": np.asarray(model.preds.kernel[...]).T,
               "preds.bias": model.preds.bias[...]}
    net.load_state_dict({k: torch.from_numpy(np.array(v, np.float32)) for k, v in weights.items()})
    return net.eval()


class _Size(NamedTuple):
    """One image size: both models, the inputs, the saliency maps, the forward rates."""
    label: str
    probe: Any
    net: Any
    x: np.ndarray             # (N, H, W, 1)
    y: np.ndarray             # (N,) int
    masks: np.ndarray | None  # (N, H, W) bool
    maps: np.ndarray          # (N, H, W) jaxviz saliency (display maps)
    extras: dict              # logit / map differences, forward rates


def _size(torch, label, model, twin, x, masks) -> _Size:
    """Targets are the model's own predictions: with random weights the labels would leave
    accuracy-based curves (ROAD) flat at 0."""
    import captum.attr  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    from experiments.bench import evaluate as ev_bench  # noqa: PLC0415
    from jaxviz import attribution as A  # noqa: PLC0415
    from jaxviz.core import probe as probe_lib  # noqa: PLC0415

    probe, net = probe_lib.from_model(model), twin(torch, model)
    xt = torch.from_numpy(nchw(x))
    with torch.no_grad():
        logits = net(xt).numpy()
    diff = float(np.abs(logits - np.asarray(probe(probe.params, jnp.asarray(x)))).max())
    assert diff < 1e-4, f"PyTorch and jaxviz logits differ by {diff:.2e} (weights mis-copied?)"
    y = logits.argmax(-1).astype(np.int32)
    maps = np.asarray(A.display_map(A.get("saliency"),
                                    A.attribute("saliency", probe, probe.params, x, y)))
    peer_maps = captum.attr.Saliency(net).attribute(
        xt, target=torch.from_numpy(y.astype(np.int64)), abs=True).detach().numpy()[:, 0]
    jax_rate = ev_bench.forward_rate(probe, jnp.asarray(x))
    extras = {"logit_max_diff": diff,
              "map_max_rel_diff": exact_agreement(peer_maps, maps)["max_rel_diff"],
              "jax_forward_per_s": jax_rate}
    return _Size(label, probe, net, x, y, masks, maps, extras)


def _sizes(torch, quick: bool) -> list[_Size]:
    from flax import nnx  # noqa: PLC0415

    from experiments.bench.peers import torch_mnist_cnn  # noqa: PLC0415
    from jaxviz import cluttered  # noqa: PLC0415
    from jaxviz.data import load_bundled  # noqa: PLC0415
    from jaxviz.models import MnistCNN  # noqa: PLC0415

    ds = load_bundled()
    n28, n60 = (8, 4) if quick else (64, 16)
    small = _size(torch, "28x28", MnistCNN(rngs=nnx.Rngs(0)), torch_mnist_cnn, ds.x_val[:n28],
                  None)
    c = cluttered.clutter(ds.x_val[:max(n60, 2)], ds.y_val[:max(n60, 2)], seed=0)
    big = _size(torch, "60x60", cluttered.cluttered_cnn(0), torch_cluttered_cnn, c.images,
                c.masks)
    return [small, big]


def _explainer(torch):
    """Quantus' explain_func: captum's Saliency(abs=True), what jaxviz's saliency computes."""
    import captum.attr  # noqa: PLC0415

    def explain(model, inputs, targets, **_):
        x = torch.as_tensor(np.asarray(inputs, np.float32))
        t = torch.as_tensor(np.asarray(targets).astype(np.int64))
        return captum.attr.Saliency(model).attribute(x, target=t, abs=True).detach().numpy()
    return explain


def _run_quantus(quantus, torch, case: Case, s: _Size, repeats: int):
    """(best seconds, output) of the Quantus metric, or (nan, the error) where it raises."""
    metric = getattr(quantus, case.quantus)(disable_warnings=True, **case.q_init)
    kw = dict(model=s.net, x_batch=nchw(s.x), y_batch=s.y.astype(np.int64), channel_first=True,
              device="cpu", batch_size=len(s.x), **case.q_call)
    if case.quantus in ("MaxSensitivity", "AvgSensitivity", "LocalLipschitzEstimate",
                        "RandomLogit"):
        kw["explain_func"] = _explainer(torch)
    if s.masks is not None:
        kw["s_batch"] = s.masks[:, None].astype(np.float32)
    best, out = float("inf"), None
    for _ in range(repeats):
        np.random.seed(0)
        t0 = time.perf_counter()
        try:
            out = metric(a_batch=nchw(s.maps), **kw)
        except Exception as err:  # noqa: BLE001 -- a peer's crash is a finding, not a failure
            return float("nan"), f"{type(err).__name__}: {err}"
        best = min(best, time.perf_counter() - t0)
        if best > 2.0:  # a slow metric is timed once or twice: minutes otherwise
            break
    return best, out


def _run_jaxviz(case: Case, s: _Size, quick: bool) -> harness.Timing:
    """The compiling call, then the best of a few (more where the metric reads the map
    alone and takes about a millisecond)."""
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    from jaxviz import evaluate as ev  # noqa: PLC0415

    spec = ev.get(case.metric)
    light = spec.family in ("complexity", "localisation")
    repeats = (5 if quick else 10) if light else (1 if quick else 3)
    kw = dict(case.jax, chunk_size=chunk_size(*s.x.shape[1:3]))
    if spec.needs_key:
        kw["key"] = jax.random.key(0)
    if spec.needs_masks:
        kw["masks"] = jnp.asarray(s.masks)
    x, y, maps = jnp.asarray(s.x), jnp.asarray(s.y), jnp.asarray(s.maps)
    return harness.timed(lambda: spec.fn(s.probe, s.probe.params, x, y, maps, **kw), repeats)


def _case_rows(quantus, torch, case: Case, s: _Size, quick: bool) -> list[dict]:
    from experiments.bench import evaluate as ev_bench  # noqa: PLC0415

    m = case.max_images if not quick or case.max_images is None else max(2, case.max_images // 4)
    if m is not None and len(s.x) > m:
        s = s._replace(x=s.x[:m], y=s.y[:m], maps=s.maps[:m],
                       masks=None if s.masks is None else s.masks[:m])
    n = len(s.x)
    q_s, out = _run_quantus(quantus, torch, case, s, 1 if quick else 3)
    t = _run_jaxviz(case, s, quick)
    name = f"quantus/{case.metric} {s.label}"
    settings = f"{n} images; jaxviz {case.jax}; Quantus {case.quantus}({case.q_init})"
    shared = {"peer": "quantus", "metric": case.metric, "size": s.label, "n_images": n,
              "kind": case.kind, "note": case.note}
    if isinstance(out, str):  # Quantus raised
        shared.update(kind=CRASH, note=f"Quantus raised {out[:300]}; {case.note}".rstrip("; "))
        agree = {}
    else:
        agree = compare(case, out, t.result)
    passes = ev_bench.forward_passes(case.metric, t.result, dict(case.jax))
    fwd = {"forward_equiv": passes,
           "fwd_share": passes * n / t.seconds / s.extras["jax_forward_per_s"] if passes else None}
    ratio = q_s / t.seconds
    return [harness.row(f"{name} [quantus]", q_s, settings=settings, impl="quantus",
                        images_per_s=n / q_s, ms_per_image=1e3 * q_s / n, ratio=ratio,
                        **shared, **agree),
            harness.row(f"{name} [jaxviz]", t.seconds, settings=settings,
                        compile_s=t.compile_s, impl="jaxviz", images_per_s=n / t.seconds,
                        ms_per_image=1e3 * t.seconds / n, ratio=ratio, **fwd, **shared,
                        **agree)]


def _best_threads(torch, s: _Size) -> int:
    """Give PyTorch its faster thread count, 1 or every core: on a shared, busy machine
    its worker threads wait on each other and one thread can be many times faster."""
    xt, times = torch.from_numpy(nchw(s.x)), {}
    for n in sorted({1, os.cpu_count() or 1}):
        torch.set_num_threads(n)
        with torch.no_grad():
            times[n] = harness.best_of(lambda: s.net(xt), 5)
    best = min(times, key=times.get)
    torch.set_num_threads(best)
    return best


def _forward_rows(torch, s: _Size) -> list[dict]:
    """Both models' batched forward rates (PyTorch's after its thread count is chosen)."""
    n, e, xt = len(s.x), s.extras, torch.from_numpy(nchw(s.x))
    with torch.no_grad():
        e["torch_forward_per_s"] = n / harness.best_of(lambda: s.net(xt), 5)
    ratio = e["jax_forward_per_s"] / e["torch_forward_per_s"]
    return [harness.row(f"quantus/forward {s.label} [{impl}]", n / e[f"{key}_forward_per_s"],
                        settings=f"{n} images, one batch", impl=impl, peer="quantus",
                        images_per_s=e[f"{key}_forward_per_s"], ratio=ratio, size=s.label,
                        logit_max_diff=e["logit_max_diff"],
                        map_max_rel_diff=e["map_max_rel_diff"])
            for impl, key in (("pytorch", "torch"), ("jaxviz", "jax"))]


def rows(quick: bool = False) -> list[dict]:
    """Quantus vs jaxviz rows (see the module doc). Raises ModuleNotFoundError without the
    peers extra."""
    torch, quantus = _require()
    torch.manual_seed(0)
    with warnings.catch_warnings():
        # Quantus and Captum warn on every call (settings, hooks, deprecations): expected.
        warnings.simplefilter("ignore")
        out = []
        sizes = _sizes(torch, quick)
        _best_threads(torch, sizes[0])
        for s in sizes:
            out += _forward_rows(torch, s)
            for case in cases(s.x.shape[1], s.x.shape[2], masks=s.masks is not None):
                out += _case_rows(quantus, torch, case, s, quick)
    for r in out:
        r["threads"] = torch.get_num_threads()
    return out
