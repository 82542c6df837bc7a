"""The method registry: one record per attribution method, one result type for all of them.

    from jaxviz.attribution import registry
    res = registry.attribute("integrated_gradients", probe, probe.params, x, y)
    res.map                  # (N, H, W, C) pixel map, (N, H, W) for CAMs and occlusion
    res.extras["delta"]      # named extras: IG's completeness gap, occlusion's scores, ...

Everything that lists methods (the CLI's --method, the report's comparison figure, the
randomization check, the shared test tables, the trust tests, the benchmark) iterates over
`METHODS`, so a method registered once appears everywhere:

    registry.register(registry.Method("my_method", my_fn, kind="pixel", signed=True))
"""
from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import jax
import jax.numpy as jnp

from jaxviz.core import method as method_lib
from jaxviz.core import result, targets as targets_lib
from jaxviz.core.records import Records
from jaxviz.core.result import Attribution, BlankMapWarning  # noqa: F401  (re-exported)

KINDS = ("pixel", "layer", "occlusion")
REDUCTIONS = ("sum", "max_abs", "none")


@dataclasses.dataclass(frozen=True)
class Method:
    """One attribution method.

    fn: fn(model, params, images, target, **options) -> Attribution (a bare map from a
      user's function is wrapped into one).
    kind: "pixel" (a map per input pixel), "layer" (a CAM at a layer, upsampled) or
      "occlusion" (a perturbation map, (N, H, W)).
    needs_key: takes key= (a PRNG key or one per image). needs_probe: needs a Probe (reads
      layer activations), not any fn(params, x).
    signed: the map has meaningful negative values. channel_reduce: how a (N, H, W, C) map
      becomes one image per input for display ("sum" keeps the sign, "max_abs").
    captum: the Captum class computing the same thing, if any; paper: the reference.
    defaults: options the report and CLI use; quick: small options for tests and --quick.
    chunk_option: the name of its "passes at once" option, if it has one.
    targets: the targets it takes, a `jaxviz.core.method.Support` (default: the one its
      `attribution_method` decorator declares); None: class indices only, as given.
    no_layer: why `layer=` is not available, for a method with neither a CAM layer nor a
      layer form (`jaxviz.attribution.layer.LAYER_FORMS`); shown in docs/targets.md.
    """
    name: str
    fn: Callable
    kind: str = "pixel"
    label: str = ""
    needs_key: bool = False
    needs_probe: bool = False
    signed: bool = True
    channel_reduce: str = "sum"
    captum: str | None = None
    paper: str = ""
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    quick: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    chunk_option: str | None = None
    targets: Any = None
    no_layer: str = ""

    def __post_init__(self):
        if self.targets is None:
            object.__setattr__(self, "targets", getattr(self.fn, "target_support", None))
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}; got {self.kind!r}")
        if self.channel_reduce not in REDUCTIONS:
            raise ValueError(f"channel_reduce must be one of {REDUCTIONS}; "
                             f"got {self.channel_reduce!r}")
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))
        object.__setattr__(self, "quick", MappingProxyType(dict(self.quick)))
        if not self.label:
            object.__setattr__(self, "label", self.name.replace("_", " "))

    def __call__(self, model, params, images, target, *, key=None, **options) -> Attribution:
        """Run the method with its defaults overridden by `options`; -> Attribution."""
        opts = {**self.defaults, **options}
        if self.needs_key:
            opts["key"] = key
        elif key is not None:
            raise ValueError(f"{self.name} takes no key; got key={key!r}")
        # One mechanism with the plain functions: float32 maps (a bfloat16 model included)
        # and a BlankMapWarning under the registered name.
        return result.run_method(self.name, self.fn, (model, params, images, target), opts,
                                 getattr(self.fn, "blank_cause", None))


METHODS: dict[str, Method] = Records("method", Method, "registry.Method")


def register(method: Method, *, replace: bool = False) -> Method:
    """Add `method` to METHODS (replace=True to overwrite a name). Returns it."""
    return METHODS.register(method, replace=replace)


def unregister(name: str) -> None:
    METHODS.unregister(name)


def get(name: str) -> Method:
    return METHODS.lookup(name)


def attribute(name: str, model, params, images, target, *, key=None, **options) -> Attribution:
    """Run the registered method `name`. -> Attribution."""
    return get(name)(model, params, images, target, key=key, **options)


def display_map(method: Method, result: Attribution) -> jax.Array:
    """One (N, H, W) image per input for drawing: pixel maps reduced over channels."""
    m = result.map
    if m.ndim == 3 or method.channel_reduce == "none":
        return m
    if method.channel_reduce == "max_abs":
        return jnp.abs(m).max(axis=-1)
    return m.sum(axis=-1)


def method_key(key, name: str):
    """The PRNG key a method gets from a shared `key`: folded in with a stable hash of its
    name (crc32, not Python's salted hash), so it does not depend on which other methods
    run beside it or in what order."""
    return jax.random.fold_in(key, zlib.crc32(name.encode()) & 0x7FFFFFFF)


def compare(model, params, images, target, *, key, methods=None, options=None,
            ) -> dict[str, Attribution]:
    """Every method in `methods` (default: all registered) on the same inputs.

    key: one PRNG key; keyed method `name` gets `method_key(key, name)`, the same whatever
      else is compared.
    options: {method name: {option: value}} overriding that method's defaults."""
    names = list(METHODS) if methods is None else list(methods)
    options = dict(options or {})
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise ValueError(f"options given for methods not compared: {unknown}")
    out = {}
    for name in names:
        m = get(name)
        k = method_key(key, name) if m.needs_key else None
        out[name] = m(model, params, images, target, key=k, **options.get(name, {}))
    return out


def _layer_forms():
    from jaxviz.attribution import layer  # noqa: PLC0415 (the layer forms call the methods)
    return layer.LAYER_FORMS


method_lib.set_layer_forms(_layer_forms)


# ---- what each method takes: the table of docs/targets.md --------------------------------

COLUMNS = (("class index", "class_logit"), ("None (predicted)", "predicted"),
           ('"all" / list', "many"), ("class_prob", "class_prob"), ("margin", "margin"),
           ("channel / neuron / direction", "layer units"), ("region", "region"),
           ("custom", "custom"), ("layer=", "layer="))
CLASSES_ONLY = "takes class indices as given (its own target check)"


def support_of(m: Method) -> dict[str, str]:
    """{column key: "" (supported) or the reason it is not} for method m (COLUMNS)."""
    s = m.targets
    if s is None:
        row = {key: CLASSES_ONLY for _, key in COLUMNS}
        row["class_logit"] = ""
    else:
        row = {k: ("" if k in s.kinds else s.refused[k]) for k in targets_lib.KINDS}
        units = [row[k] for k in targets_lib.LAYER_KINDS if row[k]]
        row["layer units"] = units[0] if units else ""
        row["predicted"] = "" if s.predicted is True else str(s.predicted)
        row["many"] = "" if s.many is True else str(s.many)
    forms = _layer_forms()
    if s is not None and s.layer == "cam":
        row["layer="] = ""
    elif m.name in forms:
        row["layer="] = ""
    else:
        row["layer="] = m.no_layer or "no layer form"
    return row


def target_table() -> str:
    """The markdown table of docs/targets.md: one row per registered method, "yes" or
    "no (n)" per column, and the numbered reasons below it."""
    reasons: list[str] = []
    head = "| method | " + " | ".join(c for c, _ in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for name, m in METHODS.items():
        row = support_of(m)
        cells = []
        for _, key in COLUMNS:
            why = row[key]
            if not why:
                cells.append("CAM layer" if key == "layer=" and m.targets is not None
                             and m.targets.layer == "cam" else "yes")
                continue
            if why not in reasons:
                reasons.append(why)
            cells.append(f"no ({reasons.index(why) + 1})")
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    notes = [f"{i}. {why}" for i, why in enumerate(reasons, 1)]
    return "\n".join(lines + [""] + notes) + "\n"
