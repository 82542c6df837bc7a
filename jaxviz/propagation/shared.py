"""The primitives every propagation method sorts alike: the shared part of the rule tables.

A method's table ({primitive name: rule}, in `lrp_trace`, `deeplift_rules` and
`relu_rules`) is built from these groups plus its own entries, so a primitive added here
reaches every method that handles its group; `table` lists the result per method.

    STRUCTURAL   linear ops that only move, copy or select values (reshape, transpose,
                 concatenate, pad, broadcast_in_dim, convert_element_type, ...): their own
                 VJP moves DeepLIFT's multipliers and LRP's relevance correctly
    WEIGHTED     linear layers with constant weights: convolutions (grouped too) and
                 dot_general (dense, batched)
    SUMS         weightless sums: reduce_sum, reduce_window_sum (sum pooling; an average
                 pool is one followed by a division by a constant)
    MAX_LIKE     max-like reductions (max pooling, global max)
    NONLINEAR    elementwise functions of their input-dependent operand (activations:
                 tanh, logistic, erf, max(x, c), exp, ...)
    AFFINE       add, sub, mul, div, neg: affine by a constant when one operand depends
                 on the input; each method decides what two such operands mean
"""
from __future__ import annotations

# Value: the operands that may depend on the input (None: any); the others (indices,
# predicates) must be constants ("data": select_n's operand 0 is its predicate).
STRUCTURAL = {
    "reshape": (0,), "transpose": (0,), "broadcast_in_dim": (0,), "squeeze": (0,),
    "expand_dims": (0,), "slice": (0,), "dynamic_slice": (0,), "gather": (0,), "pad": (0,),
    "rev": (0,), "convert_element_type": (0,), "copy": (0,), "copy_p": (0,),
    "reduce_precision": (0,), "split": (0,), "concatenate": None, "stack": None,
    "select_n": "data",
    "dynamic_update_slice": (0, 1),
}
WEIGHTED = ("conv_general_dilated", "dot_general")
SUMS = ("reduce_sum", "reduce_window_sum")
MAX_LIKE = ("reduce_window_max", "reduce_max", "reduce_window_min", "reduce_min")
LINEAR_KINDS = {"conv_general_dilated": "conv", "dot_general": "dense",
                "reduce_sum": "pool", "reduce_window_sum": "pool"}
AFFINE = ("add", "sub", "mul", "div", "neg")
NONLINEAR = tuple("""
    sign floor ceil round exp exp2 log log1p expm1 tanh logistic sin cos tan asin acos atan
    sinh cosh asinh acosh atanh sqrt rsqrt cbrt erf erfc erf_inv lgamma digamma abs
    integer_pow square pow rem max min atan2 nextafter clamp""".split())
# What a call's body may hold to count as one elementwise activation (jax.nn.relu,
# leaky_relu, silu): the nonlinear and affine ops, comparisons and selects.
ELEMENTWISE = frozenset(NONLINEAR + AFFINE + tuple("""
    is_finite eq ne lt le gt ge and or not xor select_n convert_element_type copy copy_p
    reduce_precision""".split()))
