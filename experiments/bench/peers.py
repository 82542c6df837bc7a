"""Side by side with the tools users would otherwise pick: PyTorch (train step) and Captum.

    python -m experiments.bench --peers      # (or --only peers) the rows in the main table

Needs `pip install -e .[peers]` (torch 2.13.0 CPU build, captum); without torch `rows()`
raises ModuleNotFoundError, which the runner prints as a one-line skip note.
Time: about 5-8 minutes on a quiet 2-core machine (quick: 2-4 minutes; Captum's occlusion
alone takes over a minute per call).

One run times both sides on the same 64 bundled validation digits (NHWC for jaxviz, NCHW for
torch) and the same function: a PyTorch copy of jaxviz's MnistCNN holding the NNX model's
weights (conv kernels HWIO -> OIHW; dense1's rows permuted from NHWC to NCHW flatten order),
checked to give the same logits to 1e-4 before anything is timed. Each pair of rows shares
`peer` ("pytorch" or "captum") and `ratio` = peer seconds / jaxviz seconds (> 1: jaxviz is
faster); `impl` says which side a row is; `max_rel_diff` = max |peer - jaxviz| / max |peer|
of the two attributions (None for SmoothGrad, whose noise differs, and the train step). Times are the best of a few repeats after a warm-up
call (for jaxviz, the warm-up is the compile: `compile_s`). GFLOP/s use a model-based count:
forward F = 24.0 MFLOP/image, a full backward 2F.
"""
from __future__ import annotations

import os
import warnings
from typing import NamedTuple

import numpy as np

from experiments.bench import harness

F = harness.CNN_FORWARD_FLOPS

N_IMAGES = 64
DENSE_BWD = 2 * (9216 * 128 + 128 * 10) * 2  # Grad-CAM at conv2: backward through the dense layers
MISSING = "peers need: pip install -e .[peers]"


def _require_torch():
    try:
        import captum.attr  # noqa: F401, PLC0415
        import torch  # noqa: PLC0415
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(MISSING) from err
    return torch


def torch_mnist_cnn(torch, model):
    """A torch.nn.Module computing the same logits as jaxviz's NNX `MnistCNN` `model`.

    Separate nn.ReLU modules so Captum's GuidedBackprop can hook each one.
    x: (N, 1, 28, 28) float32 -> (N, 10) logits.
    """
    nn = torch.nn

    class TorchMnistCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 32, 3)
            self.relu1 = nn.ReLU()
            self.conv2 = nn.Conv2d(32, 64, 3)
            self.relu2 = nn.ReLU()
            self.pool = nn.MaxPool2d(2)
            self.dropout1 = nn.Dropout(0.25)
            self.flatten = nn.Flatten()
            self.dense1 = nn.Linear(9216, 128)
            self.relu3 = nn.ReLU()
            self.dropout2 = nn.Dropout(0.5)
            self.preds = nn.Linear(128, 10)

        def forward(self, x):
            x = self.pool(self.relu2(self.conv2(self.relu1(self.conv1(x)))))
            x = self.relu3(self.dense1(self.flatten(self.dropout1(x))))
            return self.preds(self.dropout2(x))

    net = TorchMnistCNN()
    arr = lambda v: torch.from_numpy(np.array(v, dtype=np.float32))  # noqa: E731
    # flax flattens the pooled (12, 12, 64) map as (h, w, c), torch as (c, h, w).
    d1 = np.asarray(model.dense1.kernel[...]).reshape(12, 12, 64, 128)
    d1 = d1.transpose(2, 0, 1, 3).reshape(9216, 128)
    weights = {
        "conv1.weight": np.asarray(model.conv1.kernel[...]).transpose(3, 2, 0, 1),
        "conv1.bias": model.conv1.bias[...],
        "conv2.weight": np.asarray(model.conv2.kernel[...]).transpose(3, 2, 0, 1),
        "conv2.bias": model.conv2.bias[...],
        "dense1.weight": d1.T, "dense1.bias": model.dense1.bias[...],
        "preds.weight": np.asarray(model.preds.kernel[...]).T,
        "preds.bias": model.preds.bias[...],
    }
    net.load_state_dict({k: arr(v) for k, v in weights.items()})
    return net.eval()


def _pair(name, peer, peer_settings, peer_run, jax_settings, jax_call, flops, images,
          repeats, agree=None):
    """Rows for one comparison.

    peer_run: (seconds, result) already measured, or a call to time. agree(peer_result,
    jax_result) -> (N, ...) arrays in one layout, whose max relative difference is recorded.
    """
    if callable(peer_run):
        peer_s, _, peer_out = harness.timed(peer_run, repeats)
    else:
        peer_s, peer_out = peer_run
    gflops = lambda s: flops / s / 1e9 if flops else None  # noqa: E731
    out = [harness.row(f"{name} [{peer}]", peer_s, settings=peer_settings, gflops=gflops(peer_s),
                       impl=peer, peer=peer, images_per_s=images / peer_s)]
    if jax_call is None:
        return out
    jax_s, compile_s, jax_out = harness.timed(jax_call, repeats)
    out.append(harness.row(f"{name} [jaxviz]", jax_s, settings=jax_settings, compile_s=compile_s,
                           gflops=gflops(jax_s), impl="jaxviz", peer=peer,
                           images_per_s=images / jax_s))
    rel = None
    if agree is not None:
        a, b = (np.asarray(v, np.float64) for v in agree(peer_out, jax_out))
        rel = float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-30))
    for row in out:
        row["ratio"] = peer_s / jax_s
        row["max_rel_diff"] = rel  # max |peer - jaxviz| / max |peer|; None: not comparable
    return out


def _nhwc(t):
    """A torch (N, C, H, W) result as a numpy (N, H, W, C) array."""
    return t.detach().numpy().transpose(0, 2, 3, 1)


def _train_pair(torch, repeats):
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    from jaxviz import train  # noqa: PLC0415
    from jaxviz.data import load_bundled  # noqa: PLC0415

    ds = load_bundled()
    x, y = ds.x_train[:128], ds.y_train[:128]
    config = train.TrainConfig(batch_size=128, shift=0)  # torch side has no augmentation
    model = train.make_model(config)
    net = torch_mnist_cnn(torch, model).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    yt = torch.from_numpy(np.asarray(y, np.int64))

    def torch_step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(net(xt), yt)
        loss.backward()
        opt.step()
        loss.item()

    trainable, params = train.split_model(model)
    optimizer = train.make_optimizer(config, 31)
    state = {"p": params, "r": trainable.rest, "o": optimizer.init(params)}
    xj, yj, key = jnp.asarray(x), jnp.asarray(y), jax.random.key(0)

    def jax_step():
        state["p"], state["r"], state["o"], loss, _ = train.jitted_train_step(
            trainable.graphdef, optimizer, config.shift, state["p"], state["r"], state["o"],
            xj, yj, key)
        return loss

    return _pair("train step (Adam, batch 128)", "pytorch", "eager, torch.optim.Adam, dropout",
                 torch_step, "jaxviz.train.jitted_train_step, optax adamw(wd=0), dropout, shift=0",
                 jax_step, 3 * F * 128, 128, repeats)


def _best_of_settings(run, candidates, repeats, warm):
    """Time run(c) for each candidate setting: (best seconds, best c, {c: seconds}, its result)."""
    tried, results = {}, {}
    for c in candidates:
        tried[c], _, results[c] = harness.timed(lambda c=c: run(c), repeats, warm=warm)
    best = min(tried, key=tried.get)
    return tried[best], best, tried, results[best]


def _tried(tried: dict) -> str:
    return ", ".join(f"{k}: {v:.2f}s" for k, v in tried.items())


def rows(quick: bool = False) -> list[dict]:
    """Peer vs jaxviz rows (see the module docstring). Raises ModuleNotFoundError without torch."""
    torch = _require_torch()
    with warnings.catch_warnings():
        # Captum warns on every call that it set requires_grad / hooks ReLUs: expected here.
        warnings.filterwarnings("ignore", category=UserWarning, module=r"captum\.")
        return _rows(torch, quick)


class _Setup(NamedTuple):
    """Both sides' inputs: the same digits, weights and targets."""
    torch: object
    net: object        # the PyTorch twin (eval mode)
    probe: object      # jaxviz Probe of the same NNX model
    xj: object         # (N, 28, 28, 1) jax
    yj: object         # (N,) int32 jax
    xt: object         # (N, 1, 28, 28) torch
    yt: object         # (N,) int64 torch
    logit_diff: float  # max |torch logits - jaxviz logits|
    light: int         # repeats of the fast methods
    heavy: int         # repeats of the slow ones
    warm: bool         # a warm-up call before timing the long Captum runs


def _setup(torch, quick: bool) -> _Setup:
    import jax.numpy as jnp  # noqa: PLC0415
    from flax import nnx  # noqa: PLC0415

    from jaxviz.core import probe as probe_lib  # noqa: PLC0415
    from jaxviz.data import load_bundled  # noqa: PLC0415
    from jaxviz.models import MnistCNN  # noqa: PLC0415

    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    ds = load_bundled()
    x, y = ds.x_val[:N_IMAGES], np.asarray(ds.y_val[:N_IMAGES])
    model = MnistCNN(rngs=nnx.Rngs(0))
    net = torch_mnist_cnn(torch, model)
    probe = probe_lib.from_model(model)
    xj, yj = jnp.asarray(x), jnp.asarray(y, jnp.int32)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    with torch.no_grad():
        torch_logits = net(xt).numpy()
    diff = float(np.abs(torch_logits - np.asarray(probe(probe.params, xj))).max())
    assert diff < 1e-4, f"PyTorch and jaxviz logits differ by {diff:.2e} (weights mis-copied?)"
    light, heavy = (2, 1) if quick else (5, 3)
    # quick: a long Captum run is timed once, without a warm-up call
    return _Setup(torch, net, probe, xj, yj, xt, torch.from_numpy(y.astype(np.int64)), diff,
                  light, heavy, warm=not quick)


def _jaxcall(s: _Setup, name: str, **kw):
    """A call of the public jaxviz.attribution.<name> on the setup's digits."""
    from jaxviz import attribution as A  # noqa: PLC0415
    return lambda: getattr(A, name)(s.probe, s.probe.params, s.xj, s.yj, **kw).map


def _same(p, j):
    return _nhwc(p), j


def _occlusion_pairs(s: _Setup, quick: bool) -> list[dict]:
    """625 positions x 64 digits = 40,000 forward passes (+ 64 unoccluded)."""
    import captum.attr  # noqa: PLC0415

    from jaxviz.occlusion import occlusion  # noqa: PLC0415

    occ = captum.attr.Occlusion(s.net)
    ppes = (64,) if quick else (16, 64, 256)  # 625 would hold ~10 GB of activations at once
    occ_s, ppe, tried, occ_out = _best_of_settings(
        lambda ppe: occ.attribute(s.xt, sliding_window_shapes=(1, 4, 4), strides=(1, 1, 1),
                                  baselines=0.0, target=s.yt, perturbations_per_eval=ppe),
        ppes, 1 if quick else 2, s.warm)
    occ_settings = (f"4x4 window, stride 1, baseline 0; best perturbations_per_eval={ppe} "
                    f"({_tried(tried)})")
    out = []
    for method in ("exact", "incremental"):
        call = lambda m=method: occlusion(  # noqa: E731
            s.probe, s.probe.params, s.xj, s.yj, window=(4, 4), stride=(1, 1), baseline=0.0,
            method=m)
        out += _pair(f"occlusion {method}", "captum", occ_settings, (occ_s, occ_out),
                     f"method={method!r}, chunk = one image's 625 positions", call,
                     (625 + 1) * F * N_IMAGES if method == "exact" else None, N_IMAGES,
                     s.heavy, agree=lambda p, j: (_nhwc(p)[..., 0], j.map))
    return out


def _sampling_pairs(s: _Setup, quick: bool) -> list[dict]:
    """Integrated Gradients (50 steps) and SmoothGrad (50 samples)."""
    import captum.attr  # noqa: PLC0415
    import jax  # noqa: PLC0415

    ig = captum.attr.IntegratedGradients(s.net)
    ig_s, ibs, tried, ig_out = _best_of_settings(
        lambda ibs: ig.attribute(s.xt, baselines=0.0, target=s.yt, n_steps=50,
                                 method="gausslegendre", internal_batch_size=ibs),
        (None,) if quick else (None, 10 * N_IMAGES), s.heavy, s.warm)
    out = _pair("integrated gradients (50 steps)", "captum",
                f"gausslegendre, baseline 0, best internal_batch_size={ibs} ({_tried(tried)}; "
                f"None = all {50 * N_IMAGES:,} at once)", (ig_s, ig_out),
                "gausslegendre, baseline 0, all 50 path points vmapped",
                _jaxcall(s, "integrated_gradients", n_steps=50), (3 * 50 + 2) * F * N_IMAGES,
                N_IMAGES, s.heavy, agree=_same)
    nt = captum.attr.NoiseTunnel(captum.attr.Saliency(s.net))
    nt_s, _, nt_out = harness.timed(lambda: nt.attribute(
        s.xt, nt_type="smoothgrad", nt_samples=50, stdevs=0.15, target=s.yt), s.heavy,
        warm=s.warm)
    return out + _pair(
        "smoothgrad (50 samples)", "captum",
        "NoiseTunnel(Saliency), stdevs=0.15 absolute, all 50 samples at once", (nt_s, nt_out),
        "method='saliency', sigma=0.15 x each image's range (~1.0 here), vmapped",
        _jaxcall(s, "smoothgrad", key=jax.random.key(0), n_samples=50, sigma=0.15),
        50 * 3 * F * N_IMAGES, N_IMAGES, s.heavy)  # different noise: no agreement check


def _gradient_pairs(s: _Setup) -> list[dict]:
    """Saliency, guided backprop and Grad-CAM at conv2: one backward pass each."""
    import captum.attr  # noqa: PLC0415

    sal = captum.attr.Saliency(s.net)
    out = _pair("saliency", "captum", "abs=True", lambda: sal.attribute(s.xt, target=s.yt),
                "abs=True", _jaxcall(s, "saliency"), 3 * F * N_IMAGES, N_IMAGES, s.light,
                agree=_same)
    gbp = captum.attr.GuidedBackprop(s.net)
    out += _pair("guided backprop", "captum", "backward hooks on nn.ReLU",
                 lambda: gbp.attribute(s.xt, target=s.yt), "jaxpr ReLU rewrite",
                 _jaxcall(s, "guided_backprop"), 3 * F * N_IMAGES, N_IMAGES, s.light,
                 agree=_same)
    gc = captum.attr.LayerGradCam(s.net, s.net.conv2)
    return out + _pair(
        "grad-cam at conv2", "captum",
        "LayerGradCam(conv2), relu_attributions=True, (N, 1, 24, 24) not upsampled",
        lambda: gc.attribute(s.xt, target=s.yt, relu_attributions=True),
        "layer='conv2', relu=True, upsample=False -> (N, 24, 24)",
        _jaxcall(s, "grad_cam", layer="conv2", upsample=False), (F + DENSE_BWD) * N_IMAGES,
        N_IMAGES, s.light, agree=lambda p, j: (_nhwc(p)[..., 0], j))


def _rows(torch, quick: bool) -> list[dict]:
    s = _setup(torch, quick)
    out = (_train_pair(torch, s.heavy) + _occlusion_pairs(s, quick) + _sampling_pairs(s, quick)
           + _gradient_pairs(s))
    for row in out:
        row["threads"] = torch.get_num_threads()
        row["logit_max_diff"] = s.logit_diff
    return out
