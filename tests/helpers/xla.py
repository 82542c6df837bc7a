"""XLA's optimisation passes on for one block of a suite that runs with them off."""
import contextlib

import jax

FLAG = "jax_disable_most_optimizations"


@contextlib.contextmanager
def optimized():
    """Compile the block's programs with XLA's optimisation passes, whatever `make test` set.

    The suite turns the passes off (JAX_DISABLE_MOST_OPTIMIZATIONS=1) because its programs
    are tiny and compile time dominates; a block that trains for epochs runs one program
    hundreds of times, so there the passes pay for themselves (the trained CNN's `fit`: 17 s
    with them off, 12 s on, alone on this machine). The flag is read when a program compiles
    and the persistent cache keys on it, so what compiled inside stays optimised; the values
    are the same up to float reordering, which every tolerance allows.
    """
    old = jax.config.read(FLAG)
    jax.config.update(FLAG, False)
    try:
        yield
    finally:
        jax.config.update(FLAG, old)
