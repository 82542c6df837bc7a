"""The Quantus section's pure parts (no torch, no Quantus): the shared metrics with both
libraries' settings (`cases`), layouts, curve reductions and the agreement figures. The
run itself is `peers_quantus`."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

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
             max_images=16, note="Quantus' 'uniform' fill is one U[0,1) value per image and draw; "
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
                        max_images=4,
                        note="one pixel a step: Quantus 0.6.0 fails for features_in_step > 1"))
    else:
        out.append(Case("non_sensitivity", dict(pixels_per_step=step, eps=1e-5,
                                                baseline="black", score="prob"),
                        "NonSensitivity", {"eps": 1e-5, "features_in_step": step, **black,
                                           "abs": True, **per_img}, {"softmax": True}, CRASH,
                        note="Quantus XORs (N, steps) with (N, pixels): only 1 pixel a step "
                             "works, too slow at this size"))
    if masks:
        local = (("pointing_game", {}, "PointingGame", {}),
                 ("relevance_mass_accuracy", {}, "RelevanceMassAccuracy", {}),
                 ("relevance_rank_accuracy", {}, "RelevanceRankAccuracy", {}),
                 ("top_k_intersection", dict(k=100), "TopKIntersection", {"k": 100}))
        out += [Case(name, opts, q, {**off, **q_opts}, {}, EXACT)
                for name, opts, q, q_opts in local]
    return out


def ours_scores(case: Case, scores) -> np.ndarray:
    """jaxviz's per-image scores in the form Quantus reports them."""
    s = np.asarray(scores, np.float64)
    return (s == 0).astype(np.float64) if case.ours == "is_zero" else s



def chunk_size(h: int, w: int) -> int:
    """jaxviz's forward passes at once: 256 at 28x28 (as experiments/bench/evaluate.py),
    fewer for larger images so that a chunk holds about as many pixels (at 60x60 a chunk
    of 256 runs ~3x slower per image than one of 64 here: its activations leave the cache)."""
    return max(16, 256 * 28 * 28 // (h * w) // 16 * 16)



def compare(case: Case, out, res) -> dict:
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
