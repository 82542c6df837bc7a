"""LRP composites: which rule each linear layer of the traced program gets.

A layer's kind comes from its primitive: "conv" (conv_general_dilated), "dense"
(dot_general) or "pool" (reduce_sum, sum pooling: global and average pooling); "first"
is the program's first layer (in evaluation order) of a kind in `first_kinds`, as
Zennit's SpecialFirstLayerMapComposite picks the first module matching its first map.
Per-layer overrides name the Probe's layers ("conv1", "block1_conv2"). Residual additions
of two input-dependent values are always split in proportion to the addends (Zennit's
Norm rule), with the composite's stabilizer.

The named composites follow Zennit's (epsilon 1e-6, stabilizer 1e-6, gamma 0.25):

    epsilon                     every layer Epsilon
    epsilon_plus                conv ZPlus, dense Epsilon
    epsilon_plus_flat           as epsilon_plus, the first conv/dense Flat
    epsilon_gamma_box           conv Gamma, dense Epsilon, the first conv ZBox (bounds: the
                                model's input range, through input normalization)
    epsilon_alpha2_beta1        conv AlphaBeta(2, 1), dense Epsilon
    epsilon_alpha2_beta1_flat   as epsilon_alpha2_beta1, the first conv/dense Flat
    zplus                       conv and dense ZPlus
Pools get Epsilon (Zennit's Norm) in all of them.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from jaxviz.propagation.lrp_rules import (
    RULES, AlphaBeta, Epsilon, Flat, Gamma, Rule, ZBox, ZPlus)

KINDS = ("conv", "dense", "pool")


@dataclasses.dataclass(frozen=True)
class Composite:
    """conv, dense, pool: the rule of each kind of layer; first: the rule of the program's
    first layer whose kind is in first_kinds (None: no special first layer); layers:
    ((layer name, rule), ...) overriding all of those; stabilizer: residual sums."""
    conv: Rule = Epsilon()
    dense: Rule = Epsilon()
    pool: Rule = Epsilon()
    first: Rule | None = None
    first_kinds: tuple = ("conv",)
    layers: tuple = ()
    stabilizer: float = 1e-6

    def rule_for(self, layer: str | None, kind: str, first: bool) -> Rule:
        named = dict(self.layers)
        if layer is not None and layer in named:
            return named[layer]
        if first and self.first is not None and kind in self.first_kinds:
            return self.first
        return {"conv": self.conv, "dense": self.dense, "pool": self.pool}[kind]

    def with_layers(self, layer_rules: Mapping[str, Rule | str]) -> "Composite":
        """This composite with per-layer rules (a Rule or a rule name) added."""
        extra = tuple((str(k), as_rule(v, f"layer_rules[{k!r}]"))
                      for k, v in dict(layer_rules).items())
        return dataclasses.replace(self, layers=self.layers + extra)


_FLAT_FIRST = dict(first=Flat(), first_kinds=("conv", "dense"))
COMPOSITES = {
    "epsilon": Composite(),
    "epsilon_plus": Composite(conv=ZPlus()),
    "epsilon_plus_flat": Composite(conv=ZPlus(), **_FLAT_FIRST),
    "epsilon_gamma_box": Composite(conv=Gamma(), first=ZBox()),
    "epsilon_alpha2_beta1": Composite(conv=AlphaBeta(2.0, 1.0)),
    "epsilon_alpha2_beta1_flat": Composite(conv=AlphaBeta(2.0, 1.0), **_FLAT_FIRST),
    "zplus": Composite(conv=ZPlus(), dense=ZPlus()),
}


def as_rule(rule, name: str = "rule") -> Rule:
    """A Rule, or a rule name from lrp_rules.RULES with its default parameters."""
    if isinstance(rule, Rule):
        return rule
    if isinstance(rule, str) and rule in RULES:
        return RULES[rule]()
    raise ValueError(f"{name} must be an lrp_rules.Rule or one of {sorted(RULES)}; "
                     f"got {rule!r}")


def resolve(composite, layer_rules: Mapping | None = None) -> Composite:
    """A Composite from a name in COMPOSITES or a Composite, plus per-layer rules."""
    if isinstance(composite, str) and composite in COMPOSITES:
        composite = COMPOSITES[composite]
    if not isinstance(composite, Composite):
        raise ValueError(f"composite must be one of {sorted(COMPOSITES)} or an "
                         f"lrp_composites.Composite; got {composite!r}")
    if layer_rules:
        if not isinstance(layer_rules, Mapping):
            raise ValueError(f"layer_rules must map layer names to rules; got {layer_rules!r}")
        composite = composite.with_layers(layer_rules)
    return composite
