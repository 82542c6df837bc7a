"""The supported-primitive list of every propagation method, rendered from the rule tables.

    text = table.render()     # the Markdown of docs/propagation_primitives.md

`experiments/tools/propagation_table.py` writes it; a test fails when the file and the
tables disagree. Nothing here computes or writes: it reads the tables' entries and the
one-line `summary` each rule carries.
"""
from __future__ import annotations

from jaxviz.propagation import deeplift_rules, lrp_trace, relu_rules, shared

METHODS = (("LRP", lrp_trace.RULES), ("DeepLIFT (rescale)", deeplift_rules.RULES),
           ("DeepLIFT (reveal-cancel)", deeplift_rules.REVEAL_CANCEL))
_GROUPS = (("structural", tuple(shared.STRUCTURAL)), ("weighted", shared.WEIGHTED),
           ("sum", shared.SUMS), ("max-like", shared.MAX_LIKE),
           ("affine", shared.AFFINE), ("nonlinear", shared.NONLINEAR))

HEADER = """# Primitives the propagation rules support

Generated from the rule tables of `jaxviz.propagation` by
`python -m experiments.tools.propagation_table` (a test fails when this file and the tables
disagree; do not edit by hand).

LRP and DeepLIFT rewrite the traced program (`jaxpr`) of the model: every equation whose
operands depend on the input needs an entry below; one without is an error naming the
primitive and the model's layer (`NoRuleError`). Equations on constants only (weights,
BatchNorm statistics) run as they are. Calls (`jit`, `custom_jvp_call`, `custom_vjp_call`,
`checkpoint`) are inlined, except that a call computing one elementwise activation of one
value (`jax.nn.relu`, `leaky_relu`, `silu`, `gelu` under `jit`) is one unit: a nonlinearity
for DeepLIFT, a pass-through for LRP. The group is the shared table
(`jaxviz.propagation.shared`) the primitive comes from; supporting a new primitive is one
entry there or in a method's table, and one test.
"""


def _group(name: str) -> str:
    return next((g for g, names in _GROUPS if name in names), "own")


def _cell(table, name: str) -> str:
    rule = table.get(name)
    return "no rule" if rule is None else rule.rule_name


def _legend() -> list[str]:
    """Each method's rules once: short name, then what it does."""
    lines = []
    for method, table in METHODS:
        rules = {r.rule_name: r.summary for r in table.values()}
        lines += [f"**{method}**", ""]
        lines += [f"- *{n}*: {s}" for n, s in sorted(rules.items())]
        lines.append("")
    return lines


def _rules_table() -> list[str]:
    names = sorted(set().union(*(t for _, t in METHODS)))
    first = sorted(names, key=lambda n: ([g for g, _ in _GROUPS] + ["own"]).index(_group(n)))
    rows = ["| primitive | group | " + " | ".join(m for m, _ in METHODS) + " |",
            "|---|---|" + "---|" * len(METHODS)]
    rows += [f"| `{n}` | {_group(n)} | " + " | ".join(_cell(t, n) for _, t in METHODS) + " |"
             for n in first]
    return rows


def _relu_table() -> list[str]:
    rows = ["| primitive | guided backprop / deconvnet |", "|---|---|"]
    rows += [f"| `{n}` | {relu_rules.SUMMARY[n]} |" for n in sorted(relu_rules.rules("guided"))]
    return rows


def render() -> str:
    """The Markdown of docs/propagation_primitives.md."""
    lines = [HEADER, "## LRP and DeepLIFT", "", *_rules_table(), "",
             "What each rule does:", "", *_legend(),
             "## Guided backprop and deconvnet", "",
             "These rewrite ReLUs only; every other primitive keeps its gradient.", "",
             *_relu_table(), ""]
    return "\n".join(lines)
