"""The CAM family side by side with pytorch-grad-cam (grad-cam 1.5.5), the tool CAM users run.

    python -m experiments.bench --only peers_gradcam      # (--peers runs it with the others)

Needs the peers extra (torch, grad-cam); without them `rows()` raises
ModuleNotFoundError(MISSING), which the runner prints as a one-line skip note.
Time: about a minute on a quiet 2-core machine, 4 or more when it is loaded.

The same 64 validation digits and the same function as the Captum rows (`peers.py`'s
PyTorch twin of the NNX MnistCNN, logits checked to 1e-4), the same layer for both sides:
`conv2`'s output (N, 24, 24, 64), before its ReLU; the same target, the label
(`ClassifierOutputTarget(label)` on the peer side, not its default argmax). Per method, one
pair of rows ("[pytorch-grad-cam]", "[jaxviz]") sharing

  ratio             peer seconds / jaxviz seconds (> 1: jaxviz is faster); each side's
                    default call at image resolution (the peer's includes its per-image
                    min-max and cv2 resize, jaxviz's returns the raw map), best of a few
                    repeats after a warm-up call, as in the Captum rows (the peer's
                    Score-CAM, EigenCAM and Ablation-CAM, 10-90 s a call here: best of 2
                    calls, no warm-up; --quick: 1);
  max_rel_diff      max |peer - jaxviz| / max |peer| at 28x28: the peer's default output
                    against jaxviz's default map min-max scaled per image
                    (`jaxviz.attribution.normalize.unit_range`). The peer min-max scales
                    the layer map, resizes it (cv2, bilinear) and min-max scales the
                    result again (`aggregate_multi_layers`); min-max being affine per
                    image, that is unit_range of the upsampled map;
  max_rel_diff_layer  at the layer's 24x24: the peer's map there (kept by a subclass from
                    its `get_cam_image`, then ReLU and its scale_cam_image formula,
                    `peer_minmax`) against jaxviz's `upsample=False` map, scaled alike;
  max_rel_diff_layer_unit_range  the same with unit_range on the jaxviz side: the
                    peer's guard (range + 1e-7) moves a map of range r by ~1e-7 / r;
  explained, max_rel_diff_explained  where the definitions differ, the peer with that
                    difference removed (or, for EigenCAM, the sign aligned) against jaxviz.

Every difference is stated in docs/peers_gradcam.md and in the method's docstring.
pytorch-grad-cam imports torchvision (for a detection target and an image helper this
section never calls); where torchvision cannot be imported (PyPI's torchvision wheel is a
CUDA build that does not load beside torch's CPU build), a stand-in module whose two names
raise on use is put in place for the import only, and the rows say so (`torchvision`).
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import types

import numpy as np

from experiments.bench import harness, peers

MISSING = "peers_gradcam needs: pip install -e .[peers] (torch, grad-cam)"
LAYER = "conv2"
PEER = "pytorch-grad-cam"
# jaxviz method -> pytorch-grad-cam class
METHODS = {"grad_cam": "GradCAM", "grad_cam_plus_plus": "GradCAMPlusPlus",
           "score_cam": "ScoreCAM", "hires_cam": "HiResCAM", "xgrad_cam": "XGradCAM",
           "layer_cam": "LayerCAM", "eigen_cam": "EigenCAM", "ablation_cam": "AblationCAM",
           "full_grad": "FullGrad"}
LAYERLESS = ("full_grad",)  # every bias layer, no target layer, no upsample option
SLOW = ("score_cam", "eigen_cam", "ablation_cam")  # the peer takes 10-90 s per call here


def _stand_in_torchvision() -> dict:
    """Modules torchvision, .ops, .transforms whose names raise when used: what
    pytorch-grad-cam imports at module level and the CAM classes never call."""
    def unavailable(name):
        def fail(*_, **__):
            raise RuntimeError(f"torchvision.{name} is a stand-in here: torchvision could not "
                               "be imported (experiments/bench/peers_gradcam.py)")
        return fail
    tv = types.ModuleType("torchvision")
    tv.ops = types.ModuleType("torchvision.ops")
    tv.ops.box_iou = unavailable("ops.box_iou")
    tv.transforms = types.ModuleType("torchvision.transforms")
    for name in ("Compose", "Normalize", "ToTensor"):
        setattr(tv.transforms, name, unavailable(f"transforms.{name}"))
    return {"torchvision": tv, "torchvision.ops": tv.ops, "torchvision.transforms": tv.transforms}


def _torchvision_error() -> str | None:
    """None if torchvision imports; else its error, with the half-imported modules dropped."""
    try:
        importlib.import_module("torchvision")
        return None
    except Exception as err:  # noqa: BLE001 -- a broken build raises RuntimeError/OSError
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        return f"{type(err).__name__}: {' '.join(str(err).split())[:120]}"


def import_peer():
    """(torch, pytorch_grad_cam, how torchvision was provided). Raises
    ModuleNotFoundError(MISSING) without torch or grad-cam."""
    # find_spec first: importing torch takes seconds, and a skip should not
    if any(importlib.util.find_spec(m) is None for m in ("torch", "pytorch_grad_cam")):
        raise ModuleNotFoundError(MISSING)
    torch = importlib.import_module("torch")
    error = _torchvision_error()
    if error is None:
        return torch, importlib.import_module("pytorch_grad_cam"), "installed"
    stand_in = _stand_in_torchvision()
    sys.modules.update(stand_in)
    try:
        gc = importlib.import_module("pytorch_grad_cam")
    finally:  # the stand-in is for this import only; nothing else sees it
        for name in stand_in:
            sys.modules.pop(name, None)
    return torch, gc, f"stand-in ({error})"


def peer_minmax(m: np.ndarray) -> np.ndarray:
    """pytorch-grad-cam's scale_cam_image without resizing: per image (m - min) /
    (1e-7 + max(m - min)). (N, ...) -> (N, ...)."""
    m = np.asarray(m, np.float64)
    axes = tuple(range(1, m.ndim))
    m = m - m.min(axis=axes, keepdims=True)
    return m / (1e-7 + m.max(axis=axes, keepdims=True))


def max_rel_diff(peer_map, jax_map) -> float:
    """max |peer - jaxviz| / max |peer| (1e-30 floor). Shapes must match."""
    a, b = (np.asarray(v, np.float64) for v in (peer_map, jax_map))
    if a.shape != b.shape:
        raise ValueError(f"maps to compare: shapes differ, peer {a.shape} vs jaxviz {b.shape}")
    return float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-30))


def rows(quick: bool = False) -> list[dict]:
    """Peer vs jaxviz rows per CAM method (module docstring). Raises ModuleNotFoundError."""
    torch, gc, tv = import_peer()
    s = peers._setup(torch, quick)
    out = []
    with _quiet(gc):
        for name in METHODS:
            out += _method_rows(s, gc, name)
    for r in out:
        r.update(threads=torch.get_num_threads(), logit_max_diff=s.logit_diff, torchvision=tv,
                 layer="every conv bias" if r["method"] in LAYERLESS else LAYER)
    return out


@contextlib.contextmanager
def _quiet(gc):
    """Score-CAM's and Ablation-CAM's per-image tqdm bars off (they would flood the log)."""
    mods = [importlib.import_module(f"pytorch_grad_cam.{m}") for m in ("score_cam", "ablation_cam")]
    saved = [m.tqdm for m in mods]
    for m in mods:
        m.tqdm = types.SimpleNamespace(tqdm=lambda it, *a, **k: it)
    try:
        yield
    finally:
        for m, t in zip(mods, saved):
            m.tqdm = t


def _peer_cam(s, gc, name, cls=None):
    """A pytorch-grad-cam object for `name` on the twin (cls overrides the class) that
    keeps its last layer-resolution map before ReLU and scaling as `.raw` (N, h, w)."""
    cls = cls or getattr(gc, METHODS[name])
    if name in LAYERLESS:
        return cls(s.net, [])

    class Recording(cls):
        def get_cam_image(self, *args, **kw):
            self.raw = np.array(super().get_cam_image(*args, **kw))  # a copy: ~0.1 ms
            return self.raw
    return Recording(s.net, [s.net.conv2])


def _peer_call(s, cam):
    """The peer's map (N, H, W) for the labels."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: PLC0415
    targets = [ClassifierOutputTarget(int(c)) for c in s.yt]
    return cam(input_tensor=s.xt, targets=targets)


@contextlib.contextmanager
def _released(cam):
    """cam, its hooks on the shared twin removed afterwards (so that the next method's
    timing does not run this one's hooks too)."""
    try:
        yield cam
    finally:
        cam.activations_and_grads.release()


def _peer_layer(s, gc, name, cls):
    """The peer's map (class cls) at the layer's resolution, scaled its way: (N, h, w)."""
    with _released(_peer_cam(s, gc, name, cls)) as cam:
        _peer_call(s, cam)
        return peer_minmax(np.maximum(cam.raw, 0))


def _jax_call(s, name, **kw):
    import jax  # noqa: PLC0415

    from jaxviz import attribution as A  # noqa: PLC0415
    if name not in LAYERLESS:
        kw["layer"] = LAYER
    return lambda: jax.block_until_ready(
        A.attribute(name, s.probe, s.probe.params, s.xj, s.yj, **kw).map)


def _agreement(s, name, peer_img, jax_img, peer_layer, jax_layer) -> dict:
    """The agreement figures of the module docstring (maps as numpy)."""
    import jax.numpy as jnp  # noqa: PLC0415

    from jaxviz.attribution import normalize  # noqa: PLC0415
    out = {"max_rel_diff": max_rel_diff(peer_img, normalize.unit_range(jnp.asarray(jax_img))),
           "max_rel_diff_layer": None, "max_rel_diff_layer_unit_range": None}
    if name not in LAYERLESS:
        out["max_rel_diff_layer"] = max_rel_diff(peer_layer, peer_minmax(jax_layer))
        out["max_rel_diff_layer_unit_range"] = max_rel_diff(
            peer_layer, normalize.unit_range(jnp.asarray(jax_layer)))
    return out


def _method_rows(s, gc, name) -> list[dict]:
    slow = name in SLOW
    with _released(_peer_cam(s, gc, name)) as cam:
        # a long eager run: no warm-up call, as for Captum's long runs in peers.py
        peer_t = harness.timed(lambda: _peer_call(s, cam), 1 if s.light < 5 else 2,
                               warm=False) if slow else harness.timed(
                                   lambda: _peer_call(s, cam), s.light)
        peer_layer = None if name in LAYERLESS else peer_minmax(np.maximum(cam.raw, 0))
    jax_t = harness.timed(_jax_call(s, name), s.heavy if slow else s.light)
    jax_layer = None if name in LAYERLESS else np.asarray(_jax_call(s, name, upsample=False)())
    agree = _agreement(s, name, peer_t.result, jax_t.result, peer_layer, jax_layer)
    agree.update(_explained(s, gc, name, peer_layer, jax_layer))
    n = s.xj.shape[0]
    out = [harness.row(f"{name} [{PEER}]", peer_t.seconds, settings=_PEER_SETTINGS[name],
                       impl=PEER, images_per_s=n / peer_t.seconds),
           harness.row(f"{name} [jaxviz]", jax_t.seconds, compile_s=jax_t.compile_s,
                       settings=_JAX_SETTINGS.get(name, "defaults, layer='conv2'"),
                       impl="jaxviz", images_per_s=n / jax_t.seconds)]
    for r in out:
        r.update(peer=PEER, method=name, ratio=peer_t.seconds / jax_t.seconds, **agree)
    return out


_PEER_SETTINGS = {name: f"{cls}(net, [net.conv2]), ClassifierOutputTarget(label)"
                  for name, cls in METHODS.items()}
_PEER_SETTINGS["score_cam"] += ", batch 16 masked copies per forward"
_PEER_SETTINGS["ablation_cam"] += ", batch_size=32 ablated copies"
_PEER_SETTINGS["full_grad"] = "FullGrad(net, []): every Conv2d bias, input x gradient"
_JAX_SETTINGS = {"score_cam": "layer='conv2', chunk_size=16 channels x the batch",
                 "ablation_cam": "layer='conv2', ablation_value=0, chunk_size=16",
                 "full_grad": "defaults: every spatial layer with a bias"}


# ---- the definitional differences, each removed on one side -----------------------------

def _explained(s, gc, name, peer_layer, jax_layer) -> dict:
    """{"explained": what was changed, "max_rel_diff_explained": at the layer's size}."""
    if name == "grad_cam_plus_plus":
        m = _peer_layer(s, gc, name, _plus_plus_eps0(gc))
        return {"explained": "the peer's Grad-CAM++ with its eps 1e-6 in alpha's denominator "
                             "set to 0", "max_rel_diff_explained": max_rel_diff(
                                 m, peer_minmax(jax_layer))}
    if name == "score_cam":
        m = _peer_layer(s, gc, name, _score_cam_as_jaxviz(gc, s.torch))
        return {"explained": "the peer's Score-CAM with jaxviz's half-pixel bilinear masks "
                             "and softmax over classes (not align_corners=True and softmax "
                             "over channels)",
                "max_rel_diff_explained": max_rel_diff(m, peer_minmax(jax_layer))}
    if name == "eigen_cam":
        return _eigen_sign(s, peer_layer)
    return {"explained": None, "max_rel_diff_explained": None}


def _plus_plus_eps0(gc):
    class PlusPlusEps0(gc.GradCAMPlusPlus):
        """GradCAMPlusPlus.get_cam_weights as in 1.5.5, eps 1e-6 -> 0 (guarded where the
        denominator is 0, as jaxviz does)."""
        def get_cam_weights(self, input_tensor, target_layers, target_category, activations,
                            grads):
            g2 = grads ** 2
            denom = 2 * g2 + np.sum(activations, axis=(2, 3))[:, :, None, None] * g2 * grads
            aij = np.where(denom != 0, g2 / np.where(denom != 0, denom, 1), 0)
            aij = np.where(grads != 0, aij, 0)
            return np.sum(np.maximum(grads, 0) * aij, axis=(2, 3))
    return PlusPlusEps0


def _score_cam_as_jaxviz(gc, torch):
    class ScoreCAMAsJaxviz(gc.ScoreCAM):
        """ScoreCAM.get_cam_weights with jaxviz's two choices: masks upsampled half-pixel
        bilinear (align_corners=False) and weight = the target's softmax probability over
        classes (not the softmax over channels of the target logits)."""
        def get_cam_weights(self, input_tensor, target_layer, targets, activations, grads):
            with torch.no_grad():
                a = torch.from_numpy(activations)
                up = torch.nn.functional.interpolate(a, size=input_tensor.shape[-2:],
                                                     mode="bilinear", align_corners=False)
                flat = up.flatten(2)
                lo, hi = flat.min(-1)[0][..., None, None], flat.max(-1)[0][..., None, None]
                masks = torch.where(hi > lo, (up - lo) / torch.where(hi > lo, hi - lo, 1), 0)
                out = []
                for i, target in enumerate(targets):
                    probs = torch.softmax(self.model(input_tensor[i][None] * masks[i][:, None]), -1)
                    out.append([target(p).item() for p in probs])
            return np.float32(out)
    return ScoreCAMAsJaxviz


def _eigen_sign(s, peer_layer) -> dict:
    """EigenCAM's principal direction: the peer keeps LAPACK's sign, jaxviz fixes it. Per
    image, the peer is compared with min-max(relu(+p)) or min-max(relu(-p)), p jaxviz's raw
    projection, whichever is closer; how many images needed -p is recorded."""
    p = np.asarray(_jax_call(s, "eigen_cam", relu=False, upsample=False)())
    plus, minus = peer_minmax(np.maximum(p, 0)), peer_minmax(np.maximum(-p, 0))
    per = lambda m: np.abs(m - peer_layer).reshape(len(m), -1).max(1)  # noqa: E731
    flipped = per(minus) < per(plus)
    aligned = np.where(flipped[:, None, None], minus, plus)
    return {"explained": "per image, jaxviz's projection with the sign the peer's SVD gave",
            "max_rel_diff_explained": max_rel_diff(peer_layer, aligned),
            "sign_flipped_images": int(flipped.sum())}


# ---- the summary table (docs/peers_gradcam.md) ------------------------------------------

def _fmt(v) -> str:
    return "—" if v is None else f"{v:.1e}" if isinstance(v, float) else str(v)


def agreement_table(rows: list[dict]) -> str:
    """A markdown table, one line per method, from this section's rows (a JSON run's
    "rows"): both times, the ratio and the agreement figures."""
    lines = ["| jaxviz | pytorch-grad-cam | peer s | jaxviz s | ratio | max rel. diff "
             "(28x28) | at 24x24 | with the difference removed |",
             "|---|---|---|---|---|---|---|---|"]
    by = {}
    for r in rows:
        if r.get("peer") == PEER:
            by.setdefault(r["method"], {})[r["impl"]] = r
    for name, pair in by.items():
        p, j = pair[PEER], pair["jaxviz"]
        lines.append(f"| {name} | {METHODS[name]} | {p['seconds']:.2f} | {j['seconds']:.3f} | "
                     f"{p['ratio']:.1f} | {_fmt(p['max_rel_diff'])} | "
                     f"{_fmt(p['max_rel_diff_layer'])} | {_fmt(p['max_rel_diff_explained'])} |")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m experiments.bench.peers_gradcam RUN.json
    import json  # noqa: PLC0415
    with open(sys.argv[1], encoding="utf-8") as f:
        print(agreement_table(json.load(f)["rows"]))
