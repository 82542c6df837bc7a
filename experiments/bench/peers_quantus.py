"""Side by side with Quantus 0.6.0 on jaxviz's metric suite (`jaxviz.evaluate`).

    python -m experiments.bench --only quantus      # (--peers runs it with the other peers)

Needs `pip install -e .[peers]` (torch 2.13.0 CPU, captum, quantus 0.6.0); without them
`rows()` raises ModuleNotFoundError, which the runner prints as a one-line skip note.

Both sides get the same model (a PyTorch twin holding the NNX model's weights, logits
checked to 1e-4 first), the same digits, the same attribution arrays (jaxviz's saliency
maps; NCHW for Quantus) and the same settings (`cases`: features per step, fills, numbers
of samples, noise scales, softmax or logits). Quantus' own preprocessing is switched off
where jaxviz has none (normalise=False, abs=False) or matched where jaxviz has it
(per-image max normalisation: Quantus' default divides by the max of the whole batch).
Sizes: the seed's MnistCNN on bundled validation digits at 28x28, and the cluttered-MNIST
CNN at 60x60 (the localisation metrics need its ground-truth masks); both with random
weights (speed does not depend on them).

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
best of a few calls after the compiling one (`compile_s`); Quantus' the best of one or two.
"""
from __future__ import annotations

import os
import time
import warnings
from typing import Any, NamedTuple

import numpy as np

from experiments.bench import harness

MISSING = "peers need: pip install -e .[peers]"
EXACT, SAMPLED, CRASH = "exact", "sampled", "crash"


class Case(NamedTuple):
    """One metric both libraries have, with translated settings.

    metric: jaxviz registry name; jax: its options; quantus: the Quantus class name;
    q_init / q_call: the class's and the call's options; kind: EXACT, SAMPLED or CRASH;
    reduce: how a Quantus per-image curve becomes jaxviz's score ("trapz", "aopc", "mean"
    or None: Quantus already returns the score); ours: "is_zero" where jaxviz's score is
    compared as score == 0 (Quantus returns a bool); note: a definitional difference;
    max_images: run on only the first images (where Quantus takes minutes)."""
    metric: str
    jax: dict
    quantus: str
    q_init: dict
    q_call: dict
    kind: str
    reduce: str | None = None
    note: str = ""
    ours: str | None = None
    max_images: int | None = None


# --- pure parts (no torch, no quantus) -------------------------------------------------

def nchw(a) -> np.ndarray:
    """(N, H, W) or (N, H, W, C) -> (N, C, H, W) float32 (Quantus' channel-first layout)."""
    a = np.asarray(a, np.float32)
    if a.ndim == 3:
        return a[:, None]
    if a.ndim != 4:
        raise ValueError(f"expected (N, H, W) or (N, H, W, C); got shape {a.shape}")
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2))


def trapz(curve) -> np.ndarray:
    """Trapezoid area with unit spacing along the last axis (NumPy 2 removed np.trapz,
    which Quantus' own AUC helper calls)."""
    c = np.asarray(curve, np.float64)
    return (c[..., 1:] + c[..., :-1]).sum(-1) / 2


def aopc(drop) -> np.ndarray:
    """AOPC of a (N, R) curve of score drops f(x) - f(x_k), k = 1..R, with the k = 0
    drop (0) counted: sum / (R + 1) (Samek et al. 2017)."""
    d = np.asarray(drop, np.float64)
    return d.sum(-1) / (d.shape[-1] + 1)


def reduce_curve(how: str | None, out) -> np.ndarray:
    """Quantus' per-image output -> per-image scores comparable with jaxviz's."""
    if how is None:
        return np.asarray(out, np.float64)
    if how == "trapz":
        return trapz(out)
    if how == "aopc":
        return aopc(out)
    if how == "mean":
        return np.asarray(out, np.float64).mean(-1)
    raise ValueError(f"unknown reduction {how!r}")


def exact_agreement(peer, ours) -> dict:
    """Max |peer - ours| and that over max |peer| for arrays of the same shape; NaNs must
    sit at the same places (they count as agreeing there)."""
    p, o = np.asarray(peer, np.float64), np.asarray(ours, np.float64)
    if p.shape != o.shape:
        raise ValueError(f"shapes differ: peer {p.shape}, jaxviz {o.shape}")
    nan_p, nan_o = np.isnan(p), np.isnan(o)
    if (nan_p != nan_o).any():
        return {"max_abs_diff": float("inf"), "max_rel_diff": float("inf"),
                "nan_mismatch": int((nan_p != nan_o).sum())}
    ok = ~nan_p
    diff = float(np.abs(p[ok] - o[ok]).max()) if ok.any() else 0.0
    scale = float(np.abs(p[ok]).max()) if ok.any() else 0.0
    return {"max_abs_diff": diff, "max_rel_diff": diff / max(scale, 1e-30)}


def distribution(peer, ours) -> dict:
    """Mean and std over images of each side's scores (NaNs left out)."""
    p, o = np.asarray(peer, np.float64).ravel(), np.asarray(ours, np.float64).ravel()
    return {"peer_mean": float(np.nanmean(p)), "peer_std": float(np.nanstd(p)),
            "jax_mean": float(np.nanmean(o)), "jax_std": float(np.nanstd(o))}


def cases(h: int, w: int, *, masks: bool) -> list[Case]:
    """The shared metrics with both sides' settings for (h, w) images (see the module doc).
    masks: whether ground-truth masks exist (adds the localisation metrics)."""
    p, step = h * w, w                       # a row of pixels per step
    regions = min(100, (h // 4) * (w // 4))  # Quantus' default regions_evaluation is 100
    mono = w if p // w <= 28 else 4 * w      # at most ~28 groups x 10 samples per image
    per_img = {"normalise_func_kwargs": {"normalise_axes": (1, 2, 3)}}
    off = {"normalise": False, "abs": False}
    black = {"perturb_baseline": "black"}
    out = [
        Case("pixel_flipping", dict(pixels_per_step=step, baseline="black", score="prob"),
             "PixelFlipping", {"features_in_step": step, **black, **off}, {"softmax": True},
             EXACT, "trapz",
             "Quantus' return_auc_per_sample=True would crash (np.trapz, NumPy 2): its curve "
             "is integrated here"),
    ]
    for order in ("morf", "lerf"):
        out.append(Case(
            f"region_perturbation_{order}", dict(patch_size=4, n_regions=regions,
                                                 baseline="black", score="prob"),
            "RegionPerturbation", {"patch_size": 4, "order": order,
                                   "regions_evaluation": regions, **black, **off},
            {"softmax": True}, EXACT, "aopc"))
    out += [
        Case("faithfulness_correlation", dict(n_runs=50, subset_size=p // 4, baseline="black",
                                              score="logit"),
             "FaithfulnessCorrelation", {"nr_runs": 50, "subset_size": p // 4, **black, **off,
                                         "return_aggregate": False}, {"softmax": False},
             SAMPLED),
        Case("monotonicity_correlation", dict(pixels_per_step=mono, n_samples=10,
                                              score="prob"),
             "MonotonicityCorrelation", {"nr_samples": 10, "features_in_step": mono,
                                         "perturb_baseline": "uniform", "normalise": False,
                                         "abs": True}, {"softmax": True}, SAMPLED,
             max_images=32, note="Quantus' 'uniform' fill is one U[0,1) value per image and draw; "
                  "jaxviz's is U[0,1) per pixel"),
        Case("road_morf", dict(percentages=tuple(range(5, 100, 10)), noise=0.01),
             "ROAD", {"percentages": list(range(5, 100, 10)), "noise": 0.01, **off},
             {"softmax": True}, SAMPLED, "mean",
             "Quantus returns accuracy per percentage averaged over images (compared as "
             "such); spsolve vs conjugate gradient for the imputation; MoRF only"),
        Case("irof", dict(cell=4, baseline="mean"), "IROF",
             {"segmentation_method": "slic", "perturb_baseline": "mean", **off},
             {"softmax": True}, CRASH,
             note="Quantus segments with SLIC, jaxviz with a 4x4 grid"),
        Case("infidelity", dict(n_samples=p // 16, perturbation="subset", fraction=1 / 16,
                                baseline="black", score="logit"),
             "Infidelity", {"perturb_patch_sizes": [4], "n_perturb_samples": 1, **black,
                            **off}, {"softmax": False}, SAMPLED,
             note="different definitions: Quantus blacks out 4x4 patches cumulatively "
                  "(deterministic), jaxviz follows Captum (random subsets); same forward "
                  "passes per image, scores not comparable"),
        Case("max_sensitivity", dict(method="saliency", n_samples=10, radius=0.02),
             "MaxSensitivity", {"nr_samples": 10, "lower_bound": 0.02, **off}, {}, SAMPLED),
        Case("avg_sensitivity", dict(method="saliency", n_samples=10, radius=0.02),
             "AvgSensitivity", {"nr_samples": 10, "lower_bound": 0.02, **off}, {}, SAMPLED),
        Case("local_lipschitz_estimate", dict(method="saliency", n_samples=10, sigma=0.1),
             "LocalLipschitzEstimate", {"nr_samples": 10, "perturb_std": 0.1, **off}, {},
             SAMPLED),
        Case("random_logit", dict(method="saliency", similarity="ssim"), "RandomLogit",
             {"num_classes": 10, "seed": 42, **per_img}, {}, SAMPLED,
             note="SSIM on 1-D flattened maps (Quantus) vs 7x7 2-D windows (jaxviz); "
                  "different class draws"),
        Case("sparseness", {}, "Sparseness", dict(per_img), {}, EXACT),
        Case("complexity", {}, "Complexity", dict(per_img), {}, EXACT),
        Case("completeness", dict(baseline="black", score="logit"), "Completeness",
             {**black, **off}, {"softmax": False}, EXACT,
             note="Quantus tests sum(a) == f(x) - f(black) with exact float equality (a "
                  "bool); compared with jaxviz's error == 0", ours="is_zero"),
    ]
    if p <= 28 * 28:
        out.append(Case("non_sensitivity", dict(pixels_per_step=1, eps=1e-5, baseline="black",
                                                score="prob"),
                        "NonSensitivity", {"eps": 1e-5, "features_in_step": 1, **black,
                                           "abs": True, **per_img}, {"softmax": True}, EXACT,
                        max_images=8, note="one pixel a step: Quantus 0.6.0 fails for features_in_step > 1"))
    else:
        out.append(Case("non_sensitivity", dict(pixels_per_step=step, eps=1e-5,
                                                baseline="black", score="prob"),
                        "NonSensitivity", {"eps": 1e-5, "features_in_step": step, **black,
                                           "abs": True, **per_img}, {"softmax": True}, CRASH,
                        note="Quantus XORs (N, steps) with (N, pixels): only 1 pixel a step "
                             "works, too slow at this size"))
    if masks:
        out += [Case(name, jax_opts, q, {**off, **q_opts}, {}, EXACT) for name, jax_opts, q, q_opts in (
            ("pointing_game", {}, "PointingGame", {}),
            ("relevance_mass_accuracy", {}, "RelevanceMassAccuracy", {}),
            ("relevance_rank_accuracy", {}, "RelevanceRankAccuracy", {}),
            ("top_k_intersection", dict(k=100), "TopKIntersection", {"k": 100}))]
    return out


def ours_scores(case: Case, scores) -> np.ndarray:
    """jaxviz's per-image scores in the form Quantus reports them."""
    s = np.asarray(scores, np.float64)
    return (s == 0).astype(np.float64) if case.ours == "is_zero" else s


# --- the run (torch, captum, quantus) --------------------------------------------------

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
    jax_rate = ev_bench._forward_rate(probe, jnp.asarray(x))
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
    n28, n60 = (16, 8) if quick else (64, 16)
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
        if best > 3.0:
            break
    return best, out


def _run_jaxviz(case: Case, s: _Size, repeats: int) -> harness.Timing:
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    from jaxviz import evaluate as ev  # noqa: PLC0415

    spec = ev.get(case.metric)
    kw = dict(case.jax, chunk_size=CHUNK)
    if spec.needs_key:
        kw["key"] = jax.random.key(0)
    if spec.needs_masks:
        kw["masks"] = jnp.asarray(s.masks)
    x, y, maps = jnp.asarray(s.x), jnp.asarray(s.y), jnp.asarray(s.maps)
    return harness.timed(lambda: spec.fn(s.probe, s.probe.params, x, y, maps, **kw), repeats)


def _compare(case: Case, out, res) -> dict:
    """Agreement fields of one case (see the module doc)."""
    ours = ours_scores(case, res.scores)
    if case.quantus == "ROAD":  # {percentage: accuracy over images}
        peer_curve = np.array(list(out.values()), np.float64)
        ours_curve = np.asarray(res.curve, np.float64).mean(0)
        return {**distribution(peer_curve, ours_curve),
                "curve_max_abs_diff": exact_agreement(peer_curve, ours_curve)["max_abs_diff"]}
    peer = reduce_curve(case.reduce, out)
    if case.kind == SAMPLED:
        return distribution(peer, ours)
    fields = {**exact_agreement(peer, ours), **distribution(peer, ours)}
    if case.reduce is not None:  # the curves themselves
        fields["curve_max_abs_diff"] = exact_agreement(out, res.curve)["max_abs_diff"]
    return fields


CHUNK = 256  # jaxviz forward passes at once (as experiments/bench/evaluate.py)


def _case_rows(quantus, torch, case: Case, s: _Size, quick: bool) -> list[dict]:
    from experiments.bench import evaluate as ev_bench  # noqa: PLC0415

    if case.max_images is not None and len(s.x) > case.max_images:
        m = case.max_images
        s = s._replace(x=s.x[:m], y=s.y[:m], maps=s.maps[:m],
                       masks=None if s.masks is None else s.masks[:m])
    n = len(s.x)
    q_s, out = _run_quantus(quantus, torch, case, s, 1 if quick else 2)
    t = _run_jaxviz(case, s, 1 if quick else 3)
    name = f"quantus/{case.metric} {s.label}"
    settings = f"{n} images; jaxviz {case.jax}; Quantus {case.quantus}({case.q_init})"
    shared = {"peer": "quantus", "metric": case.metric, "size": s.label, "n_images": n,
              "kind": case.kind, "note": case.note}
    if isinstance(out, str):  # Quantus raised
        shared.update(kind=CRASH, note=f"Quantus raised {out[:300]}; {case.note}".rstrip("; "))
        agree = {}
    else:
        agree = _compare(case, out, t.result)
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
