"""Captum side by side on issue 16's methods: DeepLift, DeepLiftShap, GradientShap, LRP,
FeatureAblation, ShapleyValueSampling, KernelShap and Lime, on the same weights and digits.

    python -m experiments.bench --only peers_methods      # (--peers runs it with the others)

Needs the peers extra (torch, captum; scikit-learn for Captum's Lime); without torch
`rows()` raises ModuleNotFoundError(peers.MISSING), which the runner prints as a skip.
Time: about 10-15 minutes on a loaded 2-core machine (--quick: 2-4). Findings and the
reading of every figure: docs/peers_methods.md.

Both sides explain the same bundled validation digits (64; the samplers 16 at --quick) with
the PyTorch twin of jaxviz's MnistCNN (`peers.torch_mnist_cnn`, logits checked to 1e-4).
A [captum] and a [jaxviz] row share `ratio` = Captum s / jaxviz s (> 1: jaxviz faster), best
of repeats, jaxviz after its compile (`compile_s`), Captum's samplers at their fastest
perturbations_per_eval of a few (in `settings`). Agreement: deterministic methods
`max_rel_diff` = max |captum - jaxviz| / max |captum|; sampled ones `corr`, the mean
per-image Pearson correlation of the two maps, and `err_captum`, `err_jaxviz` = |map - exact|
/ |exact| against an answer computed here without either library's sampler (`exact` says
which). Goals: `x_saliency` = seconds / jaxviz saliency's, timed interleaved (DeepLIFT,
LRP: <= 1.5); `fwd_fraction` = a jaxviz sampler's model evaluations per second / a jitted
batched forward pass's rows per second, the best measured in the section (>= 0.5);
samplers' `ratio` >= 5. The "batched forward" pair's [captum] side is the twin's plain
torch forward, for scale.
"""
from __future__ import annotations

import copy
import warnings

import numpy as np

from experiments.bench import harness, peers
from experiments.bench.peers_agree import (
    all_coalitions, captum_feature_mask, coalition_images, exact_shapley, max_rel_diff,
    mean_correlation, nchw_to_nhwc, nhwc_to_nchw, rel_error, throughput_fraction, to_pixels)

F = harness.CNN_FORWARD_FLOPS
MISSING = peers.MISSING
GRID = (4, 4)         # 4x4-pixel cells on 28x28: 7 x 7 = 49 features
EXACT_GRID = (10, 10)  # 3 x 3 = 9 features: exact Shapley values from 2^9 coalitions
CHUNK = 16            # jaxviz samplers: perturbed copies of the batch per forward pass
N_BASELINES = 8       # DeepLiftShap and GradientShap: the same 8 training digits


def rows(quick: bool = False) -> list[dict]:
    """Captum vs jaxviz rows (module docstring). Raises ModuleNotFoundError without torch."""
    torch = peers._require_torch()
    try:
        import sklearn  # noqa: F401, PLC0415 -- Captum's Lime; comes with the extra's quantus
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(MISSING) from err
    with warnings.catch_warnings():
        # Captum warns per call that it set requires_grad, hooks modules or loops over a
        # batch in Lime/KernelShap: expected here.
        warnings.filterwarnings("ignore", category=UserWarning)
        s = peers._setup(torch, quick)
        x_sal, backward_rows = _backward_ratios(s)
        out = (_gradient_rows(s, x_sal) + _lrp_rows(s, x_sal) + backward_rows
               + _sampler_rows(s, quick))
    for r in out:
        r["threads"] = torch.get_num_threads()
        r["logit_max_diff"] = s.logit_diff
    return out


def _pair(name, captum_settings, captum_timing, jax_settings, jax_timing, n, flops=None,
          **extra) -> list[dict]:
    """A [captum] and a [jaxviz] row with their ratio and shared agreement figures."""
    cs, js = captum_timing.seconds, jax_timing.seconds
    gf = (lambda t: flops / t / 1e9) if flops else (lambda t: None)  # noqa: E731
    both = dict(peer="captum", ratio=cs / js, **extra)
    return [harness.row(f"{name} [captum]", cs, settings=captum_settings, gflops=gf(cs),
                        impl="captum", images_per_s=n / cs, **both),
            harness.row(f"{name} [jaxviz]", js, settings=jax_settings, gflops=gf(js),
                        compile_s=jax_timing.compile_s, impl="jaxviz", images_per_s=n / js,
                        **both)]


def _baseline_set(n: int) -> np.ndarray:
    from jaxviz.data import load_bundled  # noqa: PLC0415
    return np.asarray(load_bundled().x_train[:n], np.float32)  # (B, 28, 28, 1)


def _backward_ratios(s) -> tuple[dict, list[dict]]:
    """jaxviz's one-backward-pass methods timed interleaved with saliency (round robin, so
    that the shared machine's slow spells hit all alike): ({name: seconds / saliency's},
    rows for saliency and LRP's default composite)."""
    from jaxviz import attribution as A  # noqa: PLC0415
    from jaxviz.propagation import lrp_composites, lrp_rules  # noqa: PLC0415
    eps = lrp_rules.Epsilon(1e-9)
    calls = {"saliency": (A.saliency, {}), "deeplift": (A.deeplift, {}),
             "deeplift_shap": (A.deeplift_shap, dict(baselines=_baseline_set(N_BASELINES))),
             "lrp": (A.lrp, dict(composite=lrp_composites.Composite(conv=eps, dense=eps,
                                                                    pool=eps))),
             "lrp_epsilon_plus": (A.lrp, {})}
    cases = {k: (lambda f=f, kw=kw: f(s.probe, s.probe.params, s.xj, s.yj, **kw), ())
             for k, (f, kw) in calls.items()}
    timed = harness.round_robin(cases, rounds=4 * s.light)
    x_sal = {k: v[0] / timed["saliency"][0] for k, v in timed.items()}
    n = s.xj.shape[0]
    return x_sal, [harness.row(
        f"{label} [jaxviz]", timed[k][0], compile_s=timed[k][2], impl="jaxviz",
        settings=f"best of {4 * s.light} rounds interleaved with saliency, deeplift, lrp",
        x_saliency=x_sal[k], images_per_s=n / timed[k][0])
        for k, label in (("saliency", "saliency (reference)"),
                         ("lrp_epsilon_plus", "lrp (default composite epsilon_plus)"))]


def _gradient_rows(s, x_sal: dict) -> list[dict]:
    """DeepLift (zero baseline), DeepLiftShap and GradientShap (the same 8 training digits
    as baselines); x_sal: `_backward_ratios`' figures."""
    import captum.attr as ca  # noqa: PLC0415
    import jax  # noqa: PLC0415

    from jaxviz import attribution as A  # noqa: PLC0415

    torch, n = s.torch, s.xj.shape[0]
    bases = _baseline_set(N_BASELINES)
    bt = torch.from_numpy(nhwc_to_nchw(bases))
    call = lambda name, **kw: (lambda: getattr(A, name)(  # noqa: E731
        s.probe, s.probe.params, s.xj, s.yj, **kw).map)
    jt = {k: harness.timed(f, s.light) for k, f in {
        "deeplift": call("deeplift"),
        "deeplift_shap": call("deeplift_shap", baselines=bases),
        "gradient_shap": call("gradient_shap", key=jax.random.key(0), baselines=bases,
                              n_samples=50, stdevs=0.0)}.items()}
    captum = {  # name: net -> Captum's (attributions, convergence delta)
        "deeplift": lambda net: ca.DeepLift(net).attribute(
            s.xt, baselines=0.0, target=s.yt, return_convergence_delta=True),
        "deeplift_shap": lambda net: ca.DeepLiftShap(net).attribute(
            s.xt, baselines=bt, target=s.yt, return_convergence_delta=True),
        "gradient_shap": lambda net: ca.GradientShap(net).attribute(
            s.xt, baselines=bt, target=s.yt, n_samples=50, stdevs=0.0,
            return_convergence_delta=True)}
    ct = {k: harness.timed(lambda f=f: f(s.net), s.heavy, warm=s.warm)
          for k, f in captum.items()}
    out = []
    safe_twin = _hook_safe_twin(torch, s.net)
    for name, csets, jsets in (
            ("deeplift", "DeepLift, rescale, baselines=0", "baselines=None (zeros)"),
            ("deeplift_shap", f"DeepLiftShap, {N_BASELINES} training digits as baselines",
             "the same baseline set")):
        c_map, j_map = nchw_to_nhwc(ct[name].result[0].detach().numpy()), jt[name].result
        safe = nchw_to_nhwc(captum[name](safe_twin)[0].detach().numpy())
        out += _pair(name, csets, ct[name], jsets, jt[name], n,
                     max_rel_diff=max_rel_diff(c_map, j_map),
                     captum_max_abs_delta=float(ct[name].result[1].abs().max()),
                     max_rel_diff_hook_safe=max_rel_diff(safe, j_map),
                     x_saliency=x_sal[name])
    exact = _mean_ig(s, bases)
    c_map = nchw_to_nhwc(ct["gradient_shap"].result[0].detach().numpy())
    j_map = np.asarray(jt["gradient_shap"].result)
    return out + _pair(
        "gradient_shap (50 samples)",
        f"GradientShap, n_samples=50, stdevs=0, {N_BASELINES} digits as baselines",
        ct["gradient_shap"], "the same options, key=0", jt["gradient_shap"], n,
        corr=mean_correlation(c_map, j_map), err_captum=rel_error(c_map, exact),
        err_jaxviz=rel_error(j_map, exact),
        exact="mean over the baselines of IG (32 Gauss-Legendre steps)")


def _hook_safe_twin(torch, net):
    """The twin with `x + 0` between relu2 and the max pool: the same function, but no two
    Captum-hooked modules in a row (docs/peers_methods.md: Captum's DeepLift
    rules on consecutive hooked modules do not compose, summation-to-delta fails)."""
    class Add0(torch.nn.Module):
        def forward(self, t):
            return t + 0

    net = copy.deepcopy(net)
    net.pool = torch.nn.Sequential(Add0(), net.pool)
    return net


def _mean_ig(s, bases) -> np.ndarray:
    """GradientShap's expectation at stdevs 0: the mean over baselines of IG(x, b)."""
    from jaxviz import attribution as A  # noqa: PLC0415
    return np.mean([np.asarray(A.integrated_gradients(
        s.probe, s.probe.params, s.xj, s.yj, baselines=b[None], n_steps=32).map) for b in bases], 0)


def _reshape_twin(net, eps=None, pool_eps=None):
    """The twin with nn.Flatten replaced by the same reshape in forward (Captum's LRP has
    no rule for Flatten); eps, pool_eps: EpsilonRule(eps) on conv/linear, (pool_eps) on
    the max pool (None: Captum's default rule)."""
    from captum.attr._utils.lrp_rules import EpsilonRule  # noqa: PLC0415
    net = copy.deepcopy(net)
    del net.flatten
    net.flatten = lambda t: t.flatten(1)
    for layer, e in ((net.conv1, eps), (net.conv2, eps), (net.dense1, eps), (net.preds, eps),
                     (net.pool, pool_eps)):
        if e is not None:
            layer.rule = EpsilonRule(e)
    return net


def _captum_lrp_failures(s) -> str:
    """What Captum's LRP says on the twin as built and with an IdentityRule on Flatten."""
    import captum.attr as ca  # noqa: PLC0415
    from captum.attr._utils.lrp_rules import IdentityRule  # noqa: PLC0415
    out = []
    for label, edit in (("as built", lambda net: None),
                        ("Flatten.rule = IdentityRule()",
                         lambda net: setattr(net.flatten, "rule", IdentityRule()))):
        net = copy.deepcopy(s.net)  # a failed LRP call leaves rule attributes behind
        edit(net)
        try:
            ca.LRP(net).attribute(s.xt[:2], target=s.yt[:2])
            out.append(f"{label}: ran")
        except Exception as err:  # noqa: BLE001 -- the error is the finding
            out.append(f"{label}: {type(err).__name__}: {' '.join(str(err).split())}")
    return " | ".join(out)


def _lrp_rows(s, x_sal: dict) -> list[dict]:
    """Captum's LRP (EpsilonRule 1e-9 on conv, linear and max pool) on the reshape twin vs
    jaxviz's composite of the same rules; the same at epsilon 1e-3, with Captum's max-pool
    epsilon as set and at 1e-12 (jaxviz moves max-pool relevance like the gradient)."""
    import captum.attr as ca  # noqa: PLC0415

    from jaxviz import attribution as A  # noqa: PLC0415
    from jaxviz.propagation import lrp_composites, lrp_rules  # noqa: PLC0415

    def jax_lrp(eps):
        rule = lrp_rules.Epsilon(eps)
        return lambda: A.lrp(s.probe, s.probe.params, s.xj, s.yj, composite=(
            lrp_composites.Composite(conv=rule, dense=rule, pool=rule))).map

    def captum_map(net):
        return nchw_to_nhwc(ca.LRP(net).attribute(s.xt, target=s.yt).detach().numpy())

    lrp = ca.LRP(_reshape_twin(s.net))
    ct = harness.timed(lambda: lrp.attribute(s.xt, target=s.yt), s.light, warm=s.warm)
    jt = harness.timed(jax_lrp(1e-9), s.light)
    j3 = jax_lrp(1e-3)()
    return _pair(
        "lrp (epsilon everywhere)",
        "LRP defaults (EpsilonRule 1e-9) on the twin with its nn.Flatten replaced by a "
        "reshape in forward (captum_as_built: the twin as built)", ct,
        "Composite(conv, dense, pool = Epsilon(1e-9)); max pool winner-takes-all", jt,
        s.xj.shape[0], max_rel_diff=max_rel_diff(nchw_to_nhwc(ct.result.detach().numpy()),
                                                 jt.result),
        max_rel_diff_eps1e3=max_rel_diff(captum_map(_reshape_twin(s.net, 1e-3, 1e-3)), j3),
        max_rel_diff_eps1e3_pool_eps0=max_rel_diff(
            captum_map(_reshape_twin(s.net, 1e-3, 1e-12)), j3),
        x_saliency=x_sal["lrp"], captum_as_built=_captum_lrp_failures(s))


class _Plan:
    """The samplers' sizes: images (timed; exact case), samples, Captum's ppe candidates."""

    def __init__(self, quick: bool):
        self.n_images, self.exact_images = (16, 8) if quick else (64, 32)
        self.shapley_n = 4 if quick else 10
        self.surrogate_n = 50 if quick else 200
        self.ppe_batch = (16, 64) if quick else (1, 16, 64)  # x the batch's images per call
        self.ppe_single = (16, 64) if quick else (16, 64, 256)  # Lime/KernelShap: 1 image
        self.captum_repeats = 1


def _captum_best(run, ppes, repeats):
    """Captum at its fastest perturbations_per_eval: (Timing, best ppe, {ppe: s})."""
    best, ppe, tried, result = peers._best_of_settings(run, ppes, repeats, warm=False)
    return harness.Timing(best, 0.0, result), ppe, tried


def _forward_rates(s, n_images: int):
    """A call -> (jaxviz, torch) rows per second of one batched forward pass over CHUNK
    copies of the images (jitted; torch under no_grad), measured anew at each call."""
    import jax.numpy as jnp  # noqa: PLC0415

    from jaxviz.core import compile as compile_lib  # noqa: PLC0415
    batch = jnp.tile(s.xj[:n_images], (CHUNK, 1, 1, 1))
    batch_t = s.torch.from_numpy(nhwc_to_nchw(np.asarray(batch)))
    forward = compile_lib.jit(lambda params, xb: s.probe(params, xb), kind="forward")

    def torch_forward():
        with s.torch.no_grad():
            return s.net(batch_t)

    rows = CHUNK * n_images
    return lambda: (rows / harness.timed(lambda: forward(s.probe.params, batch), 3).seconds,
                    rows / harness.timed(torch_forward, 3).seconds)


def _coalition_values(s, x, mask, n_features: int) -> np.ndarray:
    """Target logits of every coalition of the features (baseline 0): (2^F, N), rows in
    `all_coalitions` order; masking in numpy, one jitted forward per 32 coalitions."""
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415
    z, n = all_coalitions(n_features), x.shape[0]
    y = jnp.asarray(s.yj[:n])[None, :, None]
    score = jax.jit(lambda xb: jnp.take_along_axis(
        s.probe(s.probe.params, xb).reshape(-1, n, 10), y, axis=2)[..., 0])
    return np.concatenate([np.asarray(score(jnp.asarray(
        coalition_images(x, 0.0, mask, z[i:i + 32]).reshape((-1,) + x.shape[1:]))))
        for i in range(0, len(z), 32)])


def _lime_population(x, values, mask, z, alpha=0.01) -> np.ndarray:
    """Lime's fit with every coalition, each at its Bernoulli(0.5) probability (equal):
    sklearn's Lasso(alpha) with weights exp(-d^2 / 2), d the cosine distance between the
    flattened image and its coalition image. x: (N, H, W, C), values: (2^F, N) -> (N, F)."""
    from sklearn.linear_model import Lasso  # noqa: PLC0415
    out = []
    for i in range(x.shape[0]):
        imgs = coalition_images(x[i:i + 1], 0.0, mask, z)[:, 0].reshape(len(z), -1)
        flat = x[i].reshape(-1).astype(np.float64)
        cos = imgs @ flat / np.maximum(np.linalg.norm(imgs, axis=1) * np.linalg.norm(flat),
                                       1e-8)
        w = np.exp(-((1 - cos) ** 2) / 2)
        out.append(Lasso(alpha=alpha).fit(z.astype(np.float64), values[:, i],
                                          sample_weight=w).coef_)
    return np.asarray(out)


def _sampler_rows(s, quick: bool) -> list[dict]:
    """FeatureAblation, ShapleyValueSampling, KernelShap and Lime on a 4x4-pixel grid
    (49 features), then the sampled ones against exact answers on a 3x3 grid (9 features)."""
    import captum.attr as ca  # noqa: PLC0415
    import jax  # noqa: PLC0415

    from jaxviz import attribution as A  # noqa: PLC0415
    from jaxviz.attribution import perturbation  # noqa: PLC0415

    p = _Plan(quick)
    n, torch = p.n_images, s.torch
    x, xt, yt = s.xj[:n], s.xt[:n], s.yt[:n]
    measure = _forward_rates(s, n)
    rates = [measure()]
    key = jax.random.key(0)
    n_feat = perturbation.grid_mask((28, 28), GRID)[1]
    ks, ns = p.shapley_n, p.surrogate_n
    methods = {  # name: (Captum class, captum kwargs, jaxviz options, passes/image, ppes)
        "feature_ablation": (ca.FeatureAblation, {}, {}, n_feat + 1, p.ppe_batch),
        "shapley_sampling": (ca.ShapleyValueSampling, dict(n_samples=ks),
                             dict(key=key, n_samples=ks), ks * (n_feat - 1) + 2, p.ppe_batch),
        "kernel_shap": (ca.KernelShap, dict(n_samples=ns), dict(key=key, n_samples=ns), ns,
                        p.ppe_single),
        "lime": (ca.Lime, dict(n_samples=ns), dict(key=key, n_samples=ns), ns, p.ppe_single),
    }

    def both(name, grid, xs=x, xts=xt, yts=yt):
        cls, ckw, jkw, _, _ = methods[name]
        fm = torch.from_numpy(captum_feature_mask(grid, (28, 28)))
        m = cls(s.net)
        run_c = lambda ppe: m.attribute(xts, baselines=0.0, target=yts, feature_mask=fm,  # noqa: E731
                                        perturbations_per_eval=ppe, **ckw)
        run_j = lambda: getattr(A, name)(s.probe, s.probe.params, xs, s.yj[:len(xs)],  # noqa: E731
                                         grid=grid, baselines=0.0, chunk_size=CHUNK, **jkw).map
        return run_c, run_j

    out, done = [], []
    exact = _exact_case(s, p.exact_images, both)
    for name, (_, _, _, passes, ppes) in methods.items():
        run_c, run_j = both(name, GRID)
        ct, ppe, tried = _captum_best(run_c, ppes, p.captum_repeats)
        jt = harness.timed(run_j, s.heavy)
        rates.append(measure())  # the best rate of the run is the bar (conservative)
        c_map, j_map = ct.result.detach().numpy()[:, 0], np.asarray(jt.result)
        agree = (dict(max_rel_diff=max_rel_diff(c_map, j_map)) if name == "feature_ablation"
                 else dict(corr=mean_correlation(c_map, j_map), **exact.get(name, {})))
        out += _pair(name, f"{n} digits, {n_feat} features, {passes} passes/image; best "
                     f"perturbations_per_eval={ppe} ({peers._tried(tried)})", ct,
                     f"chunk_size={CHUNK}", jt, n, flops=passes * F * n, passes_per_image=passes,
                     **agree)
        done.append((passes, jt.seconds))
    best_j, best_t = (max(r[i] for r in rates) for i in (0, 1))
    for i, (passes, seconds) in enumerate(done):
        for r in out[2 * i:2 * i + 2]:
            r["fwd_fraction"] = throughput_fraction(passes, n, seconds, best_j)
    rows = CHUNK * n
    return _pair("batched forward", f"the twin under no_grad, {rows} rows", harness.Timing(
        rows / best_t, 0.0, None), f"jitted MnistCNN forward, {rows} rows (a sampler chunk); "
        f"best of {len(rates)} measurements in this section", harness.Timing(
        rows / best_j, 0.0, None), rows, flops=F * rows) + out


def _exact_case(s, n: int, both) -> dict:
    """err_captum / err_jaxviz of the sampled methods on a 9-feature grid for the first n
    digits, same n_samples, Captum's ppe 64: {name: {"err_captum", "err_jaxviz", "exact"}}."""
    mask, f = captum_feature_mask(EXACT_GRID, (28, 28))[0, 0], 9
    x = np.asarray(s.xj[:n])
    values = _coalition_values(s, x, mask, f)
    shapley = to_pixels(exact_shapley(values), mask)
    lime = to_pixels(_lime_population(x, values, mask, all_coalitions(f)), mask)
    out = {}
    for name, ref, what in (("shapley_sampling", shapley, "Shapley values"),
                            ("kernel_shap", shapley, "Shapley values"),
                            ("lime", lime, "Lasso fit over all 512 coalitions")):
        run_c, run_j = both(name, EXACT_GRID, xs=s.xj[:n], xts=s.xt[:n], yts=s.yt[:n])
        c_map, j_map = run_c(64).detach().numpy()[:, 0], np.asarray(run_j())
        out[name] = dict(err_captum=rel_error(c_map, ref), err_jaxviz=rel_error(j_map, ref),
                         exact=f"{n} digits, 9 features (3x3 grid of 10x10 cells): exact "
                               f"{what}")
    return out
