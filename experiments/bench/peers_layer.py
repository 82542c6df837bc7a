"""Captum side by side on the layer and neuron families: every Layer*/Neuron* counterpart on
the same weights and digits, agreement and the speed ratio from one run.

    python -m experiments.bench --only peers_layer      # (--peers runs it with the others)

Needs the peers extra (torch, captum); without torch `rows()` raises
ModuleNotFoundError(peers.MISSING), which the runner prints as a skip. Time: --quick 5
minutes on the 2-core machine at load 24 (docs/bench/peers_layer.log); the full run (64
digits, more repeats) several times that. Findings: docs/layer_attribution.md.

Both sides explain the 64 bundled validation digits of `peers._setup` (--quick: the first
QUICK_IMAGES, Captum's long runs timed once without a warm-up) with the PyTorch
twin of jaxviz's MnistCNN (logits checked to 1e-4), at layer conv2 (its output before the
ReLU, (N, 24, 24, 64)); the neuron methods at conv2's unit (c, y, x) = NEURON (Captum's
neuron_selector (c, h, w) on NCHW). A [captum] and a [jaxviz] row share `ratio` =
Captum s / jaxviz s (> 1: jaxviz faster), best of repeats, jaxviz after its compile
(`compile_s`). Agreement: `max_abs_diff` = max |captum - jaxviz| and `max_rel_diff` =
that / max |captum| (`captum_max_abs`: the scale); with a convergence delta on both sides,
`delta_max_abs_diff`. Layer GradientSHAP draws at random on both sides: `corr` (the mean
per-image Pearson correlation of the maps) and `err_captum`, `err_jaxviz` = |map - exact|
/ |exact| against its expectation computed here (`exact` says how). Goals: max_abs_diff
<= 1e-4 where the definitions match, ratio >= 2.
"""
from __future__ import annotations

import warnings

import numpy as np

from experiments.bench import harness, peers
from experiments.bench.peers_agree import (
    captum_feature_mask, max_rel_diff, mean_correlation, nchw_to_nhwc, nhwc_to_nchw, rel_error)
from experiments.bench.peers_methods import _baseline_set, _hook_safe_twin, _reshape_twin

MISSING = peers.MISSING
LAYER = "conv2"
NEURON = (5, 10, 12)   # conv2's channel 5 at (y, x) = (10, 12)
GRID = (4, 4)          # NeuronFeatureAblation: 4x4-pixel cells, 49 features
N_BASELINES = 8        # layer GradientSHAP: the same 8 training digits
STEPS = 50             # every path method: 50 Gauss-Legendre points, baseline 0
ROWS_AT_ONCE = 10 * peers.N_IMAGES  # Captum's internal_batch_size for the path methods
QUICK_IMAGES = 16      # --quick: the first 16 digits, each method timed once or twice


def rows(quick: bool = False) -> list[dict]:
    """Captum vs jaxviz rows (module docstring). Raises ModuleNotFoundError without torch."""
    torch = peers._require_torch()
    with warnings.catch_warnings():
        # Captum warns per call that it set requires_grad or hooks modules: expected here.
        warnings.filterwarnings("ignore", category=UserWarning)
        s = _subset(peers._setup(torch, quick), QUICK_IMAGES if quick else peers.N_IMAGES)
        out = [r for case in _cases(s) for r in _pair(s, *case)] + _shap_rows(s)
    for r in out:
        r["threads"] = torch.get_num_threads()
        r["logit_max_diff"] = s.logit_diff
    return out


def _subset(s, n: int):
    """The setup on its first n digits."""
    return s._replace(xj=s.xj[:n], yj=s.yj[:n], xt=s.xt[:n], yt=s.yt[:n])


def _captum_side(out):
    """(map NHWC, delta or None) of a Captum result (a tensor or (tensor, delta))."""
    m, d = out if isinstance(out, tuple) else (out, None)
    m = m.detach().numpy()
    return (nchw_to_nhwc(m) if m.ndim == 4 else m), (None if d is None else d.detach().numpy())


def _pair(s, name, captum_settings, captum_call, jax_settings, jax_call, heavy=False,
          delta_sign=1.0):
    """A [captum] and a [jaxviz] row for one method, with their agreement. delta_sign: -1
    where Captum's delta is jaxviz's negated (LRP: S - sum(R) against sum(R) - S)."""
    reps = s.heavy if heavy else s.light
    ct = harness.timed(captum_call, reps, warm=s.warm)
    jt = harness.timed(jax_call, reps)
    c_map, c_delta = _captum_side(ct.result)
    j_map = np.asarray(jt.result.map, np.float64)
    if j_map.ndim == 3:  # feature ablation's (N, H, W) against Captum's (N, H, W, 1)
        c_map = c_map[..., 0]
    j_delta = jt.result.extras.get("delta")
    both = dict(peer="captum", ratio=ct.seconds / jt.seconds,
                max_abs_diff=float(np.abs(c_map - j_map).max()),
                max_rel_diff=max_rel_diff(c_map, j_map),
                captum_max_abs=float(np.abs(c_map).max()))
    if c_delta is not None and j_delta is not None:
        both["delta_max_abs_diff"] = float(np.abs(delta_sign * c_delta
                                                 - np.asarray(j_delta)).max())
    n = s.xj.shape[0]
    return [harness.row(f"{name} [captum]", ct.seconds, settings=captum_settings,
                        impl="captum", images_per_s=n / ct.seconds, **both),
            harness.row(f"{name} [jaxviz]", jt.seconds, settings=jax_settings,
                        compile_s=jt.compile_s, impl="jaxviz", images_per_s=n / jt.seconds,
                        **both)]


class _Sides:
    """What both families of cases share: the nets, the calls' common options."""

    def __init__(self, s):
        from jaxviz.core import objectives as O  # noqa: PLC0415
        self.s, self.net, self.xt, self.yt = s, s.net, s.xt, s.yt
        self.safe, self.lrp_twin = _hook_safe_twin(s.torch, s.net), _reshape_twin(s.net)
        self.unit = O.neuron(LAYER, *NEURON)
        self.path = dict(n_steps=STEPS, method="gausslegendre")
        self.cpath = dict(baselines=0.0, n_steps=STEPS, method="gausslegendre",
                          internal_batch_size=ROWS_AT_ONCE)
        self.cpath_set = (f"baselines=0, {STEPS} gausslegendre, "
                          f"internal_batch_size={ROWS_AT_ONCE}")
        self.jpath_set = f"baselines=None (0), {STEPS} gausslegendre, chunk_size=None (default)"

    def jx(self, f, target="label", **kw):
        s = self.s
        t = s.yj if isinstance(target, str) and target == "label" else target
        return lambda: f(s.probe, s.probe.params, s.xj, t, **kw)


def _cases(s) -> list[tuple]:
    """(name, captum settings, captum call, jaxviz settings, jaxviz call[, heavy, sign])."""
    sides = _Sides(s)
    return _layer_cases(sides) + _neuron_cases(sides)


def _layer_cases(d: _Sides) -> list[tuple]:
    import captum.attr as ca  # noqa: PLC0415

    from jaxviz.attribution import layer as L  # noqa: PLC0415
    from jaxviz.propagation import lrp_composites, lrp_rules  # noqa: PLC0415

    net, xt, yt, safe, lrp_twin, jx = d.net, d.xt, d.yt, d.safe, d.lrp_twin, d.jx
    path, cpath, cpath_set, jpath_set = d.path, d.cpath, d.cpath_set, d.jpath_set
    eps = lrp_rules.Epsilon(1e-9)
    return [
        ("layer activation (conv2)", "LayerActivation(conv2)",
         lambda: ca.LayerActivation(net, net.conv2).attribute(xt), "layer='conv2'",
         jx(L.layer_activation, None, layer=LAYER)),
        ("layer gradient x activation (conv2)", "LayerGradientXActivation(conv2)",
         lambda: ca.LayerGradientXActivation(net, net.conv2).attribute(xt, target=yt),
         "layer='conv2'", jx(L.layer_gradient_x_activation, layer=LAYER)),
        ("layer integrated gradients (conv2)", f"LayerIntegratedGradients, {cpath_set}",
         lambda: ca.LayerIntegratedGradients(net, net.conv2).attribute(
             xt, target=yt, return_convergence_delta=True, **cpath), jpath_set,
         jx(L.layer_integrated_gradients, layer=LAYER, **path), True),
        ("layer conductance (conv2)", f"LayerConductance, {cpath_set}",
         lambda: ca.LayerConductance(net, net.conv2).attribute(
             xt, target=yt, return_convergence_delta=True, **cpath), jpath_set,
         jx(L.layer_conductance, layer=LAYER, **path), True),
        ("internal influence (conv2)", f"InternalInfluence, {cpath_set}",
         lambda: ca.InternalInfluence(net, net.conv2).attribute(xt, target=yt, **cpath),
         jpath_set, jx(L.internal_influence, layer=LAYER, **path), True),
        ("layer feature ablation (conv2, per channel)",
         "LayerFeatureAblation, layer_mask = channel ids (1, 64, 1, 1), baseline 0, "
         "perturbations_per_eval=1 (> 1 with per-image targets: AssertionError in Captum's "
         "_select_targets)",
         lambda: ca.LayerFeatureAblation(net, net.conv2).attribute(
             xt, target=yt, layer_mask=d.s.torch.arange(64).reshape(1, 64, 1, 1)),
         "layer_mask = channel ids (1, 1, 1, 64), chunk_size=16 (runs only after conv2)",
         jx(L.layer_feature_ablation, layer=LAYER,
            layer_mask=np.arange(64).reshape(1, 1, 1, 64), chunk_size=16)),
        ("layer deeplift (conv2)",
         "LayerDeepLift(conv2), rescale, baselines=0, on the hook-safe twin (x + 0 between "
         "relu2 and the pool)",
         lambda: ca.LayerDeepLift(safe, safe.conv2).attribute(
             xt, baselines=0.0, target=yt, return_convergence_delta=True),
         "baselines=None (0), rule='rescale'", jx(L.layer_deeplift, layer=LAYER)),
        ("layer lrp (conv2, epsilon everywhere)",
         "LayerLRP(conv2), EpsilonRule 1e-9 (defaults) on the reshape twin",
         lambda: ca.LayerLRP(lrp_twin, lrp_twin.conv2).attribute(
             xt, target=yt, return_convergence_delta=True),
         "Composite(conv, dense, pool = Epsilon(1e-9))",
         jx(L.layer_lrp, layer=LAYER, composite=lrp_composites.Composite(
             conv=eps, dense=eps, pool=eps)), False, -1.0),
    ]


def _neuron_cases(d: _Sides) -> list[tuple]:
    import captum.attr as ca  # noqa: PLC0415

    from jaxviz import attribution as A  # noqa: PLC0415
    from jaxviz.attribution import layer as L  # noqa: PLC0415

    net, xt, yt, safe, unit, jx = d.net, d.xt, d.yt, d.safe, d.unit, d.jx
    path, cpath, cpath_set, jpath_set = d.path, d.cpath, d.cpath_set, d.jpath_set
    return [
        ("neuron gradient", f"NeuronGradient(conv2), neuron_selector={NEURON}",
         lambda: ca.NeuronGradient(net, net.conv2).attribute(xt, NEURON),
         f"saliency(abs=False), target=neuron('conv2', {', '.join(map(str, NEURON))})",
         jx(A.saliency, unit, abs=False)),
        ("neuron integrated gradients", f"NeuronIntegratedGradients, {cpath_set}",
         lambda: ca.NeuronIntegratedGradients(net, net.conv2).attribute(
             xt, NEURON, **cpath),
         f"integrated_gradients, target=neuron, {jpath_set}",
         jx(A.integrated_gradients, unit, **path), True),
        ("neuron conductance", f"NeuronConductance, class target, {cpath_set}",
         lambda: ca.NeuronConductance(net, net.conv2).attribute(
             xt, NEURON, target=yt, **cpath),
         f"neuron_conductance(layer='conv2', neuron={NEURON}), {jpath_set}",
         jx(L.neuron_conductance, layer=LAYER, neuron=NEURON, **path), True),
        ("neuron guided backprop", "NeuronGuidedBackprop(conv2)",
         lambda: ca.NeuronGuidedBackprop(net, net.conv2).attribute(xt, NEURON),
         "guided_backprop, target=neuron", jx(A.guided_backprop, unit)),
        ("neuron deeplift", "NeuronDeepLift(conv2), rescale, baselines=0, hook-safe twin",
         lambda: ca.NeuronDeepLift(safe, safe.conv2).attribute(xt, NEURON, baselines=0.0),
         "deeplift, target=neuron", jx(A.deeplift, unit)),
        ("neuron feature ablation (4x4 cells)",
         "NeuronFeatureAblation, 49 cells, baseline 0, perturbations_per_eval=16",
         lambda: ca.NeuronFeatureAblation(net, net.conv2).attribute(
             xt, NEURON, feature_mask=d.s.torch.from_numpy(captum_feature_mask(GRID, (28, 28))),
             perturbations_per_eval=16),
         "feature_ablation, target=neuron, grid=(4, 4), baselines=0",
         jx(A.feature_ablation, unit, grid=GRID, baselines=0.0)),
    ]


def _shap_rows(s) -> list[dict]:
    """Layer GradientSHAP (50 samples, 8 training digits as baselines, stdevs 0) against
    its expectation: the mean over baselines b of internal influence (x, b) * (A(x) - A(b))."""
    import captum.attr as ca  # noqa: PLC0415
    import jax  # noqa: PLC0415

    from jaxviz.attribution import layer as L  # noqa: PLC0415
    bases = _baseline_set(N_BASELINES)
    bt = s.torch.from_numpy(nhwc_to_nchw(bases))
    pr = s.probe
    ct = harness.timed(lambda: ca.LayerGradientShap(s.net, s.net.conv2).attribute(
        s.xt, baselines=bt, target=s.yt, n_samples=50, stdevs=0.0,
        return_convergence_delta=True), s.heavy, warm=s.warm)
    jt = harness.timed(lambda: L.layer_gradient_shap(
        pr, pr.params, s.xj, s.yj, layer=LAYER, key=jax.random.key(0), baselines=bases,
        n_samples=50), s.heavy)
    a_x = np.asarray(L.layer_activation(pr, pr.params, s.xj, layer=LAYER).map)
    a_b = np.asarray(L.layer_activation(pr, pr.params, bases, layer=LAYER).map)
    exact = np.mean([np.asarray(L.internal_influence(
        pr, pr.params, s.xj, s.yj, layer=LAYER, baselines=b[None], n_steps=32).map)
        * (a_x - a_b[i]) for i, b in enumerate(bases)], 0)
    c_map, j_map = _captum_side(ct.result)[0], np.asarray(jt.result.map)
    both = dict(peer="captum", ratio=ct.seconds / jt.seconds, corr=mean_correlation(c_map, j_map),
                err_captum=rel_error(c_map, exact), err_jaxviz=rel_error(j_map, exact),
                exact="mean over the baselines of internal influence (32 Gauss-Legendre "
                      "steps) x (A(x) - A(b))")
    n = s.xj.shape[0]
    name = "layer gradient shap (conv2, 50 samples)"
    return [harness.row(f"{name} [captum]", ct.seconds, impl="captum",
                        settings=f"LayerGradientShap, n_samples=50, stdevs=0, {N_BASELINES} "
                                 f"digits as baselines", images_per_s=n / ct.seconds, **both),
            harness.row(f"{name} [jaxviz]", jt.seconds, compile_s=jt.compile_s, impl="jaxviz",
                        settings="the same options, key=0", images_per_s=n / jt.seconds,
                        **both)]
