"""Propagation rules on the traced program: LRP, DeepLIFT (rescale, reveal-cancel) and the
guided-backprop / deconvnet ReLU rules, and what they share.

Each method rewrites `fn(params, x)`'s jaxpr on `jaxviz.core.interpret` with a table
{primitive name: rule}; an input-dependent primitive without an entry is a
`program.NoRuleError` naming the primitive and the user's layer.
"""
